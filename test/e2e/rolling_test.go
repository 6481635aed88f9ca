package e2e

import (
	"strings"
	"testing"
	"time"

	h "github.com/havip/havip/test/e2e/harness"
)

// A rolling push: lb1 reloads a file with one more VIP, lb2 two seconds
// later. Neither side may change state, the new VIP is claimed by the
// master at once, and both end advertising the new list.
func TestRollingPushAddsVIP(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	before := map[string]uint64{}
	for _, n := range p.Nodes {
		st, err := n.Status()
		if err != nil {
			t.Fatal(err)
		}
		before[n.Name] = st.Groups[0].Transitions
	}
	next := strings.Replace(lb1.ReadConfig(), `vips = ["198.18.0.100/24"]`, `vips = ["198.18.0.100/24", "198.18.0.101/24"]`, 1)
	lb1.WriteConfig(next)
	out, code := lb1.Reload()
	if code != 0 {
		t.Fatalf("reload on lb1: exit %d\n%s", code, out)
	}
	t.Logf("lb1 reload:\n%s", out)
	vip2 := p.VIP.Next()
	h.WaitUntil(t, time.Second, "new VIP on lb1", func() bool { return lb1.HasVIP(vip2) })
	time.Sleep(2 * time.Second)
	if lb2.State(group) != "BACKUP" || lb1.State(group) != "MASTER" {
		t.Fatalf("during the push: lb1 %s lb2 %s", lb1.State(group), lb2.State(group))
	}
	st1, _ := lb1.Status()
	t.Logf("lb1 advertising %v (holding the old list)", st1.Groups[0].Advertising)
	lb2.WriteConfig(next)
	if out, code := lb2.Reload(); code != 0 {
		t.Fatalf("reload on lb2: exit %d\n%s", code, out)
	}
	time.Sleep(2 * time.Second)
	for _, n := range p.Nodes {
		st, err := n.Status()
		if err != nil {
			t.Fatal(err)
		}
		g := st.Groups[0]
		if g.Transitions != before[n.Name] {
			t.Errorf("%s changed state during the push: transitions %d -> %d", n.Name, before[n.Name], g.Transitions)
		}
		if len(g.Advertising) != 0 || g.Drops["addr_list"] != 0 {
			t.Errorf("%s after the push: advertising %v, addr_list drops %d", n.Name, g.Advertising, g.Drops["addr_list"])
		}
	}
	if lb2.HasVIP(vip2) || lb2.HasVIP(p.VIP) {
		t.Errorf("the backup holds a VIP")
	}
}

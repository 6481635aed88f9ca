//go:build vmtest

package lvs

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	h "github.com/havip/havip/test/e2e/harness"
)

// Quorum loss: with quorum 2, one real server down sends the traffic to
// the sorry server, and a [[vrrp.track]] on the virtual server lowers the
// priority; when the real server returns, both come back.
func TestQuorumSorryServer(t *testing.T) {
	sorry := netip.MustParseAddr("198.18.0.23")
	extra := fmt.Sprintf(`
[[virtual_server]]
name = "web"
address = "198.18.0.100:%d"
scheduler = "rr"
forward = "dr"
quorum = 2
sorry_server = "%s:%d"
[virtual_server.check]
type = "tcp"
interval = "300ms"
timeout = "250ms"
rise = 1
fall = 2
[[virtual_server.real_server]]
address = "198.18.0.21:%d"
[[virtual_server.real_server]]
address = "198.18.0.22:%d"
`, port, sorry, port, port, port)
	p := h.NewPair(t, h.Site{Advert: advert, Extra: extra,
		ExtraGroup: "[[vrrp.track]]\nvirtual_server = \"web\"\nweight = -100\n"})
	tp := &topo{mode: "dr", pair: p}
	for i, a := range []netip.Addr{netip.MustParseAddr("198.18.0.21"), netip.MustParseAddr("198.18.0.22"), sorry} {
		name := []string{"rs1", "rs2", "sorry"}[i]
		host := p.Switch.AddHost(t, name, netip.PrefixFrom(a, 24))
		if out, code := runIn(t, host, h.Binary(t), "realserver", "up", "--mode", "dr", "--vip", p.VIP.String(), "--state-dir", t.TempDir()); code != 0 {
			t.Fatalf("realserver up on %s: %d\n%s", name, code, out)
		}
		rs := &realServer{name: name, host: host, addr: a}
		rs.serve(t)
		tp.rss = append(tp.rss, rs)
	}
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	lb1.Start()
	lb2.Start()
	lb1.WaitState("front", "MASTER", 10*time.Second)
	served := func() map[string]int { return tp.requests(t, 4) }
	if got := served(); got["rs1"] != 2 || got["rs2"] != 2 {
		t.Fatalf("with both real servers up: %v", got)
	}
	prio := func(n *h.Node) int {
		st, err := n.Status()
		if err != nil {
			t.Fatal(err)
		}
		return int(st.Groups[0].Priority)
	}

	tp.rss[0].l.Close()
	// Each director checks on its own, so one sees the loss a check
	// interval or so before the other: in that window the first has the
	// lower priority and the other may preempt, once, with its table not
	// yet on the sorry server (seen in CI; README "What does not work
	// yet"). The requests are made once both agree.
	for _, n := range p.Nodes {
		h.WaitUntil(t, 10*time.Second, "quorum lost: only the sorry server in "+n.Name+"'s table", func() bool {
			out, _ := runIn(t, n.Host, "ipvsadm", "-Ln")
			return strings.Contains(out, sorry.String()) && !strings.Contains(out, "198.18.0.22")
		})
	}
	h.WaitUntil(t, 3*time.Second, "track lowers the priorities", func() bool { return prio(lb1) == 50 && prio(lb2) == 1 })
	lb1.WaitState("front", "MASTER", 10*time.Second) // both lost quorum alike: lb1 is master again
	if got := served(); got["sorry"] != 4 {
		t.Errorf("with quorum lost the requests went to %v, want the sorry server", got)
	}

	tp.rss[0].serve(t)
	h.WaitUntil(t, 10*time.Second, "quorum back", func() bool {
		out, _ := runIn(t, lb1.Host, "ipvsadm", "-Ln")
		return !strings.Contains(out, sorry.String()) && strings.Contains(out, "198.18.0.21")
	})
	h.WaitUntil(t, 3*time.Second, "priorities restored", func() bool { return prio(lb1) == 150 && prio(lb2) == 100 })
	if got := served(); got["sorry"] != 0 {
		t.Errorf("after quorum came back: %v", got)
	}
}

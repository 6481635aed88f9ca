package e2e

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	h "github.com/havip/havip/test/e2e/harness"
)

// A change that needs a new socket restarts only its group: a VRID change
// of front, pushed to lb1 two seconds before lb2, while a second group
// (unchanged) keeps its state, its adverts and its clients throughout.
// What front itself goes through is logged: during the push the two
// directors run front on different VRIDs, two virtual routers that cannot
// hear each other.
func TestReloadRestartsOnlyChangedGroup(t *testing.T) {
	p := h.NewPair(t, h.Site{Extra: secondGroup})
	startNodes(t, p)
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	for _, n := range p.Nodes {
		h.Serve(t, n.Host, servePort, n.Name)
	}
	lb1.WaitState("second", "MASTER", 5*time.Second)
	lb2.WaitState("second", "BACKUP", time.Second)
	watch := h.WatchVIPs(t, []netip.Addr{p.VIP, vip3}, lb1.Host, lb2.Host)
	capture := h.CaptureAdverts(t, lb2.Host, "eth0")
	// One client per VIP: a failing connection to front must not slow the
	// probes of second.
	front := h.StartProber(t, p.Client, 5*time.Millisecond, time.Second, netip.AddrPortFrom(p.VIP, servePort))
	second := h.StartProber(t, p.Client, 5*time.Millisecond, time.Second, netip.AddrPortFrom(vip3, servePort))
	// A restarted group starts new counters: front's changes are counted
	// in the log.
	frontChanges := func(n *h.Node) int { return strings.Count(n.Log(), `msg="state change" group=front `) }
	before := map[string]map[string]int{}
	for _, n := range p.Nodes {
		before[n.Name] = map[string]int{"front": frontChanges(n), "second": int(groupNamed(t, n, "second").Transitions)}
	}
	time.Sleep(time.Second)

	next := strings.Replace(lb1.ReadConfig(), "vrid = 51", "vrid = 52", 1)
	lb1.WriteConfig(next)
	t0 := time.Now()
	out, code := lb1.Reload()
	if code != 0 || !strings.Contains(out, "group front: restarted (vrid 51 -> 52)") || strings.Contains(out, "group second") {
		t.Fatalf("reload on lb1: exit %d, want front restarted and second untouched:\n%s", code, out)
	}
	t.Logf("lb1: havip reload:\n%s", out)
	time.Sleep(time.Until(t0.Add(2 * time.Second)))
	lb2.WriteConfig(next)
	if out, code := lb2.Reload(); code != 0 || !strings.Contains(out, "group front: restarted (vrid 51 -> 52)") {
		t.Fatalf("reload on lb2: exit %d\n%s", code, out)
	}
	// front settles on the new VRID with lb1 master (preempt).
	lb1.WaitState("front", "MASTER", 5*time.Second)
	lb2.WaitState("front", "BACKUP", 5*time.Second)
	h.WaitUntil(t, 5*time.Second, "front's VIP only on lb1", func() bool { return lb1.HasVIP(p.VIP) && !lb2.HasVIP(p.VIP) })
	time.Sleep(time.Second)

	fs, ss := front.Stop(), second.Stop()
	capture.Stop()
	t.Logf("front (restarted): %d connections, %d failed, longest without a successful one %s; VIP on both directors for %s in all",
		fs.Attempts, fs.Failed, fs.LongestOutage.Round(time.Millisecond), watch.Both(p.VIP).Round(time.Millisecond))
	for _, n := range p.Nodes {
		t.Logf("front on %s: %d state changes during the push", n.Name, frontChanges(n)-before[n.Name]["front"])
	}
	t.Logf("VIPs in the address tables: %s", strings.Join(watch.Events(), "; "))
	t.Logf("second (unchanged): %d connections, %d failed", ss.Attempts, ss.Failed)

	if ss.Failed > 0 || ss.Answers[netip.AddrPortFrom(vip3, servePort).String()]["lb1"] != ss.Attempts {
		t.Errorf("clients of the unchanged group saw %d failures, answers %v:\n%s", ss.Failed, ss.Answers, strings.Join(ss.Failures, "\n"))
	}
	for _, n := range p.Nodes {
		if g := groupNamed(t, n, "second"); int(g.Transitions) != before[n.Name]["second"] {
			t.Errorf("%s: the unchanged group moved: transitions %d -> %d, now %s", n.Name, before[n.Name]["second"], g.Transitions, g.State)
		}
	}
	if lb2.HasVIP(vip3) || watch.Both(vip3) > 0 {
		t.Errorf("the unchanged group's VIP reached the backup")
	}
	adverts, err := capture.Adverts(h.Addr1, 61)
	if err != nil {
		t.Errorf("capture: %v", err)
	}
	gap, n := h.LongestGap(adverts)
	t.Logf("the unchanged group's adverts on the backup's wire: %d, longest gap %s", n, gap)
	if n < 20 || gap.Ratio() > 1.5 {
		t.Errorf("the unchanged group's adverts: %d, longest gap %s", n, gap)
	}
	// front's adverts reach second's socket too, and are dropped as
	// another VRID's; nothing else may be.
	if g := groupNamed(t, lb2, "second"); len(g.Drops) > 1 || len(g.Drops) == 1 && g.Drops["vrid"] == 0 {
		t.Errorf("the backup dropped adverts of the unchanged group: %v", g.Drops)
	}
	if a, _ := capture.Adverts(h.Addr1, 52); len(a) == 0 {
		t.Errorf("no adverts of front's new VRID on the wire")
	}
}

package e2e

import (
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	h "github.com/havip/havip/test/e2e/harness"
)

// A change that needs a new socket restarts only its group: a VRID change
// of front, pushed to lb1 two seconds before lb2, while a second group
// (unchanged) keeps its state, its adverts and its clients throughout.
// front itself changes no state either and is never held by both: lb1
// keeps its running instance until the pair link says lb2 runs the new
// VRID too, and each new instance takes over the state of the old one.
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
	// in the log, but for the new instance taking over the old one's state.
	frontChanges := func(n *h.Node) int {
		return strings.Count(n.Log(), `msg="state change" group=front `) - strings.Count(n.Log(), "took over the state of the instance it replaces")
	}
	before := map[string]map[string]int{}
	for _, n := range p.Nodes {
		before[n.Name] = map[string]int{"front": frontChanges(n), "second": int(groupNamed(t, n, "second").Transitions)}
	}
	time.Sleep(time.Second)

	next := strings.Replace(lb1.ReadConfig(), "vrid = 51", "vrid = 52", 1)
	lb1.WriteConfig(next)
	t0 := time.Now()
	out, code := lb1.Reload()
	if code != 0 || !strings.Contains(out, "group front: restart (vrid 51 -> 52) waits until the peer runs it") || strings.Contains(out, "group second") {
		t.Fatalf("reload on lb1: exit %d, want front's restart waiting for lb2 and second untouched:\n%s", code, out)
	}
	if g := groupNamed(t, lb1, "front"); !strings.Contains(g.Pending, "waits until the peer runs it") || g.VRID != 51 {
		t.Errorf("lb1's status during the push: vrid %d, pending %q", g.VRID, g.Pending)
	}
	t.Logf("lb1: havip reload:\n%s", out)
	time.Sleep(time.Until(t0.Add(2 * time.Second)))
	lb2.WriteConfig(next)
	if out, code := lb2.Reload(); code != 0 || !strings.Contains(out, "group front: restarted (vrid 51 -> 52), taking over its state") {
		t.Fatalf("reload on lb2: exit %d\n%s", code, out)
	}
	h.WaitUntil(t, 2*time.Second, "lb1 runs front on the new VRID", func() bool {
		g := lb1.Group("front")
		return g != nil && g.VRID == 52 && g.Pending == ""
	})
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
		if d := frontChanges(n) - before[n.Name]["front"]; d != 0 {
			t.Errorf("front on %s: %d state changes during the push, want none", n.Name, d)
		}
	}
	if fs.Failed > 0 || watch.Both(p.VIP) > 0 {
		t.Errorf("front during the push: %d failed connections, VIP on both directors for %s; want none", fs.Failed, watch.Both(p.VIP))
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

// A restart waiting for the peer does not wait for a dead one: when lb2
// falls silent, lb1 swaps in the new instance, master all along.
func TestReloadPendingRestartPeerGone(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	lb1.WriteConfig(strings.Replace(lb1.ReadConfig(), "vrid = 51", "vrid = 52", 1))
	if out, code := lb1.Reload(); code != 0 || !strings.Contains(out, "waits until the peer runs it") {
		t.Fatalf("reload on lb1: exit %d\n%s", code, out)
	}
	before := groupOf(t, lb1).Transitions
	lb2.Signal(syscall.SIGKILL)
	h.WaitUntil(t, 5*time.Second, "lb1 runs front on the new VRID", func() bool {
		g := lb1.Group(group)
		return g != nil && g.VRID == 52 && g.Pending == "" && g.State == "MASTER"
	})
	if !lb1.HasVIP(p.VIP) {
		t.Errorf("lb1 lost the VIP in the swap")
	}
	// The new instance starts its own counters; it took over MASTER, so
	// it made exactly that one entry (INIT -> MASTER); the old one made
	// its two at start (INIT -> BACKUP -> MASTER) and none in the push.
	if g := groupOf(t, lb1); g.Transitions != 1 || before != 2 {
		t.Errorf("transitions: old instance %d before the kill, new instance %d; want 2 and 1", before, g.Transitions)
	}
	if !strings.Contains(lb1.Log(), "group replaced by its new instance") {
		t.Errorf("the swap is not logged")
	}
}

package e2e

import (
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	h "github.com/havip/havip/test/e2e/harness"
)

// vipKept checks that the VIP never left lb1 while the watch ran.
func vipKept(t *testing.T, w *h.VIPWatch, vip netip.Addr, lb1 *h.Node) {
	t.Helper()
	for _, e := range w.Events() {
		if strings.Contains(e, "lb1 -") {
			t.Errorf("the VIP left lb1 during a refused drill: %s (events %v)", e, w.Events())
		}
	}
	if !slices.Contains(w.Holders(vip), "lb1") || !lb1.HasVIP(vip) {
		t.Errorf("after the refused drill the VIP is on %v, want lb1", w.Holders(vip))
	}
	if errs := w.Errors(); len(errs) > 0 {
		t.Errorf("the VIP watch lost messages: %v", errs)
	}
}

// (a) A drill whose peer's daemon was killed a second before refuses,
// exit 2, and the VIP never leaves the master.
func TestDrillDeadPeer(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	w := h.WatchVIPs(t, []netip.Addr{p.VIP}, lb1.Host, lb2.Host)
	lb2.Signal(syscall.SIGKILL)
	time.Sleep(time.Second)
	out, code := lb1.Run("failover")
	t.Logf("havip failover with the peer killed 1 s before (exit %d):\n%s", code, out)
	if code != 2 || !strings.Contains(out, "refused") {
		t.Errorf("havip failover: exit %d, want 2 and a refusal", code)
	}
	time.Sleep(5 * p.Site.Advert)
	if s := lb1.State(group); s != "MASTER" {
		t.Errorf("lb1 is %s after the refused drill, want MASTER", s)
	}
	vipKept(t, w, p.VIP, lb1)
}

// (b) A drill whose peer is not ready (in FAULT: its weight-0 tracked
// uplink is down) refuses, exit 2, naming the reason, and the VIP never
// leaves the master.
func TestDrillUnreadyPeer(t *testing.T) {
	p := h.NewPair(t, h.Site{ExtraGroup: "[[vrrp.track]]\ninterface = \"up0\"\nweight = 0\n"})
	for _, n := range p.Nodes {
		addUplink(t, n)
	}
	startNodes(t, p)
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	lb2.Host.SetLinkDown(t, "up0")
	lb2.WaitState(group, "FAULT", 2*time.Second)
	time.Sleep(500 * time.Millisecond) // the pair link tells lb1
	w := h.WatchVIPs(t, []netip.Addr{p.VIP}, lb1.Host, lb2.Host)
	out, code := lb1.Run("failover")
	t.Logf("havip failover with the peer in FAULT (exit %d):\n%s", code, out)
	if code != 2 || !strings.Contains(out, "refused") || !strings.Contains(out, "FAULT for it, not BACKUP") {
		t.Errorf("havip failover: exit %d, want 2 and the peer's FAULT as the reason", code)
	}
	time.Sleep(5 * p.Site.Advert)
	if s := lb1.State(group); s != "MASTER" {
		t.Errorf("lb1 is %s after the refused drill, want MASTER", s)
	}
	vipKept(t, w, p.VIP, lb1)
}

// (c) --force hands over past the pre-checks.
func TestDrillForce(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	out, code := lb1.Run("failover", "--force")
	t.Logf("havip failover --force (exit %d):\n%s", code, out)
	if code != 0 {
		t.Fatalf("havip failover --force: exit %d", code)
	}
	lb2.WaitState(group, "MASTER", time.Second)
	lb1.WaitState(group, "BACKUP", time.Second)
	h.WaitUntil(t, time.Second, "the VIP only on lb2", func() bool { return lb2.HasVIP(p.VIP) && !lb1.HasVIP(p.VIP) })
	if !strings.Contains(out, "client-visible gap: not measured") {
		t.Errorf("without --probe the report must say the gap was not measured")
	}
}

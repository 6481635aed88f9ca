// Package e2e runs the real havip binary as a pair of directors in network
// namespaces and checks failover as a client on the same segment sees it.
package e2e

import (
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	h "github.com/havip/havip/test/e2e/harness"
)

const group = "front"

// startPair starts both daemons and returns the pair once lb1 is master.
func startPair(t *testing.T, s h.Site) *h.Pair {
	p := h.NewPair(t, s)
	startNodes(t, p)
	return p
}

// startNodes starts both daemons of p and waits until lb1 is master.
func startNodes(t testing.TB, p *h.Pair) {
	p.Nodes[0].Start()
	p.Nodes[1].Start()
	timeout := 2*h.MasterDown(p.Site.Advert, 100) + 2*time.Second
	p.Nodes[0].WaitState(group, "MASTER", timeout)
	p.Nodes[1].WaitState(group, "BACKUP", timeout)
	// The client learns the VIP's MAC from the master.
	p.Client.Ping(t, p.VIP)
}

// (a) one master, and the VIP only on it.
func TestStartOneMaster(t *testing.T) {
	p := startPair(t, h.Site{})
	if m := p.Masters(group); len(m) != 1 || m[0].Name != "lb1" {
		t.Fatalf("masters = %v, want only lb1", names(m))
	}
	if !p.Nodes[0].HasVIP(p.VIP) || p.Nodes[1].HasVIP(p.VIP) {
		t.Fatalf("VIP on lb1=%v lb2=%v, want only lb1", p.Nodes[0].HasVIP(p.VIP), p.Nodes[1].HasVIP(p.VIP))
	}
	if got := p.Client.Neigh(t, p.VIP); got.String() != p.Nodes[0].Host.MAC.String() {
		t.Fatalf("client resolves VIP to %s, want lb1 %s", got, p.Nodes[0].Host.MAC)
	}
	out, code := p.Nodes[0].Run("status")
	if code != 0 || !strings.Contains(out, "MASTER") || !strings.Contains(out, h.DefaultVIP) {
		t.Fatalf("havip status (exit %d):\n%s", code, out)
	}
	out, code = p.Nodes[1].Run("status", "--json")
	if code != 0 || !strings.Contains(out, `"state": "BACKUP"`) {
		t.Fatalf("havip status --json (exit %d):\n%s", code, out)
	}
}

// killTakeover kills the master with SIGKILL and returns how long the
// backup took to own the VIP and to be the client's neighbour for it.
func killTakeover(t *testing.T, p *h.Pair) (vip, neigh time.Duration) {
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	added := h.WaitAddr(t, lb2.Host, p.VIP, true)
	moved := h.WaitNeigh(t, p.Client, p.VIP, lb2.Host.MAC)
	bound := h.MasterDown(p.Site.Advert, 100) + 50*time.Millisecond
	t0 := time.Now()
	lb1.Signal(syscall.SIGKILL)
	vip = h.Within(t, added, 10*bound, "VIP on the backup").Sub(t0)
	neigh = h.Within(t, moved, 10*bound, "client neighbour entry -> backup MAC").Sub(t0)
	t.Logf("kill -9: VIP on backup after %s, client neighbour moved after %s (bound %s)", vip, neigh, bound)
	if vip > bound || neigh > bound {
		t.Errorf("takeover too slow: VIP %s, neighbour %s, want <= Master_Down_Interval+50ms = %s", vip, neigh, bound)
	}
	lb2.WaitState(group, "MASTER", time.Second)
	return vip, neigh
}

// (b) kill -9 the master.
func TestKillMaster(t *testing.T) {
	p := startPair(t, h.Site{})
	gone := h.WaitAddr(t, p.Nodes[0].Host, p.VIP, false)
	t0 := time.Now()
	killTakeover(t, p)
	// The killed node's VIP goes by the kernel's own hand (address
	// lifetime 5s, default vip_lifetime, plus the kernel's expiry check).
	at := h.Within(t, gone, 15*time.Second, "the killed master's VIP expiring")
	t.Logf("killed master's VIP expired %s after the kill", at.Sub(t0))
}

// (g) unicast adverts.
func TestKillMasterUnicast(t *testing.T) {
	p := startPair(t, h.Site{Unicast: true})
	killTakeover(t, p)
}

// (h) VRRP version 2 (whole-second adverts).
func TestKillMasterV2(t *testing.T) {
	p := startPair(t, h.Site{Version: 2, Advert: time.Second})
	killTakeover(t, p)
}

// (c) SIGTERM: a priority-0 advert hands over at once.
func TestGracefulStop(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	added := h.WaitAddr(t, lb2.Host, p.VIP, true)
	moved := h.WaitNeigh(t, p.Client, p.VIP, lb2.Host.MAC)
	t0 := time.Now()
	lb1.Signal(syscall.SIGTERM)
	vip := h.Within(t, added, 2*time.Second, "VIP on the backup").Sub(t0)
	neigh := h.Within(t, moved, 2*time.Second, "client neighbour -> backup").Sub(t0)
	t.Logf("SIGTERM: VIP on backup after %s, client neighbour moved after %s", vip, neigh)
	if vip > 10*time.Millisecond {
		t.Errorf("graceful handover took %s, want < 10ms", vip)
	}
	if code := lb1.ExitCode(); code != 0 {
		t.Errorf("havip exit code after SIGTERM = %d, want 0", code)
	}
	if lb1.HasVIP(p.VIP) {
		t.Errorf("stopped master still holds the VIP")
	}
	lb2.WaitState(group, "MASTER", time.Second)
}

// (d) the old master returns: it takes back with preempt, not without.
func TestReturnPreempt(t *testing.T) {
	for _, preempt := range []bool{true, false} {
		t.Run(map[bool]string{true: "preempt", false: "nopreempt"}[preempt], func(t *testing.T) {
			p := startPair(t, h.Site{Preempt: &preempt})
			lb1, lb2 := p.Nodes[0], p.Nodes[1]
			lb1.Signal(syscall.SIGKILL)
			lb2.WaitState(group, "MASTER", 2*time.Second)
			lb1.Start()
			if preempt {
				lb1.WaitState(group, "MASTER", 3*time.Second)
				lb2.WaitState(group, "BACKUP", time.Second)
				h.WaitUntil(t, time.Second, "VIP only on lb1", func() bool { return lb1.HasVIP(p.VIP) && !lb2.HasVIP(p.VIP) })
				return
			}
			lb1.WaitState(group, "BACKUP", 3*time.Second)
			time.Sleep(10 * p.Site.Advert)
			if s := lb1.State(group); s != "BACKUP" {
				t.Fatalf("without preempt the returning node became %s", s)
			}
			if s := lb2.State(group); s != "MASTER" {
				t.Fatalf("without preempt the master became %s", s)
			}
		})
	}
}

// (e) the master's link goes down: FAULT, and the peer takes over.
func TestLinkDown(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	added := h.WaitAddr(t, lb2.Host, p.VIP, true)
	t0 := time.Now()
	lb1.Host.SetLinkDown(t, "eth0")
	at := h.Within(t, added, 2*time.Second, "VIP on the peer").Sub(t0)
	lb1.WaitState(group, "FAULT", time.Second)
	lb2.WaitState(group, "MASTER", time.Second)
	t.Logf("link down: peer owns the VIP after %s", at)
	lb1.Host.SetLinkUp(t, "eth0")
	lb1.WaitState(group, "MASTER", 3*time.Second) // preempt back
	lb2.WaitState(group, "BACKUP", time.Second)
}

// (f) a partition drops VRRP between the directors: both report the dual
// master; after healing exactly one master remains and re-announces.
func TestPartition(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	drop := `table inet hvpart {
	chain in { type filter hook input priority 0; meta l4proto 112 drop; }
	chain out { type filter hook output priority 0; meta l4proto 112 drop; }
}`
	h.Nft(t, lb1.Host, drop)
	h.Nft(t, lb2.Host, drop)
	lb2.WaitState(group, "MASTER", 2*time.Second)
	for _, n := range p.Nodes {
		h.WaitUntil(t, 3*time.Second, n.Name+" reports the dual master", func() bool {
			st, err := n.Status()
			return err == nil && len(st.Groups) == 1 && st.Groups[0].DualMaster
		})
		if !strings.Contains(n.Log(), "DUAL MASTER") {
			t.Errorf("%s did not log the dual master", n.Name)
		}
		out, _ := n.Run("status")
		if !strings.Contains(out, "DUAL MASTER") {
			t.Errorf("%s: havip status does not show the dual master:\n%s", n.Name, out)
		}
	}
	// The client heard lb2's announcements meanwhile; healing must bring it back to lb1.
	h.WaitUntil(t, 2*time.Second, "client follows lb2", func() bool {
		return p.Client.Neigh(t, p.VIP).String() == lb2.Host.MAC.String()
	})
	moved := h.WaitNeigh(t, p.Client, p.VIP, lb1.Host.MAC)
	h.Nft(t, lb1.Host, "delete table inet hvpart")
	h.Nft(t, lb2.Host, "delete table inet hvpart")
	lb2.WaitState(group, "BACKUP", 2*time.Second)
	h.Within(t, moved, 2*time.Second, "client neighbour back to lb1 (re-announce)")
	time.Sleep(5 * p.Site.Advert)
	if m := p.Masters(group); len(m) != 1 || m[0].Name != "lb1" {
		t.Fatalf("after healing masters = %v, want only lb1", names(m))
	}
	if lb2.HasVIP(p.VIP) {
		t.Fatalf("lb2 still holds the VIP after healing")
	}
	for _, n := range p.Nodes {
		out, _ := n.Run("events")
		start, end := strings.Index(out, `"kind":"dual_master_start","fields":{"for":`), strings.Index(out, `"kind":"dual_master_end","fields":{"group":"front"}`)
		if start < 0 || end < start {
			t.Errorf("%s: havip events lacks the dual master's start and then its end:\n%s", n.Name, out)
		}
	}
}

// The drill: havip failover on the master hands over and reports timings.
func TestFailoverDrill(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	out, code := lb1.Run("failover")
	t.Logf("havip failover:\n%s", out)
	if code != 0 || !strings.Contains(out, "lb1") || !strings.Contains(out, "lb2") || !strings.Contains(out, "make-before-break") {
		t.Fatalf("havip failover exit %d:\n%s", code, out)
	}
	lb2.WaitState(group, "MASTER", time.Second)
	lb1.WaitState(group, "BACKUP", time.Second)
	time.Sleep(5 * p.Site.Advert)
	if s := lb1.State(group); s != "BACKUP" {
		t.Fatalf("after the drill lb1 took the group back (%s): the handover must stick", s)
	}
	if _, code := lb1.Run("failover"); code != 2 {
		t.Fatalf("drill on a backup: exit %d, want 2", code)
	}
	if _, code := lb2.Run("failover", "nosuchgroup"); code != 1 {
		t.Fatalf("drill of an unknown group: exit %d, want 1", code)
	}
}

func names(ns []*h.Node) []string {
	var out []string
	for _, n := range ns {
		out = append(out, n.Name)
	}
	return out
}

var _ = netip.Addr{}

// Package demo is `make demo`: a live pair of havip directors in network
// namespaces, its status, a kill -9 of the master, and what happened. It is
// also a test (it asserts the failover), so `make test` runs it too.
package demo

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	h "github.com/havip/havip/test/e2e/harness"
)

func say(format string, args ...any) { fmt.Printf(format+"\n", args...) }

func TestDemo(t *testing.T) {
	say("\n== havip demo: two directors (lb1 prio 150, lb2 prio 100), VIP %s, adverts every 100ms ==", h.DefaultVIP)
	p := h.NewPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	lb1.Start()
	lb2.Start()
	lb1.WaitState("front", "MASTER", 3*time.Second)
	lb2.WaitState("front", "BACKUP", time.Second)
	p.Client.Ping(t, p.VIP)
	out, _ := lb1.Run("status")
	say("\n$ havip status   (on lb1)\n%s", indent(out))
	out, _ = lb2.Run("status")
	say("$ havip status   (on lb2)\n%s", indent(out))
	say("client %s resolves the VIP to %s (lb1 is %s)", h.ClientAddr, p.Client.Neigh(t, p.VIP), lb1.Host.MAC)

	say("\n== kill -9 lb1 (the master) ==")
	added := h.WaitAddr(t, lb2.Host, p.VIP, true)
	moved := h.WaitNeigh(t, p.Client, p.VIP, lb2.Host.MAC)
	gone := h.WaitAddr(t, lb1.Host, p.VIP, false)
	t0 := time.Now()
	lb1.Signal(syscall.SIGKILL)
	bound := h.MasterDown(p.Site.Advert, 100)
	vip := h.Within(t, added, 5*time.Second, "VIP on lb2").Sub(t0)
	neigh := h.Within(t, moved, 5*time.Second, "client neighbour -> lb2").Sub(t0)
	say("lb2 owns the VIP after            %8s  (RFC 5798 Master_Down_Interval %s)", vip.Round(100*time.Microsecond), bound.Round(100*time.Microsecond))
	say("client's ARP entry points at lb2  %8s  (gratuitous ARP)", neigh.Round(100*time.Microsecond))
	if err := p.Client.TryPing(p.VIP, 2*time.Second); err != nil {
		t.Fatalf("client cannot reach the VIP after failover: %v", err)
	}
	say("client pings the VIP through lb2: ok")
	expired := h.Within(t, gone, 15*time.Second, "the killed master's VIP expiring").Sub(t0)
	say("killed lb1's stale VIP removed by the kernel after %s (address lifetime; nobody refreshed it)", expired.Round(10*time.Millisecond))

	say("\n== lb1 comes back (preempt = true): it takes the group back ==")
	lb1.Start()
	lb1.WaitState("front", "MASTER", 3*time.Second)
	out, _ = lb1.Run("status")
	say("$ havip status   (on lb1)\n%s", indent(out))

	say("== planned handover drill: havip failover on lb1 ==")
	out, code := lb1.Run("failover")
	say("$ havip failover\n%s", indent(out))
	if code != 0 {
		t.Fatalf("havip failover exit %d", code)
	}
	lb2.WaitState("front", "MASTER", time.Second)
	say("lb2 is master now; the handover sticks until lb2 hands back (its own drill) or fails.")
	if vip > bound+50*time.Millisecond {
		t.Errorf("kill -9 failover took %s, more than Master_Down_Interval+50ms", vip)
	}
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ") + "\n"
}

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/havip/havip/internal/ctl"
	"github.com/havip/havip/internal/pairwire"
	h "github.com/havip/havip/test/e2e/harness"
	"github.com/havip/havip/test/lab"
)

// The pair link between the directors (issue 7): authenticated with the
// pair key, a takeover in milliseconds when the master's daemon dies,
// and nothing an attacker on the segment sends changes anything.

const pairPort = 7519

// waitLinkUp waits until n has an established, authenticated session.
func waitLinkUp(t *testing.T, n *h.Node, trusted bool) {
	t.Helper()
	h.WaitUntil(t, 5*time.Second, n.Name+": pair link up", func() bool {
		st, err := n.Status()
		return err == nil && len(st.Peers) == 1 && st.Peers[0].LinkUp && st.Peers[0].Alive && st.Peers[0].Trusted == trusted
	})
}

func pairStatus(t *testing.T, n *h.Node) *ctl.PairStatus {
	t.Helper()
	st, err := n.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Pair == nil {
		t.Fatalf("%s: status has no pair link", n.Name)
	}
	return st.Pair
}

// kill -9 of the master's daemon, its host up: its kernel closes the pair
// link, and the backup takes over at once instead of after
// Master_Down_Interval. (make bench measures the median of 10.)
func TestPairFastPath(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	waitLinkUp(t, lb1, true)
	waitLinkUp(t, lb2, true)
	added := h.WaitAddr(t, lb2.Host, p.VIP, true)
	moved := h.WaitNeigh(t, p.Client, p.VIP, lb2.Host.MAC)
	bound := h.MasterDown(p.Site.Advert, 100)
	t0 := time.Now()
	lb1.Signal(syscall.SIGKILL)
	vip := h.Within(t, added, 2*bound, "VIP on lb2").Sub(t0)
	neigh := h.Within(t, moved, 2*bound, "client neighbour -> lb2").Sub(t0)
	t.Logf("kill -9 of the master: VIP on the backup after %s, client neighbour moved after %s (Master_Down_Interval %s)", vip, neigh, bound)
	// Well below the timer: this was the fast path, not the election.
	if vip > bound/3 {
		t.Errorf("takeover after %s: not the fast path (Master_Down_Interval is %s)", vip, bound)
	}
	lb2.WaitState(group, "MASTER", time.Second)
	if !strings.Contains(lb2.Log(), "the peer's daemon died") {
		t.Errorf("lb2 does not say why it took over:\n%s", lb2.Log())
	}
	if n := pairStatus(t, lb2).FastTakeovers; n != 1 {
		t.Errorf("fast takeovers = %d, want 1", n)
	}

	// The other way round: the master is the node that accepted the
	// connection (the higher address). lb1 comes back, preempts, and
	// hands the group to lb2 by a drill; then lb2's daemon dies.
	lb1.Start()
	lb1.WaitState(group, "MASTER", 3*time.Second)
	waitLinkUp(t, lb1, true)
	waitLinkUp(t, lb2, true)
	if out, code := lb1.Run("failover"); code != 0 {
		t.Fatalf("drill: exit %d\n%s", code, out)
	}
	lb2.WaitState(group, "MASTER", time.Second)
	added = h.WaitAddr(t, lb1.Host, p.VIP, true)
	t0 = time.Now()
	lb2.Signal(syscall.SIGKILL)
	vip = h.Within(t, added, 2*bound, "VIP on lb1").Sub(t0)
	t.Logf("kill -9 of the master that accepted the link: VIP on lb1 after %s", vip)
	if vip > bound/3 {
		t.Errorf("takeover after %s: not the fast path (Master_Down_Interval is %s)", vip, bound)
	}
	if n := pairStatus(t, lb1).FastTakeovers; n != 1 {
		t.Errorf("lb1: fast takeovers = %d, want 1", n)
	}
}

// A host that stops (no FIN: the kernel keeps the connection) is
// failed over by VRRP's timer, as before; the fast path never fires on
// silence.
func TestPairHostHangUsesTimer(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	waitLinkUp(t, lb2, true)
	t.Cleanup(func() { lb1.Signal(syscall.SIGCONT) })
	timerTakeover(t, p, syscall.SIGSTOP, "master stopped (SIGSTOP)")
	lb1.Signal(syscall.SIGCONT)
	lb1.WaitState(group, "MASTER", 3*time.Second) // it preempts back
	lb2.WaitState(group, "BACKUP", time.Second)
	if n := pairStatus(t, lb2).FastTakeovers; n != 0 {
		t.Errorf("fast takeovers = %d after a hang, want 0", n)
	}
}

// Planned closes say bye first: a SIGTERM hands over by VRRP (priority
// 0), and a reload that re-creates the pair link on both nodes changes
// no state at all.
func TestPairPlannedCloses(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	waitLinkUp(t, lb1, true)
	waitLinkUp(t, lb2, true)

	// A rolling change of pair_port: each node re-creates its link.
	before := lb2.Group(group).Transitions
	for _, n := range p.Nodes {
		n.WriteConfig(h.SiteKey(n.ReadConfig(), "pair_port", "7600"))
		if out, code := n.Reload(); code != 0 {
			t.Fatalf("%s: reload: exit %d\n%s", n.Name, code, out)
		}
	}
	waitLinkUp(t, lb1, true)
	waitLinkUp(t, lb2, true)
	if after := lb2.Group(group).Transitions; after != before || lb2.State(group) != "BACKUP" || lb1.State(group) != "MASTER" {
		t.Errorf("the pair-link reload changed states: lb2 transitions %d -> %d, lb1 %s, lb2 %s", before, after, lb1.State(group), lb2.State(group))
	}
	if !strings.Contains(lb2.Log(), "the peer closed it as announced") {
		t.Errorf("lb2 did not see the planned close:\n%s", lb2.Log())
	}

	lb1.Signal(syscall.SIGTERM)
	lb2.WaitState(group, "MASTER", time.Second)
	if code := lb1.ExitCode(); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
	if n := pairStatus(t, lb2).FastTakeovers; n != 0 || strings.Contains(lb2.Log(), "the peer's daemon died") {
		t.Errorf("a planned stop was read as a crash (fast takeovers %d):\n%s", n, lb2.Log())
	}
}

// Without a pair key the link only observes: a crash is failed over by
// the timer, and status and check say the link is not authenticated.
func TestPairNoKeyObservesOnly(t *testing.T) {
	p := startPair(t, h.Site{NoPairKey: true})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	waitLinkUp(t, lb2, false)
	out, err := lb1.Host.Output(context.Background(), h.Binary(t), "check", "-c", lb1.Config)
	if code := exitCode(err); code != 0 || !strings.Contains(out, "no pair_key: the pair link between the directors is not authenticated") {
		t.Errorf("havip check without a key: %v, no warning:\n%s", err, out)
	}
	if out, _ := lb2.Run("status"); !strings.Contains(out, "NOT authenticated") {
		t.Errorf("status does not say the link is unauthenticated:\n%s", out)
	}
	timerTakeover(t, p, syscall.SIGKILL, "kill -9 without a pair key")
	if !strings.Contains(lb2.Log(), "no takeover: the link is not authenticated") {
		t.Errorf("lb2 does not say why it waited:\n%s", lb2.Log())
	}
}

// forgedUDP is the old protocol's message: "lb2 is MASTER of front".
func forgedUDP(seq int) []byte {
	b, _ := json.Marshal(map[string]any{"site": "lab", "node": "lb2", "seq": seq, "rev": "x",
		"groups": map[string]any{"front": map[string]any{"state": "MASTER", "cfg": []string{"198.18.0.100"}, "adv": []string{"198.18.0.100"}, "key": "k"}}})
	return b
}

// timerTakeover sends sig to p's master (lb1) and checks that lb2 takes
// the VIP by VRRP's timer, not by the pair link: within
// Master_Down_Interval (+50 ms), and no earlier than one advert interval
// before it (the timer runs from the last advert heard, up to an interval
// before the signal), with the timer as the logged reason. It returns
// how long the takeover took.
func timerTakeover(t *testing.T, p *h.Pair, sig syscall.Signal, what string) time.Duration {
	t.Helper()
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	added := h.WaitAddr(t, lb2.Host, p.VIP, true)
	bound := h.MasterDown(p.Site.Advert, 100)
	t0 := time.Now()
	lb1.Signal(sig)
	at := h.Within(t, added, 2*bound+time.Second, "VIP on lb2").Sub(t0)
	t.Logf("%s: VIP on the backup after %s (Master_Down_Interval %s)", what, at, bound)
	if at < bound-p.Site.Advert-20*time.Millisecond || at > bound+50*time.Millisecond {
		t.Errorf("%s: takeover after %s, want about Master_Down_Interval %s (the timer, not the pair link)", what, at, bound)
	}
	h.WaitUntil(t, time.Second, "lb2 logs its takeover", func() bool { return strings.Contains(lb2.Log(), "to=MASTER") })
	if !strings.Contains(lb2.Log(), "master down timer expired") || strings.Contains(lb2.Log(), "the peer's daemon died (its kernel") {
		t.Errorf("%s: lb2 took over for another reason than the timer:\n%s", what, lb2.Log())
	}
	return at
}

// The attack: with the peer dead, 1,000 forged pair-link
// datagrams from its address gave a false DUAL MASTER and 500
// re-announcements. Now they are counted and change nothing.
func TestPairForgedDatagrams(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	waitLinkUp(t, lb1, true)
	lb2.Signal(syscall.SIGKILL)
	lb1.WaitState(group, "MASTER", time.Second)
	time.Sleep(500 * time.Millisecond) // the takeover's announcements are done
	w := h.WatchVIPs(t, []netip.Addr{p.VIP}, lb1.Host, lb2.Host)
	time.Sleep(100 * time.Millisecond)
	listed := len(w.Events()) // the address as it is, listed at the start
	before := lb1.Group(group)
	const n = 1000
	// The attacker holds the dead peer's address.
	if err := lb2.Host.Do(func() error {
		c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(h.Addr2, 40000)), net.UDPAddrFromAddrPort(netip.AddrPortFrom(h.Addr1, pairPort)))
		if err != nil {
			return err
		}
		defer c.Close()
		for i := range n {
			if _, err := c.Write(forgedUDP(i + 1)); err != nil {
				return err
			}
			if i%50 == 49 {
				time.Sleep(10 * time.Millisecond)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	h.WaitUntil(t, 3*time.Second, "every datagram counted", func() bool { return pairStatus(t, lb1).Drops["legacy_udp"] == n })
	time.Sleep(2 * time.Second) // past the dual-master grace
	after := lb1.Group(group)
	if after.State != "MASTER" || after.DualMaster || after.Transitions != before.Transitions || after.Announced != before.Announced {
		t.Errorf("forged datagrams changed something: state %s, dual master %t, transitions %d -> %d, announcements %d -> %d",
			after.State, after.DualMaster, before.Transitions, after.Transitions, before.Announced, after.Announced)
	}
	if ev := w.Events(); len(ev) != listed {
		t.Errorf("the VIP moved: %v", ev)
	}
	if out, _ := lb1.Run("events"); strings.Contains(out, "dual_master_start") {
		t.Errorf("a dual master was reported:\n%s", out)
	}
	t.Logf("%d forged datagrams: drops %v; VIP stayed, %d announcements before and after", n, pairStatus(t, lb1).Drops, after.Announced)
}

// recordingConn keeps what was written through it.
type recordingConn struct {
	net.Conn
	mu  sync.Mutex
	out bytes.Buffer
}

func (r *recordingConn) Write(b []byte) (int, error) {
	r.mu.Lock()
	r.out.Write(b)
	r.mu.Unlock()
	return r.Conn.Write(b)
}

// An attacker that holds the dead peer's address, and a stranger, try
// the TCP link: garbage, another key, a replayed handshake, another site,
// an unknown address. Each is counted by its reason; the master keeps
// its VIP and hears no peer.
func TestPairForgedConnections(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	waitLinkUp(t, lb1, true)
	lb2.Signal(syscall.SIGKILL)
	lb1.WaitState(group, "MASTER", time.Second)
	h.WaitUntil(t, 3*time.Second, "lb1 sees lb2 gone", func() bool {
		st, err := lb1.Status()
		return err == nil && !st.Peers[0].Alive
	})
	time.Sleep(300 * time.Millisecond)
	w := h.WatchVIPs(t, []netip.Addr{p.VIP}, lb1.Host, lb2.Host)
	time.Sleep(100 * time.Millisecond)
	listed := len(w.Events())
	before := lb1.Group(group)
	key, err := pairwire.LoadKey(p.PairKey)
	if err != nil {
		t.Fatal(err)
	}
	otherKey := bytes.Repeat([]byte{7}, pairwire.KeySize)
	lb1Port := netip.AddrPortFrom(h.Addr1, pairPort)
	dialFrom := func(host *lab.Host, from netip.Addr) net.Conn {
		var c net.Conn
		if err := host.Do(func() error {
			d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(from, 0)), Timeout: time.Second}
			var err error
			c, err = d.Dial("tcp", lb1Port.String())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return c
	}
	waitDrop := func(reason string, want uint64) {
		t.Helper()
		h.WaitUntil(t, 5*time.Second, fmt.Sprintf("%d %s drop(s)", want, reason), func() bool { return pairStatus(t, lb1).Drops[reason] >= want })
	}

	// Garbage.
	c := dialFrom(lb2.Host, h.Addr2)
	_, _ = c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	_, _ = io.Copy(io.Discard, c)
	c.Close()
	waitDrop("malformed", 1)

	// Another site's name, with the right key.
	c = dialFrom(lb2.Host, h.Addr2)
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := pairwire.Dial(c, key, pairwire.Identity{Site: "other", Node: "lb2"}, "lb1", nil); err == nil {
		t.Error("a handshake for another site succeeded")
	}
	c.Close()
	waitDrop("wrong_site", 1)

	// A stranger's address.
	// (the refusal is a reset, which may already fail the connect)
	_ = p.Client.Do(func() error {
		d := net.Dialer{Timeout: time.Second}
		if c, err := d.Dial("tcp", lb1Port.String()); err == nil {
			_, _ = io.Copy(io.Discard, c)
			c.Close()
		}
		return nil
	})
	waitDrop("unknown_source", 1)

	// lb1 dials the peer's address (its address is the lower): the
	// attacker answers there, first with another key...
	var ln net.Listener
	if err := lb2.Host.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(h.Addr2, pairPort).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accept := func(k pairwire.Key) (*pairwire.Session, *recordingConn, error) {
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		rc := &recordingConn{Conn: c}
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		s, err := pairwire.Accept(rc, k, pairwire.Identity{Site: "lab", Node: "lb2"}, func(n string) bool { return n == "lb1" }, nil)
		return s, rc, err
	}
	if _, rc, err := accept(otherKey); err == nil {
		t.Error("a handshake with another key succeeded")
	} else {
		rc.Close()
	}
	waitDrop("forged", 1)

	// ...then with the real key (as the real lb2 once did: what it sent
	// is recorded), and then those recorded bytes again.
	s, rc, err := accept(key)
	if err != nil {
		t.Fatalf("handshake with the real key: %v", err)
	}
	recorded := bytes.Clone(rc.out.Bytes())
	s.Close()
	c, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	hello := make([]byte, 64)
	_, _ = c.Read(hello) // lb1's hello, with its fresh nonce
	_, _ = c.Write(recorded)
	_, _ = io.Copy(io.Discard, c)
	c.Close()
	waitDrop("replayed", 1)
	ln.Close()

	time.Sleep(2 * time.Second)
	after := lb1.Group(group)
	if after.State != "MASTER" || after.DualMaster || after.Transitions != before.Transitions || after.Announced != before.Announced {
		t.Errorf("forged connections changed something: state %s, dual master %t, transitions %d -> %d, announcements %d -> %d",
			after.State, after.DualMaster, before.Transitions, after.Transitions, before.Announced, after.Announced)
	}
	if ev := w.Events(); len(ev) != listed {
		t.Errorf("the VIP moved: %v", ev)
	}
	st, err := lb1.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Peers[0].Alive {
		t.Errorf("lb1 hears a peer: %+v", st.Peers[0])
	}
	t.Logf("drops on lb1: %v", st.Pair.Drops)
	if lb1.Exited() {
		t.Fatal("lb1 exited")
	}
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

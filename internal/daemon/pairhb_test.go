package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/havip/havip/internal/pairwire"
	"github.com/havip/havip/internal/vrrp"
)

// hbNode is one end of a pair link on loopback, with a state the test
// changes and the views it was handed.
type hbNode struct {
	link *pairLink
	mu   sync.Mutex
	st   pairLocal
	seen []peerView
}

func (n *hbNode) local() pairLocal {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.st
}

func (n *hbNode) set(f func(*pairLocal)) {
	n.mu.Lock()
	g := make(map[string]pairGroupMsg, len(n.st.groups))
	for k, v := range n.st.groups {
		g[k] = v
	}
	n.st.groups = g
	f(&n.st)
	n.mu.Unlock()
}

// last returns the newest view of the peer, and how many there were.
func (n *hbNode) last() (peerView, int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.seen) == 0 {
		return peerView{}, 0
	}
	return n.seen[len(n.seen)-1], len(n.seen)
}

func freePort(t *testing.T) uint16 {
	t.Helper()
	l, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

// hbPair runs two pair links, a at 127.0.0.1 and b at 127.0.0.2, each
// with groups groups; oldB makes b speak as a havip before heartbeats.
func hbPair(t *testing.T, groups int, oldB bool) (a, b *hbNode) {
	t.Helper()
	key := pairwire.Key(make([]byte, 32))
	port := freePort(t)
	ipA, ipB := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	mk := func(name string, self, peer netip.Addr, peerName string) *hbNode {
		n := &hbNode{st: pairLocal{rev: "r1", groups: map[string]pairGroupMsg{}}}
		for i := range groups {
			n.st.groups[fmt.Sprintf("g%d", i)] = pairGroupMsg{State: vrrp.Backup, Prio: 100, Cfg: []netip.Addr{netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})}, Key: fmt.Sprintf("lo vrid %d", i+1)}
		}
		events := func(e any) {
			if v, ok := e.(peerView); ok {
				n.mu.Lock()
				n.seen = append(n.seen, v)
				n.mu.Unlock()
			}
		}
		n.link = newPairLink("site", name, self, port, map[netip.Addr]string{peer: peerName}, key, n.local, events,
			func(string) time.Duration { return time.Second }, slog.New(slog.DiscardHandler))
		return n
	}
	a, b = mk("a", ipA, ipB, "b"), mk("b", ipB, ipA, "a")
	b.link.noHeartbeats = oldB
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, n := range []*hbNode{a, b} {
		wg.Add(1)
		go func() { defer wg.Done(); _ = n.link.Run(ctx) }()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	return a, b
}

// waitView waits until n's newest view of its peer satisfies ok.
func waitView(t *testing.T, n *hbNode, within time.Duration, what string, ok func(peerView) bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		if v, c := n.last(); c > 0 && ok(v) {
			return time.Since(start)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s: not seen within %s", what, within)
	return 0
}

// TestPairHeartbeats: an unchanged state goes as a heartbeat, a changed
// one in full at once, and the peer stays alive on heartbeats alone.
func TestPairHeartbeats(t *testing.T) {
	a, b := hbPair(t, 255, false)
	waitView(t, b, 5*time.Second, "b hears a's 255 groups", func(v peerView) bool { return v.alive && len(v.groups) == 255 })
	waitView(t, a, 5*time.Second, "a hears b", func(v peerView) bool { return v.alive && len(v.groups) == 255 })
	full0, same0 := a.link.sentFull.Load(), a.link.sentSame.Load()
	time.Sleep(2500 * time.Millisecond) // longer than pairAlive
	full1, same1 := a.link.sentFull.Load(), a.link.sentSame.Load()
	t.Logf("in 2.5 s of no change a sent %d full messages and %d heartbeats", full1-full0, same1-same0)
	if full1 != full0 || same1-same0 < 8 {
		t.Errorf("a sent %d full messages and %d heartbeats while nothing changed; want 0 and about 10", full1-full0, same1-same0)
	}
	if v, _ := b.last(); !v.alive || len(v.groups) != 255 {
		t.Fatalf("b's view of a after heartbeats only: alive %v, %d groups", v.alive, len(v.groups))
	}
	if s := b.link.snapshot(); len(s.peers) != 1 || !s.peers[0].alive {
		t.Errorf("b's status says a is not alive after heartbeats: %+v", s.peers)
	}

	// A change goes out in full with the next message.
	a.set(func(l *pairLocal) { g := l.groups["g7"]; g.State = vrrp.Master; l.groups["g7"] = g })
	took := waitView(t, b, 2*time.Second, "b hears g7 become master", func(v peerView) bool { return v.groups["g7"].State == vrrp.Master })
	t.Logf("b heard the change %s after it", took.Round(time.Millisecond))
	if took > 2*pairInterval {
		t.Errorf("the change took %s to arrive, more than two heartbeats", took)
	}
	// (a counts a message once Send returns, which may be after b read it)
	for deadline := time.Now().Add(time.Second); a.link.sentFull.Load() == full1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the change was not sent in full")
		}
	}
	// And stays: the heartbeats after it stand for the new state.
	time.Sleep(4 * pairInterval)
	if v, _ := b.last(); v.groups["g7"].State != vrrp.Master || len(v.groups) != 255 {
		t.Errorf("after heartbeats b's view of g7 is %v (%d groups)", v.groups["g7"].State, len(v.groups))
	}
}

// TestPairHeartbeatsOldPeer: a peer that never said it understands
// heartbeats (a havip from before them, in a rolling upgrade) gets every
// message in full, and a heartbeat never reaches it.
func TestPairHeartbeatsOldPeer(t *testing.T) {
	a, b := hbPair(t, 20, true)
	waitView(t, b, 5*time.Second, "b hears a", func(v peerView) bool { return v.alive && len(v.groups) == 20 })
	waitView(t, a, 5*time.Second, "a hears b", func(v peerView) bool { return v.alive && len(v.groups) == 20 })
	time.Sleep(1500 * time.Millisecond)
	if n := a.link.sentSame.Load(); n != 0 {
		t.Errorf("a sent %d heartbeats to a peer that does not understand them", n)
	}
	if n := a.link.sentFull.Load(); n < 5 {
		t.Errorf("a sent %d full messages in 1.5 s", n)
	}
	// The other way round a said it understands them: b sends them.
	if n := b.link.sentSame.Load(); n == 0 {
		t.Errorf("b sent no heartbeats to a, which understands them")
	}
}

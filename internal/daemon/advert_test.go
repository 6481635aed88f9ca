package daemon

import (
	"net/netip"
	"testing"
	"time"
)

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

// side is one director's view of one group during a rolling push.
type side struct {
	cfg   []netip.Addr
	lists advertLists
}

func (s *side) peerView(alive bool) peerGroup {
	return peerGroup{alive: alive, known: true, cfg: spoken{addrs: s.cfg}, adv: s.lists.adv.addrs}
}

// accepts reports whether s accepts an advert carrying list.
func (s *side) accepts(list []netip.Addr) bool {
	if sameAddrSet(list, s.lists.adv.addrs) {
		return true
	}
	for _, l := range s.lists.alsoAccept(s.cfg) {
		if sameAddrSet(l, list) {
			return true
		}
	}
	return false
}

// A rolling push, either director first: at every step each side accepts
// what the other advertises, and in the end both advertise and accept the
// new list alone.
func TestAdvertListsRollingPush(t *testing.T) {
	l1, l2 := addrs("10.0.0.100"), addrs("10.0.0.100", "10.0.0.101")
	for _, firstA := range []bool{true, false} {
		now := time.Unix(1000, 0)
		a := &side{cfg: l1, lists: newAdvertLists(spoken{addrs: l1})}
		b := &side{cfg: l1, lists: newAdvertLists(spoken{addrs: l1})}
		first, second := a, b
		if !firstA {
			first, second = b, a
		}
		check := func(step string) {
			t.Helper()
			if !a.accepts(b.lists.adv.addrs) || !b.accepts(a.lists.adv.addrs) {
				t.Fatalf("first=%v %s: A advertises %v accepts %v+%v; B advertises %v accepts %v+%v", firstA, step,
					a.lists.adv, a.lists.adv, a.lists.alsoAccept(a.cfg), b.lists.adv, b.lists.adv, b.lists.alsoAccept(b.cfg))
			}
		}
		// The first director reloads: it holds the list the peer knows.
		first.cfg = l2
		first.lists = first.lists.reconfigured(now, spoken{addrs: l2}, second.peerView(true))
		if !sameAddrSet(first.lists.adv.addrs, l1) || !first.lists.holding(spoken{addrs: l2}) {
			t.Fatalf("first reload: advertises %v, want the old list held", first.lists.adv)
		}
		check("after the first reload")
		// Heartbeats meanwhile change nothing.
		first.lists = first.lists.heard(now, spoken{addrs: first.cfg}, second.peerView(true))
		second.lists = second.lists.heard(now, spoken{addrs: second.cfg}, first.peerView(true))
		check("heartbeats")
		// Two seconds later the second director reloads: the peer runs the
		// new list, so it advertises it at once, still accepting the old one.
		now = now.Add(2 * time.Second)
		second.cfg = l2
		second.lists = second.lists.reconfigured(now, spoken{addrs: l2}, first.peerView(true))
		if !sameAddrSet(second.lists.adv.addrs, l2) {
			t.Fatalf("second reload: advertises %v, want the new list", second.lists.adv)
		}
		check("after the second reload")
		// Its next heartbeat lets the first one switch too.
		first.lists = first.lists.heard(now, spoken{addrs: first.cfg}, second.peerView(true))
		check("first switches")
		second.lists = second.lists.heard(now, spoken{addrs: second.cfg}, first.peerView(true))
		first.lists = first.lists.heard(now, spoken{addrs: first.cfg}, second.peerView(true))
		check("settled")
		for name, s := range map[string]*side{"A": a, "B": b} {
			if !sameAddrSet(s.lists.adv.addrs, l2) || len(s.lists.alsoAccept(s.cfg)) != 0 {
				t.Errorf("first=%v: %s settles advertising %v and also accepting %v; want the new list alone", firstA, name, s.lists.adv, s.lists.alsoAccept(s.cfg))
			}
		}
	}
}

// Without a live peer (dead, or keepalived without a pair link) the new
// list is advertised at once; the old one is still accepted for a while,
// then no more.
func TestAdvertListsNoPeer(t *testing.T) {
	l1, l2 := addrs("10.0.0.100"), addrs("10.0.0.101")
	now := time.Unix(1000, 0)
	a := newAdvertLists(spoken{addrs: l1}).reconfigured(now, spoken{addrs: l2}, peerGroup{})
	if !sameAddrSet(a.adv.addrs, l2) {
		t.Fatalf("advertises %v, want %v", a.adv, l2)
	}
	if got := a.alsoAccept(l2); len(got) != 1 || !sameAddrSet(got[0], l1) {
		t.Fatalf("also accepts %v, want the old list", got)
	}
	a = a.heard(now.Add(transitionGrace+time.Second), spoken{addrs: l2}, peerGroup{})
	if got := a.alsoAccept(l2); len(got) != 0 {
		t.Fatalf("after the grace still accepts %v", got)
	}
}

// A reload that does not touch the list changes nothing.
func TestAdvertListsUnchanged(t *testing.T) {
	l1 := addrs("10.0.0.100", "10.0.0.101")
	reordered := addrs("10.0.0.101", "10.0.0.100")
	a := newAdvertLists(spoken{addrs: l1}).reconfigured(time.Unix(1, 0), spoken{addrs: reordered}, peerGroup{alive: true, known: true, cfg: spoken{addrs: l1}, adv: l1})
	if a.prev != nil || len(a.alsoAccept(reordered)) != 0 {
		t.Fatalf("a reordered list started a transition: %+v", a)
	}
}

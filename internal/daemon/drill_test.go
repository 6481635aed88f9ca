package daemon

import (
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/havip/havip/internal/vrrp"
	"github.com/havip/havip/internal/vrrpnet"
)

func TestPrecheck(t *testing.T) {
	ready := func() peerFacts {
		return peerFacts{node: "lb2", alive: true, trusted: true, digest: "abc",
			groups: map[string]peerGroupFacts{"front": {state: vrrp.Backup, prio: 100}, "back": {state: vrrp.Backup, prio: 100}}}
	}
	with := func(f func(p *peerFacts)) peerFacts { p := ready(); f(&p); return p }
	tests := []struct {
		name   string
		groups []string
		peer   peerFacts
		ours   string
		want   map[string]string
	}{
		{"ready", []string{"front", "back"}, ready(), "abc", map[string]string{}},
		{"no peer in the site", []string{"front"}, peerFacts{}, "", map[string]string{"front": "the site has no other director"}},
		{"dead peer", []string{"front"}, with(func(p *peerFacts) { p.alive = false }), "abc",
			map[string]string{"front": "peer lb2 is not alive on the pair link"}},
		{"untrusted link", []string{"front"}, with(func(p *peerFacts) { p.trusted = false }), "abc",
			map[string]string{"front": "the pair link to lb2 is not authenticated (set [site] pair_key on both)"}},
		{"peer in FAULT", []string{"front", "back"}, with(func(p *peerFacts) { p.groups["front"] = peerGroupFacts{state: vrrp.Fault} }), "abc",
			map[string]string{"front": "peer lb2 is FAULT for it, not BACKUP"}},
		{"peer also master", []string{"front"}, with(func(p *peerFacts) { p.groups["front"] = peerGroupFacts{state: vrrp.Master, prio: 100} }), "abc",
			map[string]string{"front": "peer lb2 is MASTER for it, not BACKUP"}},
		{"priority 0", []string{"front"}, with(func(p *peerFacts) { p.groups["front"] = peerGroupFacts{state: vrrp.Backup} }), "abc",
			map[string]string{"front": "peer lb2 has priority 0 for it"}},
		{"group unknown to the peer", []string{"new"}, ready(), "abc", map[string]string{"new": "peer lb2 does not run this group"}},
		{"digests differ", []string{"front"}, ready(), "abd",
			map[string]string{"front": "the IPVS tables differ (digest here abd, on lb2 abc)"}},
		{"digest unknown on one side is no refusal", []string{"front"}, with(func(p *peerFacts) { p.digest = "" }), "abd", map[string]string{}},
		{"every reason of a group", []string{"front"}, with(func(p *peerFacts) {
			p.trusted = false
			p.groups["front"] = peerGroupFacts{state: vrrp.Fault}
		}), "abd", map[string]string{"front": "the pair link to lb2 is not authenticated (set [site] pair_key on both); " +
			"peer lb2 is FAULT for it, not BACKUP; the IPVS tables differ (digest here abd, on lb2 abc)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, precheck(tt.groups, tt.peer, tt.ours)); diff != "" {
				t.Errorf("precheck (-want +got):\n%s", diff)
			}
		})
	}
}

// The peer's side of make-before-break over the group's real goroutine
// (fake socket and claimer): a BACKUP group becomes master, claims, and the
// answer says so; the old master's next advert, though it outranks us, is
// dropped until it resigns; a group that is not BACKUP, or unknown, is
// answered with the reason and left alone.
func TestTakeoverCall(t *testing.T) {
	cl, fn := &fakeClaimer{}, &fakeNet{}
	g := runGroup(t, cl, fn)
	old := netip.MustParseAddr("198.18.0.12")
	advert := func(prio uint8) {
		b, err := (&vrrp.Packet{Version: 3, VRID: 51, Priority: prio, Interval: 100 * time.Millisecond,
			Addrs: []netip.Addr{netip.MustParseAddr("198.18.0.100")}}).Marshal(old, vrrpnet.Group4)
		if err != nil {
			t.Fatal(err)
		}
		g.rx <- &rxPacket{b: b, meta: vrrpnet.Meta{Src: old, Dst: vrrpnet.Group4, TTL: 255}, at: time.Now()}
	}
	// The old master outranks us: we are its backup.
	advert(200)
	waitSnap(t, g, time.Second, "BACKUP of the old master", func(s *groupSnap) bool {
		return s.status.State == vrrp.Backup && s.status.MasterAddr == old
	})
	c := &controller{log: slog.New(slog.DiscardHandler), groups: map[string]*groupRun{"front": {g: g}},
		states: map[string]vrrp.State{"front": vrrp.Backup}}
	call := func(groups ...string) pairAnswer {
		got := make(chan pairAnswer, 1)
		c.takeover(peerCall{from: "lb2", call: pairCall{ID: 7, Kind: callTakeover, Groups: groups}, reply: func(a pairAnswer) { got <- a }})
		select {
		case a := <-got:
			return a
		case <-time.After(2 * time.Second):
			t.Fatal("no answer")
		}
		return pairAnswer{}
	}
	a := call("front", "nosuch")
	if diff := cmp.Diff(pairAnswer{ID: 7, Groups: map[string]string{"front": "", "nosuch": "no such group here"}}, a); diff != "" {
		t.Fatalf("answer (-want +got):\n%s", diff)
	}
	if s := g.snap.Load(); s.status.State != vrrp.Master || len(cl.log()) == 0 || cl.log()[0].what != "claim" {
		t.Fatalf("after the answer: state %s, claims %v; want MASTER with the VIPs claimed", s.status.State, cl.log())
	}
	advert(200) // sent before it resigned
	waitSnap(t, g, time.Second, "the old master's advert dropped", func(s *groupSnap) bool {
		return s.status.Counters.Drops[vrrp.DropHandover] == 1 && s.status.State == vrrp.Master
	})
	advert(0) // it resigned
	advert(200)
	waitSnap(t, g, time.Second, "after the resign the election is normal again", inState(vrrp.Backup))

	c.states["front"] = vrrp.Master
	if a := call("front"); a.Groups["front"] != "not BACKUP here (MASTER)" {
		t.Errorf("takeover of a group that is not BACKUP: answer %+v", a)
	}
}

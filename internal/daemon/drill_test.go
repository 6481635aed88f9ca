package daemon

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/havip/havip/internal/vrrp"
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

package daemon

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/havip/havip/internal/checks"
	"github.com/havip/havip/internal/conf"
	"github.com/havip/havip/internal/track"
)

// deriveSite is a NAT director's site: a front group tracking an uplink
// and the web service, a back group holding the real servers' gateway, in
// one sync group, plus an IPv6 group and a group tracking a named check.
const deriveSite = `
[site]
name = "t"

[[node]]
name = "lb1"
address = "10.0.0.11"
priority = 150

[[node]]
name = "lb2"
address = "10.0.0.12"
priority = 100

[[check]]
name = "upstream"
type = "tcp"
target = "10.9.9.9:53"

[[vrrp]]
name = "front"
interface = "eth0"
vrid = 1
vips = ["10.0.0.100/24"]
sync_group = "nat"
[[vrrp.track]]
interface = "eth2"
weight = -60
[[vrrp.track]]
virtual_server = "web"
weight = -20

[[vrrp]]
name = "back"
interface = "eth1"
vrid = 2
vips = ["10.1.0.1/24"]
sync_group = "nat"

[[vrrp]]
name = "six"
interface = "eth0"
vrid = 3
vips = ["2001:db8::100/64"]
[[vrrp.track]]
check = "upstream"
weight = 0

[[virtual_server]]
name = "web"
address = "10.0.0.100:80"
forward = "nat"
quorum = 2
sorry_server = "10.1.0.99:80"
[[virtual_server.real_server]]
address = "10.1.0.21:80"
[[virtual_server.real_server]]
address = "10.1.0.22:80"
`

func parseSite(t testing.TB, src string) *conf.Site {
	t.Helper()
	s, problems := conf.Parse("t.toml", []byte(src))
	for _, p := range problems {
		if !p.Warning {
			t.Fatalf("site: %s", p)
		}
	}
	return s
}

var (
	lladdr = netip.MustParseAddr("fe80::1")
	node1  = netip.MustParseAddr("10.0.0.11")
)

// healthyInputs has every link up with addresses, nothing probed yet.
func healthyInputs(t *testing.T) inputs {
	t.Helper()
	s := parseSite(t, deriveSite)
	n, err := s.SelectNode("lb1")
	if err != nil {
		t.Fatal(err)
	}
	links := map[string]track.LinkState{}
	for i, name := range []string{"eth0", "eth1", "eth2"} {
		links[name] = track.LinkState{Name: name, Exists: true, Up: true, Index: i + 2, MTU: 1500, LinkLocal: lladdr}
	}
	return inputs{
		site: s, node: n, health: map[string]bool{}, links: links,
		addrs: map[netip.Addr]track.AddrState{node1: {Addr: node1, Present: true, Link: "eth0"}},
	}
}

type groupSummary struct {
	Prio, Base uint8
	Fault      string
	Failing    []string
	Source     string
}

func summarize(w wanted) map[string]groupSummary {
	out := map[string]groupSummary{}
	for name, g := range w.groups {
		s := groupSummary{Prio: g.prio, Base: g.base, Fault: g.fault, Source: g.source.String()}
		for _, ts := range g.tracks {
			if ts.failing {
				s.Failing = append(s.Failing, ts.key.String())
			}
		}
		out[name] = s
	}
	return out
}

func TestDeriveGroups(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(in *inputs)
		want   map[string]groupSummary
	}{
		{
			name:   "healthy",
			change: func(*inputs) {},
			want: map[string]groupSummary{
				"front": {Prio: 150, Base: 150, Source: "10.0.0.11"},
				"back":  {Prio: 150, Base: 150, Source: "10.0.0.11"},
				"six":   {Prio: 150, Base: 150, Source: "fe80::1"},
			},
		},
		{
			name: "tracked uplink down: the penalty moves the whole sync group",
			change: func(in *inputs) {
				in.links["eth2"] = track.LinkState{Name: "eth2", Exists: true, Index: 4, MTU: 1500}
			},
			want: map[string]groupSummary{
				"front": {Prio: 90, Base: 150, Source: "10.0.0.11", Failing: []string{"interface eth2"}},
				"back":  {Prio: 90, Base: 150, Source: "10.0.0.11"},
				"six":   {Prio: 150, Base: 150, Source: "fe80::1"},
			},
		},
		{
			name: "one real server down loses the quorum of web: failing virtual_server track",
			change: func(in *inputs) {
				in.health[checks.RealServerKey("web", netip.MustParseAddrPort("10.1.0.21:80"))] = false
			},
			want: map[string]groupSummary{
				"front": {Prio: 130, Base: 150, Source: "10.0.0.11", Failing: []string{"virtual_server web"}},
				"back":  {Prio: 130, Base: 150, Source: "10.0.0.11"},
				"six":   {Prio: 150, Base: 150, Source: "fe80::1"},
			},
		},
		{
			name: "back's interface goes down: FAULT there, and front follows it",
			change: func(in *inputs) {
				in.links["eth1"] = track.LinkState{Name: "eth1", Exists: true, Index: 3, MTU: 1500}
			},
			want: map[string]groupSummary{
				"front": {Prio: 150, Base: 150, Source: "10.0.0.11", Fault: "sync group nat: group back in FAULT (interface eth1 is down)"},
				"back":  {Prio: 150, Base: 150, Source: "10.0.0.11", Fault: "interface eth1 is down", Failing: []string{"interface eth1"}},
				"six":   {Prio: 150, Base: 150, Source: "fe80::1"},
			},
		},
		{
			name: "a fault only the group sees (its socket, its VIP claims) is the sync group's too",
			change: func(in *inputs) {
				in.faults = map[string]string{"back": "advert socket: refused", "six": "VIPs could not be claimed: refused"}
			},
			want: map[string]groupSummary{
				"front": {Prio: 150, Base: 150, Source: "10.0.0.11", Fault: "sync group nat: group back in FAULT (advert socket: refused)"},
				"back":  {Prio: 150, Base: 150, Source: "10.0.0.11"}, // the group has it already
				"six":   {Prio: 150, Base: 150, Source: "fe80::1"},   // in no sync group
			},
		},
		{
			name: "an interface that does not exist (yet)",
			change: func(in *inputs) {
				in.links["eth0"] = track.LinkState{Name: "eth0"}
			},
			want: map[string]groupSummary{
				"front": {Prio: 150, Base: 150, Source: "10.0.0.11", Fault: "interface eth0 does not exist", Failing: []string{"interface eth0"}},
				"back":  {Prio: 150, Base: 150, Source: "10.0.0.11", Fault: "sync group nat: group front in FAULT (interface eth0 does not exist)"},
				"six":   {Prio: 150, Base: 150, Source: "invalid IP", Fault: "interface eth0 does not exist", Failing: []string{"interface eth0"}},
			},
		},
		{
			name: "the node's own address is not configured",
			change: func(in *inputs) {
				in.addrs[node1] = track.AddrState{Addr: node1}
			},
			want: map[string]groupSummary{
				"front": {Prio: 150, Base: 150, Source: "invalid IP", Fault: "node address 10.0.0.11 is not configured on this host"},
				"back":  {Prio: 150, Base: 150, Source: "invalid IP", Fault: "node address 10.0.0.11 is not configured on this host"},
				"six":   {Prio: 150, Base: 150, Source: "fe80::1"},
			},
		},
		{
			name: "no usable link-local for the IPv6 group",
			change: func(in *inputs) {
				l := in.links["eth0"]
				l.LinkLocal = netip.Addr{}
				in.links["eth0"] = l
			},
			want: map[string]groupSummary{
				"front": {Prio: 150, Base: 150, Source: "10.0.0.11"},
				"back":  {Prio: 150, Base: 150, Source: "10.0.0.11"},
				"six":   {Prio: 150, Base: 150, Source: "invalid IP", Fault: "interface eth0 has no usable IPv6 link-local address"},
			},
		},
		{
			name: "the IPv6 group's link-local is not the node's link_local",
			change: func(in *inputs) {
				n := *in.node
				n.LinkLocal = netip.MustParseAddr("fe80::11")
				in.node = &n
			},
			want: map[string]groupSummary{
				"front": {Prio: 150, Base: 150, Source: "10.0.0.11"},
				"back":  {Prio: 150, Base: 150, Source: "10.0.0.11"},
				"six":   {Prio: 150, Base: 150, Source: "fe80::1", Fault: "interface eth0 sends IPv6 adverts from fe80::1, not from this node's link_local fe80::11"},
			},
		},
		{
			name: "the IPv6 group's link-local is the node's link_local",
			change: func(in *inputs) {
				n := *in.node
				n.LinkLocal = lladdr
				in.node = &n
			},
			want: map[string]groupSummary{
				"front": {Prio: 150, Base: 150, Source: "10.0.0.11"},
				"back":  {Prio: 150, Base: 150, Source: "10.0.0.11"},
				"six":   {Prio: 150, Base: 150, Source: "fe80::1"},
			},
		},
		{
			name: "an MTU too small for the advert",
			change: func(in *inputs) {
				l := in.links["eth1"]
				l.MTU = 30
				in.links["eth1"] = l
			},
			want: map[string]groupSummary{
				"front": {Prio: 150, Base: 150, Source: "10.0.0.11", Fault: "sync group nat: group back in FAULT (an advert is 32 bytes, more than the MTU 30 of eth1)"},
				"back":  {Prio: 150, Base: 150, Source: "10.0.0.11", Fault: "an advert is 32 bytes, more than the MTU 30 of eth1"},
				"six":   {Prio: 150, Base: 150, Source: "fe80::1"},
			},
		},
		{
			name: "a weight-0 check track that fails is a FAULT; not probed yet is not",
			change: func(in *inputs) {
				in.health[checks.CheckKey("upstream")] = false
			},
			want: map[string]groupSummary{
				"front": {Prio: 150, Base: 150, Source: "10.0.0.11"},
				"back":  {Prio: 150, Base: 150, Source: "10.0.0.11"},
				"six":   {Prio: 150, Base: 150, Source: "fe80::1", Fault: "track check upstream failing", Failing: []string{"check upstream"}},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := healthyInputs(t)
			tc.change(&in)
			got := summarize(derive(in))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("derive (-want +got):\n%s", diff)
			}
		})
	}
}

// The IPVS table follows health: a lost quorum sends web to its sorry
// server alone; health coming back restores both real servers.
func TestDeriveTable(t *testing.T) {
	in := healthyInputs(t)
	dests := func(w wanted) string {
		var out []string
		for _, d := range w.table.Services[0].Dests {
			out = append(out, d.Address.String())
		}
		return strings.Join(out, " ")
	}
	if got := dests(derive(in)); got != "10.1.0.21:80 10.1.0.22:80" {
		t.Errorf("healthy: dests %q", got)
	}
	in.health[checks.RealServerKey("web", netip.MustParseAddrPort("10.1.0.22:80"))] = false
	w := derive(in)
	if got := dests(w); got != "10.1.0.99:80" || !w.table.Services[0].Down {
		t.Errorf("quorum lost: dests %q down %t, want the sorry server alone", got, w.table.Services[0].Down)
	}
	in.health[checks.RealServerKey("web", netip.MustParseAddrPort("10.1.0.22:80"))] = true
	if got := dests(derive(in)); got != "10.1.0.21:80 10.1.0.22:80" {
		t.Errorf("recovered: dests %q", got)
	}
}

// The address owner keeps 255 whatever fails (RFC 5798); other
// priorities stay within 1..254.
func TestDeriveOwnerAndClamp(t *testing.T) {
	src := strings.Replace(deriveSite, `vips = ["10.1.0.1/24"]`, `vips = ["10.0.0.11/24"]`, 1)
	src = strings.Replace(src, "weight = -60", "weight = -200", 1)
	in := healthyInputs(t)
	in.site = parseSite(t, src)
	in.node, _ = in.site.SelectNode("lb1")
	in.links["eth2"] = track.LinkState{Name: "eth2", Exists: true, Index: 4, MTU: 1500}
	got := summarize(derive(in))
	if g := got["back"]; g.Base != 255 || g.Prio != 255 {
		t.Errorf("owner: base %d prio %d, want 255 255", g.Base, g.Prio)
	}
	if g := got["front"]; g.Prio != 1 {
		t.Errorf("front with -200: prio %d, want 1", g.Prio)
	}
}

// derive reads its inputs and never writes them.
func TestDeriveLeavesInputsAlone(t *testing.T) {
	in := healthyInputs(t)
	before := len(in.health) + len(in.links) + len(in.addrs)
	_ = derive(in)
	if after := len(in.health) + len(in.links) + len(in.addrs); after != before {
		t.Errorf("derive changed its input maps: %d -> %d entries", before, after)
	}
}

// start = "down": a real server not probed yet gets no traffic, and a
// named check not probed yet counts as failing; the first results decide.
func TestDeriveStartDown(t *testing.T) {
	src := strings.Replace(deriveSite, `sorry_server = "10.1.0.99:80"`, "sorry_server = \"10.1.0.99:80\"\n[virtual_server.check]\nstart = \"down\"", 1)
	src = strings.Replace(src, `target = "10.9.9.9:53"`, "target = \"10.9.9.9:53\"\nstart = \"down\"", 1)
	in := healthyInputs(t)
	in.site = parseSite(t, src)
	in.node, _ = in.site.SelectNode("lb1")
	dests := func(w wanted) string {
		var out []string
		for _, d := range w.table.Services[0].Dests {
			out = append(out, d.Address.String())
		}
		return strings.Join(out, " ")
	}
	upstreamFailing := func(w wanted) bool {
		for _, g := range w.groups {
			for _, ts := range g.tracks {
				if ts.key == (trackKey{trackCheck, "upstream"}) {
					return ts.failing
				}
			}
		}
		t.Fatal("no group tracks the upstream check")
		return false
	}
	w := derive(in)
	if got := dests(w); got != "10.1.0.99:80" || !upstreamFailing(w) {
		t.Errorf("before any probe: dests %q (want the sorry server alone), upstream failing %t (want true)", got, upstreamFailing(w))
	}
	for _, rs := range []string{"10.1.0.21:80", "10.1.0.22:80"} {
		in.health[checks.RealServerKey("web", netip.MustParseAddrPort(rs))] = true
	}
	in.health[checks.CheckKey("upstream")] = true
	w = derive(in)
	if got := dests(w); got != "10.1.0.21:80 10.1.0.22:80" || upstreamFailing(w) {
		t.Errorf("after the first rise: dests %q, upstream failing %t", got, upstreamFailing(w))
	}
	// The default start = "up" counts a target not probed yet as up.
	if got := dests(derive(healthyInputs(t))); got != "10.1.0.21:80 10.1.0.22:80" {
		t.Errorf("start up: dests %q", got)
	}
}

// quorum_hysteresis: walking the live real servers down and up again, a
// service with quorum 3 and hysteresis 1 loses its quorum only below 2
// live (or at none) and regains it only at 4; with hysteresis 0 it
// follows the quorum at every step. The state derive returns is the
// state it is given next.
func TestDeriveQuorumHysteresis(t *testing.T) {
	site := func(h int) string {
		var b strings.Builder
		b.WriteString("[site]\nname = \"t\"\n[[node]]\nname = \"lb1\"\naddress = \"10.0.0.11\"\n")
		fmt.Fprintf(&b, "[[virtual_server]]\nname = \"web\"\naddress = \"10.0.0.100:80\"\nquorum = 3\nquorum_hysteresis = %d\nsorry_server = \"10.1.0.99:80\"\n", h)
		for i := range 6 {
			fmt.Fprintf(&b, "[[virtual_server.real_server]]\naddress = \"10.1.0.%d:80\"\n", 21+i)
		}
		return b.String()
	}
	for _, tc := range []struct {
		h    int
		want string // down (D) or up (U) after each step of live
	}{
		{0, "UUDDDUUU"},
		{1, "UUUDDDUU"},
		{2, "UUUUDDDU"}, // 3 - 2 = 1: lost only at none
	} {
		t.Run(fmt.Sprint("hysteresis ", tc.h), func(t *testing.T) {
			in := healthyInputs(t)
			in.site = parseSite(t, site(tc.h))
			in.node, _ = in.site.SelectNode("lb1")
			in.vsDown = map[string]bool{}
			steps := []int{6, 3, 2, 1, 0, 3, 4, 5}
			var got strings.Builder
			for _, live := range steps {
				for i := range 6 {
					in.health[checks.RealServerKey("web", netip.MustParseAddrPort(fmt.Sprintf("10.1.0.%d:80", 21+i)))] = i < live
				}
				w := derive(in)
				s := w.table.Services[0]
				switch {
				case s.Down && (len(s.Dests) != 1 || s.Dests[0].Address != netip.MustParseAddrPort("10.1.0.99:80")):
					t.Errorf("live %d: down but dests %v, want the sorry server alone", live, s.Dests)
				case !s.Down && len(s.Dests) != live:
					t.Errorf("live %d: up but %d dests", live, len(s.Dests))
				}
				if s.Down {
					got.WriteByte('D')
				} else {
					got.WriteByte('U')
				}
				in.vsDown = map[string]bool{"web": s.Down}
			}
			if got.String() != tc.want {
				t.Errorf("live %v: got %s, want %s", steps, got.String(), tc.want)
			}
		})
	}
	// The first judgement knows no previous state: quorum alone.
	in := healthyInputs(t)
	in.site = parseSite(t, site(1))
	in.node, _ = in.site.SelectNode("lb1")
	for i := range 6 {
		in.health[checks.RealServerKey("web", netip.MustParseAddrPort(fmt.Sprintf("10.1.0.%d:80", 21+i)))] = i < 2
	}
	if !derive(in).table.Services[0].Down {
		t.Error("first judgement with 2 of quorum 3 live: up, want down")
	}
}

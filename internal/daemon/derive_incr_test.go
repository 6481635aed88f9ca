package daemon

import (
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/havip/havip/internal/checks"
	"github.com/havip/havip/internal/conf"
	"github.com/havip/havip/internal/ipvsync"
)

// With the table derived before, derive recomputes only the dirty virtual
// servers: their services come back in set (the table stays empty), equal
// to what a whole derive gives, and the groups tracking them see them as
// a whole derive does.
func TestDeriveIncrementalTable(t *testing.T) {
	in := healthyInputs(t)
	in.vsIndex = newSiteIndex(in.site).vs
	before := derive(in)
	rs := checks.RealServerKey("web", netip.MustParseAddrPort("10.1.0.22:80"))
	in.health[rs] = false
	whole := derive(in)

	in.prev, in.dirty = &before.table, []int{in.vsIndex["web"]}
	got := derive(in)
	if len(got.table.Services) != 0 {
		t.Errorf("incremental derive returned a whole table of %d services", len(got.table.Services))
	}
	if len(got.set) != 1 || !got.set[0].Equal(&whole.table.Services[0]) || !got.set[0].Down {
		t.Fatalf("set = %+v, want web as a whole derive has it (down)", got.set)
	}
	if g, w := got.groups["front"].prio, whole.groups["front"].prio; g != w || g == before.groups["front"].prio {
		t.Errorf("front's priority: incremental %d, whole %d, before %d", g, w, before.groups["front"].prio)
	}

	// Nothing dirty: nothing derived, and the groups read the previous
	// table.
	in.prev, in.dirty = &whole.table, nil
	got = derive(in)
	if len(got.set) != 0 || got.groups["front"].prio != whole.groups["front"].prio {
		t.Errorf("nothing dirty: set %d services, front prio %d (want %d)", len(got.set), got.groups["front"].prio, whole.groups["front"].prio)
	}
}

// A health change hands the reconciler the service it changed and
// nothing else; a new site hands it a whole table.
func TestControllerSendsChangedServices(t *testing.T) {
	s := parseSite(t, deriveSite)
	n, err := s.SelectNode("lb1")
	if err != nil {
		t.Fatal(err)
	}
	c := newController(Options{}, slog.New(slog.NewTextHandler(io.Discard, nil)), &loaded{site: s, node: n}, signals{})
	c.ipvs = &ipvsTask{desired: make(chan ipvsync.Update, 1)}
	c.update()
	first := <-c.ipvs.desired
	if first.Table == nil || len(first.Table.Services) != len(s.VirtualServers) || first.Set != nil {
		t.Fatalf("start: %+v, want the whole table", first)
	}
	c.handle(checks.Result{Key: "web/10.1.0.21:80", Up: false})
	c.handle(checks.Result{Key: "check/upstream", Up: false}) // a named check: no table change
	u := <-c.ipvs.desired
	var names []string
	for _, s := range u.Set {
		names = append(names, s.Name)
	}
	if u.Table != nil || !cmp.Equal(names, []string{"web"}) || !u.Set[0].Down {
		t.Errorf("after one health change: table %v, set %v; want web alone, down", u.Table != nil, names)
	}
	if c.table.Services[0].Name != "web" || !c.table.Services[0].Down {
		t.Errorf("the controller's table did not take the change: %+v", c.table.Services[0])
	}
	select {
	case u := <-c.ipvs.desired:
		t.Errorf("a second update: %+v", u)
	default:
	}
	if first.Table.Services[0].Down {
		t.Error("the whole table sent at start was changed in place afterwards")
	}
}

// BenchmarkControllerHealthChange times the controller taking one health
// result at 10,000 virtual servers x 10 real servers, up to the update it
// hands the reconciler, against a whole derive of the same site (what
// every health change cost before) measured in the same run:
//
//	go test -run '^$' -bench ControllerHealthChange -benchtime 1x ./internal/daemon
func BenchmarkControllerHealthChange(b *testing.B) {
	const nVS, nRS = 10000, 10
	s := parseSite(b, deriveSite)
	web := s.VirtualServers[0]
	vss := make([]conf.VirtualServer, nVS)
	for i := range vss {
		vs := web
		if i > 0 {
			vs.Name = "vs" + strconv.Itoa(i)
		}
		vs.Address = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 100, byte(i / 250), byte(i%250 + 1)}), 80)
		vs.RealServers = nil
		for j := range nRS {
			rs := web.RealServers[0]
			rs.Address = netip.AddrPortFrom(netip.AddrFrom4([4]byte{172, byte(16 + j), byte(i / 250), byte(i%250 + 1)}), 80)
			vs.RealServers = append(vs.RealServers, rs)
		}
		vss[i] = vs
	}
	s.VirtualServers = vss
	n, err := s.SelectNode("lb1")
	if err != nil {
		b.Fatal(err)
	}
	c := newController(Options{}, slog.New(slog.DiscardHandler), &loaded{site: s, node: n}, signals{})
	c.ipvs = &ipvsTask{desired: make(chan ipvsync.Update, 1)}
	c.update()
	<-c.ipvs.desired

	in := inputs{site: s, node: n, health: c.health, links: c.links, addrs: c.addrs, faults: c.faults, vsIndex: c.siteIndex().vs}
	t0 := time.Now()
	derive(in)
	whole := time.Since(t0)

	key := checks.RealServerKey(vss[nVS/2].Name, vss[nVS/2].RealServers[nRS/2].Address)
	var one []time.Duration
	for i := range 2 * max(b.N, 3) {
		t0 := time.Now()
		c.handle(checks.Result{Key: key, Up: i%2 == 1})
		u := <-c.ipvs.desired
		one = append(one, time.Since(t0))
		if len(u.Set) != 1 {
			b.Fatalf("health change %d: %d services set", i, len(u.Set))
		}
	}
	slices.Sort(one)
	med := one[len(one)/2]
	b.Logf("%d x %d: one health change through the controller %v (median of %d), whole derive %v, ratio %.2g",
		nVS, nRS, med, len(one), whole, float64(med)/float64(whole))
	b.ReportMetric(float64(med.Microseconds()), "health-µs")
	b.ReportMetric(float64(whole.Microseconds()), "whole-derive-µs")
}

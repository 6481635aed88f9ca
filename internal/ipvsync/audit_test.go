package ipvsync

import (
	"net"
	"net/netip"
	"slices"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/havip/havip/internal/conf"
	"github.com/moby/ipvs"
	"golang.org/x/sys/unix"
)

// manyServices declares n TCP services with two real servers each, as
// conf would give them.
func manyServices(n int) []conf.VirtualServer {
	vss := make([]conf.VirtualServer, n)
	for i := range vss {
		hi, lo := byte(i/250), byte(i%250+1)
		vss[i] = conf.VirtualServer{
			Name: "s" + strconv.Itoa(i), Address: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 100, hi, lo}), 80),
			Family: "inet", Protocol: "tcp", Scheduler: "wlc", Forward: "dr",
			PersistenceNetmask: netip.MustParsePrefix("0.0.0.0/32"), Quorum: 1, OnFailure: "remove",
			RealServers: []conf.RealServer{
				{Address: netip.AddrPortFrom(netip.AddrFrom4([4]byte{172, 16, hi, lo}), 80), Weight: 1},
				{Address: netip.AddrPortFrom(netip.AddrFrom4([4]byte{172, 17, hi, lo}), 80), Weight: 1},
			},
		}
	}
	return vss
}

// A full reconcile of a large table reads every service but the
// destinations of one slice only, and still repairs: a flushed table at
// once, a destination re-weighted or removed behind havip's back within
// auditSlices passes.
func TestFullReconcileAuditsASlice(t *testing.T) {
	const n = 1000
	k := &FakeKernel{}
	r := newRec(t, k, "")
	tab := desired(nil, manyServices(n)...)
	if ch := reconcile(t, r, tab); len(ch) != 3*n {
		t.Fatalf("cold: %d changes, want %d", len(ch), 3*n)
	}

	// The first pass over an applied table reads the service list twice
	// (before and after the destinations) and one slice of destinations.
	k.ResetCounts()
	if ch := reconcile(t, r, tab); len(ch) != 0 {
		t.Fatalf("no-op pass wrote %v", ops(ch)[:3])
	}
	if want := 2 + n/auditSlices; k.Reads != want {
		t.Errorf("no-op pass: %d reads, want %d", k.Reads, want)
	}

	// Behind havip's back: one destination re-weighted, one removed, in
	// services far apart.
	svcA, svcB := tab.Services[3].toKernel(), tab.Services[n-7].toKernel()
	d := tab.Services[3].Dests[1]
	d.Weight = 9
	if err := k.UpdateDestination(svcA, d.toKernel()); err != nil {
		t.Fatal(err)
	}
	if err := k.DelDestination(svcB, tab.Services[n-7].Dests[0].toKernel()); err != nil {
		t.Fatal(err)
	}
	var repaired []string
	passes := 0
	for passes < auditSlices && len(repaired) < 2 {
		passes++
		for _, c := range reconcile(t, r, tab) {
			repaired = append(repaired, string(c.Op)+" "+c.Dest.String())
		}
	}
	slices.Sort(repaired)
	want := []string{"add-dest 172.16.3.244:80", "update-dest 172.17.0.4:80"}
	if diff := cmp.Diff(want, repaired); diff != "" {
		t.Fatalf("repairs within %d passes (-want +got):\n%s", auditSlices, diff)
	}

	// A flush: every service and destination back in one pass.
	k.Flush()
	if ch := reconcile(t, r, tab); len(ch) != 3*n {
		t.Fatalf("after a flush: %d changes, want %d", len(ch), 3*n)
	}
	if ch := reconcile(t, r, tab); len(ch) != 0 {
		t.Fatalf("the pass after the flush repair wrote %v", ops(ch)[:3])
	}
}

// A service with a destination at weight 0 (a drain) is read on every
// pass: its connection counts are what drain --wait watches.
func TestFullReconcileReadsDrainingServices(t *testing.T) {
	const n = 1000
	k := &FakeKernel{}
	r := newRec(t, k, "")
	tab := desired(nil, manyServices(n)...)
	tab.Services[n/2].Dests[0].Weight = 0
	reconcile(t, r, tab)
	key, rs := tab.Services[n/2].Key, tab.Services[n/2].Dests[0].Address
	for pass := range 3 {
		if err := k.SetConns(key, rs, pass+1, 0); err != nil {
			t.Fatal(err)
		}
		reconcile(t, r, tab)
		if got := r.Published().Rows[n/2].Dests[0].Active; got != pass+1 {
			t.Fatalf("pass %d: published %d active connections, the kernel has %d", pass, got, pass+1)
		}
	}
}

// A full reconcile given a table that differs from the one applied reads
// the destinations of the services that differ, whatever the slice.
func TestFullReconcileReadsChangedServices(t *testing.T) {
	const n = 1000
	vss := manyServices(n)
	k := &FakeKernel{}
	r := newRec(t, k, "")
	reconcile(t, r, desired(nil, vss...))
	vss[n/2].RealServers = vss[n/2].RealServers[:1]
	ch := reconcile(t, r, desired(nil, vss...))
	if diff := cmp.Diff([]string{"del-dest tcp 10.100.2.1:80 (s500) -> 172.17.2.1:80"}, ops(ch)); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}

// ReconcileServices looks at the named services only: one read of the
// service and one of its destinations, one write; a service changed but
// not named is left to the next full reconcile.
func TestReconcileServicesTouchesOnlyNamed(t *testing.T) {
	const n = 300
	vss := manyServices(n)
	k := &FakeKernel{}
	r := newRec(t, k, "")
	tab := desired(nil, vss...)
	reconcile(t, r, tab)

	next := Table{Services: slices.Clone(tab.Services)}
	down := downSet{vss[10].RealServers[0].Address: true, vss[20].RealServers[1].Address: true}
	next.Services[10] = DesiredService(vss[10], down)
	next.Services[20] = DesiredService(vss[20], down) // not named
	k.ResetCounts()
	ch, err := r.ReconcileServices(next, []ServiceKey{next.Services[10].Key})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"del-dest tcp 10.100.0.11:80 (s10) -> 172.16.0.11:80"}, ops(ch)); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	if k.Reads != 2 || k.Writes != 1 {
		t.Errorf("%d reads, %d writes; want 2 and 1", k.Reads, k.Writes)
	}
	rows := r.Published().Rows
	if len(rows) != n || len(rows[10].Dests) != 2 || rows[10].Dests[0].InKernel || !rows[10].Dests[1].InKernel {
		t.Errorf("published row of s10: %+v", rows[10])
	}
	// The full reconcile finds the other one (it differs from the
	// table applied).
	if ch := reconcile(t, r, next); len(ch) != 1 || ch[0].Service != next.Services[20].Key {
		t.Errorf("full reconcile after: %v", ops(ch))
	}

	// A table of another shape is compared whole.
	k.ResetCounts()
	shorter := Table{Services: next.Services[:n-1]}
	ch, err = r.ReconcileServices(shorter, nil)
	if err != nil || len(ch) != 1 || ch[0].Op != OpDelService {
		t.Errorf("shorter table: %v, %v; want the last service deleted", ops(ch), err)
	}
}

func TestUpdateMerge(t *testing.T) {
	t1, t2 := &Table{}, &Table{Services: []Service{{Name: "a"}}}
	a, b := Service{Name: "a"}, Service{Name: "b"}
	names := func(u Update) (out []string) {
		for _, s := range u.Set {
			out = append(out, s.Name)
		}
		return out
	}
	if got := (Update{Table: t1, Set: []Service{a}}).Merge(Update{Set: []Service{b}}); got.Table != t1 || !slices.Equal(names(got), []string{"a", "b"}) {
		t.Errorf("table+set, set = %p %v; want the first table and both sets in order", got.Table, names(got))
	}
	if got := (Update{Set: []Service{a}}).Merge(Update{Table: t2, Set: []Service{b}}); got.Table != t2 || !slices.Equal(names(got), []string{"b"}) {
		t.Errorf("set, table+set = %p %v; want the later table and its set", got.Table, names(got))
	}
}

// ReconcileUpdate keeps its own table: a set replaces one service in it
// and costs what ReconcileServices costs; a key it lacks is refused.
func TestReconcileUpdate(t *testing.T) {
	vss := manyServices(300)
	k := &FakeKernel{}
	r := newRec(t, k, "")
	tab := desired(nil, vss...)
	if ch, err := r.ReconcileUpdate(Update{Table: &tab}); err != nil || len(ch) != 900 {
		t.Fatalf("first update: %d changes, %v", len(ch), err)
	}
	tab.Services[0].Scheduler = "rr" // the sender's copy: not the reconciler's
	s := DesiredService(vss[7], downSet{vss[7].RealServers[1].Address: true})
	k.ResetCounts()
	ch, err := r.ReconcileUpdate(Update{Set: []Service{s}})
	if err != nil || len(ch) != 1 || ch[0].Op != OpDelDest || k.Reads != 2 {
		t.Fatalf("set one service: %v, %v, %d reads", ops(ch), err, k.Reads)
	}
	if ch := reconcile(t, r, r.want); len(ch) != 0 {
		t.Errorf("full reconcile of the kept table: %v (the sender's edit leaked in?)", ops(ch))
	}
	alien := DesiredService(manyServices(301)[300], nil)
	if _, err := r.ReconcileUpdate(Update{Set: []Service{alien}}); err == nil {
		t.Error("a set of a service the table lacks was accepted")
	}
}

// What the encoder writes, the decoder reads back (the kernel's replies
// use the same attributes).
func TestNetlinkCodecRoundTrip(t *testing.T) {
	svcs := []*ipvs.Service{
		{AddressFamily: unix.AF_INET, Protocol: unix.IPPROTO_TCP, Address: net.ParseIP("10.0.0.1").To4(), Port: 443,
			SchedName: "wrr", Flags: FlagPersistent, Timeout: 300, Netmask: kernelNetmask(unix.AF_INET, 24)},
		{AddressFamily: unix.AF_INET6, Protocol: unix.IPPROTO_UDP, Address: net.ParseIP("2001:db8::1"), Port: 53,
			SchedName: "mh", Flags: FlagSched2, Netmask: 128},
		{AddressFamily: unix.AF_INET, FWMark: 7, SchedName: "sh", Netmask: 0xffffffff, PEName: "sip"},
	}
	for _, s := range svcs {
		got, err := parseService(serviceAttrs(nil, s, true))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(s, got); diff != "" {
			t.Errorf("service (-want +got):\n%s", diff)
		}
		if id, err := parseService(serviceAttrs(nil, s, false)); err != nil || keyOf(id) != keyOf(s) || id.SchedName != "" {
			t.Errorf("identity only: %+v, %v", id, err)
		}
	}
	d := &ipvs.Destination{Address: net.ParseIP("2001:db8::11"), Port: 8053, Weight: 3, AddressFamily: unix.AF_INET6,
		ConnectionFlags: ipvs.ConnectionFlagTunnel, UpperThreshold: 10, LowerThreshold: 2}
	got, err := parseDest(destAttrs(nil, d, true), unix.AF_INET6)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(d, got); diff != "" {
		t.Errorf("destination (-want +got):\n%s", diff)
	}
	// Each request is one netlink message of the length its header says.
	c := &ipvsConn{family: 0x20}
	var b []byte
	for _, w := range []Write{{OpAddService, svcs[0], nil}, {OpAddDest, svcs[0], d}, {OpDelDest, svcs[0], d}} {
		off := len(b)
		b, _ = c.appendWrite(b, w, 0)
		if l := int(uint32(b[off]) | uint32(b[off+1])<<8 | uint32(b[off+2])<<16 | uint32(b[off+3])<<24); l != len(b)-off || l%4 != 0 {
			t.Errorf("%s: length %d, message %d bytes", w.Op, l, len(b)-off)
		}
	}
}

package ipvsync

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/moby/ipvs"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

func newRec(t *testing.T, k Kernel, dir string) *Reconciler {
	t.Helper()
	r, err := NewReconciler(k, dir, nil)
	if err != nil {
		t.Fatalf("NewReconciler: %v", err)
	}
	return r
}

func reconcile(t *testing.T, r *Reconciler, tab Table) Changes {
	t.Helper()
	ch, err := r.Reconcile(tab)
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	return ch
}

// foreign adds a service that some other program (kube-proxy) owns.
func foreign(t *testing.T, k *FakeKernel) *ipvs.Service {
	t.Helper()
	s := &ipvs.Service{AddressFamily: unix.AF_INET, Protocol: unix.IPPROTO_TCP, Address: net.ParseIP("10.96.0.1").To4(),
		Port: 443, SchedName: "rr", Netmask: 0xffffffff}
	if err := k.NewService(s); err != nil {
		t.Fatal(err)
	}
	if err := k.NewDestination(s, &ipvs.Destination{Address: net.ParseIP("10.0.0.5").To4(), Port: 6443, Weight: 1,
		ConnectionFlags: ipvs.ConnectionFlagMasq}); err != nil {
		t.Fatal(err)
	}
	k.ResetCounts()
	return s
}

func ops(ch Changes) []string {
	var out []string
	for _, c := range ch {
		out = append(out, c.String())
	}
	return out
}

func TestReconcileCreatesThenNoop(t *testing.T) {
	k := &FakeKernel{}
	r := newRec(t, k, "")
	tab := desired(nil, web())
	ch := reconcile(t, r, tab)
	want := []string{
		"add-service tcp 192.168.0.210:80 (web): wrr",
		"add-dest tcp 192.168.0.210:80 (web) -> 192.168.0.175:80: weight 1 dr",
		"add-dest tcp 192.168.0.210:80 (web) -> 192.168.0.145:80: weight 3 dr",
	}
	if diff := cmp.Diff(want, ops(ch)); diff != "" {
		t.Fatalf("first reconcile (-want +got):\n%s", diff)
	}
	k.ResetCounts()
	if ch := reconcile(t, r, tab); len(ch) != 0 {
		t.Errorf("second reconcile changed %v", ops(ch))
	}
	if k.Writes != 0 {
		t.Errorf("no-op reconcile made %d writes: %v", k.Writes, k.Calls)
	}
}

func TestReconcileOneWeightChangeIsOneWrite(t *testing.T) {
	k := &FakeKernel{}
	r := newRec(t, k, "")
	reconcile(t, r, desired(nil, web()))
	k.ResetCounts()

	v := web()
	v.RealServers[1].Weight = 5
	ch := reconcile(t, r, desired(nil, v))
	if diff := cmp.Diff([]string{"UpdateDestination tcp 192.168.0.210:80 192.168.0.145:80"}, k.Calls); diff != "" {
		t.Errorf("kernel calls (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"update-dest tcp 192.168.0.210:80 (web) -> 192.168.0.145:80: weight 3->5"}, ops(ch)); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
}

func TestReconcileServiceAndDestEdits(t *testing.T) {
	k := &FakeKernel{}
	r := newRec(t, k, "")
	reconcile(t, r, desired(nil, web()))
	k.ResetCounts()

	v := web()
	v.Scheduler = "lc"
	v.RealServers[0].Address = netip.MustParseAddrPort("192.168.0.176:80") // replace rs1
	v.RealServers[1].Forward = "tun"
	reconcile(t, r, desired(nil, v))
	want := []string{
		"UpdateService tcp 192.168.0.210:80",
		"NewDestination tcp 192.168.0.210:80 192.168.0.176:80",
		"UpdateDestination tcp 192.168.0.210:80 192.168.0.145:80",
		"DelDestination tcp 192.168.0.210:80 192.168.0.175:80", // deletes come last
	}
	if diff := cmp.Diff(want, k.Calls); diff != "" {
		t.Errorf("kernel calls (-want +got):\n%s", diff)
	}
	k.ResetCounts()
	reconcile(t, r, desired(nil, v))
	if k.Writes != 0 {
		t.Errorf("converged table still written: %v", k.Calls)
	}
}

func TestReconcileLeavesForeignServicesAlone(t *testing.T) {
	k := &FakeKernel{}
	f := foreign(t, k)
	before, _ := k.Destinations(f)
	r := newRec(t, k, "")
	reconcile(t, r, desired(nil, web()))
	reconcile(t, r, Table{}) // the site drops everything
	for _, c := range k.Calls {
		if strings.Contains(c, "10.96.0.1") {
			t.Errorf("touched foreign service: %s", c)
		}
	}
	svcs, _ := k.Services()
	if len(svcs) != 1 || keyOf(svcs[0]) != keyOf(f) {
		t.Fatalf("kernel services after dropping the site: %v", svcs)
	}
	after, _ := k.Destinations(f)
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("foreign destinations changed (-before +after):\n%s", diff)
	}
}

func TestReconcileRemovesOwnedServiceAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	k := &FakeKernel{}
	reconcile(t, newRec(t, k, dir), desired(nil, web()))

	// A new daemon (fresh memory) whose site no longer has "web".
	r := newRec(t, k, dir)
	if got := r.Owned(); len(got) != 1 {
		t.Fatalf("owned after restart = %v, want the web service", got)
	}
	k.ResetCounts()
	ch := reconcile(t, r, Table{})
	if diff := cmp.Diff([]string{"del-service tcp 192.168.0.210:80"}, ops(ch)); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
	if svcs, _ := k.Services(); len(svcs) != 0 {
		t.Errorf("services left: %v", svcs)
	}
	if got := newRec(t, k, dir).Owned(); len(got) != 0 {
		t.Errorf("owned state after removal = %v", got)
	}
}

func TestReconcileRepairsFlush(t *testing.T) {
	k := &FakeKernel{}
	r := newRec(t, k, "")
	tab := desired(nil, web())
	reconcile(t, r, tab)
	k.Flush() // ipvsadm -C behind havip's back
	ch := reconcile(t, r, tab)
	if len(ch) != 3 || ch[0].Op != OpAddService {
		t.Errorf("repair = %v", ops(ch))
	}
}

func TestReconcileRetriesInterruptedDump(t *testing.T) {
	k := &FakeKernel{}
	r := newRec(t, k, "")
	tab := desired(nil, web())
	reconcile(t, r, tab)
	k.ResetCounts()

	k.DumpErrs = []error{nl.ErrDumpInterrupted, unix.EINTR}
	if ch := reconcile(t, r, tab); len(ch) != 0 {
		t.Errorf("changes after interrupted dumps: %v", ops(ch))
	}
	if n := r.Published().DumpRetries; n != 2 {
		t.Errorf("DumpRetries = %d, want 2", n)
	}

	// A partial dump (the service missing) must not make the reconciler
	// re-create the service: the re-read catches it.
	k.PartialDumps = 1
	if ch := reconcile(t, r, tab); len(ch) != 0 {
		t.Errorf("changes after a partial dump: %v", ops(ch))
	}
	if n := r.Published().DumpRetries; n != 3 {
		t.Errorf("DumpRetries = %d, want 3", n)
	}
	if k.Writes != 0 {
		t.Errorf("writes after retried dumps: %v", k.Calls)
	}

	k.DumpErrs = []error{unix.EINTR, unix.EINTR, unix.EINTR, unix.EINTR, unix.EINTR}
	if _, err := r.Reconcile(tab); err == nil {
		t.Error("Reconcile succeeded with a dump interrupted every time")
	}
	k.DumpErrs = []error{unix.EPERM}
	if _, err := r.Reconcile(tab); err == nil || r.Published().DumpRetries != 8 {
		t.Errorf("EPERM: err=%v retries=%d; want an error and no retry", err, r.Published().DumpRetries)
	}
}

func TestReconcileFWMarkAndIPv6(t *testing.T) {
	k := &FakeKernel{}
	r := newRec(t, k, "")
	vss := virtualServers(`[[virtual_server]]
name = "mark"
fwmark = 3
scheduler = "rr"
real_server = [{ address = "192.168.0.175:80" }]
[[virtual_server]]
name = "six"
address = "[2001:db8::210]:443"
scheduler = "rr"
real_server = [{ address = "[2001:db8::175]:443" }]
`)
	tab := Desired(vss, nil)
	if ch := reconcile(t, r, tab); len(ch) != 4 {
		t.Fatalf("changes = %v", ops(ch))
	}
	k.ResetCounts()
	reconcile(t, r, tab)
	if k.Writes != 0 {
		t.Errorf("writes on converged fwmark/IPv6 table: %v", k.Calls)
	}
}

func TestRunRepairsOnResync(t *testing.T) {
	k := &FakeKernel{}
	r := newRec(t, k, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tables := make(chan Update, 1)
	changes := make(chan Changes, 10)
	done := make(chan struct{})
	go func() {
		r.Run(ctx, tables, 20*time.Millisecond, func(c Changes) { changes <- c })
		close(done)
	}()
	tab := desired(nil, web())
	tables <- Update{Table: &tab}
	wait := func() Changes {
		select {
		case c := <-changes:
			return c
		case <-time.After(5 * time.Second):
			t.Fatal("no reconcile within 5s")
		}
		return nil
	}
	if c := wait(); len(c) != 3 {
		t.Fatalf("first changes = %v", ops(c))
	}
	k.Flush() // behind the reconciler's back, while Run uses the fake
	if c := wait(); len(c) != 3 || c[0].Op != OpAddService {
		t.Fatalf("repair changes = %v", ops(c))
	}
	// Read while Run keeps reconciling (the race detector watches).
	if p := r.Published(); p.Writes < 6 || len(p.Rows) != 1 || r.StateError() != "" {
		t.Errorf("published while running: Writes %d, %d rows, StateError %q", p.Writes, len(p.Rows), r.StateError())
	}
	cancel()
	<-done
}

// Status comes from what the reconciler read and wrote, not from another
// dump: connection counters are those of the latest full reconcile.
func TestPublishedAndFormat(t *testing.T) {
	k := &FakeKernel{}
	foreign(t, k)
	r := newRec(t, k, "")
	if p := r.Published(); !p.At.IsZero() || p.Rows != nil {
		t.Errorf("published before any reconcile: %+v", p)
	}
	v := web()
	v.OnFailure = "weight0"
	v.SorryServer = netip.MustParseAddrPort("192.168.0.9:80")
	v.Quorum = 1
	tab := desired(downSet{rs2: true}, v)
	reconcile(t, r, tab)
	if err := k.SetConns(tab.Services[0].Key, rs1, 7, 3); err != nil {
		t.Fatal(err)
	}
	row := func(active, inactive int) []ServiceStatus {
		return []ServiceStatus{{
			Name: "web", Key: tab.Services[0].Key, InKernel: true, Scheduler: "wrr", Flags: nil,
			Dests: []DestStatus{
				{Address: rs1, InKernel: true, Weight: 1, Forward: "dr", Active: active, Inactive: inactive, Health: "up"},
				{Address: rs2, InKernel: true, Weight: 0, Forward: "dr", Health: "down"},
				{Address: netip.MustParseAddrPort("192.168.0.9:80"), Forward: "", Health: "sorry"},
			},
		}}
	}
	// The rows of the reconcile that created the service: as written.
	first := r.Published()
	if diff := cmp.Diff(row(0, 0), first.Rows, cmpNetip); diff != "" {
		t.Errorf("published after creating (-want +got):\n%s", diff)
	}
	if first.At.IsZero() || first.Writes != 3 || first.LastError != "" || first.StateError != "" {
		t.Errorf("published after creating: At %v, Writes %d, LastError %q, StateError %q", first.At, first.Writes, first.LastError, first.StateError)
	}
	k.ResetCounts()
	reconcile(t, r, tab)
	p := r.Published()
	if diff := cmp.Diff(row(7, 3), p.Rows, cmpNetip); diff != "" {
		t.Errorf("published after a full reconcile (-want +got):\n%s", diff)
	}
	if !p.At.After(first.At) || p.Writes != 3 {
		t.Errorf("second publication: At %v (first %v), Writes %d; want later, 3", p.At, first.At, p.Writes)
	}
	// Reading it is free: no kernel call.
	k.ResetCounts()
	r.Published()
	if k.Reads != 0 {
		t.Errorf("Published read the kernel %d times", k.Reads)
	}

	var b bytes.Buffer
	if err := Format(&b, p.Rows); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, s := range []string{"TCP  192.168.0.210:80", "wrr", "(web)", "-> 192.168.0.175:80", "Route", "7", "up", "down", "sorry"} {
		if !strings.Contains(out, s) {
			t.Errorf("Format output lacks %q:\n%s", s, out)
		}
	}
	if strings.Contains(out, "10.96.0.1") {
		t.Errorf("Format shows a foreign service:\n%s", out)
	}
}

// A failed dump keeps the rows it could not refresh and says why.
func TestPublishedKeepsRowsOnError(t *testing.T) {
	k := &FakeKernel{}
	r := newRec(t, k, "")
	tab := desired(nil, web())
	reconcile(t, r, tab)
	before := r.Published()
	k.DumpErrs = []error{unix.EPERM}
	if _, err := r.Reconcile(tab); err == nil {
		t.Fatal("Reconcile succeeded over a failing dump")
	}
	p := r.Published()
	if !strings.Contains(p.LastError, "operation not permitted") || !p.At.Equal(before.At) {
		t.Errorf("after a failed dump: LastError %q, At %v (before %v)", p.LastError, p.At, before.At)
	}
	if diff := cmp.Diff(before.Rows, p.Rows, cmpNetip); diff != "" {
		t.Errorf("rows changed by a failed dump (-before +after):\n%s", diff)
	}
	reconcile(t, r, tab)
	if p := r.Published(); p.LastError != "" {
		t.Errorf("LastError after a good reconcile = %q", p.LastError)
	}
}

package ipvsync

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// A new table costs reads and writes for the services that changed only.
func TestReconcileChangesIsTargeted(t *testing.T) {
	k := &FakeKernel{}
	foreign(t, k)
	r := newRec(t, k, "")
	other := web2()
	reconcile(t, r, desired(nil, web(), other))

	// Same table again: nothing read, nothing written.
	k.ResetCounts()
	ch, err := r.ReconcileChanges(desired(nil, web(), other))
	if err != nil || len(ch) != 0 || k.Reads != 0 || k.Writes != 0 {
		t.Fatalf("unchanged table: changes %v err %v, %d reads %d writes; want none", ops(ch), err, k.Reads, k.Writes)
	}

	// One weight: read that service and its real servers, write one.
	changed := web()
	changed.RealServers[0].Weight = 7
	k.ResetCounts()
	ch, err = r.ReconcileChanges(desired(nil, changed, other))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"update-dest tcp 192.168.0.210:80 (web) -> 192.168.0.175:80: weight 1->7"}
	if diff := cmp.Diff(want, ops(ch)); diff != "" {
		t.Fatalf("changes (-want +got):\n%s", diff)
	}
	if k.Reads != 2 || k.Writes != 1 {
		t.Fatalf("one weight change: %d reads, %d writes; want 2 and 1", k.Reads, k.Writes)
	}

	// Dropping a service deletes it (and only it); the foreign one stays.
	k.ResetCounts()
	if _, err := r.ReconcileChanges(desired(nil, changed)); err != nil {
		t.Fatal(err)
	}
	if k.Writes != 1 {
		t.Fatalf("dropping one service: %d writes, want 1 (%v)", k.Writes, k.Calls)
	}
	svcs, _ := k.Services()
	if len(svcs) != 2 {
		t.Fatalf("kernel has %d services, want web and the foreign one", len(svcs))
	}

	// A full reconcile finds nothing left to do: the targeted path agreed.
	k.ResetCounts()
	if ch := reconcile(t, r, desired(nil, changed)); len(ch) != 0 || k.Writes != 0 {
		t.Fatalf("full reconcile after targeted ones wrote %v", ops(ch))
	}
}

// After a failed write the next new table gets a full reconcile.
func TestReconcileChangesFallsBackAfterError(t *testing.T) {
	k := &FakeKernel{}
	r := newRec(t, k, "")
	reconcile(t, r, desired(nil, web()))
	k.Flush() // behind our back
	broken := web()
	broken.RealServers[0].Weight = 9
	r.applied = nil // as after an error
	k.ResetCounts()
	if _, err := r.ReconcileChanges(desired(nil, broken)); err != nil {
		t.Fatal(err)
	}
	svcs, _ := k.Services()
	if len(svcs) != 1 {
		t.Fatalf("the full fallback did not rebuild the flushed table: %d services", len(svcs))
	}
}

// After a targeted reconcile the published rows hold what it read and
// wrote for the services that changed (new weights and health, their
// current counters) and, for the others, the rows published before.
func TestPublishedAfterTargeted(t *testing.T) {
	k := &FakeKernel{}
	r := newRec(t, k, "")
	other := web2()
	other.RealServers = other.RealServers[:1] // rs1 only: rs2's health is web's alone
	tab := desired(downSet{rs2: true}, web(), other)
	reconcile(t, r, tab)
	webKey, web2Key := tab.Services[0].Key, tab.Services[1].Key
	for _, c := range []struct {
		key ServiceKey
		n   int
	}{{webKey, 5}, {web2Key, 8}} {
		if err := k.SetConns(c.key, rs1, c.n, 1); err != nil {
			t.Fatal(err)
		}
	}
	before := r.Published()

	// rs2 of web comes back up with a new weight; web2 is unchanged.
	changed := web()
	changed.RealServers[1].Weight = 4
	k.ResetCounts()
	if _, err := r.ReconcileChanges(desired(nil, changed, other)); err != nil {
		t.Fatal(err)
	}
	if k.Reads != 2 {
		t.Fatalf("targeted reconcile made %d reads, want 2 (web only)", k.Reads)
	}
	p := r.Published()
	want := []ServiceStatus{
		{Name: "web", Key: webKey, InKernel: true, Scheduler: "wrr", Dests: []DestStatus{
			{Address: rs1, InKernel: true, Weight: 1, Forward: "dr", Active: 5, Inactive: 1, Health: "up"},
			{Address: rs2, InKernel: true, Weight: 4, Forward: "dr", Health: "up"},
		}},
		before.Rows[1], // web2 as published before: its counters were not read again
	}
	if diff := cmp.Diff(want, p.Rows, cmpNetip); diff != "" {
		t.Errorf("published after a targeted reconcile (-want +got):\n%s", diff)
	}
	if d := before.Rows[1].Dests[0]; d.Active != 0 || d.Health != "up" {
		t.Errorf("web2's row before = %+v", d)
	}
	if !p.At.After(before.At) || p.Writes != before.Writes+1 {
		t.Errorf("At %v (before %v), Writes %d (before %d); want later and one more", p.At, before.At, p.Writes, before.Writes)
	}

	// The next full reconcile reads every counter.
	reconcile(t, r, desired(nil, changed, other))
	if got := r.Published().Rows[1].Dests[0].Active; got != 8 {
		t.Errorf("web2's active connections after a full reconcile = %d, want 8", got)
	}
}

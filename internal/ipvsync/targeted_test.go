package ipvsync

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// A new table costs reads and writes for the services that changed only.
func TestReconcileChangesIsTargeted(t *testing.T) {
	k := &FakeKernel{}
	foreign(t, k)
	r := newRec(t, k, "")
	other := web()
	other.Name = "web2"
	other.Address = netip.AddrPortFrom(other.Address.Addr(), 8080) // a second service of ours
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

package daemon

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/havip/havip/internal/vrrp"
)

func TestSyncFollow(t *testing.T) {
	const (
		I = vrrp.Initialize
		B = vrrp.Backup
		M = vrrp.Master
		F = vrrp.Fault
	)
	for _, tc := range []struct {
		from, to vrrp.State
		want     syncMove
	}{
		{B, M, syncTakeOver}, // elected, or taken over
		{F, M, syncTakeOver}, // an owner out of FAULT
		{M, B, syncResign},   // outranked, resigned, drilled
		{M, F, syncResign},
		{M, I, syncResign},
		{B, F, syncStay},
		{F, B, syncStay},
		{I, B, syncStay}, // a member a reload added does not demote the others
	} {
		if got := syncFollow(groupChanged{from: tc.from, to: tc.to}); got != tc.want {
			t.Errorf("%s -> %s: %s, want %s", tc.from, tc.to, got, tc.want)
		}
	}
}

// outranked: the election RFC 5798 holds, priority first, then address.
func TestOutranked(t *testing.T) {
	self, low, high := netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.3")
	for _, tc := range []struct {
		master   netip.Addr
		prio, of uint8 // the master's priority, ours
		want     bool
	}{
		{high, 150, 100, true},
		{low, 150, 100, true},
		{low, 100, 150, false},
		{high, 100, 100, true},        // a tie: the higher address wins
		{low, 100, 100, false},        // a tie we win
		{high, 0, 100, false},         // it resigned
		{netip.Addr{}, 0, 100, false}, // no master heard
	} {
		st := vrrp.Status{State: vrrp.Backup, MasterAddr: tc.master, MasterPriority: tc.prio, Priority: tc.of}
		if got := outranked(st, self); got != tc.want {
			t.Errorf("master %v at %d, us %v at %d: outranked %t, want %t", tc.master, tc.prio, self, tc.of, got, tc.want)
		}
	}
}

// A group tells the controller when a fault only it can see begins and
// ends (here: no advert socket, then one), so that its sync group can
// share it; derive's faults are not echoed back.
func TestGroupReportsOwnFault(t *testing.T) {
	faults := make(chan string, 16)
	events := func(ev any) {
		if f, ok := ev.(groupFault); ok {
			faults <- f.fault
		}
	}
	runGroupEvents(t, &fakeClaimer{}, &fakeNet{refuse: 2}, events)
	next := func(what string) string {
		t.Helper()
		select {
		case f := <-faults:
			return f
		case <-time.After(5 * time.Second):
			t.Fatalf("no groupFault event: %s", what)
			return ""
		}
	}
	if f := next("the socket is refused"); !strings.Contains(f, "advert socket") || !strings.Contains(f, errRefused.Error()) {
		t.Fatalf("first own fault %q, want the advert socket's error", f)
	}
	if f := next("the socket opens"); f != "" {
		t.Fatalf("own fault %q once the socket opened, want none", f)
	}
	select {
	case f := <-faults:
		t.Fatalf("a further groupFault %q with nothing changed", f)
	case <-time.After(500 * time.Millisecond):
	}
}

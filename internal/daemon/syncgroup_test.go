package daemon

import (
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
		followed bool
		want     syncMove
	}{
		{B, M, false, syncTakeOver}, // elected: the others follow
		{F, M, false, syncTakeOver}, // an owner out of FAULT
		{B, M, true, syncTakeOver},  // following itself: harmless, the others are asked already
		{M, B, false, syncResign},   // outranked, resigned, drilled
		{M, F, false, syncResign},
		{M, F, true, syncResign}, // a follower that cannot hold its VIPs takes the others along
		{M, I, false, syncResign},
		// A follower the peer outranks: the peer holds its copy, the
		// others stay (resigning them looped).
		{M, B, true, syncStay},
		{B, F, false, syncStay},
		{F, B, false, syncStay},
		{I, B, false, syncStay},
	} {
		ev := groupChanged{from: tc.from, to: tc.to, followed: tc.followed}
		if got := syncFollow(ev); got != tc.want {
			t.Errorf("%s -> %s (followed %t): %s, want %s", tc.from, tc.to, tc.followed, got, tc.want)
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

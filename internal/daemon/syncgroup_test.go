package daemon

import (
	"testing"

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

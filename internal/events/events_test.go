package events

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func seqs(evs []Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, fmt.Sprintf("%d:%s", e.Seq, e.Kind))
	}
	return out
}

func fakeClock() func() time.Time {
	t := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return func() time.Time { t = t.Add(time.Millisecond); return t }
}

func TestSinceOrderAndRing(t *testing.T) {
	l := New(4, fakeClock())
	if evs, _, _ := l.Since(0); len(evs) != 0 {
		t.Fatalf("empty log: %v", seqs(evs))
	}
	for i := 0; i < 6; i++ {
		l.Emit(Health, Fields{"i": i})
	}
	for _, tc := range []struct {
		after uint64
		want  []string
	}{
		// seq 0: whatever is kept, no loss reported.
		{0, []string{"3:health", "4:health", "5:health", "6:health"}},
		// 1 was seen, 2 is gone: one lost.
		{1, []string{"2:events_lost", "3:health", "4:health", "5:health", "6:health"}},
		{3, []string{"4:health", "5:health", "6:health"}},
		{6, nil},
		{9, nil},
	} {
		evs, next, _ := l.Since(tc.after)
		if want := max(tc.after, 6); next != want {
			t.Errorf("Since(%d) next = %d, want %d", tc.after, next, want)
		}
		if d := cmp.Diff(tc.want, seqs(evs)); d != "" {
			t.Errorf("Since(%d) (-want +got):\n%s", tc.after, d)
		}
	}
	if n := l.LostCount(); n != 1 {
		t.Errorf("lost = %d, want 1", n)
	}
	evs, _, _ := l.Since(0)
	for i := 1; i < len(evs); i++ {
		if !evs[i].Time.After(evs[i-1].Time) {
			t.Errorf("times not increasing: %v then %v", evs[i-1].Time, evs[i].Time)
		}
	}
	if got := evs[0].Fields["i"]; got != 2 {
		t.Errorf("oldest kept event's field i = %v, want 2", got)
	}
}

// A follower that falls behind by more than the ring gets a Lost event
// with the count and the first seq it missed, then the rest in order;
// Emit never waits for it.
func TestSlowFollowerLoses(t *testing.T) {
	l := New(8, nil)
	l.Emit(Reload, nil)
	_, cursor, _ := l.Since(0)
	done := make(chan struct{})
	go func() {
		for i := 0; i < 100; i++ {
			l.Emit(Transition, Fields{"i": i})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Emit blocked on a follower that does not read")
	}
	evs, _, _ := l.Since(cursor)
	if len(evs) != 9 {
		t.Fatalf("got %d events, want a lost marker and 8: %v", len(evs), seqs(evs))
	}
	lost := evs[0]
	if lost.Kind != Lost || lost.Fields["count"] != uint64(92) || lost.Fields["first_seq"] != uint64(2) || lost.Seq != 93 {
		t.Errorf("lost marker = %+v, want count 92 first_seq 2 seq 93 (101 emitted, 94..101 kept)", lost)
	}
	for i, e := range evs[1:] {
		if e.Seq != uint64(94+i) {
			t.Errorf("event %d has seq %d, want %d", i, e.Seq, 94+i)
		}
	}
	if l.LostCount() != 92 || l.Emitted() != 101 {
		t.Errorf("lost %d emitted %d, want 92 and 101", l.LostCount(), l.Emitted())
	}
}

// Followers wake at the next Emit and, reading from their cursor, see
// every event once and in order, whatever the interleaving; concurrent
// writers' events get distinct increasing seqs.
func TestFollowersSeeEveryEventInOrder(t *testing.T) {
	l := New(1024, nil)
	const writers, per = 4, 200
	var wg sync.WaitGroup
	results := make([][]uint64, 3)
	for f := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var cursor uint64
			for cursor < writers*per {
				evs, next, wake := l.Since(cursor)
				for _, e := range evs {
					if e.Kind == Lost {
						t.Errorf("follower %d lost events with a ring larger than the stream", f)
					}
					results[f] = append(results[f], e.Seq)
				}
				cursor = next
				if len(evs) == 0 {
					select {
					case <-wake:
					case <-time.After(5 * time.Second):
						t.Errorf("follower %d not woken", f)
						return
					}
				}
			}
		}()
	}
	var ww sync.WaitGroup
	for w := 0; w < writers; w++ {
		ww.Add(1)
		go func() {
			defer ww.Done()
			for i := 0; i < per; i++ {
				l.Emit(Health, Fields{"w": w})
			}
		}()
	}
	ww.Wait()
	wg.Wait()
	for f, got := range results {
		if len(got) != writers*per {
			t.Errorf("follower %d got %d events, want %d", f, len(got), writers*per)
			continue
		}
		for i, s := range got {
			if s != uint64(i+1) {
				t.Errorf("follower %d: event %d has seq %d", f, i, s)
				break
			}
		}
	}
}

// Package events is the daemon's ordered record of what happened: VRRP
// transitions, health and quorum changes, reloads, drains, the pair link
// and dual masters. It owns an in-memory ring of the last events, each
// with a sequence number that only grows and a timestamp, and lets any
// number of followers read it. It never touches the network or a file,
// and an append never waits on a reader: a follower that falls behind by
// more than the ring loses the oldest events and is told how many.
package events

import (
	"sync"
	"sync/atomic"
	"time"
)

// Kind is what an event is about.
type Kind string

// Kinds, and the fields each carries.
const (
	// group, from, to, reason (when the state machine gave one).
	Transition Kind = "vrrp_transition"
	// target (the check key), up, reason; virtual_server and real_server
	// for a real server's check, check for a named [[check]].
	Health Kind = "health"
	// virtual_server, up (true: quorum gained, false: lost).
	Quorum Kind = "quorum"
	// ok, revision, old_revision; changes (applied) or problems (refused).
	Reload Kind = "reload"
	// virtual_server, real_server (and whatever the drain adds).
	Drain   Kind = "drain"
	Undrain Kind = "undrain"
	// peer (node name), address: the pair link hears the peer again, or
	// it fell silent.
	PairLinkUp   Kind = "pair_link_up"
	PairLinkDown Kind = "pair_link_down"
	// groups, peer, and refused (with refusals) or mode and errors: a
	// failover drill run from this node.
	Drill Kind = "drill"
	// group; for the end, how long it lasted.
	DualMasterStart Kind = "dual_master_start"
	DualMasterEnd   Kind = "dual_master_end"
	// Lost is not stored: a reader that fell behind gets it in place of
	// the events it missed. count, first_seq; its Seq is the last one lost.
	Lost Kind = "events_lost"
)

// Fields are an event's details: strings, numbers, booleans and slices of
// them, encoded as a JSON object.
type Fields map[string]any

// Event is one thing that happened.
type Event struct {
	Seq    uint64
	Time   time.Time
	Kind   Kind
	Fields Fields
}

// Log is the ring. The zero value is not usable; use New.
type Log struct {
	now func() time.Time

	mu   sync.Mutex
	ring []Event // ring[(seq-1) % len(ring)] holds event seq
	last uint64  // seq of the newest event; 0 = none yet
	wake chan struct{}

	lost atomic.Uint64 // events readers missed, over all readers
}

// New returns a log keeping the last size events, timestamped by now
// (nil: time.Now).
func New(size int, now func() time.Time) *Log {
	if size < 1 {
		size = 1
	}
	if now == nil {
		now = time.Now
	}
	return &Log{now: now, ring: make([]Event, size), wake: make(chan struct{})}
}

// Emit appends an event and wakes the followers. The log keeps f; the
// caller must not change it afterwards. Safe from any goroutine: appends
// are ordered by one mutex, and their sequence numbers and times follow
// that order.
func (l *Log) Emit(k Kind, f Fields) Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.last++
	ev := Event{Seq: l.last, Time: l.now(), Kind: k, Fields: f}
	l.ring[(ev.Seq-1)%uint64(len(l.ring))] = ev
	close(l.wake)
	l.wake = make(chan struct{})
	return ev
}

// Since returns the events after seq still in the ring, oldest first. When
// some events after seq (seq > 0) were already overwritten, the first one
// returned is a Lost event saying how many; seq 0 means "whatever is
// kept", which loses nothing. next is the seq to ask from next time (the
// newest one returned, or seq when none); wake is closed at the next Emit,
// so a follower waits on it and calls Since(next) again.
func (l *Log) Since(seq uint64) (evs []Event, next uint64, wake <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	wake = l.wake
	if seq >= l.last {
		return nil, seq, wake
	}
	oldest := uint64(1)
	if l.last > uint64(len(l.ring)) {
		oldest = l.last - uint64(len(l.ring)) + 1
	}
	from := seq + 1
	if from < oldest {
		if seq > 0 {
			n := oldest - from
			l.lost.Add(n)
			evs = append(evs, Event{Seq: oldest - 1, Time: l.now(), Kind: Lost, Fields: Fields{"count": n, "first_seq": from}})
		}
		from = oldest
	}
	for s := from; s <= l.last; s++ {
		evs = append(evs, l.ring[(s-1)%uint64(len(l.ring))])
	}
	return evs, l.last, wake
}

// Emitted is how many events were emitted (the newest sequence number).
func (l *Log) Emitted() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

// LostCount is how many events readers missed because they fell behind.
func (l *Log) LostCount() uint64 { return l.lost.Load() }

package daemon

import (
	"log/slog"
	"sync"
	"time"
)

// Two small helpers of the group goroutines.

// rateLog logs a repeated warning at most once per logEvery, with how
// many were left out in between.
type rateLog struct {
	last       time.Time
	suppressed int
}

func (r *rateLog) warn(log *slog.Logger, now time.Time, msg string, args ...any) {
	if !r.last.IsZero() && now.Sub(r.last) < logEvery {
		r.suppressed++
		return
	}
	if r.suppressed > 0 {
		args = append(args, "suppressed_since_last", r.suppressed)
	}
	r.last, r.suppressed = now, 0
	log.Warn(msg, args...)
}

// mailbox holds the newest value put; ready fires after a put.
type mailbox[T any] struct {
	mu  sync.Mutex
	v   T
	set bool
	ch  chan struct{}
}

func newMailbox[T any]() *mailbox[T] { return &mailbox[T]{ch: make(chan struct{}, 1)} }

func (m *mailbox[T]) put(v T) {
	m.mu.Lock()
	m.v, m.set = v, true
	m.mu.Unlock()
	select {
	case m.ch <- struct{}{}:
	default:
	}
}

func (m *mailbox[T]) take() (T, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.v, m.set
	m.set = false
	return v, ok
}

func (m *mailbox[T]) ready() <-chan struct{} { return m.ch }

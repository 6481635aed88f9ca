// Package checks runs health checks: one goroutine per target, rise/fall
// hysteresis, results as state changes. It owns probing only; it never
// touches IPVS or VRRP: what a state means is the caller's business.
//
// Semantics:
//
//   - A target starts DOWN and needs rise consecutive successful probes to
//     come up, unless Target.StartUp is set, in which case it starts UP
//     and needs fall consecutive failures to go down (keepalived's
//     behaviour for real servers without "alpha"). The caller chooses per
//     target; the zero value is the conservative one. Either way the
//     initial state is emitted at once, before any probe, so the caller
//     learns that the target exists. A "none" check is always UP.
//   - fall consecutive failures take an UP target down, rise consecutive
//     successes bring a DOWN target up; an outcome that agrees with the
//     state resets the count. Probes run every interval (measured from
//     the start of one probe to the start of the next), each bounded by
//     the timeout.
//   - The first probe of each target is delayed by a random fraction of
//     its interval so that a reload does not probe every real server at
//     once (WithoutJitter disables this).
//
// Probe types (details at each probe function): tcp connects; http and
// https GET Path (default "/") over a fresh connection, with Host as the
// Host header (and TLS server name), pass when the status is in
// ExpectStatus (default 200), follow no redirect, do not verify
// certificates and read at most 64 KiB of body; udp sends Send and passes
// on a reply containing Expect, or, with Expect empty, unless an ICMP port
// unreachable arrives within the timeout; dns asks for the A records of
// Query over UDP and passes on a NOERROR reply with at least one answer;
// exec runs Command (argv, no shell) with HAVIP_CHECK_ADDR and
// HAVIP_CHECK_PORT in its environment and passes on exit 0, its process
// group killed at the timeout; none always passes.
package checks

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/havip/havip/internal/conf"
)

// Target is one thing to probe.
type Target struct {
	Key   string         // caller's id, e.g. "web/192.168.0.175:80" or "check/dns1"
	Check conf.Check     // type, interval, timeout, rise, fall and type-specific keys
	Addr  netip.AddrPort // where to probe; Check.Port, when non-zero, overrides the port
	// StartUp makes the target start UP (needing fall failures to go
	// down) instead of DOWN (needing rise successes to come up).
	StartUp bool
}

// Result is the state of one target.
type Result struct {
	Key    string
	Up     bool
	Reason string    // outcome of the probe that decided (Results) or of the latest probe (State, Snapshot)
	At     time.Time // when that probe finished, or the target started
	Since  time.Time // when Up took its current value
}

// FailureKey is what probe failures are counted by.
type FailureKey struct {
	Type   string // check type
	Reason Failure
}

// Option configures a Runner.
type Option func(*Runner)

// WithoutJitter makes every target probe at once when it starts instead
// of after a random fraction of its interval: for tests.
func WithoutJitter() Option { return func(r *Runner) { r.jitter = false } }

// withQueueLimit sets how many results may wait before they are
// coalesced by key: for tests.
func withQueueLimit(n int) Option { return func(r *Runner) { r.queueLimit = max(n, 1) } }

// withProbers replaces the probes: for tests.
func withProbers(f func(Target) prober) Option { return func(r *Runner) { r.newProber = f } }

// Runner runs the checks of a set of targets.
type Runner struct {
	log        *slog.Logger
	jitter     bool
	newProber  func(Target) prober
	queueLimit int

	mu      sync.Mutex // serialises Set and Stop; guards workers, gen, stopped
	workers map[string]*worker
	gen     uint64
	stopped bool

	fmu      sync.Mutex
	failures map[FailureKey]uint64

	wg         sync.WaitGroup // workers
	in         chan message   // to the dispatcher
	out        chan Result
	done       chan struct{} // closed by Stop once the workers are gone
	dispatched chan struct{} // closed when the dispatcher has exited
	stopOnce   sync.Once
}

// message goes to the dispatcher: a result of worker generation gen, or
// (live != nil) the generation of every current target.
type message struct {
	res  Result
	gen  uint64
	live map[string]uint64
}

// NewRunner returns a Runner with no targets; give it some with Set.
func NewRunner(log *slog.Logger, opts ...Option) *Runner {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Runner{
		log:        log,
		jitter:     true,
		newProber:  newProber,
		queueLimit: 4096,
		workers:    make(map[string]*worker),
		failures:   make(map[FailureKey]uint64),
		in:         make(chan message),
		out:        make(chan Result),
		done:       make(chan struct{}),
		dispatched: make(chan struct{}),
	}
	for _, o := range opts {
		o(r)
	}
	go r.dispatch()
	return r
}

// Results delivers the initial state of each target started by Set, then
// each change of state, in order. A consumer that falls more than 4096
// results behind loses older pending results of a key to its latest one,
// so it should treat a Result as the current state rather than as an
// edge. Results of targets that Set removed or restarted are never
// delivered after Set returns. Stop closes the channel.
func (r *Runner) Results() <-chan Result { return r.out }

// Set makes targets the running set: it starts new keys, stops keys that
// are gone, and restarts keys whose Check or Addr changed. Unchanged keys
// keep running with their state. A key restarted for a changed Check
// with the same Addr keeps its current state (a reload that tunes a check
// must not pull healthy servers); one whose Addr changed starts afresh.
// Targets started here stop when ctx is done; pass a long-lived context.
// Of duplicate keys the first wins.
func (r *Runner) Set(ctx context.Context, targets []Target) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		r.log.Error("checks: Set after Stop ignored")
		return
	}
	next := make(map[string]*worker, len(targets))
	var start []*worker
	for _, t := range targets {
		if _, dup := next[t.Key]; dup {
			r.log.Error("checks: duplicate target key ignored", "key", t.Key)
			continue
		}
		if err := validate(t.Check); err != nil {
			r.log.Error("checks: target refused", "key", t.Key, "err", err)
			continue
		}
		old := r.workers[t.Key]
		if old != nil && old.target.Addr == t.Addr && reflect.DeepEqual(old.target.Check, t.Check) {
			next[t.Key] = old
			continue
		}
		now := time.Now()
		first := Result{Key: t.Key, Up: t.StartUp, Reason: "not probed yet", At: now, Since: now}
		if t.Check.Type == "none" {
			first.Up, first.Reason = true, "no check"
		}
		if old != nil && old.target.Addr == t.Addr && t.Check.Type != "none" {
			prev := old.result()
			first.Up, first.Reason, first.Since = prev.Up, "check changed, state kept", prev.Since
		}
		r.gen++
		w := newWorker(t, r.gen, first)
		next[t.Key] = w
		start = append(start, w)
	}
	for k, w := range r.workers {
		if next[k] != w {
			w.cancel()
		}
	}
	r.workers = next
	live := make(map[string]uint64, len(next))
	for k, w := range next {
		live[k] = w.gen
	}
	// The dispatcher learns the new generations before any new worker
	// can emit, and drops pending results of the old ones.
	r.in <- message{live: live}
	for _, w := range start {
		wctx, cancel := context.WithCancel(ctx)
		w.cancel = cancel
		var delay time.Duration
		if r.jitter && w.target.Check.Interval > 0 {
			delay = rand.N(w.target.Check.Interval)
		}
		r.wg.Add(1)
		go r.run(wctx, w, r.newProber(w.target), delay)
	}
}

// State returns the current state of key.
func (r *Runner) State(key string) (Result, bool) {
	r.mu.Lock()
	w := r.workers[key]
	r.mu.Unlock()
	if w == nil {
		return Result{}, false
	}
	return w.result(), true
}

// Snapshot returns the state of every target, sorted by key.
func (r *Runner) Snapshot() []Result {
	r.mu.Lock()
	ws := slices.Collect(maps.Values(r.workers))
	r.mu.Unlock()
	res := make([]Result, 0, len(ws))
	for _, w := range ws {
		res = append(res, w.result())
	}
	slices.SortFunc(res, func(a, b Result) int { return cmp.Compare(a.Key, b.Key) })
	return res
}

// Failures returns how many probes have failed since NewRunner, by check
// type and reason (including targets since removed).
func (r *Runner) Failures() map[FailureKey]uint64 {
	r.fmu.Lock()
	defer r.fmu.Unlock()
	return maps.Clone(r.failures)
}

// Stop stops every target, waits for their goroutines and closes the
// Results channel. Stop may be called more than once.
func (r *Runner) Stop() {
	r.stopOnce.Do(func() {
		r.mu.Lock()
		r.stopped = true
		for _, w := range r.workers {
			w.cancel()
		}
		r.mu.Unlock()
		r.wg.Wait()
		close(r.done)
		<-r.dispatched
	})
}

// dispatch owns the queue between the workers and Results, so a slow
// consumer never blocks a probe loop. Past queueLimit pending results,
// a new result replaces the pending ones of its key, which bounds the
// queue to about queueLimit plus one per key.
func (r *Runner) dispatch() {
	defer close(r.dispatched)
	defer close(r.out)
	type entry struct {
		res Result
		gen uint64
	}
	live := map[string]uint64{}
	var queue []entry
	for {
		var (
			out  chan<- Result
			head Result
		)
		if len(queue) > 0 {
			out, head = r.out, queue[0].res
		}
		select {
		case out <- head:
			queue[0] = entry{}
			queue = queue[1:]
		case m := <-r.in:
			if m.live != nil {
				live = m.live
				queue = slices.DeleteFunc(queue, func(e entry) bool { return live[e.res.Key] != e.gen })
				continue
			}
			if live[m.res.Key] != m.gen {
				continue // from a worker Set has stopped
			}
			if len(queue) >= r.queueLimit {
				queue = slices.DeleteFunc(queue, func(e entry) bool { return e.res.Key == m.res.Key })
			}
			queue = append(queue, entry{m.res, m.gen})
		case <-r.done:
			return
		}
	}
}

// ErrCheck is wrapped by the reason a target is refused.
var ErrCheck = errors.New("checks: invalid check")

// validate refuses timing the runner cannot work with. The site-file
// loader (package conf) guarantees valid values; the runner takes them as
// given and never fills in defaults of its own.
func validate(c conf.Check) error {
	switch {
	case c.Type == "none":
		return nil
	case c.Interval <= 0 || c.Timeout <= 0:
		return fmt.Errorf("%w: interval %s and timeout %s must be greater than 0", ErrCheck, c.Interval, c.Timeout)
	case c.Timeout > c.Interval:
		return fmt.Errorf("%w: timeout %s is longer than the interval %s", ErrCheck, c.Timeout, c.Interval)
	case c.Rise < 1 || c.Fall < 1:
		return fmt.Errorf("%w: rise %d and fall %d must be at least 1", ErrCheck, c.Rise, c.Fall)
	}
	return nil
}

// Package checks runs health checks: a scheduled probe per distinct
// target, rise/fall hysteresis, results as state changes. It owns
// probing only; it never touches IPVS or VRRP: what a state means is the
// caller's business.
//
// Engine: a few loop goroutines (one per processor, at most 8; a probe
// stays on one) each keep their probes in a heap by the time they are
// next due and wait in epoll_wait until then. A tcp or plain http probe
// never takes a goroutine: its loop opens a non-blocking socket, starts
// the connect, learns the outcome (SO_ERROR) from epoll or times it out
// from the heap, and resets the connection, keeping the socket for its
// next probe; a steady tcp cycle allocates nothing and costs two system
// calls (connect, the reset) besides the loop's epoll_wait. An http probe's loop also writes the request and reads the
// response into a buffer the probe holds only in flight, judging it with
// the parser the blocking prober uses. Every other type (https among
// them) runs its blocking prober on a pool of
// goroutines started as needed, up to how many would be busy if every
// probe ran to its timeout (at least 16, at most 4096); a probe that
// finds them all busy waits and is counted (Runner.Late) and logged
// once. Targets whose probes are identical (same Addr and StartUp, same
// Check but for the key-only Name and Target) share one probe: its
// outcome goes to each key, in order, and Result.SharedBy says how many
// keys share it. A shared probe runs under the context of the Set that
// started it.
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
// Probe types (details at each prober's constructor): tcp connects; http
// and https send Method (default GET) for Path (default "/") with Host
// as the Host header and Headers, over a fresh connection closed with a
// reset, parse the reply themselves, pass when the status is in
// ExpectStatus (codes and ranges, default 200) and the first 64 KiB of
// body (none for HEAD) match ExpectBody or ExpectBodyRegex, follow no
// redirect, and verify the certificate only with TLSVerify (against
// TLSCA, for TLSServerName); udp sends Send and passes on a reply
// containing Expect, or, with Expect empty, unless an ICMP port
// unreachable arrives within the timeout; dns asks for the QueryType
// (default A) records of Query over UDP, once, and passes on a NOERROR
// reply with a record of that type in the answer, with the value
// ExpectAnswer when set; smtp reads the 220 greeting, wants 250 to EHLO
// HeloName, sends QUIT and resets; ping sends one ICMP or ICMPv6 echo
// request over a raw socket and passes on its reply; exec runs Command
// (argv, no shell) as Check.RunAs (the site's script user), in a clean
// environment plus HAVIP_CHECK_ADDR and HAVIP_CHECK_PORT (package runas),
// and passes on exit 0, its process group killed at the
// timeout; none always passes. A failed probe says why with a Failure.
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
	"runtime"
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
	// SharedBy is how many keys share this key's probe, itself included
	// (1: not shared).
	SharedBy int
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

// withProbers replaces the probes, the fast path's included: for tests.
func withProbers(f func(Target) prober) Option {
	return func(r *Runner) { r.newProber, r.fast = f, false }
}

// withPoolSize fixes the number of goroutines for blocking probes: for tests.
func withPoolSize(n int) Option { return func(r *Runner) { r.poolFixed = n } }

// Runner runs the checks of a set of targets.
type Runner struct {
	log        *slog.Logger
	jitter     bool
	newProber  func(Target) prober
	fast       bool // tcp and http on the loop (tcpfast.go, httpfast.go)
	queueLimit int
	poolFixed  int

	mu      sync.Mutex // serialises Set and Stop; guards keys, probes, gen, stopped
	keys    map[string]*keyed
	probes  map[netip.AddrPort][]*probe
	gen     uint64
	stopped bool

	fmu      sync.Mutex
	failures map[FailureKey]uint64

	loops      []*loop // a probe stays on one; nil when epoll is unavailable
	nextLoop   int
	pool       *pool
	in         chan message // to the dispatcher
	out        chan Result
	done       chan struct{} // closed by Stop once the loop and the pool are gone
	dispatched chan struct{} // closed when the dispatcher has exited
	stopOnce   sync.Once
}

// keyed is one key of the running set.
type keyed struct {
	target Target // as given to Set, compared on the next Set
	gen    uint64
	p      *probe
}

// message goes to the dispatcher: a result of key generation gen, or
// (live != nil) the generation of every current key.
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
		fast:       true,
		queueLimit: 4096,
		keys:       make(map[string]*keyed),
		probes:     make(map[netip.AddrPort][]*probe),
		failures:   make(map[FailureKey]uint64),
		in:         make(chan message),
		out:        make(chan Result),
		done:       make(chan struct{}),
		dispatched: make(chan struct{}),
	}
	for _, o := range opts {
		o(r)
	}
	r.pool = newPool(r)
	// One loop per processor: the kernel's share of a connect (on
	// loopback, the whole handshake) is paid by the loop's thread.
	for range min(runtime.GOMAXPROCS(0), maxLoops) {
		l, err := newLoop(r)
		if err != nil {
			// Without epoll (never on Linux short of running out of
			// fds), targets stay in their initial state, and say why.
			log.Error("checks: cannot run probes", "err", err)
			break
		}
		r.loops = append(r.loops, l)
		go l.run()
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
// are gone, and restarts keys whose Check, Addr or StartUp changed.
// Unchanged keys keep running with their state. A key restarted for a
// changed Check with the same Addr keeps its current state (a reload
// that tunes a check must not pull healthy servers); one whose Addr
// changed starts afresh. Keys whose probes are identical share one probe
// (see the package doc); a key joining a running probe takes its state.
// Probes started here stop when ctx is done; pass a long-lived context.
// Of duplicate keys the first wins.
func (r *Runner) Set(ctx context.Context, targets []Target) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		r.log.Error("checks: Set after Stop ignored")
		return
	}
	now := time.Now()
	next := make(map[string]*keyed, len(targets))
	probes := make(map[netip.AddrPort][]*probe)
	var (
		fresh  []*probe             // started by this Set
		joined = map[*probe][]sub{} // new keys of each probe
	)
	find := func(ps []*probe, t Target) *probe {
		for _, p := range ps {
			if p.same(t) {
				return p
			}
		}
		return nil
	}
	for _, t := range targets {
		if _, dup := next[t.Key]; dup {
			r.log.Error("checks: duplicate target key ignored", "key", t.Key)
			continue
		}
		if err := validate(t.Check); err != nil {
			r.log.Error("checks: target refused", "key", t.Key, "err", err)
			continue
		}
		old := r.keys[t.Key]
		if old != nil && old.target.Addr == t.Addr && old.target.StartUp == t.StartUp && reflect.DeepEqual(old.target.Check, t.Check) {
			next[t.Key] = old
			if find(probes[t.Addr], t) == nil {
				probes[t.Addr] = append(probes[t.Addr], old.p)
			}
			continue
		}
		p := find(probes[t.Addr], t)
		if p == nil {
			p = find(r.probes[t.Addr], t)
			if p == nil {
				p = r.newProbe(ctx, t, old, now)
				fresh = append(fresh, p)
			}
			probes[t.Addr] = append(probes[t.Addr], p)
		}
		r.gen++
		k := &keyed{target: t, gen: r.gen, p: p}
		next[t.Key] = k
		joined[p] = append(joined[p], sub{key: t.Key, gen: k.gen})
	}
	live := make(map[string]uint64, len(next))
	subs := map[*probe][]sub{}
	for k, kd := range next {
		live[k] = kd.gen
		subs[kd.p] = append(subs[kd.p], sub{key: k, gen: kd.gen})
	}
	// The dispatcher learns the new generations before any new key's
	// result, and drops pending results of the old ones.
	r.in <- message{live: live}
	var all []*probe
	for _, ps := range probes {
		for _, p := range ps {
			all = append(all, p)
			s := subs[p]
			slices.SortFunc(s, func(a, b sub) int { return cmp.Compare(a.key, b.key) })
			p.mu.Lock()
			p.subs = s
			for _, j := range joined[p] {
				res := p.last
				res.Key, res.SharedBy = j.key, len(s)
				r.in <- message{res: res, gen: j.gen}
			}
			p.mu.Unlock()
		}
	}
	for addr, ps := range r.probes {
		for _, p := range ps {
			if !slices.Contains(probes[addr], p) {
				p.mu.Lock()
				p.subs = nil
				p.mu.Unlock()
				p.cancel()
				if p.loop != nil {
					p.loop.post(op{kind: opRemove, p: p})
				}
			}
		}
	}
	r.keys, r.probes = next, probes
	if r.poolFixed > 0 {
		r.pool.setMax(r.poolFixed)
	} else {
		r.pool.setMax(poolSize(all))
	}
	for _, p := range fresh {
		if p.check.Type == "none" || p.loop == nil {
			continue
		}
		var delay time.Duration
		if r.jitter {
			delay = rand.N(p.interval)
		}
		p.loop.post(op{kind: opAdd, p: p, due: p.loop.now() + delay})
	}
}

// newProbe builds the probe of t. old is the key's previous entry, if
// any: with the same address, its state carries over.
func (r *Runner) newProbe(ctx context.Context, t Target, old *keyed, now time.Time) *probe {
	addr, c, up := probeIdentity(t)
	p := &probe{addr: addr, check: c, startUp: up, interval: t.Check.Interval, timeout: t.Check.Timeout, index: -1, fd: -1}
	p.ctx, p.cancel = context.WithCancel(ctx)
	if len(r.loops) > 0 {
		p.loop = r.loops[r.nextLoop%len(r.loops)]
		r.nextLoop++
	}
	first := Result{Up: t.StartUp, Reason: "not probed yet", At: now, Since: now}
	switch {
	case t.Check.Type == "none":
		first.Up, first.Reason = true, "no check"
	case old != nil && old.target.Addr == t.Addr:
		prev := old.p.result(t.Key)
		first.Up, first.Reason, first.Since = prev.Up, "check changed, state kept", prev.Since
	}
	p.last = first
	p.h = hysteresis{rise: t.Check.Rise, fall: t.Check.Fall, up: first.Up}
	if r.fast {
		p.tcp = newTCPProbe(t)
	}
	if p.tcp == nil && t.Check.Type != "none" {
		p.run = r.newProber(t)
	}
	return p
}

// State returns the current state of key.
func (r *Runner) State(key string) (Result, bool) {
	r.mu.Lock()
	k := r.keys[key]
	r.mu.Unlock()
	if k == nil {
		return Result{}, false
	}
	return k.p.result(key), true
}

// Snapshot returns the state of every target, sorted by key.
func (r *Runner) Snapshot() []Result {
	r.mu.Lock()
	ks := maps.Clone(r.keys)
	r.mu.Unlock()
	res := make([]Result, 0, len(ks))
	for key, k := range ks {
		res = append(res, k.p.result(key))
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

// Late returns how many blocking probes found every probe goroutine busy
// and so started after their time, since NewRunner.
func (r *Runner) Late() uint64 { return r.pool.lateCount() }

// Probes returns how many probe loops run (fewer than keys when keys
// share probes).
func (r *Runner) Probes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, ps := range r.probes {
		n += len(ps)
	}
	return n
}

// Stop stops every target, waits for the engine's goroutines and closes
// the Results channel. Stop may be called more than once.
func (r *Runner) Stop() {
	r.stopOnce.Do(func() {
		r.mu.Lock()
		r.stopped = true
		for _, ps := range r.probes {
			for _, p := range ps {
				p.cancel()
			}
		}
		r.mu.Unlock()
		for _, l := range r.loops {
			l.post(op{kind: opStop})
			<-l.done
		}
		r.pool.stop()
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

package checks

import (
	"context"
	"log/slog"
	"net/netip"
	"reflect"
	"sync"
	"time"

	"github.com/havip/havip/internal/conf"
)

// probe is one probe loop, shared by every key whose Target probes the
// same thing (see sameProbe). The loop goroutine owns the scheduling
// fields; mu guards the state and the keys it is delivered to.
type probe struct {
	addr    netip.AddrPort // Target.Addr, compared by sameProbe
	check   conf.Check     // with the key-only fields blanked
	startUp bool
	ctx     context.Context
	cancel  context.CancelFunc
	loop    *loop // the one that schedules it, for good

	run      prober    // blocking probe, nil for the fast path and "none"
	tcp      *tcpProbe // the fast path (tcp, http), nil otherwise
	interval time.Duration
	timeout  time.Duration

	// Owned by the loop goroutine.
	due    time.Duration // planned start of the next probe, on the loop's clock
	index  int           // in the loop's heap, -1 when not in it
	fd     int           // in-flight fast-path socket, -1 when none
	flight *httpFlight   // in-flight http exchange once connected, nil otherwise
	gone   bool          // removed or stopped: never scheduled again

	mu   sync.Mutex
	h    hysteresis
	last Result // Key and SharedBy filled in per key
	subs []sub
}

// sub is one key delivered a probe's results, with the generation the
// dispatcher knows it by.
type sub struct {
	key string
	gen uint64
}

// probeIdentity is what decides that two targets share a probe: the
// check without its key-only fields, the address and the initial state.
func probeIdentity(t Target) (netip.AddrPort, conf.Check, bool) {
	c := t.Check
	c.Name, c.Target = "", "" // Target is already resolved into Addr
	return t.Addr, c, t.StartUp
}

func (p *probe) same(t Target) bool {
	addr, c, up := probeIdentity(t)
	return p.addr == addr && p.startUp == up && reflect.DeepEqual(p.check, c)
}

// result is the state as key sees it.
func (p *probe) result(key string) Result {
	p.mu.Lock()
	defer p.mu.Unlock()
	res := p.last
	res.Key, res.SharedBy = key, len(p.subs)
	return res
}

// complete applies one probe outcome and hands a change of state to the
// dispatcher for every key of p, under p.mu so that Set's initial
// results and changes reach each key in order.
func (r *Runner) complete(p *probe, detail string, err error) {
	now := time.Now()
	if err != nil {
		detail = err.Error()
		kind := failureOf(err)
		r.fmu.Lock()
		r.failures[FailureKey{Type: p.check.Type, Reason: kind}]++
		r.fmu.Unlock()
		if r.log.Enabled(context.Background(), slog.LevelDebug) {
			r.log.Debug("probe failed", "type", p.check.Type, "addr", p.addr, "reason", kind, "err", detail)
		}
	}
	p.mu.Lock()
	changed := p.h.observe(err == nil)
	p.last.Up, p.last.Reason, p.last.At = p.h.up, detail, now
	if !changed {
		p.mu.Unlock()
		return
	}
	p.last.Since = now
	res := p.last
	res.SharedBy = len(p.subs)
	var first string
	for _, s := range p.subs {
		res.Key = s.key
		r.in <- message{res: res, gen: s.gen}
	}
	if len(p.subs) > 0 {
		first = p.subs[0].key
	}
	p.mu.Unlock()
	r.log.Info("health changed", "check", first, "shared_by", res.SharedBy, "type", p.check.Type, "up", res.Up, "reason", res.Reason)
}

// pool runs blocking probes on at most max goroutines, started as the
// load needs them. A probe that finds every goroutine busy and the pool
// at its size waits in the queue and is counted late.
type pool struct {
	r    *Runner
	mu   sync.Mutex
	cond sync.Cond
	// queue holds probes due to start; each probe is in it at most once.
	queue   []*probe
	n, max  int
	waiting int // goroutines waiting for work and not yet signalled
	busy    int // goroutines running a probe
	stopped bool
	wg      sync.WaitGroup
	late    uint64
}

func newPool(r *Runner) *pool {
	pl := &pool{r: r, max: 1}
	pl.cond.L = &pl.mu
	return pl
}

// setMax sets the pool's size; it never stops a running goroutine.
func (pl *pool) setMax(n int) {
	pl.mu.Lock()
	pl.max = max(n, 1)
	pl.mu.Unlock()
}

func (pl *pool) submit(p *probe) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pl.stopped {
		return
	}
	pl.queue = append(pl.queue, p)
	switch {
	case pl.waiting > 0:
		pl.waiting--
		pl.cond.Signal()
	case pl.busy+len(pl.queue) <= pl.n:
		// A goroutine between two probes takes it: a slow scheduler
		// must not grow the pool.
	case pl.n < pl.max:
		pl.n++
		pl.wg.Add(1)
		go pl.work()
	default:
		pl.late++
		if pl.late == 1 {
			pl.r.log.Warn("checks: every probe goroutine is busy: probes start late (counted by Late)", "goroutines", pl.max)
		}
	}
}

func (pl *pool) work() {
	defer pl.wg.Done()
	for {
		pl.mu.Lock()
		for len(pl.queue) == 0 && !pl.stopped {
			pl.waiting++
			pl.cond.Wait()
		}
		if pl.stopped {
			pl.mu.Unlock()
			return
		}
		p := pl.queue[0]
		pl.queue[0] = nil
		pl.queue = pl.queue[1:]
		pl.busy++
		pl.mu.Unlock()
		pl.r.runBlocking(p)
		pl.mu.Lock()
		pl.busy--
		pl.mu.Unlock()
	}
}

func (pl *pool) stop() {
	pl.mu.Lock()
	pl.stopped = true
	pl.queue = nil
	pl.cond.Broadcast()
	pl.mu.Unlock()
	pl.wg.Wait()
}

func (pl *pool) lateCount() uint64 {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return pl.late
}

// runBlocking runs one blocking probe of p, bounded by its timeout, and
// hands p back to the loop for its next start.
func (r *Runner) runBlocking(p *probe) {
	ctx, cancel := context.WithTimeout(p.ctx, p.timeout)
	detail, err := p.run(ctx)
	cancel()
	if p.ctx.Err() == nil { // stopped mid-probe: the outcome means nothing
		r.complete(p, detail, err)
	}
	p.loop.post(op{kind: opDone, p: p})
}

// poolSize is how many blocking probes can be in flight at once if
// every one of them ran to its timeout, plus some room, within
// [minPool, maxPool]: the pool never makes a probe late unless the
// machine itself is too slow.
func poolSize(ps []*probe) int {
	var busy float64
	for _, p := range ps {
		if p.run != nil && p.interval > 0 {
			busy += float64(p.timeout) / float64(p.interval)
		}
	}
	return min(max(int(busy)+minPool, minPool), maxPool)
}

const (
	tick     = time.Millisecond // the loops' timer resolution (see loop.run)
	maxLoops = 8
	minPool  = 16
	maxPool  = 4096
)

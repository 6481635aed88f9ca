package checks

import (
	"context"
	"sync"
	"time"
)

// worker is one running target.
type worker struct {
	target Target // as given to Set, compared on the next Set
	gen    uint64
	cancel context.CancelFunc // set and called under Runner.mu

	// mu guards the state, written by the worker's goroutine and read by
	// State, Snapshot and Set; it is never held across a probe.
	mu   sync.Mutex
	h    hysteresis
	last Result
}

func newWorker(t Target, gen uint64, init Result) *worker {
	return &worker{
		target: t,
		gen:    gen,
		cancel: func() {},
		h:      hysteresis{rise: t.Check.Rise, fall: t.Check.Fall, up: init.Up},
		last:   init,
	}
}

func (w *worker) result() Result {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

// record applies one probe outcome; it returns the new state and whether
// it changed.
func (w *worker) record(now time.Time, reason string, ok bool) (Result, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	changed := w.h.observe(ok)
	w.last.Up, w.last.Reason, w.last.At = w.h.up, reason, now
	if changed {
		w.last.Since = now
	}
	return w.last, changed
}

// run probes w until ctx is done: the first probe after delay, then one
// every interval.
func (r *Runner) run(ctx context.Context, w *worker, probe prober, delay time.Duration) {
	defer r.wg.Done()
	c := w.target.Check
	log := r.log.With("check", w.target.Key, "type", c.Type)
	r.emit(ctx, w, w.result())
	if c.Type == "none" {
		<-ctx.Done()
		return
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		pctx, cancel := context.WithTimeout(ctx, c.Timeout)
		detail, err := probe(pctx)
		cancel()
		if ctx.Err() != nil {
			return // stopped mid-probe: the outcome means nothing
		}
		if err != nil {
			detail = err.Error()
			kind := failureOf(err)
			r.fmu.Lock()
			r.failures[FailureKey{Type: c.Type, Reason: kind}]++
			r.fmu.Unlock()
			log.Debug("probe failed", "reason", kind, "err", detail)
		}
		if res, changed := w.record(time.Now(), detail, err == nil); changed {
			log.Info("health changed", "up", res.Up, "reason", res.Reason)
			r.emit(ctx, w, res)
		}
		t.Reset(max(0, c.Interval-time.Since(start)))
	}
}

// emit hands res to the dispatcher, which never blocks for long.
func (r *Runner) emit(ctx context.Context, w *worker, res Result) {
	select {
	case r.in <- message{res: res, gen: w.gen}:
	case <-ctx.Done():
	}
}

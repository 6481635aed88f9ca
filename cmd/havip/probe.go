package main

import (
	"context"
	"github.com/havip/havip/internal/cli"
	"net"
	"sync"
	"syscall"
	"time"
)

// A probe measures the client-visible gap of a drill for real: it opens a
// TCP connection through ADDR:PORT (the VIP and a port a service answers
// on) every probeEvery, each bounded by probeTimeout, from before the drill
// until probeAfter after it, and counts the connections that failed. It
// sees what a client on this host sees; run it where the clients are for
// their view.
const (
	probeEvery   = cli.ProbeEvery // named in --probe's usage
	probeTimeout = 100 * time.Millisecond
	probeBefore  = 200 * time.Millisecond // probing before the drill starts
	probeAfter   = 500 * time.Millisecond // and after it answered
)

// probeReport is what a probe saw; times are relative to the drill's start.
type probeReport struct {
	Target   string `json:"target"`
	Every    string `json:"every"`
	Timeout  string `json:"timeout"`
	Attempts int    `json:"attempts"`
	Failed   int    `json:"failed"`
	// The failure window: from the start of the first failed connection
	// to the end of the last one; empty when none failed.
	FirstFailure string   `json:"first_failure,omitempty"`
	LastFailure  string   `json:"last_failure,omitempty"`
	Window       string   `json:"window,omitempty"`
	Errors       []string `json:"errors,omitempty"` // the first few, with their time
}

type prober struct {
	target string
	dial   func(ctx context.Context, addr string) (net.Conn, error)
	start  time.Time // the drill's start, set by started
	stop   chan struct{}
	done   chan struct{}

	mu       sync.Mutex
	wg       sync.WaitGroup
	attempts int
	failed   int
	first    time.Time
	last     time.Time
	errs     []string
	zero     time.Time // when probing began, the origin until started
}

const keptProbeErrors = 5

// startProbe probes target until stop; each attempt runs on its own
// goroutine so that a stalled one (a SYN unanswered while the VIP moves)
// does not hold back the next.
func startProbe(target string) *prober {
	d := net.Dialer{Timeout: probeTimeout, Control: func(_, _ string, c syscall.RawConn) error {
		// Closed with a reset: a probe leaves no TIME_WAIT behind.
		return c.Control(func(fd uintptr) {
			_ = syscall.SetsockoptLinger(int(fd), syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1, Linger: 0})
		})
	}}
	p := &prober{target: target, dial: func(ctx context.Context, a string) (net.Conn, error) { return d.DialContext(ctx, "tcp", a) },
		stop: make(chan struct{}), done: make(chan struct{}), zero: time.Now()}
	go p.loop()
	return p
}

func (p *prober) loop() {
	defer close(p.done)
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	for {
		p.wg.Add(1)
		go p.once(time.Now())
		select {
		case <-p.stop:
			p.wg.Wait()
			return
		case <-t.C:
		}
	}
}

func (p *prober) once(at time.Time) {
	defer p.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	c, err := p.dial(ctx, p.target)
	end := time.Now()
	if err == nil {
		c.Close()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.attempts++
	if err == nil {
		return
	}
	p.failed++
	if p.first.IsZero() || at.Before(p.first) {
		p.first = at
	}
	if end.After(p.last) {
		p.last = end
	}
	if len(p.errs) < keptProbeErrors {
		p.errs = append(p.errs, at.Format("15:04:05.000")+": "+err.Error())
	}
}

// started marks the drill's start: the origin of the report's times.
func (p *prober) started() {
	p.mu.Lock()
	p.start = time.Now()
	p.mu.Unlock()
}

// finish stops probing and reports.
func (p *prober) finish() probeReport {
	close(p.stop)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	origin := p.start
	if origin.IsZero() {
		origin = p.zero
	}
	r := probeReport{Target: p.target, Every: probeEvery.String(), Timeout: probeTimeout.String(),
		Attempts: p.attempts, Failed: p.failed, Errors: p.errs}
	if p.failed > 0 {
		r.FirstFailure = signed(p.first.Sub(origin))
		r.LastFailure = signed(p.last.Sub(origin))
		r.Window = p.last.Sub(p.first).Round(10 * time.Microsecond).String()
	}
	return r
}

// signed is d from the drill's start, "+1.2ms" or "-3ms".
func signed(d time.Duration) string {
	d = d.Round(10 * time.Microsecond)
	if d >= 0 {
		return "+" + d.String()
	}
	return d.String()
}

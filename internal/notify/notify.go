// Package notify runs operator hooks: argv without a shell, as the user
// each is given (runas: no supplementary groups, a clean environment), one
// after another in the order they were queued, each bounded by its timeout. It
// never blocks the caller: Notify only queues, and a full queue drops the
// hook, counts it and logs it. It knows nothing of VRRP or of the site
// file; the caller builds the arguments and chooses the timeouts.
package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/havip/havip/internal/runas"
)

// waitDelay is how long a finished or killed hook's output is still read:
// a background child that keeps stdout or stderr open must not hold the
// runner beyond it. Such a child, left behind by a hook that exited, keeps
// running (it may be meant to); only a timeout kills the process group.
const waitDelay = 200 * time.Millisecond

// Options shape a Runner. Each zero value means what it says, nothing is
// defaulted.
type Options struct {
	// QueueLen is how many hooks may wait to run; Notify drops beyond it.
	// 0 (or less): none may wait, a hook is taken only while Run is idle.
	QueueLen int
	// DrainTimeout is how long, in total, the hooks still queued (and the
	// one running) may take once Run's context has ended. 0: none more
	// runs, and the running one is killed at once.
	DrainTimeout time.Duration
	// OutputLimit is how many bytes of a hook's output (stdout and stderr
	// together) are kept for the log; the rest is counted. 0: none kept.
	OutputLimit int
}

// Counters count every hook given to Notify exactly once, by its outcome.
type Counters struct {
	Ran      uint64 // exited 0
	Failed   uint64 // exited non-zero, could not start, or was refused (empty argv, timeout <= 0)
	TimedOut uint64 // killed with its process group: at its timeout, or when the drain ran out
	Dropped  uint64 // never run: the queue was full, the drain ran out, or Run had returned
}

// Runner queues hooks and runs them one at a time (Run).
type Runner struct {
	log   *slog.Logger
	opt   Options
	queue chan hook

	mu      sync.Mutex // orders Notify's send against Run's final sweep
	stopped bool

	ran, failed, timedOut, dropped atomic.Uint64
}

type hook struct {
	as      *runas.User
	argv    []string
	timeout time.Duration
}

// New returns a Runner; nothing runs until Run is called.
func New(log *slog.Logger, opt Options) *Runner {
	return &Runner{log: log, opt: opt, queue: make(chan hook, max(opt.QueueLen, 0))}
}

// Notify queues argv with args appended, to run as as (nil: this
// process's user; the daemon passes the site's script user) within
// timeout. It never blocks. Timeouts are taken as given (the site-file loader guarantees
// they are positive): 0 or less is refused with a logged error, as is an
// empty argv, and counted as Failed.
func (r *Runner) Notify(as *runas.User, argv []string, timeout time.Duration, args ...string) {
	full := append(append([]string(nil), argv...), args...)
	switch {
	case len(argv) == 0:
		r.failed.Add(1)
		r.log.Error("notify: hook refused: empty argv", "args", args)
		return
	case timeout <= 0:
		r.failed.Add(1)
		r.log.Error("notify: hook refused: timeout must be positive", "argv", full, "timeout", timeout)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		r.drop(full, "the runner has stopped")
		return
	}
	select {
	case r.queue <- hook{as: as, argv: full, timeout: timeout}:
	default:
		r.drop(full, "queue full")
	}
}

func (r *Runner) drop(argv []string, why string) {
	r.dropped.Add(1)
	r.log.Error("notify: hook dropped: "+why, "argv", argv)
}

// Counters returns the counts so far.
func (r *Runner) Counters() Counters {
	return Counters{Ran: r.ran.Load(), Failed: r.failed.Load(), TimedOut: r.timedOut.Load(), Dropped: r.dropped.Load()}
}

// Run runs queued hooks one after another until ctx ends. Then it runs
// what is still queued, all of it within DrainTimeout, kills the hook that
// still runs when that is over, drops the rest and returns nil. Call it
// once; hooks queued after it returned are dropped.
func (r *Runner) Run(ctx context.Context) error {
	// drain ends DrainTimeout after ctx and bounds every hook from then
	// on. (Its timer may fire after Run returned: stop is then a no-op.)
	drain, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	defer context.AfterFunc(ctx, func() { time.AfterFunc(r.opt.DrainTimeout, stop) })()
	for {
		select {
		case h := <-r.queue:
			r.exec(drain, h)
			continue
		case <-ctx.Done():
		}
		select {
		case h := <-r.queue:
			r.exec(drain, h)
		default:
			r.sweep()
			return nil
		}
	}
}

// sweep stops the queue and drops what is left in it.
func (r *Runner) sweep() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = true
	for {
		select {
		case h := <-r.queue:
			r.drop(h.argv, "the drain time ran out")
		default:
			return
		}
	}
}

// exec runs one hook in its own process group, bounded by its timeout and
// by drain, and logs the outcome with the output.
func (r *Runner) exec(drain context.Context, h hook) {
	if drain.Err() != nil {
		r.drop(h.argv, "the drain time ran out")
		return
	}
	ctx, cancel := context.WithTimeout(drain, h.timeout)
	defer cancel()
	cmd := runas.Command(ctx, h.as, h.argv)
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = waitDelay
	out := &capped{limit: r.opt.OutputLimit}
	cmd.Stdout, cmd.Stderr = out, out
	start := time.Now()
	err := cmd.Run()
	attrs := []any{"argv", h.argv, "took", time.Since(start).Round(time.Millisecond), "output", out.String()}
	switch {
	case err != nil && ctx.Err() != nil:
		r.timedOut.Add(1)
		why := fmt.Sprintf("timeout after %s", h.timeout)
		if drain.Err() != nil {
			why = "the drain time ran out"
		}
		r.log.Warn("notify: hook killed: "+why, attrs...)
	case errors.Is(err, exec.ErrWaitDelay):
		// It exited 0; what it left behind still held the output open.
		r.ran.Add(1)
		r.log.Info("notify: hook ran", append(attrs, "note", "a child kept its output open; stopped reading it")...)
	case err != nil:
		r.failed.Add(1)
		r.log.Warn("notify: hook failed", append(attrs, "err", err)...)
	default:
		r.ran.Add(1)
		r.log.Info("notify: hook ran", attrs...)
	}
}

// capped keeps the first limit bytes written to it and counts the rest.
// exec writes to it from one goroutine at a time (Stdout == Stderr).
type capped struct {
	limit   int
	buf     []byte
	dropped int
}

func (c *capped) Write(p []byte) (int, error) {
	keep := min(max(c.limit-len(c.buf), 0), len(p))
	c.buf = append(c.buf, p[:keep]...)
	c.dropped += len(p) - keep
	return len(p), nil
}

func (c *capped) String() string {
	s := string(bytes.TrimRight(c.buf, "\n"))
	if c.dropped > 0 {
		s += fmt.Sprintf("... (%d bytes dropped)", c.dropped)
	}
	return s
}

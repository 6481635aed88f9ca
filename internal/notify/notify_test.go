package notify

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// logBuf is a log sink the runner's goroutine and the test share.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// start runs a Runner until the test ends; stop cancels it and returns
// once Run has.
func start(t *testing.T, opt Options) (r *Runner, log *logBuf, stop func() time.Duration) {
	t.Helper()
	r, log = newRunner(opt)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = r.Run(ctx); close(done) }()
	stop = func() time.Duration {
		t0 := time.Now()
		cancel()
		<-done
		return time.Since(t0)
	}
	t.Cleanup(func() { stop() })
	return r, log, stop
}

func newRunner(opt Options) (*Runner, *logBuf) {
	log := &logBuf{}
	return New(slog.New(slog.NewTextHandler(log, nil)), opt), log
}

// drainOnly runs r with a context that has already ended: only the drain.
func drainOnly(r *Runner) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = r.Run(ctx)
}

func total(c Counters) uint64 { return c.Ran + c.Failed + c.TimedOut + c.Dropped }

// settle waits until n hooks have an outcome and returns the counters.
func settle(t *testing.T, r *Runner, n uint64, within time.Duration) Counters {
	t.Helper()
	limit := time.Now().Add(within)
	for total(r.Counters()) < n {
		if time.Now().After(limit) {
			t.Fatalf("after %s only %+v of %d hooks are done", within, r.Counters(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return r.Counters()
}

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z")
}

// waitFile returns the trimmed content of path once it has a line.
func waitFile(t *testing.T, path string) string {
	t.Helper()
	limit := time.Now().Add(5 * time.Second)
	for time.Now().Before(limit) {
		if b, err := os.ReadFile(path); err == nil && bytes.HasSuffix(b, []byte("\n")) {
			return strings.TrimSpace(string(b))
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s was not written", path)
	return ""
}

func logHas(t *testing.T, log *logBuf, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

func pidIn(t *testing.T, path string) int {
	t.Helper()
	pid, err := strconv.Atoi(waitFile(t, path))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func TestOrderKept(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	r, _, _ := start(t, Options{QueueLen: 8})
	// The first is slow, so the others wait in the queue behind it.
	r.Notify(nil, []string{"sh", "-c", `sleep 0.2; echo "$1" >>` + out, "sh"}, 5*time.Second, "1")
	for i := 2; i <= 5; i++ {
		r.Notify(nil, []string{"sh", "-c", `echo "$1" >>` + out, "sh"}, 5*time.Second, strconv.Itoa(i))
	}
	if c := settle(t, r, 5, 10*time.Second); c != (Counters{Ran: 5}) {
		t.Errorf("counters %+v, want 5 ran", c)
	}
	b, _ := os.ReadFile(out)
	if diff := cmp.Diff("1\n2\n3\n4\n5\n", string(b)); diff != "" {
		t.Errorf("hooks ran out of order (-want +got):\n%s", diff)
	}
}

// At its timeout the hook's whole process group is killed.
func TestTimeoutKillsChildren(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	r, log, _ := start(t, Options{QueueLen: 1})
	t0 := time.Now()
	r.Notify(nil, []string{"sh", "-c", "sleep 30 & echo $! >" + pidFile + "; wait"}, 300*time.Millisecond)
	child := pidIn(t, pidFile)
	if c := settle(t, r, 1, 5*time.Second); c != (Counters{TimedOut: 1}) {
		t.Errorf("counters %+v, want 1 timed out", c)
	}
	if took := time.Since(t0); took > 3*time.Second {
		t.Errorf("took %s for a 300ms timeout", took)
	}
	limit := time.Now().Add(2 * time.Second)
	for alive(child) && time.Now().Before(limit) {
		time.Sleep(10 * time.Millisecond)
	}
	if alive(child) {
		_ = syscall.Kill(child, syscall.SIGKILL)
		t.Errorf("the hook's child %d outlived its timeout", child)
	}
	logHas(t, log, "hook killed: timeout after 300ms")
}

// A background child that keeps stdout open does not hold the runner.
func TestBackgroundChildDoesNotStall(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	r, log, _ := start(t, Options{QueueLen: 1, OutputLimit: 100})
	t0 := time.Now()
	r.Notify(nil, []string{"sh", "-c", "sleep 30 & echo $! >" + pidFile + "; echo started"}, 20*time.Second)
	child := pidIn(t, pidFile)
	t.Cleanup(func() { _ = syscall.Kill(child, syscall.SIGKILL) })
	if c := settle(t, r, 1, 10*time.Second); c != (Counters{Ran: 1}) {
		t.Errorf("counters %+v, want 1 ran", c)
	}
	if took := time.Since(t0); took > 3*time.Second {
		t.Errorf("took %s: the background sleep held the runner", took)
	}
	logHas(t, log, "output=started")
}

func TestOutputCapped(t *testing.T) {
	r, log, _ := start(t, Options{QueueLen: 1, OutputLimit: 10})
	r.Notify(nil, []string{"sh", "-c", "printf 0123456789; printf abcdefghij >&2; exit 3"}, 5*time.Second)
	if c := settle(t, r, 1, 5*time.Second); c != (Counters{Failed: 1}) {
		t.Errorf("counters %+v, want 1 failed", c)
	}
	logHas(t, log, `output="0123456789... (10 bytes dropped)" err="exit status 3"`)
}

func TestFullQueueDrops(t *testing.T) {
	r, log := newRunner(Options{QueueLen: 2, DrainTimeout: 5 * time.Second})
	for range 3 {
		r.Notify(nil, []string{"true"}, time.Second)
	}
	if c := r.Counters(); c != (Counters{Dropped: 1}) {
		t.Errorf("counters %+v, want 1 dropped", c)
	}
	logHas(t, log, "hook dropped: queue full")
	drainOnly(r)
	if c := r.Counters(); c != (Counters{Ran: 2, Dropped: 1}) {
		t.Errorf("counters %+v after the drain, want 2 ran 1 dropped", c)
	}
	r.Notify(nil, []string{"true"}, time.Second)
	if c := r.Counters(); c.Dropped != 2 || !strings.Contains(log.String(), "the runner has stopped") {
		t.Errorf("a hook after Run returned: counters %+v, log:\n%s", c, log)
	}
}

// Timeouts are not defaulted: 0 or less is refused, as is an empty argv.
func TestRefused(t *testing.T) {
	r, log := newRunner(Options{QueueLen: 4})
	r.Notify(nil, []string{"true"}, 0)
	r.Notify(nil, []string{"true"}, -time.Second)
	r.Notify(nil, nil, time.Second, "front", "MASTER", "150")
	if c := r.Counters(); c != (Counters{Failed: 3}) {
		t.Errorf("counters %+v, want 3 failed", c)
	}
	logHas(t, log, "timeout must be positive", "empty argv")
}

// When ctx ends, a sleeping hook and the one behind it get DrainTimeout in
// total; then the first is killed and the second dropped.
func TestDrainBounded(t *testing.T) {
	dir := t.TempDir()
	started := filepath.Join(dir, "started")
	r, log, stop := start(t, Options{QueueLen: 4, DrainTimeout: 300 * time.Millisecond})
	r.Notify(nil, []string{"sh", "-c", "echo $$ >" + started + "; exec sleep 30"}, time.Minute)
	r.Notify(nil, []string{"touch", filepath.Join(dir, "second")}, time.Minute)
	pid := pidIn(t, started)
	took := stop()
	if took < 300*time.Millisecond || took > 1500*time.Millisecond {
		t.Errorf("Run returned %s after ctx ended; want DrainTimeout (300ms) and a little", took)
	}
	if c := r.Counters(); c != (Counters{TimedOut: 1, Dropped: 1}) {
		t.Errorf("counters %+v, want 1 timed out 1 dropped", c)
	}
	if alive(pid) {
		t.Errorf("the hook %d still runs after Run returned", pid)
	}
	logHas(t, log, "hook killed: the drain time ran out", "hook dropped: the drain time ran out")
}

// What fits in the drain still runs after ctx ended.
func TestDrainRunsQueued(t *testing.T) {
	r, _ := newRunner(Options{QueueLen: 4, DrainTimeout: 5 * time.Second})
	for range 3 {
		r.Notify(nil, []string{"true"}, time.Second)
	}
	drainOnly(r)
	if c := r.Counters(); c != (Counters{Ran: 3}) {
		t.Errorf("counters %+v, want 3 ran", c)
	}
}

func TestStartFailure(t *testing.T) {
	r, log, _ := start(t, Options{QueueLen: 1})
	r.Notify(nil, []string{"/nonexistent/hook"}, time.Second)
	if c := settle(t, r, 1, 5*time.Second); c != (Counters{Failed: 1}) {
		t.Errorf("counters %+v, want 1 failed", c)
	}
	logHas(t, log, "no such file")
}

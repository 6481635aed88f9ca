package checks

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/havip/havip/internal/conf"
)

var discard = slog.New(slog.DiscardHandler)

// short is a check that probes every 5ms.
func short(rise, fall int) conf.Check {
	return conf.Check{Type: "tcp", Interval: 5 * time.Millisecond, Timeout: 2 * time.Millisecond, Rise: rise, Fall: fall}
}

// fakes replaces the probes: each target started follows its own copy of
// the script for its key (true = success), repeating the last step, or
// asks healthy[key] when the key has no script.
type fakes struct {
	mu      sync.Mutex
	scripts map[string][]bool
	healthy map[string]*atomic.Bool
	probes  atomic.Int64
	first   sync.Map // key -> time of the first probe
}

func (f *fakes) prober(t Target) prober {
	f.mu.Lock()
	steps := f.scripts[t.Key]
	h := f.healthy[t.Key]
	f.mu.Unlock()
	n := 0
	return func(ctx context.Context) (string, error) {
		f.probes.Add(1)
		f.first.LoadOrStore(t.Key, time.Now())
		n++
		ok := h != nil && h.Load()
		if steps != nil {
			ok = steps[min(n, len(steps))-1]
		}
		if ok {
			return fmt.Sprintf("ok #%d", n), nil
		}
		return "", fail(FailStatus, "fail #%d", n)
	}
}

// state is what tests compare of a Result.
type state struct {
	Key    string
	Up     bool
	Reason string
}

func stateOf(r Result) state { return state{r.Key, r.Up, r.Reason} }

// next returns the next Result, failing the test after a second.
func next(t *testing.T, r *Runner) Result {
	t.Helper()
	select {
	case res, ok := <-r.Results():
		if !ok {
			t.Fatal("Results closed")
		}
		return res
	case <-time.After(time.Second):
		t.Fatal("no Result within 1s")
	}
	panic("unreachable")
}

// collect returns the next n Results, stably sorted by key (the order
// between keys is not defined; within a key it is).
func collect(t *testing.T, r *Runner, n int) []state {
	t.Helper()
	var got []state
	for range n {
		got = append(got, stateOf(next(t, r)))
	}
	slices.SortStableFunc(got, func(a, b state) int { return strings.Compare(a.Key, b.Key) })
	return got
}

// quiet fails if a Result arrives within d.
func quiet(t *testing.T, r *Runner, d time.Duration) {
	t.Helper()
	select {
	case res, ok := <-r.Results():
		if ok {
			t.Errorf("unexpected Result %+v", res)
		}
	case <-time.After(d):
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func newFakeRunner(t *testing.T, f *fakes) *Runner {
	r := NewRunner(discard, WithoutJitter(), withProbers(f.prober))
	t.Cleanup(r.Stop)
	return r
}

func TestRiseFallSequence(t *testing.T) {
	const (
		S = true
		F = false
	)
	f := &fakes{scripts: map[string][]bool{
		"down-first": {S, S, F, S, F, F, F, S, S},
		"up-first":   {F, F, S, F, F, F, S},
	}}
	r := newFakeRunner(t, f)
	r.Set(t.Context(), []Target{
		{Key: "down-first", Check: short(2, 3)},
		{Key: "up-first", Check: short(1, 3), StartUp: true},
		{Key: "always", Check: conf.Check{Type: "none"}},
	})
	want := []state{
		{"always", true, "no check"},
		{"down-first", false, "not probed yet"},
		{"down-first", true, "ok #2"},
		{"down-first", false, "fail #7"},
		{"down-first", true, "ok #9"},
		{"up-first", true, "not probed yet"},
		{"up-first", false, "fail #6"},
		{"up-first", true, "ok #7"},
	}
	if diff := cmp.Diff(want, collect(t, r, len(want))); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	quiet(t, r, 50*time.Millisecond)

	st, ok := r.State("down-first")
	if !ok || !st.Up || st.Since.After(st.At) || st.Since.IsZero() {
		t.Errorf("State(down-first) = %+v, %v; want up with Since <= At", st, ok)
	}
	got := r.Failures()[FailureKey{Type: "tcp", Reason: FailStatus}]
	if got != 4+5 {
		t.Errorf("Failures()[tcp status] = %d, want 9", got)
	}
}

func TestResultTimes(t *testing.T) {
	f := &fakes{scripts: map[string][]bool{"a": {true}}}
	r := newFakeRunner(t, f)
	before := time.Now()
	r.Set(t.Context(), []Target{{Key: "a", Check: short(1, 1)}})
	initial, up := next(t, r), next(t, r)
	if initial.At.Before(before) || initial.Since != initial.At {
		t.Errorf("initial %+v: want At after Set and Since == At", initial)
	}
	if !up.Up || up.Since != up.At || !up.At.After(initial.At) {
		t.Errorf("change %+v: want Since == At, after the initial %s", up, initial.At)
	}
}

func TestSet(t *testing.T) {
	f := &fakes{scripts: map[string][]bool{"a": {true}, "b": {true}}}
	r := newFakeRunner(t, f)
	a := Target{Key: "a", Check: short(1, 1), Addr: netip.MustParseAddrPort("127.0.0.1:1")}
	b := Target{Key: "b", Check: short(1, 1), Addr: netip.MustParseAddrPort("127.0.0.1:2")}
	r.Set(t.Context(), []Target{a, b, {Key: "a", Check: short(5, 5)}})
	want := []state{
		{"a", false, "not probed yet"},
		{"a", true, "ok #1"},
		{"b", false, "not probed yet"},
		{"b", true, "ok #1"},
	}
	if diff := cmp.Diff(want, collect(t, r, len(want))); diff != "" {
		t.Fatalf("first Set (-want +got):\n%s", diff)
	}

	t.Run("unchanged targets keep running", func(t *testing.T) {
		before, _ := r.State("a")
		r.Set(t.Context(), []Target{a, b})
		quiet(t, r, 30*time.Millisecond)
		after, _ := r.State("a")
		if after.Since != before.Since || !after.At.After(before.At) {
			t.Errorf("State(a) %+v -> %+v: want the same Since and a later probe", before, after)
		}
	})

	t.Run("removed", func(t *testing.T) {
		r.Set(t.Context(), []Target{a})
		if st, ok := r.State("b"); ok {
			t.Errorf("State(b) = %+v after removal", st)
		}
		if diff := cmp.Diff([]string{"a"}, keys(r.Snapshot())); diff != "" {
			t.Errorf("Snapshot keys (-want +got):\n%s", diff)
		}
		quiet(t, r, 30*time.Millisecond)
	})

	t.Run("check changed keeps state", func(t *testing.T) {
		before, _ := r.State("a")
		a.Check.Interval = 6 * time.Millisecond
		r.Set(t.Context(), []Target{a})
		got := next(t, r)
		want := state{"a", true, "check changed, state kept"}
		if diff := cmp.Diff(want, stateOf(got)); diff != "" {
			t.Errorf("result (-want +got):\n%s", diff)
		}
		if got.Since != before.Since {
			t.Errorf("Since = %s, want the old %s", got.Since, before.Since)
		}
		quiet(t, r, 30*time.Millisecond) // still up: no change to report
	})

	t.Run("address changed starts afresh", func(t *testing.T) {
		a.Addr = netip.MustParseAddrPort("127.0.0.1:3")
		r.Set(t.Context(), []Target{a})
		want := []state{{"a", false, "not probed yet"}, {"a", true, "ok #1"}}
		if diff := cmp.Diff(want, collect(t, r, 2)); diff != "" {
			t.Errorf("results (-want +got):\n%s", diff)
		}
	})

	t.Run("added", func(t *testing.T) {
		c := Target{Key: "c", Check: short(1, 1), StartUp: true}
		r.Set(t.Context(), []Target{a, c})
		want := state{"c", true, "not probed yet"}
		if diff := cmp.Diff(want, stateOf(next(t, r))); diff != "" {
			t.Errorf("result (-want +got):\n%s", diff)
		}
		// c has no script and no health switch: it fails.
		if diff := cmp.Diff(state{"c", false, "fail #1"}, stateOf(next(t, r))); diff != "" {
			t.Errorf("result (-want +got):\n%s", diff)
		}
	})
}

func keys(rs []Result) []string {
	var ks []string
	for _, r := range rs {
		ks = append(ks, r.Key)
	}
	return ks
}

// A consumer that falls behind by more than the queue limit gets the
// latest state of each key.
func TestSlowConsumerGetsLatest(t *testing.T) {
	var healthy atomic.Bool
	f := &fakes{healthy: map[string]*atomic.Bool{"a": &healthy}}
	r := NewRunner(discard, WithoutJitter(), withProbers(f.prober), withQueueLimit(1))
	t.Cleanup(r.Stop)
	r.Set(t.Context(), []Target{{Key: "a", Check: short(1, 1)}})
	for _, h := range []bool{true, false, true} {
		healthy.Store(h)
		waitFor(t, fmt.Sprintf("a up=%v", h), func() bool { st, _ := r.State("a"); return st.Up == h })
	}
	time.Sleep(10 * time.Millisecond) // let the last change reach the dispatcher
	got := next(t, r)
	if !got.Up || got.Reason == "not probed yet" {
		t.Errorf("first result %+v, want the latest change (up)", got)
	}
	quiet(t, r, 30*time.Millisecond)
}

// Results of a removed target are never delivered after Set returns, even
// when they were queued before.
func TestSetDropsQueuedResults(t *testing.T) {
	var healthy atomic.Bool
	f := &fakes{healthy: map[string]*atomic.Bool{"flap": &healthy}}
	r := newFakeRunner(t, f)
	r.Set(t.Context(), []Target{{Key: "flap", Check: short(1, 1)}})
	healthy.Store(true)
	waitFor(t, "flap up", func() bool { st, _ := r.State("flap"); return st.Up })
	time.Sleep(10 * time.Millisecond)
	r.Set(t.Context(), nil)
	quiet(t, r, 30*time.Millisecond)
	if n := len(r.Snapshot()); n != 0 {
		t.Errorf("Snapshot has %d targets after removing all", n)
	}
}

func TestStop(t *testing.T) {
	before := runtime.NumGoroutine()
	f := &fakes{scripts: map[string][]bool{}}
	r := NewRunner(discard, withProbers(f.prober))
	var ts []Target
	for i := range 50 {
		ts = append(ts, Target{Key: fmt.Sprint("t", i), Check: short(1, 1)})
	}
	r.Set(t.Context(), ts)
	waitFor(t, "probes", func() bool { return f.probes.Load() > 50 })
	// Nobody reads Results: Stop must not hang on a full queue.
	r.Stop()
	r.Stop()
	for range r.Results() {
		// drain: Stop closes the channel
	}
	r.Set(t.Context(), ts) // ignored after Stop
	n := f.probes.Load()
	time.Sleep(20 * time.Millisecond)
	if f.probes.Load() != n {
		t.Error("probes continue after Stop")
	}
	waitFor(t, "goroutines to exit", func() bool { return runtime.NumGoroutine() <= before })
}

// Cancelling the context given to Set stops the targets it started.
func TestSetContext(t *testing.T) {
	f := &fakes{scripts: map[string][]bool{"a": {true}}}
	r := newFakeRunner(t, f)
	ctx, cancel := context.WithCancel(t.Context())
	r.Set(ctx, []Target{{Key: "a", Check: short(1, 1)}})
	waitFor(t, "probes", func() bool { return f.probes.Load() > 3 })
	cancel()
	time.Sleep(10 * time.Millisecond)
	n := f.probes.Load()
	time.Sleep(20 * time.Millisecond)
	if f.probes.Load() != n {
		t.Error("probes continue after the Set context is done")
	}
}

func TestJitter(t *testing.T) {
	const interval = 200 * time.Millisecond
	for _, jitter := range []bool{true, false} {
		t.Run(fmt.Sprint("jitter=", jitter), func(t *testing.T) {
			f := &fakes{scripts: map[string][]bool{}}
			opts := []Option{withProbers(f.prober)}
			if !jitter {
				opts = append(opts, WithoutJitter())
			}
			r := NewRunner(discard, opts...)
			defer r.Stop()
			var ts []Target
			for i := range 20 {
				// Distinct addresses: identical targets would share one probe.
				ts = append(ts, Target{Key: fmt.Sprint(i), Check: conf.Check{Type: "tcp", Interval: interval, Timeout: time.Millisecond, Rise: 1, Fall: 1},
					Addr: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(i+1))})
			}
			start := time.Now()
			r.Set(t.Context(), ts)
			waitFor(t, "first probes", func() bool { return f.probes.Load() >= 20 })
			var firstAt []time.Duration
			f.first.Range(func(_, v any) bool { firstAt = append(firstAt, v.(time.Time).Sub(start)); return true })
			slices.Sort(firstAt)
			spread := firstAt[len(firstAt)-1] - firstAt[0]
			if last := firstAt[len(firstAt)-1]; last > interval+50*time.Millisecond {
				t.Errorf("last first probe after %s, interval %s", last, interval)
			}
			if jitter && spread < interval/10 {
				t.Errorf("first probes spread over %s only: want jitter across the %s interval", spread, interval)
			}
			if !jitter && spread > interval/4 {
				t.Errorf("first probes spread over %s without jitter", spread)
			}
		})
	}
}

// End to end with a real TCP probe: a listener coming and going.
func TestRunnerTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	r := NewRunner(discard, WithoutJitter())
	defer r.Stop()
	c := conf.Check{Type: "tcp", Interval: 20 * time.Millisecond, Timeout: 10 * time.Millisecond, Rise: 2, Fall: 2}
	r.Set(t.Context(), []Target{{Key: "web/" + l.Addr().String(), Check: c, Addr: addrOf(t, l.Addr())}})
	key := "web/" + l.Addr().String()
	want := []state{{key, false, "not probed yet"}, {key, true, "connected"}}
	if diff := cmp.Diff(want, collect(t, r, 2)); diff != "" {
		t.Fatalf("results (-want +got):\n%s", diff)
	}
	l.Close()
	if diff := cmp.Diff(state{key, false, "connect: connection refused"}, stateOf(next(t, r))); diff != "" {
		t.Errorf("result (-want +got):\n%s", diff)
	}
	if n := r.Failures()[FailureKey{"tcp", FailRefused}]; n < 2 {
		t.Errorf("Failures()[tcp refused] = %d, want >= 2", n)
	}
}

// The runner takes timing as given and refuses what it cannot run (the
// site-file loader never produces it) instead of filling in defaults.
func TestInvalidCheckRefused(t *testing.T) {
	r := NewRunner(nil, WithoutJitter())
	defer r.Stop()
	r.Set(t.Context(), []Target{
		{Key: "no-interval", Check: conf.Check{Type: "tcp", Timeout: time.Second, Rise: 1, Fall: 1}},
		{Key: "timeout-too-long", Check: conf.Check{Type: "tcp", Interval: time.Second, Timeout: 2 * time.Second, Rise: 1, Fall: 1}},
		{Key: "no-rise", Check: conf.Check{Type: "tcp", Interval: time.Second, Timeout: time.Millisecond, Fall: 1}},
		{Key: "none", Check: conf.Check{Type: "none"}},
	})
	for _, k := range []string{"no-interval", "timeout-too-long", "no-rise"} {
		if _, ok := r.State(k); ok {
			t.Errorf("target %s was started", k)
		}
	}
	if _, ok := r.State("none"); !ok {
		t.Errorf("a none check needs no timing but was refused")
	}
}

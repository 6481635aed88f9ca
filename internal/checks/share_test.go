package checks

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// Keys with identical probes run one probe loop; each key gets its own
// results, in order, and knows how many share.
func TestSharedProbe(t *testing.T) {
	var built atomic.Int64
	var healthy atomic.Bool
	f := &fakes{healthy: map[string]*atomic.Bool{"vs1/rs": &healthy, "vs2/rs": &healthy, "vs3/rs": &healthy}}
	r := NewRunner(discard, WithoutJitter(), withProbers(func(t Target) prober { built.Add(1); return f.prober(t) }))
	t.Cleanup(r.Stop)
	addr := netip.MustParseAddrPort("192.0.2.1:80")
	c := short(1, 1)
	named := c
	named.Name = "key-only"
	a := Target{Key: "vs1/rs", Check: c, Addr: addr}
	b := Target{Key: "vs2/rs", Check: named, Addr: addr}
	r.Set(t.Context(), []Target{a, b})
	if n := r.Probes(); n != 1 || built.Load() != 1 {
		t.Fatalf("%d probes, %d probers built for two identical targets, want 1 and 1", n, built.Load())
	}
	want := []state{{"vs1/rs", false, "not probed yet"}, {"vs2/rs", false, "not probed yet"}}
	if diff := cmp.Diff(want, collect(t, r, 2)); diff != "" {
		t.Fatalf("initial (-want +got):\n%s", diff)
	}
	healthy.Store(true)
	got := []Result{next(t, r), next(t, r)}
	for _, res := range got {
		if !res.Up || res.SharedBy != 2 {
			t.Errorf("result %+v, want up and shared by 2", res)
		}
	}
	if got[0].Key == got[1].Key || got[0].At != got[1].At {
		t.Errorf("results %+v: want one probe's result for each key", got)
	}
	for _, k := range []string{"vs1/rs", "vs2/rs"} {
		if st, _ := r.State(k); st.SharedBy != 2 {
			t.Errorf("State(%s).SharedBy = %d, want 2", k, st.SharedBy)
		}
	}

	t.Run("key added joins with the probe's state", func(t *testing.T) {
		before, _ := r.State("vs1/rs")
		r.Set(t.Context(), []Target{a, b, {Key: "vs3/rs", Check: c, Addr: addr}})
		res := next(t, r)
		if res.Key != "vs3/rs" || !res.Up || res.Since != before.Since || res.SharedBy != 3 {
			t.Errorf("result %+v, want vs3/rs up since %s, shared by 3", res, before.Since)
		}
		quiet(t, r, 30*time.Millisecond)
		if r.Probes() != 1 || built.Load() != 1 {
			t.Errorf("%d probes, %d built: want the running probe kept", r.Probes(), built.Load())
		}
	})

	t.Run("keys removed keep the probe", func(t *testing.T) {
		before, _ := r.State("vs1/rs")
		r.Set(t.Context(), []Target{a})
		quiet(t, r, 30*time.Millisecond)
		after, _ := r.State("vs1/rs")
		if after.Since != before.Since || !after.At.After(before.At) || after.SharedBy != 1 || built.Load() != 1 {
			t.Errorf("State %+v -> %+v (%d built): want the same running probe, shared by 1", before, after, built.Load())
		}
		if _, ok := r.State("vs2/rs"); ok {
			t.Error("vs2/rs still there")
		}
	})

	t.Run("a different check splits", func(t *testing.T) {
		other := a
		other.Key = "vs2/rs"
		other.Check.Rise = 2
		startUp := a
		startUp.Key, startUp.StartUp = "vs3/rs", true
		r.Set(t.Context(), []Target{a, other, startUp})
		collect(t, r, 2)
		if n := r.Probes(); n != 3 {
			t.Errorf("%d probes, want 3 (rise and start differ)", n)
		}
	})
}

// A removed key of a shared probe gets no result after Set returns while
// the probe keeps delivering to the others.
func TestSharedProbeRemovedKeyQuiet(t *testing.T) {
	var healthy atomic.Bool
	f := &fakes{healthy: map[string]*atomic.Bool{"a": &healthy}}
	r := newFakeRunner(t, f)
	c := short(1, 1)
	r.Set(t.Context(), []Target{{Key: "a", Check: c}, {Key: "b", Check: c}})
	collect(t, r, 2)
	r.Set(t.Context(), []Target{{Key: "a", Check: c}})
	healthy.Store(true)
	if res := next(t, r); res.Key != "a" || !res.Up || res.SharedBy != 1 {
		t.Errorf("result %+v, want a up, shared by 1", res)
	}
	quiet(t, r, 30*time.Millisecond)
}

// A blocking probe that finds every pool goroutine busy is counted late,
// and still runs.
func TestPoolLate(t *testing.T) {
	var runs atomic.Int64
	slow := func(Target) prober {
		return func(ctx context.Context) (string, error) {
			runs.Add(1)
			<-ctx.Done() // runs to its timeout
			return "", fail(FailTimeout, "timeout")
		}
	}
	for _, tt := range []struct {
		pool     int
		wantLate bool
	}{{1, true}, {0, false}} {
		opts := []Option{WithoutJitter(), withProbers(slow)}
		if tt.pool > 0 {
			opts = append(opts, withPoolSize(tt.pool))
		}
		r := NewRunner(discard, opts...)
		c := short(1, 1)
		c.Timeout = c.Interval // each probe holds its goroutine for a whole interval
		var ts []Target
		for i := range 4 {
			ts = append(ts, Target{Key: string(rune('a' + i)), Check: c, Addr: netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), uint16(i+1))})
		}
		runs.Store(0)
		r.Set(t.Context(), ts)
		waitFor(t, "probes", func() bool { return runs.Load() >= 12 })
		r.Stop()
		if late := r.Late(); (late > 0) != tt.wantLate {
			t.Errorf("pool %d: Late() = %d, want late %v", tt.pool, late, tt.wantLate)
		}
	}
}

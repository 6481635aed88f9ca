package checks

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestHysteresis(t *testing.T) {
	const (
		S = true  // probe succeeded
		F = false // probe failed
	)
	tests := []struct {
		name       string
		rise, fall int
		startUp    bool
		probes     []bool
		want       []bool // state after each probe
	}{
		{"down needs rise successes", 2, 3, false, []bool{S, S, S}, []bool{false, true, true}},
		{"a failure resets the rise count", 2, 3, false, []bool{S, F, S, S}, []bool{false, false, false, true}},
		{"up needs fall failures", 2, 3, true, []bool{F, F, F, F}, []bool{true, true, false, false}},
		{"a success resets the fall count", 2, 3, true, []bool{F, F, S, F, F, F}, []bool{true, true, true, true, true, false}},
		{"rise 1 fall 1 follows every probe", 1, 1, false, []bool{S, F, S, S, F}, []bool{true, false, true, true, false}},
		{"round trip", 2, 2, false, []bool{S, S, F, F, S, F, S, S}, []bool{false, true, true, false, false, false, false, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := hysteresis{rise: tt.rise, fall: tt.fall, up: tt.startUp}
			var got []bool
			prev := h.up
			for _, ok := range tt.probes {
				changed := h.observe(ok)
				if changed != (h.up != prev) {
					t.Fatalf("observe(%v) said changed=%v, state %v -> %v", ok, changed, prev, h.up)
				}
				prev = h.up
				got = append(got, h.up)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("states (-want +got):\n%s", diff)
			}
		})
	}
}

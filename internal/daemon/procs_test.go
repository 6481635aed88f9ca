package daemon

import (
	"runtime"
	"testing"
	"time"

	"github.com/havip/havip/internal/conf"
)

func TestProbeRate(t *testing.T) {
	rs := func(n int) []conf.RealServer { return make([]conf.RealServer, n) }
	site := &conf.Site{
		VirtualServers: []conf.VirtualServer{
			{Check: conf.Check{Type: "tcp", Interval: time.Second}, RealServers: rs(1500)},
			{Check: conf.Check{Type: "http", Interval: 2 * time.Second}, RealServers: rs(600)},
			{Check: conf.Check{Type: "none", Interval: time.Second}, RealServers: rs(5000)},
		},
		Checks: []conf.Check{{Type: "exec", Interval: 100 * time.Millisecond}},
	}
	if got := probeRate(site); got != 1500+300+10 {
		t.Errorf("probe rate %v, want 1810", got)
	}
	if got := procsFor(site); got != 1 {
		t.Errorf("procs for 1810 probes a second: %d, want 1", got)
	}
	site.VirtualServers[1].Check.Interval = time.Second
	if got := procsFor(site); got != runtime.NumCPU() {
		t.Errorf("procs for 2110 probes a second: %d, want every CPU (%d)", got, runtime.NumCPU())
	}
}

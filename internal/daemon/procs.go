package daemon

import (
	"log/slog"
	"runtime"

	"github.com/havip/havip/internal/conf"
)

// The daemon's work is many small wake-ups: an advert, a timer, a pair
// link message, each a few microseconds in one goroutine that hands on
// to another. With a second P idle, every such hand-off wakes a second
// thread that finds nothing to do and sleeps again: at 255 groups on one
// interface that doubled a backup's CPU (BenchmarkManyGroups: 1.15-1.35%
// of a core with both CPUs, 0.55-1.05% on one P, in the same runs). Only
// health checks at scale keep more than one core busy. So, unless the
// environment sets GOMAXPROCS (Options.AutoProcs), the daemon runs on one
// P while its checks are light, and on every CPU once a site's checks
// are heavy; a reload that makes them heavy raises it (never lowers it:
// the check engine sized its loops when it started, see checks.NewRunner).

// heavyChecks is the probe rate (probes a second, every real server of
// every checked virtual server and every named check) from which the
// daemon uses every CPU: about 5% of a core for tcp checks on this
// project's machine (BenchmarkChecks), where a P of its own starts to
// pay for a single P's latency.
const heavyChecks = 2000

// probeRate is how many probes a second s's checks make at most (shared
// checks make fewer).
func probeRate(s *conf.Site) float64 {
	rate := 0.0
	per := func(c conf.Check, n int) {
		if c.Type != "" && c.Type != "none" && c.Interval > 0 {
			rate += float64(n) / c.Interval.Seconds()
		}
	}
	for _, vs := range s.VirtualServers {
		per(vs.Check, len(vs.RealServers))
	}
	for _, c := range s.Checks {
		per(c, 1)
	}
	return rate
}

// procsFor is the number of Ps for s: 1, or every CPU for heavy checks.
func procsFor(s *conf.Site) int {
	if probeRate(s) >= heavyChecks {
		return runtime.NumCPU()
	}
	return 1
}

// fitProcs sets GOMAXPROCS for s when the daemon chooses it: at start,
// and on a reload only upwards.
func fitProcs(s *conf.Site, auto, start bool, log *slog.Logger) {
	if !auto {
		return
	}
	want, now := procsFor(s), runtime.GOMAXPROCS(0)
	if want == now || !start && want < now {
		return
	}
	runtime.GOMAXPROCS(want)
	log.Debug("processors", "gomaxprocs", want, "was", now, "probes_per_second", int(probeRate(s)), "heavy_from", heavyChecks)
}

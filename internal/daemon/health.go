package daemon

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/havip/havip/internal/checks"
	"github.com/havip/havip/internal/conf"
)

// healthTask runs the health checks of the site and sends every result to
// the controller; what a result means (IPVS membership, tracked objects)
// is derive's business. Resolving top-level check targets may take a
// while, so it happens here, not on the controller.
type healthTask struct {
	runner *checks.Runner
	site   *mailbox[*conf.Site]
	events func(any)
	log    *slog.Logger
}

func newHealthTask(log *slog.Logger, events func(any)) *healthTask {
	return &healthTask{runner: checks.NewRunner(log), site: newMailbox[*conf.Site](), events: events, log: log}
}

// setSite gives the task a new site; its targets replace the running ones
// (unchanged targets keep their state).
func (h *healthTask) setSite(s *conf.Site) { h.site.put(s) }

func (h *healthTask) Run(ctx context.Context) error {
	results := h.runner.Results()
	for {
		select {
		case <-ctx.Done():
			h.runner.Stop()
			return nil
		case <-h.site.ready():
			if s, ok := h.site.take(); ok {
				h.runner.Set(ctx, targets(ctx, s, h.log))
			}
		case r, ok := <-results:
			if !ok {
				return nil
			}
			h.events(r)
		}
	}
}

// targets lists what the site asks to probe. Real servers and named checks
// start up, as keepalived's do: a restart must not empty the IPVS table or
// drop the priority before the first probes are in.
func targets(ctx context.Context, site *conf.Site, log *slog.Logger) []checks.Target {
	var out []checks.Target
	for _, vs := range site.VirtualServers {
		if vs.Check.Type == "none" {
			continue
		}
		for _, rs := range vs.RealServers {
			addr := rs.Address
			if vs.Check.Port != 0 {
				addr = netip.AddrPortFrom(addr.Addr(), vs.Check.Port)
			}
			out = append(out, checks.Target{Key: checks.RealServerKey(vs.Name, rs.Address), Check: vs.Check, Addr: addr, StartUp: !vs.Check.StartDown})
		}
	}
	for _, c := range site.Checks {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		t, err := checks.TopLevelTarget(rctx, net.DefaultResolver, c)
		cancel()
		if err != nil {
			// Probed at the zero address: it fails, and says why.
			log.Warn("check target", "check", c.Name, "err", err)
		}
		t.StartUp = !c.StartDown
		out = append(out, t)
	}
	return out
}

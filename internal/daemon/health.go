package daemon

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/havip/havip/internal/checks"
	"github.com/havip/havip/internal/conf"
	"github.com/havip/havip/internal/ctl"
	"github.com/havip/havip/internal/ipvsync"
)

// healthPart runs the health checks and turns their results into IPVS
// membership (through the desired table) and into the state of
// [[vrrp.track]] entries that name a virtual server or a check.
type healthPart struct {
	d      *Daemon
	runner *checks.Runner

	mu sync.Mutex
	up map[string]bool // target key -> up; absent = not checked (up)
}

var _ ipvsync.Health = (*healthPart)(nil)

// Up reports a real server's health; one without a check is up.
func (h *healthPart) Up(vs string, rs netip.AddrPort) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	up, ok := h.up[checks.RealServerKey(vs, rs)]
	return !ok || up
}

func (h *healthPart) checkUp(name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	up, ok := h.up[checks.CheckKey(name)]
	return !ok || up
}

// targets lists what the site asks to probe. Real servers and named checks
// start up, as keepalived's do: a restart must not empty the IPVS table or
// drop the priority before the first probes are in.
func targets(site *conf.Site) []checks.Target {
	var out []checks.Target
	for _, vs := range site.VirtualServers {
		if vs.Check.Type == "" || vs.Check.Type == "none" {
			continue
		}
		for _, rs := range vs.RealServers {
			addr := rs.Address
			if vs.Check.Port != 0 {
				addr = netip.AddrPortFrom(addr.Addr(), vs.Check.Port)
			}
			out = append(out, checks.Target{Key: checks.RealServerKey(vs.Name, rs.Address), Check: vs.Check, Addr: addr, StartUp: true})
		}
	}
	for _, c := range site.Checks {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		t, err := checks.TopLevelTarget(ctx, net.DefaultResolver, c)
		cancel()
		if err != nil {
			// Probed at the zero address: it fails, and says why.
			slog.Warn("check target", "check", c.Name, "err", err)
		}
		t.StartUp = true
		out = append(out, t)
	}
	return out
}

// startHealth starts the checks of the site; results feed IPVS and tracks.
func (d *Daemon) startHealth(ctx context.Context) {
	h := &healthPart{d: d, runner: checks.NewRunner(d.log), up: map[string]bool{}}
	d.health = h
	d.mu.Lock()
	site := d.site
	d.mu.Unlock()
	h.runner.Set(ctx, targets(site))
	go h.loop(ctx)
	go func() { <-ctx.Done(); h.runner.Stop() }()
}

func (h *healthPart) loop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case r, ok := <-h.runner.Results():
			if !ok {
				return
			}
			h.mu.Lock()
			was, known := h.up[r.Key]
			h.up[r.Key] = r.Up
			h.mu.Unlock()
			if known && was == r.Up {
				continue
			}
			if !known && r.Up {
				continue // the optimistic start, confirmed
			}
			h.d.log.Info("health changed", "target", r.Key, "up", r.Up, "reason", r.Reason)
			h.d.healthChanged()
		}
	}
}

// healthChanged recomputes the IPVS table and the tracked objects.
func (d *Daemon) healthChanged() {
	d.mu.Lock()
	site := d.site
	d.mu.Unlock()
	if d.ipvs != nil {
		if err := d.ipvs.setSite(site, d.health); err != nil {
			d.log.Error("ipvs: table from health", "err", err)
		}
	}
	d.pushHealthTracks()
}

// pushHealthTracks hands every group the state of the virtual servers and
// checks it tracks.
func (d *Daemon) pushHealthTracks() {
	d.mu.Lock()
	site := d.site
	d.mu.Unlock()
	var hl ipvsync.Health
	if d.health != nil {
		hl = d.health
	}
	vsDown := map[string]bool{}
	for _, s := range ipvsync.Desired(site.VirtualServers, hl).Services {
		vsDown[s.Name] = s.Down
	}
	for _, g := range d.runningGroups() {
		var set []func()
		for _, tr := range g.cfg.Track {
			switch {
			case tr.VirtualServer != "":
				key, failing := "virtual_server:"+tr.VirtualServer, vsDown[tr.VirtualServer]
				set = append(set, func() { g.setTrack(key, failing) })
			case tr.Check != "" && d.health != nil:
				key, failing := "check:"+tr.Check, !d.health.checkUp(tr.Check)
				set = append(set, func() { g.setTrack(key, failing) })
			}
		}
		if len(set) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = g.do(ctx, func() {
			for _, f := range set {
				f()
			}
		})
		cancel()
	}
}

// checkStatus is what `havip status` shows of the checks.
func (h *healthPart) status() []ctl.CheckStatus {
	var out []ctl.CheckStatus
	for _, r := range h.runner.Snapshot() {
		out = append(out, ctl.CheckStatus{Key: r.Key, Up: r.Up, Reason: r.Reason, Since: r.At})
	}
	return out
}

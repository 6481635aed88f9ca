// Package daemon is `havip run`: it loads the site file, runs one VRRP
// group per [[vrrp]] table, serves the control socket and metrics, talks
// to systemd, and reloads on SIGHUP without ever dropping a running config
// for a bad one. Protocol logic lives in vrrp, sockets in vrrpnet, VIPs in
// vip; this package only wires them and owns their lifecycles.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"sort"
	"sync"
	"syscall"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"

	"github.com/havip/havip/internal/conf"
	"github.com/havip/havip/internal/ctl"
	"github.com/havip/havip/internal/track"
	"github.com/havip/havip/internal/vrrp"
)

// ErrBadInput marks failures caused by the operator's input (exit code 1);
// everything else is a runtime failure (exit code 2).
var ErrBadInput = errors.New("bad input")

// Options are the command-line settings of `havip run`.
type Options struct {
	ConfigPath string
	Node       string // "" = hostname
	Socket     string // overrides [site] control_socket (two daemons on one machine)
	StateDir   string // overrides [site] state_dir
	Metrics    *string
	Version    string
	Logger     *slog.Logger
}

// Daemon is one running havip.
type Daemon struct {
	opts    Options
	log     *slog.Logger
	hooks   *notifier
	started time.Time

	mu        sync.Mutex
	site      *conf.Site
	node      *conf.Node
	loaded    time.Time
	reloadErr string
	groups    map[string]*running
	ipvs      *ipvsPart
	health    *healthPart
	pair      *pairLink
	trackCh   <-chan track.Update
	trackStop context.CancelFunc
	trackOn   []string
	links     map[string]track.LinkState
}

type running struct {
	g      *group
	cancel context.CancelFunc
}

// Load reads and validates the site file and picks this node; every
// problem is returned wrapped in ErrBadInput.
func Load(path, node string) (*conf.Site, *conf.Node, error) {
	site, problems, err := conf.Load(path)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrBadInput, err)
	}
	if conf.HasErrors(problems) {
		msg := ""
		for _, p := range problems {
			if !p.Warning {
				msg += "\n" + p.String()
			}
		}
		return nil, nil, fmt.Errorf("%w: invalid site file:%s", ErrBadInput, msg)
	}
	for _, p := range problems {
		slog.Warn("site file", "problem", p.String())
	}
	n, err := site.SelectNode(node)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrBadInput, err)
	}
	return site, n, nil
}

// Run runs the daemon until ctx ends or SIGTERM/SIGINT, then stops
// gracefully.
func Run(ctx context.Context, opts Options) error {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	site, node, err := Load(opts.ConfigPath, opts.Node)
	if err != nil {
		return err
	}
	d := &Daemon{opts: opts, log: log, started: time.Now(), groups: map[string]*running{}}
	d.hooks = newNotifier(log)
	d.apply(site, node)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)

	hooksCtx, hooksCancel := context.WithCancel(context.Background())
	defer hooksCancel()
	hooksDone := make(chan struct{})
	go func() { d.hooks.loop(hooksCtx); close(hooksDone) }()

	srv, err := d.serveControl(ctx)
	if err != nil {
		return err
	}
	defer srv.Close()
	if err := d.serveMetrics(ctx); err != nil {
		return err
	}
	d.startHealth(ctx)
	if err := d.startIPVS(ctx); err != nil {
		return err
	}
	if err := d.startPair(ctx); err != nil {
		return err
	}
	if err := d.startTracking(ctx); err != nil {
		return err
	}
	if err := d.startGroups(ctx); err != nil {
		d.stopGroups()
		return err
	}
	d.pushHealthTracks()
	log.Info("havip running", "site", site.Name, "node", node.Name, "groups", len(site.Groups), "version", opts.Version)
	_, _ = sd.SdNotify(false, sd.SdNotifyReady)
	go d.watchdog(ctx)

	for {
		select {
		case <-ctx.Done():
			return d.shutdown(hooksCancel, hooksDone)
		case s := <-sigs:
			if s == syscall.SIGHUP {
				d.reload(ctx)
				continue
			}
			log.Info("stopping", "signal", s.String())
			_, _ = sd.SdNotify(false, sd.SdNotifyStopping)
			cancel()
			return d.shutdown(hooksCancel, hooksDone)
		case u, ok := <-d.trackCh:
			if !ok {
				d.trackCh = nil
				continue
			}
			if u.Link != nil {
				d.linkChanged(*u.Link)
			}
		}
	}
}

func (d *Daemon) shutdown(hooksCancel context.CancelFunc, hooksDone chan struct{}) error {
	d.stopGroups()
	if d.ipvs != nil {
		d.ipvs.stop()
	}
	hooksCancel()
	<-hooksDone
	d.log.Info("stopped")
	return nil
}

func (d *Daemon) apply(site *conf.Site, node *conf.Node) {
	if d.opts.Socket != "" {
		site.ControlSocket = d.opts.Socket
	}
	if d.opts.StateDir != "" {
		site.StateDir = d.opts.StateDir
	}
	if d.opts.Metrics != nil {
		site.Metrics = *d.opts.Metrics
	}
	d.mu.Lock()
	d.site, d.node, d.loaded = site, node, time.Now()
	d.mu.Unlock()
}

func (d *Daemon) startGroups(ctx context.Context) error {
	d.mu.Lock()
	site, node := d.site, d.node
	d.mu.Unlock()
	for _, gc := range site.Groups {
		if err := d.startGroup(ctx, site, node, gc); err != nil {
			return err
		}
	}
	return nil
}

func (d *Daemon) startGroup(ctx context.Context, site *conf.Site, node *conf.Node, gc conf.Group) error {
	g, err := newGroup(site, node, gc, d.log, d.hooks)
	if err != nil {
		return err
	}
	if err := g.open(); err != nil {
		return err
	}
	g.onState = func(_ *group, s vrrp.State) {
		if d.pair != nil {
			d.pair.notify()
		}
		if d.ipvs != nil {
			// The group's own status is published after this hook.
			d.ipvs.follow(s == vrrp.Master || d.anyMasterExcept(gc.Name))
		}
	}
	gctx, cancel := context.WithCancel(ctx)
	d.mu.Lock()
	d.groups[gc.Name] = &running{g: g, cancel: cancel}
	d.mu.Unlock()
	go g.run(gctx)
	d.refreshLinks(g)
	return nil
}

func (d *Daemon) stopGroups() {
	d.mu.Lock()
	rs := make([]*running, 0, len(d.groups))
	for name, r := range d.groups {
		rs = append(rs, r)
		delete(d.groups, name)
	}
	d.mu.Unlock()
	// All groups send their priority-0 adverts in parallel.
	for _, r := range rs {
		r.cancel()
	}
	for _, r := range rs {
		<-r.g.done
	}
}

// reload re-reads the site file; an invalid one keeps everything running.
func (d *Daemon) reload(ctx context.Context) {
	site, node, err := Load(d.opts.ConfigPath, d.opts.Node)
	if err != nil {
		d.mu.Lock()
		d.reloadErr = err.Error()
		d.mu.Unlock()
		d.log.Error("reload refused; the running configuration stays", "err", err)
		return
	}
	d.mu.Lock()
	old := d.site
	d.reloadErr = ""
	d.mu.Unlock()
	if d.ipvs == nil && len(site.VirtualServers) > 0 {
		d.log.Error("reload refused: virtual servers were added, which needs IPVS set up at start; restart havip")
		d.mu.Lock()
		d.reloadErr = "adding the first virtual servers needs a restart"
		d.mu.Unlock()
		return
	}
	if d.ipvs != nil {
		if err := d.ipvs.setSite(site, d.health); err != nil {
			d.mu.Lock()
			d.reloadErr = err.Error()
			d.mu.Unlock()
			d.log.Error("reload refused; the running configuration stays", "err", err)
			return
		}
		// A new or changed [sync] starts its daemons for the current role.
		d.ipvs.follow(d.anyMasterExcept(""))
	}
	d.apply(site, node)
	d.health.runner.Set(ctx, targets(site))

	// A group whose settings (priorities aside) and peers are unchanged
	// keeps running; a new priority is applied in place.
	keep := map[string]bool{}
	for _, gc := range site.Groups {
		for _, oc := range old.Groups {
			if oc.Name == gc.Name && onlyPriorityChanged(oc, gc) && samePeers(old.Nodes, site.Nodes) {
				keep[gc.Name] = true
			}
		}
	}
	for _, g := range d.runningGroups() {
		if !keep[g.cfg.Name] {
			continue
		}
		gc := *site.Group(g.cfg.Name)
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		if err := g.do(rctx, func() { g.repriority(gc, node) }); err != nil {
			d.log.Error("reload: applying priorities", "group", gc.Name, "err", err)
		}
		cancel()
	}
	d.mu.Lock()
	var stop []*running
	for name, r := range d.groups {
		if !keep[name] {
			stop = append(stop, r)
			delete(d.groups, name)
		}
	}
	d.mu.Unlock()
	for _, r := range stop {
		r.cancel()
		<-r.g.done
	}
	for _, gc := range site.Groups {
		if keep[gc.Name] {
			continue
		}
		if err := d.startGroup(ctx, site, node, gc); err != nil {
			d.log.Error("reload: starting group", "group", gc.Name, "err", err)
			d.mu.Lock()
			d.reloadErr = fmt.Sprintf("group %s could not start: %v", gc.Name, err)
			d.mu.Unlock()
		}
	}
	if err := d.startTracking(ctx); err != nil {
		d.log.Error("reload: link tracking", "err", err)
	}
	d.pushHealthTracks()
	d.log.Info("reloaded", "kept", len(keep), "restarted", len(site.Groups)-len(keep))
}

func (d *Daemon) startPair(ctx context.Context) error {
	d.mu.Lock()
	site, node := d.site, d.node
	d.mu.Unlock()
	peers := map[netip.Addr]string{}
	for _, p := range site.Peers(node.Name) {
		peers[p.Address] = p.Name
	}
	if len(peers) == 0 {
		return nil
	}
	p, err := newPairLink(site.Name, node.Name, node.Address, site.PairPort, peers, d.localStates, d.dualGrace, d.log)
	if err != nil {
		return err
	}
	p.peerYielded = d.reannounce
	d.pair = p
	go p.run(ctx)
	return nil
}

// samePeers reports whether two node lists name the same directors at the
// same addresses (priorities may differ).
func samePeers(a, b []conf.Node) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Address != b[i].Address {
			return false
		}
	}
	return true
}

// reannounce sends gratuitous ARPs/NAs for a group we are master of.
func (d *Daemon) reannounce(name string) {
	for _, g := range d.runningGroups() {
		if g.cfg.Name != name {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = g.do(ctx, func() {
			if g.m.Status().State == vrrp.Master {
				g.log.Info("peer stopped being master: re-announcing the VIPs")
				g.claim.Announce(context.Background())
			}
		})
		cancel()
	}
}

// dualGrace is how long both directors may claim a group before it counts
// as a dual master: enough for a normal election to settle.
func (d *Daemon) dualGrace(group string) time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	if g := d.site.Group(group); g != nil {
		return time.Second + 3*g.Advert
	}
	return time.Second
}

func (d *Daemon) localStates() map[string]string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]string, len(d.groups))
	for name, r := range d.groups {
		if s := r.g.status.Load(); s != nil {
			out[name] = s.State
		}
	}
	return out
}

func (d *Daemon) runningGroups() []*group {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]*group, 0, len(d.groups))
	for _, r := range d.groups {
		out = append(out, r.g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].cfg.Name < out[j].cfg.Name })
	return out
}

// status assembles what `havip status` shows.
func (d *Daemon) status() *ctl.Status {
	d.mu.Lock()
	st := &ctl.Status{
		Site:         d.site.Name,
		Node:         d.node.Name,
		Address:      d.node.Address.String(),
		Version:      d.opts.Version,
		PID:          os.Getpid(),
		Started:      d.started,
		ConfigFile:   d.opts.ConfigPath,
		ConfigLoaded: d.loaded,
		ReloadError:  d.reloadErr,
	}
	d.mu.Unlock()
	for _, g := range d.runningGroups() {
		gs := *g.status.Load()
		if d.pair != nil {
			gs.PeerState, _ = d.pair.peerState(gs.Name)
			gs.DualMaster = d.pair.dualMaster(gs.Name)
		}
		st.Groups = append(st.Groups, gs)
	}
	if d.pair != nil {
		st.Peers = d.pair.status()
	}
	if d.ipvs != nil {
		st.IPVS = d.ipvs.status()
	}
	st.Checks = d.health.status()
	return st
}

// watchdog pets systemd only while every group goroutine answers.
func (d *Daemon) watchdog(ctx context.Context) {
	every, err := sd.SdWatchdogEnabled(false)
	if err != nil || every == 0 {
		return
	}
	t := time.NewTicker(every / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ok := true
		for _, g := range d.runningGroups() {
			pctx, cancel := context.WithTimeout(ctx, every/3)
			if err := g.do(pctx, func() {}); err != nil {
				ok = false
				d.log.Error("watchdog: group not responding", "group", g.cfg.Name, "err", err)
			}
			cancel()
		}
		if ok {
			_, _ = sd.SdNotify(false, sd.SdNotifyWatchdog)
		}
	}
}

package daemon

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/havip/havip/internal/conf"
	"github.com/havip/havip/internal/events"
	"github.com/havip/havip/internal/ipvsync"
	"github.com/havip/havip/internal/pairwire"
	"github.com/havip/havip/internal/track"
	"github.com/havip/havip/internal/vrrp"
)

// A reload is a transaction on the controller's goroutine: load and
// validate the file (refused: nothing changes), plan what differs from
// what runs, prepare everything new next to what runs (group sockets,
// listeners, kernel handles; any failure closes what was prepared and
// refuses the reload whole), then commit. Unchanged groups are not
// touched; changed groups are updated in place without leaving their
// state; only a group whose socket must change (interface, VRID, version,
// unicast, family) or whose address ownership changes is restarted.

type changeKind uint8

const (
	groupKeep changeKind = iota
	groupUpdate
	groupRestart
	groupAdd
)

type groupPlan struct {
	cfg  *conf.Group // in the new site
	kind changeKind
	what []string // what changed, for the report
	// old is the running group a restart replaces (another name when it
	// is a rename); hold: a restart that waits until the peer runs it
	// (pendingRestart), old running meanwhile.
	hold bool
	old  *conf.Group
}

type reloadPlan struct {
	groups    []groupPlan
	effective *conf.Site // what will run: the new site with held groups as they are
	removed   []string
	lines     []string
	pairBind  bool // the pair link needs a new socket (node address or pair_port)
	control   bool
	metrics   bool
	stateDir  bool
	watch     bool // other interfaces or node address to watch
	ipvsStart bool
	syncNew   bool // a new sync-daemon handle (added or changed [sync])
	syncStop  bool
}

// prepared is what a reload opened before committing.
type prepared struct {
	groups  map[string]*group
	pair    *pairLink
	control *controlTask
	metrics *metricsTask
	watch   *linkWatch
	ipvs    *ipvsTask
	sync    *ipvsync.SyncDaemons
	pairKey pairwire.Key // the key the site file names now

	restoreMetrics string // the running metrics listener was closed to free its port
}

// abort closes everything prepared and restores what preparing stopped.
func (c *controller) abort(p *prepared) {
	p.close()
	if p.restoreMetrics != "" {
		if mt, err := listenMetrics(p.restoreMetrics, c); err == nil {
			c.metrics, c.metricsT = mt, startTask(c.ctx, "metrics", c.log, mt.Run)
		} else {
			c.log.Error("metrics: could not listen again after a refused reload", "err", err)
		}
	}
}

// close closes everything prepared.
func (p *prepared) close() {
	for _, g := range p.groups {
		g.discard()
	}
	if p.pair != nil {
		p.pair.closeSockets()
	}
	if p.control != nil {
		p.control.close()
	}
	if p.metrics != nil {
		p.metrics.close()
	}
	if p.watch != nil {
		p.watch.stop()
	}
	if p.ipvs != nil {
		p.ipvs.kernel.Close()
	}
	if p.sync != nil {
		p.sync.Close()
	}
}

// reload runs one reload and reports it to the log, to status and to the
// requester.
func (c *controller) reload(req reloadReq) {
	res := c.tryReload(req.at)
	c.last = res
	c.publish()
	f := events.Fields{"ok": res.applied, "revision": res.rev, "old_revision": res.oldRev}
	if res.applied {
		c.reloadsApplied.Add(1)
		f["changes"] = nonNil(res.changes)
	} else {
		c.reloadsRefused.Add(1)
		f["problems"] = nonNil(res.problems)
	}
	c.note(events.Reload, f)
	switch {
	case !res.applied:
		c.log.Error("reload refused; the running configuration stays", "problems", strings.Join(res.problems, "; "))
	case len(res.changes) == 0:
		c.log.Info("reloaded: no changes", "revision", res.rev, "took", res.took)
	default:
		c.log.Info("reloaded", "revision", res.rev, "changes", strings.Join(res.changes, "; "), "took", res.took)
	}
	if req.reply != nil {
		req.reply <- res
	}
	for _, t := range c.retired {
		t.stop()
	}
	c.retired = nil
}

// nonNil makes an empty list show as [] in an event, not null.
func nonNil(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

// reloadResult is what one reload did; the control socket and status send
// it as a ctl.ReloadResult.
type reloadResult struct {
	file                        string
	applied                     bool
	oldRev, rev                 string // rev: of the file read; the running one when refused
	changes, problems, warnings []string
	took                        time.Duration
}

func (c *controller) tryReload(at time.Time) *reloadResult {
	res := &reloadResult{file: c.opts.ConfigPath, oldRev: c.site.Revision, rev: c.site.Revision}
	l, err := load(c.opts)
	if err != nil {
		var pe *problemsError
		if errors.As(err, &pe) {
			for _, p := range pe.problems {
				res.problems = append(res.problems, problemLine(p))
			}
		} else {
			res.problems = []string{"reload: " + err.Error()}
		}
		return res
	}
	for _, w := range l.warnings {
		res.warnings = append(res.warnings, problemLine(w))
	}
	plan := c.plan(l)
	prep, err := c.prepare(plan, l)
	if err != nil {
		c.abort(prep)
		res.problems = []string{"reload: " + err.Error()}
		return res
	}
	c.commit(plan, l, prep)
	fitProcs(l.site, c.opts.AutoProcs, false, c.log)
	res.applied, res.rev, res.changes = true, l.site.Revision, plan.lines
	res.took = time.Since(at)
	return res
}

func problemLine(p conf.Problem) string {
	if p.Line == 0 {
		return p.File + ": " + p.Msg
	}
	return p.String()
}

// plan compares the running site with the new one.
func (c *controller) plan(l *loaded) reloadPlan {
	old, site, node := c.site, l.site, l.node
	var p reloadPlan
	nodeMoved := node.Address != c.node.Address || node.Name != c.node.Name
	peersChanged := !slices.Equal(peerAddrs(old, c.node), peerAddrs(site, node)) || len(old.Nodes) != len(site.Nodes)
	renamed := map[string]bool{} // old groups that a new name takes over
	for i := range site.Groups {
		gc := &site.Groups[i]
		oc := old.Group(gc.Name)
		gp := groupPlan{cfg: gc}
		switch {
		case oc == nil && renamedFrom(old, site, gc) != nil:
			// The same virtual router under a new name: it takes over the
			// old one's state. Removing one and adding the other sent a
			// priority-0 advert, the peer took over and gave back.
			gp.kind, gp.old = groupRestart, renamedFrom(old, site, gc)
			gp.what = []string{"renamed from " + gp.old.Name}
			renamed[gp.old.Name] = true
		case oc == nil:
			gp.kind = groupAdd
			p.lines = append(p.lines, fmt.Sprintf("group %s: added (%s vrid %d)", gc.Name, gc.Interface, gc.VRID))
		case sockKeyOf(oc) != sockKeyOf(gc):
			gp.kind = groupRestart
			gp.what = sockDiff(oc, gc)
		case (basePriority(oc, c.node) == vrrp.OwnerPriority) != (basePriority(gc, node) == vrrp.OwnerPriority):
			gp.kind = groupRestart
			gp.what = []string{"address ownership"}
		default:
			gp.what = groupDiff(oc, gc)
			if basePriority(oc, c.node) != basePriority(gc, node) && !slices.Contains(gp.what, "priorities") {
				gp.what = append(gp.what, fmt.Sprintf("priority %d -> %d", basePriority(oc, c.node), basePriority(gc, node)))
			}
			if nodeMoved {
				gp.what = append(gp.what, "node address")
			}
			if peersChanged {
				gp.what = append(gp.what, "peers")
			}
			if !slices.Contains(gp.what, "accept_unknown_sources") && !slices.Equal(old.AdvertSources(oc, c.node.Name), site.AdvertSources(gc, node.Name)) {
				gp.what = append(gp.what, "advert sources")
			}
			if len(gp.what) > 0 {
				gp.kind = groupUpdate
			}
		}
		if gp.kind == groupRestart && gp.old == nil {
			// A live peer configured with the old socket would be another
			// virtual router: wait for it (see pendingRestart).
			pg := c.peer.group(gc.Name)
			gp.hold, gp.old = pg.runs() && pg.key != sockKeyOf(gc).String(), oc
		}
		switch {
		case gp.kind == groupRestart && gp.old.Name != gc.Name:
			p.lines = append(p.lines, fmt.Sprintf("group %s: renamed from %s, taking over its state", gc.Name, gp.old.Name))
		case gp.kind == groupRestart && gp.hold:
			p.lines = append(p.lines, fmt.Sprintf("group %s: restart (%s) waits until the peer runs it; the running instance stays meanwhile", gc.Name, strings.Join(gp.what, ", ")))
		case gp.kind == groupRestart:
			p.lines = append(p.lines, fmt.Sprintf("group %s: restarted (%s), taking over its state", gc.Name, strings.Join(gp.what, ", ")))
		case gp.kind == groupUpdate:
			p.lines = append(p.lines, fmt.Sprintf("group %s: updated in place (%s)", gc.Name, strings.Join(gp.what, ", ")))
		}
		p.groups = append(p.groups, gp)
	}
	for _, og := range old.Groups {
		if site.Group(og.Name) == nil && !renamed[og.Name] {
			p.removed = append(p.removed, og.Name)
			p.lines = append(p.lines, fmt.Sprintf("group %s: removed", og.Name))
		}
	}
	if node.Address != c.node.Address || site.PairPort != old.PairPort {
		p.pairBind = true
		p.lines = append(p.lines, fmt.Sprintf("pair link: %s port %d -> %s port %d", c.node.Address, old.PairPort, node.Address, site.PairPort))
	} else if peersChanged {
		p.lines = append(p.lines, "pair link: peers changed")
	}
	if site.ControlSocket != old.ControlSocket {
		p.control = true
		p.lines = append(p.lines, fmt.Sprintf("control socket: %s -> %s", old.ControlSocket, site.ControlSocket))
	}
	if site.Metrics != old.Metrics {
		p.metrics = true
		p.lines = append(p.lines, fmt.Sprintf("metrics: %q -> %q", old.Metrics, site.Metrics))
	}
	if site.StateDir != old.StateDir {
		p.stateDir = true
		p.lines = append(p.lines, fmt.Sprintf("state_dir: %s -> %s", old.StateDir, site.StateDir))
	}
	held := map[string]*conf.Group{}
	for _, gp := range p.groups {
		if gp.hold {
			held[gp.cfg.Name] = gp.old
		}
	}
	p.effective = effectiveSite(site, held)
	p.watch = !sameWant(watchWant(c.node, c.site, c.target), watchWant(node, site, p.effective))
	p.lines = append(p.lines, vsDiff(old, site)...)
	if needsIPVS(site) && c.ipvs == nil {
		p.ipvsStart = true
	}
	switch {
	case site.Sync != nil && (c.syncCfg == nil || *site.Sync != *c.syncCfg):
		p.syncNew = true
		p.lines = append(p.lines, "sync: daemons (re)configured on "+site.Sync.Interface)
	case site.Sync == nil && c.syncCfg != nil:
		p.syncStop = true
		p.lines = append(p.lines, "sync: removed; daemons stopped")
	}
	if !reflect.DeepEqual(old.Checks, site.Checks) {
		p.lines = append(p.lines, "checks: changed")
	}
	if old.Name != site.Name {
		p.lines = append(p.lines, fmt.Sprintf("site name: %s -> %s", old.Name, site.Name))
	}
	return p
}

// prepare opens what the plan needs new, next to what runs.
func (c *controller) prepare(p reloadPlan, l *loaded) (*prepared, error) {
	prep := &prepared{groups: map[string]*group{}}
	site, node := l.site, l.node
	if p.watch {
		w, err := startLinkWatch(c.ctx, watchWant(node, site, p.effective), c.log)
		if err != nil {
			return prep, err
		}
		prep.watch = w
	}
	// New groups are built from what the new watch sees: its links and
	// the node address, which a reload may have changed.
	links, addrs := c.links, c.addrs
	if prep.watch != nil {
		links, addrs = maps2(c.links), maps2(c.addrs)
		for _, u := range prep.watch.initial {
			switch {
			case u.Link != nil:
				links[u.Link.Name] = *u.Link
			case u.Addr != nil:
				addrs[u.Addr.Addr] = *u.Addr
			}
		}
	}
	want := derive(inputs{site: site, node: node, health: c.health, links: links, addrs: addrs, faults: c.faults, drains: c.drains, vsDown: c.vsDown})
	// A working group is not put in FAULT by an interface name this host
	// does not have (its own, or a weight-0 track's): such a typo, pushed
	// to both directors, left the VIPs with no owner. A new group may
	// wait for its interface, as at start.
	for _, gp := range p.groups {
		name := gp.cfg.Name
		if gp.old != nil {
			name = gp.old.Name // a restart or a rename
		}
		if r := c.groups[name]; gp.kind == groupAdd || r == nil || r.g.snap.Load().status.State == vrrp.Fault {
			continue
		}
		if missing := missingLink(gp.cfg, links); missing != "" {
			return prep, fmt.Errorf("group %s: interface %s does not exist; the running group keeps its configuration", gp.cfg.Name, missing)
		}
	}
	for _, gp := range p.groups {
		if gp.kind != groupRestart && gp.kind != groupAdd {
			continue
		}
		in := c.groupInputFor(site, node, gp.cfg)
		in.want, in.peer = want.groups[gp.cfg.Name], c.peer.group(gp.cfg.Name)
		g, err := newGroup(in, c.log, c.hooks, c.emit, kernelDeps(c.socks))
		if err != nil {
			return prep, err
		}
		prep.groups[gp.cfg.Name] = g
		// No stale-VIP cleanup here: the running group may hold them.
		if g.wantsSocket() {
			if err := g.open(time.Now()); err != nil {
				return prep, fmt.Errorf("group %s: %w", gp.cfg.Name, err)
			}
		}
	}
	key, err := loadPairKey(site)
	if err != nil {
		return prep, err
	}
	prep.pairKey = key
	if p.pairBind {
		if pl := c.newPair(site, node, key); pl != nil {
			if err := pl.bind(); err != nil {
				return prep, err
			}
			prep.pair = pl
		}
	}
	if p.control {
		ct, err := listenControl(site.ControlSocket, c)
		if err != nil {
			return prep, err
		}
		prep.control = ct
	}
	if p.stateDir {
		if err := os.MkdirAll(site.StateDir, 0o755); err != nil {
			return prep, fmt.Errorf("state_dir: %w", err)
		}
		if c.ipvs != nil {
			if err := copyIfMissing(filepath.Join(c.site.StateDir, ipvsync.OwnedFile), filepath.Join(site.StateDir, ipvsync.OwnedFile)); err != nil {
				return prep, fmt.Errorf("state_dir: %w", err)
			}
		}
		// The running drains, even none: an old file there must not come
		// back at the next start.
		if err := saveDrains(site.StateDir, c.drains); err != nil {
			return prep, fmt.Errorf("state_dir: %w", err)
		}
	}
	if p.ipvsStart || p.stateDir && c.ipvs != nil {
		t, err := openIPVS(site, c.log)
		if err != nil {
			return prep, err
		}
		prep.ipvs = t
	}
	if p.syncNew {
		h, err := ipvsync.OpenSyncDaemons(*site.Sync)
		if err != nil {
			return prep, fmt.Errorf("connection sync: %w", err)
		}
		prep.sync = h
	}
	// Last: a listener on the port the running one holds means closing
	// that one first, which abort must undo.
	if p.metrics && site.Metrics != "" {
		mt, err := c.listenMetricsReplacing(site.Metrics, prep)
		if err != nil {
			return prep, err
		}
		prep.metrics = mt
	}
	return prep, nil
}

// listenMetricsReplacing listens on addr; when the running listener holds
// the same port it is closed first, and prep remembers to bring it back if
// the reload is refused after all.
func (c *controller) listenMetricsReplacing(addr string, prep *prepared) (*metricsTask, error) {
	mt, err := listenMetrics(addr, c)
	if err == nil || c.metrics == nil || portOf(addr) != portOf(c.metrics.addr) {
		return mt, err
	}
	old := c.metrics.addr
	c.metricsT.stop()
	c.metrics, c.metricsT = nil, nil
	prep.restoreMetrics = old
	return listenMetrics(addr, c)
}

// commit swaps the prepared parts in; nothing here can fail.
func (c *controller) commit(p reloadPlan, l *loaded, prep *prepared) {
	if prep.watch != nil {
		c.watch.stop()
		c.watch = prep.watch
		c.takeLinks(prep.watch.initial)
	}
	// Restarts a previous reload left waiting are superseded by this plan.
	for name, pr := range c.pending {
		pr.g.discard()
		delete(c.pending, name)
	}
	for _, gp := range p.groups {
		if gp.hold {
			c.pending[gp.cfg.Name] = &pendingRestart{cfg: gp.cfg, old: gp.old, g: prep.groups[gp.cfg.Name], what: gp.what}
		}
	}
	c.target, c.site, c.node, c.loadedAt = l.site, p.effective, l.node, time.Now()
	c.stopGroups(p.removed)
	for _, gp := range p.groups {
		switch {
		case gp.kind == groupRestart && !gp.hold:
			c.swapGroup(gp.old.Name, prep.groups[gp.cfg.Name])
		case gp.kind == groupAdd:
			_ = c.startGroup(gp.cfg, prep.groups[gp.cfg.Name])
		}
	}
	// Updated and kept groups get the new configuration from update below.
	switch {
	case prep.pair != nil:
		if c.pairT != nil {
			c.pairT.stop()
		}
		c.pair, c.pairT = prep.pair, startTask(c.ctx, "pair link", c.log, prep.pair.Run)
	case c.pair != nil && len(l.site.Peers(l.node.Name)) == 0:
		c.pairT.stop()
		c.pair, c.pairT, c.peer = nil, nil, peerView{}
	case c.pair != nil:
		c.pair.update(l.site.Name, peerMap(l.site, l.node), prep.pairKey)
	default:
		c.startPair(l.site, l.node, prep.pairKey)
	}
	if prep.control != nil {
		// The request may have come through the old socket: it answers
		// first (see reload).
		c.retired = append(c.retired, c.controlT)
		c.control, c.controlT = prep.control, startTask(c.ctx, "control socket", c.log, prep.control.Run)
	}
	if p.metrics {
		if c.metricsT != nil {
			c.metricsT.stop()
			c.metrics, c.metricsT = nil, nil
		}
		if prep.metrics != nil {
			c.metrics, c.metricsT = prep.metrics, startTask(c.ctx, "metrics", c.log, prep.metrics.Run)
		}
	}
	if prep.ipvs != nil {
		if c.ipvsT != nil {
			c.ipvsT.stop() // state_dir moved: the new reconciler takes over
		}
		c.ipvs, c.ipvsT, c.table = prep.ipvs, startTask(c.ctx, "ipvs", c.log, prep.ipvs.Run), nil
		if l.site.Sync != nil && prep.sync == nil {
			// The old task stopped its daemons; the new one needs a handle.
			if h, err := ipvsync.OpenSyncDaemons(*l.site.Sync); err == nil {
				prep.sync = h
			} else {
				c.log.Error("connection sync: reopening after the state_dir move", "err", err)
			}
		}
	}
	switch {
	case prep.sync != nil:
		c.syncCfg = l.site.Sync // never nil: prep.sync exists only for a [sync]
		c.master = slices.Contains(mapsValues(c.states), vrrp.Master)
		c.ipvs.setSync(syncWant{cfg: c.syncCfg, handle: prep.sync, master: c.master})
	case p.syncStop && c.ipvs != nil:
		c.syncCfg = nil
		c.ipvs.setSync(syncWant{})
	}
	c.checks.setSite(l.site)
	c.pruneDrains("reload")
	c.update()
	c.alignSyncGroups(nil)
	c.publish()
	if c.pair != nil {
		c.pair.notify()
	}
}

// missingLink is the interface g needs to be out of FAULT that links says
// does not exist: its own, or a weight-0 track's; "" when there is none.
func missingLink(g *conf.Group, links map[string]track.LinkState) string {
	if !links[g.Interface].Exists {
		return g.Interface
	}
	for _, t := range g.Track {
		if t.Interface != "" && t.Weight == 0 && !links[t.Interface].Exists {
			return t.Interface
		}
	}
	return ""
}

// renamedFrom is the group of old that gc, a new name, renames: one that
// site no longer has, with the same socket (the same virtual router).
func renamedFrom(old, site *conf.Site, gc *conf.Group) *conf.Group {
	for i := range old.Groups {
		og := &old.Groups[i]
		if site.Group(og.Name) == nil && sockKeyOf(og) == sockKeyOf(gc) {
			return og
		}
	}
	return nil
}

// groupDiff names the fields of a group that changed (socket fields aside).
func groupDiff(a, b *conf.Group) []string {
	var out []string
	if !slices.Equal(a.VIPs, b.VIPs) {
		var add, del []string
		for _, v := range b.VIPs {
			if !slices.Contains(a.VIPs, v) {
				add = append(add, "+"+v.String())
			}
		}
		for _, v := range a.VIPs {
			if !slices.Contains(b.VIPs, v) {
				del = append(del, "-"+v.String())
			}
		}
		if len(add)+len(del) == 0 {
			out = append(out, "vips reordered")
		} else {
			out = append(out, "vips "+strings.Join(append(add, del...), " "))
		}
	}
	if a.Advert != b.Advert {
		out = append(out, fmt.Sprintf("advert %s -> %s", a.Advert, b.Advert))
	}
	av, bv := reflect.ValueOf(*a), reflect.ValueOf(*b)
	for i := 0; i < av.NumField(); i++ {
		f := av.Type().Field(i)
		switch f.Name {
		case "Name", "Interface", "VRID", "Version", "Unicast", "VIPs", "Advert":
			continue
		}
		if !reflect.DeepEqual(av.Field(i).Interface(), bv.Field(i).Interface()) {
			out = append(out, snake(f.Name))
		}
	}
	return out
}

// sockDiff says which socket field of a group changed.
func sockDiff(a, b *conf.Group) []string {
	var out []string
	if a.Interface != b.Interface {
		out = append(out, fmt.Sprintf("interface %s -> %s", a.Interface, b.Interface))
	}
	if a.VRID != b.VRID {
		out = append(out, fmt.Sprintf("vrid %d -> %d", a.VRID, b.VRID))
	}
	if a.Version != b.Version {
		out = append(out, fmt.Sprintf("version %d -> %d", a.Version, b.Version))
	}
	if a.Unicast != b.Unicast {
		out = append(out, fmt.Sprintf("unicast %t -> %t", a.Unicast, b.Unicast))
	}
	if a.IsIPv6() != b.IsIPv6() {
		out = append(out, "address family")
	}
	return out
}

// vsDiff reports virtual servers added, removed or changed. It looks
// them up by name in maps: Site.VirtualServer is a linear search, and
// 10,000 of them took 0.6 s (issue 8).
func vsDiff(a, b *conf.Site) []string {
	var out []string
	inA, inB := vsByName(a), vsByName(b)
	for i := range b.VirtualServers {
		vs := &b.VirtualServers[i]
		switch o := inA[vs.Name]; {
		case o == nil:
			out = append(out, "virtual server "+vs.Name+": added")
		case !reflect.DeepEqual(o, vs):
			out = append(out, "virtual server "+vs.Name+": changed")
		}
	}
	for _, vs := range a.VirtualServers {
		if inB[vs.Name] == nil {
			out = append(out, "virtual server "+vs.Name+": removed")
		}
	}
	return out
}

func vsByName(s *conf.Site) map[string]*conf.VirtualServer {
	m := make(map[string]*conf.VirtualServer, len(s.VirtualServers))
	for i := range s.VirtualServers {
		m[s.VirtualServers[i].Name] = &s.VirtualServers[i]
	}
	return m
}

// snake turns a Go field name into its site-file key (VIPLifetime ->
// vip_lifetime, GARPCount -> garp_count).
func snake(s string) string {
	var b strings.Builder
	for i, r := range s {
		upper := r >= 'A' && r <= 'Z'
		if upper && i > 0 {
			prevLower := s[i-1] >= 'a' && s[i-1] <= 'z'
			nextLower := i+1 < len(s) && s[i+1] >= 'a' && s[i+1] <= 'z'
			if prevLower || nextLower {
				b.WriteByte('_')
			}
		}
		if upper {
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

func peerAddrs(s *conf.Site, node *conf.Node) []netip.Addr {
	var out []netip.Addr
	for _, p := range s.Peers(node.Name) {
		out = append(out, p.Address)
	}
	return out
}

func peerMap(s *conf.Site, node *conf.Node) map[netip.Addr]string {
	m := map[netip.Addr]string{}
	for _, p := range s.Peers(node.Name) {
		m[p.Address] = p.Name
	}
	return m
}

func portOf(hostport string) string {
	i := strings.LastIndexByte(hostport, ':')
	if i < 0 {
		return hostport
	}
	return hostport[i+1:]
}

func maps2[K comparable, V any](m map[K]V) map[K]V {
	out := make(map[K]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// copyIfMissing copies src to dst when dst does not exist (and src does).
func copyIfMissing(src, dst string) error {
	if _, err := os.Stat(dst); err == nil {
		return nil
	}
	b, err := os.ReadFile(src)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

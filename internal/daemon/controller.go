package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"

	"github.com/havip/havip/internal/checks"
	"github.com/havip/havip/internal/conf"
	"github.com/havip/havip/internal/events"
	"github.com/havip/havip/internal/ipvsync"
	"github.com/havip/havip/internal/notify"
	"github.com/havip/havip/internal/pairwire"
	"github.com/havip/havip/internal/track"
	"github.com/havip/havip/internal/vrrp"
	"github.com/havip/havip/internal/vrrpnet"
)

// controller owns the daemon's state. Its fields below the line are
// touched only by run's goroutine; other goroutines send it events
// (emit, ask) and read what it publishes (view).
type controller struct {
	// takeovers: the takeover calls served lately (drill.go)
	takeovers []takeoverRec
	opts      Options
	log       *slog.Logger
	started   time.Time
	events    chan any
	// requests are the control socket's (and the watchdog's): a queue of
	// their own, so that a flood of them, each maybe slow (a reload),
	// never fills the one the groups report to; a group waiting there
	// stopped advertising, and the shutdown, waiting for it, hung.
	requests chan any
	dead     chan struct{} // closed when run stops reading events
	sigs     signals

	view      atomic.Pointer[ctlView]
	mirror    atomic.Pointer[mirrorSnap]     // drains and desired table, for the pair link and status
	pairCache atomic.Pointer[pairLocalCache] // see pairLocal

	// journal is the ordered event log (havip events); any goroutine may
	// append to it (note), appends are ordered by its own lock.
	journal *events.Log
	// socks are the advert sockets the groups share (one per interface
	// and family); safe from any goroutine.
	socks *advertSockets
	// reloads counts reload outcomes for metrics.
	reloadsApplied, reloadsRefused atomic.Uint64
	drillsRun, drillsRefused       atomic.Uint64 // failover drills from this node: run, refused by their pre-checks

	// --- owned by run ---
	ctx      context.Context // the daemon's lifetime; tasks run under it
	target   *conf.Site      // the site file as loaded
	site     *conf.Site      // what runs: target, but pending groups as they were (see pending)
	node     *conf.Node
	loadedAt time.Time
	health   map[string]bool
	links    map[string]track.LinkState
	addrs    map[netip.Addr]track.AddrState
	peer     peerView
	states   map[string]vrrp.State // as last reported by each group
	faults   map[string]string     // each group's own fault (groupFault), for its sync group
	groups   map[string]*groupRun
	pending  map[string]*pendingRestart // restarts that wait until the peer runs them
	inputs   map[string]groupInput      // what each group was last given
	table    *ipvsync.Table             // the desired table: the controller's own, changed in place (others get copies)
	basis    tableBasis                 // what table was derived for
	index    *siteIndex                 // lookups into c.site
	dirty    []int                      // virtual servers whose real servers' health changed since the last update
	syncCfg  *conf.Sync
	master   bool            // the sync daemons were last told this node is master
	vsDown   map[string]bool // virtual server -> quorum lost, as last derived: quorum events and derive's memory for quorum_hysteresis
	last     *reloadResult
	retired  []*taskHandle // replaced by a reload; stopped once its requester has the answer
	drains   *drainSet     // operator drains, as saved in state_dir
	drainRev uint64        // the highest drain-set revision either node has used
	mirrorT  *time.Timer   // runs while a mirror summary is due (mirrorDelay)
	mirrorOn bool          // mirrorT is running

	watch    *linkWatch
	hooks    *notify.Runner
	hooksT   *taskHandle
	control  *controlTask
	controlT *taskHandle
	metrics  *metricsTask
	metricsT *taskHandle
	checks   *healthTask
	checksT  *taskHandle
	ipvs     *ipvsTask
	ipvsT    *taskHandle
	pair     *pairLink
	pairT    *taskHandle
}

type groupRun struct {
	g    *group
	task *taskHandle
}

// ctlView is what the controller publishes for readers: immutable once
// stored, replaced whole.
type ctlView struct {
	site       *conf.Site
	node       conf.Node
	loadedAt   time.Time
	lastReload *reloadResult
	groups     []*group          // sorted by name
	keys       map[string]string // group -> its socket key in the site file (what the pair link says)
	pending    map[string]string // group -> the restart it waits for
	pair       *pairLink
	ipvs       *ipvsTask
	checks     *healthTask
	hooks      *notify.Runner
}

// Requests that want an answer carry a reply channel.
type (
	reloadReq struct {
		at    time.Time
		reply chan *reloadResult // nil for SIGHUP
	}
	failoverReq struct {
		groups []string
		force  bool // past the pre-checks
		back   bool // ask the peer to hand the groups back (havip failover --back)
		reply  chan failoverReply
	}
	failoverReply struct {
		results []drillResult
		err     error
	}
	pingReq struct{ reply chan struct{} }
)

// tableBasis is what a derived table depends on besides health: while it
// stays, a health change re-derives only the services it touches.
type tableBasis struct {
	site   *conf.Site
	drains *drainSet
}

// siteIndex finds virtual servers and real servers of one site by name
// and health key without scanning the whole site.
type siteIndex struct {
	site *conf.Site
	vs   map[string]int       // virtual server name -> position
	rs   map[string]rsOfCheck // checks.RealServerKey -> real server
}

type rsOfCheck struct {
	vs   int
	addr netip.AddrPort
}

func newSiteIndex(site *conf.Site) *siteIndex {
	x := &siteIndex{site: site, vs: make(map[string]int, len(site.VirtualServers)), rs: map[string]rsOfCheck{}}
	for i, vs := range site.VirtualServers {
		x.vs[vs.Name] = i
		for _, rs := range vs.RealServers {
			x.rs[checks.RealServerKey(vs.Name, rs.Address)] = rsOfCheck{i, rs.Address}
		}
	}
	return x
}

// siteIndex returns the index of the current site, built again when the
// site changed.
func (c *controller) siteIndex() *siteIndex {
	if c.index == nil || c.index.site != c.site {
		c.index = newSiteIndex(c.site)
	}
	return c.index
}

// mirrorDelay is how long after a health change the mirror's summary of
// the desired table is refreshed: summarizing is in proportion to the
// whole table, so a rack of real servers failing at once costs one, not
// one per real server. A new site or drains refresh it at once.
const mirrorDelay = 100 * time.Millisecond

// mirrorSnap is what this node says about its operator state and desired
// table: immutable once stored.
type mirrorSnap struct {
	drains *drainSet
	table  pairTable
}

func newController(opts Options, log *slog.Logger, l *loaded, sigs signals) *controller {
	c := &controller{
		opts: opts, log: log, started: time.Now(), sigs: sigs, journal: events.New(eventRing, nil), vsDown: map[string]bool{},
		events: make(chan any, 1024), requests: make(chan any, 16), dead: make(chan struct{}),
		target: l.site, site: l.site, node: l.node, loadedAt: time.Now(), pending: map[string]*pendingRestart{},
		health: map[string]bool{}, links: map[string]track.LinkState{}, addrs: map[netip.Addr]track.AddrState{},
		states: map[string]vrrp.State{}, faults: map[string]string{}, groups: map[string]*groupRun{}, inputs: map[string]groupInput{},
	}
	c.socks = newAdvertSockets(vrrpnet.Listen, log)
	c.mirrorT = time.NewTimer(time.Hour)
	c.mirrorT.Stop()
	return c
}

// eventRing is how many events havip events can show.
const eventRing = 1024

// note appends an event to the journal (havip events). Safe from any
// goroutine; for drains: c.note(events.Drain, events.Fields{"virtual_server": vs, "real_server": rs}).
func (c *controller) note(k events.Kind, f events.Fields) { c.journal.Emit(k, f) }

// emit hands the controller an event; after run has stopped, events are
// dropped.
func (c *controller) emit(ev any) {
	select {
	case c.events <- ev:
	case <-c.dead:
	}
}

// ask sends a request and waits for its answer channel to be filled by
// the controller (or for ctx).
func ask[T any](ctx context.Context, c *controller, mk func(chan T) any) (T, error) {
	reply := make(chan T, 1)
	var zero T
	select {
	case c.requests <- mk(reply):
	case <-c.dead:
		return zero, fmt.Errorf("the daemon is stopping")
	case <-ctx.Done():
		return zero, ctx.Err()
	}
	select {
	case v := <-reply:
		return v, nil
	case <-ctx.Done():
		// An answer given as ctx ended still counts: a reload that moved
		// the control socket stops the task that asked, after replying.
		select {
		case v := <-reply:
			return v, nil
		default:
		}
		return zero, ctx.Err()
	}
}

// run starts the tasks, serves events until ctx ends or a stop signal,
// and stops the tasks again. Start order: the link watch (link and address
// states are known before any group decides), notify hooks, the control
// socket (status works from here on), metrics, health checks, IPVS, the
// pair link, the groups. Stop order: see shutdown.
func (c *controller) run(ctx context.Context) (err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.ctx = ctx
	defer close(c.dead)
	defer func() {
		if err != nil {
			c.shutdown()
		}
	}()

	w, err := startLinkWatch(ctx, watchWant(c.node, c.site), c.log)
	if err != nil {
		return err
	}
	c.watch = w
	c.takeLinks(w.initial)

	if c.drains, err = loadDrains(c.site.StateDir, c.log); err != nil {
		return fmt.Errorf("drains: %w", err)
	}
	c.drainRev = c.drains.rev
	c.pruneDrains("start")

	c.hooks = notify.New(c.log, notify.Options{QueueLen: 64, DrainTimeout: hookDrain, OutputLimit: 4096})
	c.hooksT = startTask(ctx, "notify", c.log, c.hooks.Run)
	c.publish() // readers (status, metrics, the pair link) never see no view

	ct, err := listenControl(c.site.ControlSocket, c)
	if err != nil {
		return err
	}
	c.control, c.controlT = ct, startTask(ctx, "control socket", c.log, ct.Run)
	if c.site.Metrics != "" {
		mt, err := listenMetrics(c.site.Metrics, c)
		if err != nil {
			return err
		}
		c.metrics, c.metricsT = mt, startTask(ctx, "metrics", c.log, mt.Run)
	}
	c.checks = newHealthTask(c.log, c.emit)
	c.checks.setSite(c.site)
	c.checksT = startTask(ctx, "health checks", c.log, c.checks.Run)
	if needsIPVS(c.site) {
		t, err := openIPVS(c.site, c.log)
		if err != nil {
			return err
		}
		if c.site.Sync != nil {
			h, err := ipvsync.OpenSyncDaemons(*c.site.Sync)
			if err != nil {
				t.kernel.Close()
				return fmt.Errorf("connection sync: %w", err)
			}
			t.setSync(syncWant{cfg: c.site.Sync, handle: h})
			c.syncCfg = c.site.Sync
		}
		c.ipvs, c.ipvsT = t, startTask(ctx, "ipvs", c.log, t.Run)
	}
	key, err := loadPairKey(c.site)
	if err != nil {
		return err
	}
	c.startPair(c.site, c.node, key)
	c.update() // the table, derived once, before the groups start
	for i := range c.site.Groups {
		if err := c.startGroup(&c.site.Groups[i], nil); err != nil {
			return err
		}
	}
	c.update()
	c.publish()
	c.log.Info("havip running", "site", c.site.Name, "node", c.node.Name, "revision", c.site.Revision,
		"groups", len(c.site.Groups), "virtual_servers", len(c.site.VirtualServers), "version", c.opts.Version)
	_, _ = sd.SdNotify(false, sd.SdNotifyReady)
	go c.watchdog(ctx)

	for {
		select {
		case <-ctx.Done():
			c.shutdown()
			return nil
		case <-c.sigs.hup:
			c.reload(reloadReq{at: time.Now()})
		case s := <-c.sigs.stop:
			c.log.Info("stopping", "signal", s.String())
			_, _ = sd.SdNotify(false, sd.SdNotifyStopping)
			c.shutdown()
			return nil
		case u, ok := <-c.watch.ch:
			if !ok {
				c.watch.ch = nil // ctx ended
				continue
			}
			c.takeLinks([]track.Update{u})
			c.update()
		case <-c.mirrorT.C:
			c.mirrorOn = false
			c.summarizeMirror()
		case ev := <-c.events:
			c.handle(ev)
		case req := <-c.requests:
			c.handle(req)
		}
	}
}

// hookDrain bounds how long queued notify hooks may still run at shutdown,
// well inside the unit's TimeoutStopSec (15 s).
const hookDrain = 5 * time.Second

func (c *controller) handle(ev any) {
	switch ev := ev.(type) {
	case checks.Result:
		was, known := c.health[ev.Key]
		c.health[ev.Key] = ev.Up
		if known && was == ev.Up || !known && ev.Up {
			return // unchanged, or the optimistic start confirmed
		}
		c.log.Info("health changed", "target", ev.Key, "up", ev.Up, "reason", ev.Reason)
		x := c.siteIndex()
		c.note(events.Health, healthFields(x, ev))
		if rs, ok := x.rs[ev.Key]; ok {
			c.dirty = append(c.dirty, rs.vs)
		}
		c.update()
	case groupChanged:
		c.groupChanged(ev)
	case groupFault:
		if r := c.groups[ev.g.name]; r != nil && r.g == ev.g && c.faults[ev.g.name] != ev.fault {
			c.faults[ev.g.name] = ev.fault
			c.update()
		}
	case vipsRemoved:
		c.handOver(ev)
	case peerView:
		defer c.finishPending()
		left := peerLeft(c.peer, ev)
		c.peer = ev
		c.adoptDrains(ev)
		c.update()
		if len(left) > 0 {
			c.alignSyncGroups(left)
		}
	case peerDied:
		c.peerDied(ev)
	case peerCall:
		c.peerCall(ev)
	case peerYielded:
		if r := c.groups[ev.group]; r != nil {
			g := r.g
			g.post(func() {
				if g.m.Status().State == vrrp.Master {
					g.log.Info("peer stopped being master: re-announcing the VIPs")
					g.claim.Announce(context.Background())
				}
			})
		}
	case reloadReq:
		c.reload(ev)
	case failoverReq:
		c.failover(ev)
	case pingReq:
		ev.reply <- struct{}{}
	case drainReq:
		ev.reply <- c.drain(ev)
	default:
		c.log.Error("controller: unknown event", "type", fmt.Sprintf("%T", ev))
	}
}

// peerDied is the fast path: the peer's daemon died as master of
// ev.groups (its kernel closed the authenticated pair link without a
// bye). Each of those groups that is Backup here takes over at once;
// the peer's adverts, if in fact it still sends them, win it back by the
// usual election.
func (c *controller) peerDied(ev peerDied) {
	// Counted once per death, and only when a group did take over (not
	// when we were master already, or the groups are not ours).
	var counted sync.Once
	pair := c.pair
	for _, name := range ev.groups {
		r := c.groups[name]
		if r == nil {
			continue
		}
		g := r.g
		why := "the peer's daemon died (its kernel closed the pair link without notice)"
		g.post(func() {
			if g.m.Status().State == vrrp.Backup {
				g.log.Warn("taking over at once", "reason", why, "peer", ev.node)
				g.exec(time.Now(), g.m.TakeOver(time.Now(), why))
				counted.Do(pair.tookOverFast)
				g.publish()
			}
		})
	}
}

// peerCall answers a request from the peer.
func (c *controller) peerCall(ev peerCall) {
	switch ev.call.Kind {
	case callTakeover:
		c.takeover(ev) // drill.go
	case callDrill:
		c.drillBack(ev)
	case callAbandon:
		c.abandonTakeover(ev)
	default:
		ev.reply(pairAnswer{Err: fmt.Sprintf("unknown request %q", ev.call.Kind)})
	}
}

// takeLinks folds link and address updates into the controller's state.
func (c *controller) takeLinks(us []track.Update) {
	for _, u := range us {
		switch {
		case u.Link != nil:
			old, had := c.links[u.Link.Name]
			c.links[u.Link.Name] = *u.Link
			if had && old.Index != 0 && u.Link.Index != 0 && old.Index != u.Link.Index {
				c.log.Info("interface re-created", "interface", u.Link.Name, "old_index", old.Index, "index", u.Link.Index)
			}
		case u.Addr != nil:
			old, had := c.addrs[u.Addr.Addr]
			c.addrs[u.Addr.Addr] = *u.Addr
			if had && old.Present && !u.Addr.Present {
				c.vipGone(u.Addr.Addr)
			}
		}
	}
}

// vipGone has the groups with VIP a put it back if they are master: an
// operator or a network manager deleted it behind their back (their own
// releases are no-ops, they are not master then). The lifetime refresh
// would put it back too, but only up to vip_lifetime/3 later.
func (c *controller) vipGone(a netip.Addr) {
	for name, r := range c.groups {
		if gc := c.site.Group(name); gc != nil && slices.ContainsFunc(gc.VIPs, func(p netip.Prefix) bool { return p.Addr() == a }) {
			r.g.heal()
		}
	}
}

// update derives what is wanted from the current inputs and hands each
// part to its owner; a part that did not change is not sent.
func (c *controller) update() {
	in, basis := c.deriveInputs(c.dirty)
	c.dirty = nil
	w := derive(in)
	for name, r := range c.groups {
		in := c.groupInputFor(c.site, c.node, c.site.Group(name))
		in.want = w.groups[name]
		in.peer = c.peer.group(name)
		if reflect.DeepEqual(in, c.inputs[name]) {
			continue
		}
		c.inputs[name] = in
		r.g.mail.put(in)
	}
	if in.prev == nil {
		c.takeTable(w.table, basis)
		return
	}
	// Only the services of the real servers whose health changed.
	var set []ipvsync.Service
	for _, s := range w.set {
		old := &c.table.Services[in.vsIndex[s.Name]]
		if old.Equal(&s) {
			continue
		}
		c.noteQuorum(s)
		*old = s
		set = append(set, s)
	}
	if len(set) == 0 {
		return
	}
	if c.ipvs != nil {
		c.ipvs.setTable(ipvsync.Update{Set: set})
	}
	if !c.mirrorOn {
		c.mirrorOn = true
		c.mirrorT.Reset(mirrorDelay)
	}
}

// takeTable makes t, derived whole for basis, the desired table: the
// reconciler gets a copy, and the mirror is summarized at once.
func (c *controller) takeTable(t ipvsync.Table, basis tableBasis) {
	for _, s := range t.Services {
		c.noteQuorum(s)
	}
	same := c.table != nil && slices.EqualFunc(c.table.Services, t.Services, func(a, b ipvsync.Service) bool { return a.Equal(&b) })
	if c.ipvs != nil && !same {
		cp := ipvsync.Table{Services: slices.Clone(t.Services)}
		c.ipvs.setTable(ipvsync.Update{Table: &cp})
	}
	c.table, c.basis = &t, basis
	if m := c.mirror.Load(); m == nil || m.drains != c.drains || !same {
		c.summarizeMirror()
	}
}

// deriveInputs are derive's inputs now: with the table derived before
// for this site and drains, when there is one, so that only the virtual
// servers at dirty are derived again (none: the groups' part alone).
func (c *controller) deriveInputs(dirty []int) (inputs, tableBasis) {
	in := inputs{site: c.site, node: c.node, health: c.health, links: c.links, addrs: c.addrs, faults: c.faults, drains: c.drains, vsDown: c.vsDown,
		vsIndex: c.siteIndex().vs}
	basis := tableBasis{c.site, c.drains}
	if c.table != nil && c.basis == basis {
		in.prev, in.dirty = c.table, dirty
	}
	return in, basis
}

// noteQuorum records whether s is down, with an event when that changed.
func (c *controller) noteQuorum(s ipvsync.Service) {
	if was, known := c.vsDown[s.Name]; known && was != s.Down || !known && s.Down {
		c.note(events.Quorum, events.Fields{"virtual_server": s.Name, "up": !s.Down})
	}
	c.vsDown[s.Name] = s.Down
}

// summarizeMirror publishes what the pair link says about our drains and
// desired table.
func (c *controller) summarizeMirror() {
	if c.mirrorOn {
		c.mirrorT.Stop()
		c.mirrorOn = false
	}
	c.mirror.Store(&mirrorSnap{drains: c.drains, table: summarizeTable(*c.table)})
	if c.pair != nil {
		c.pair.notify()
	}
}

// groupInputFor is a group's input under site, before derive fills want.
func (c *controller) groupInputFor(site *conf.Site, node *conf.Node, gc *conf.Group) groupInput {
	in := groupInput{cfg: gc, node: *node, twoNode: len(site.Nodes) == 2, rev: site.Revision, sources: site.AdvertSources(gc, node.Name)}
	for _, p := range site.Peers(node.Name) {
		in.peers = append(in.peers, p.Address)
	}
	return in
}

// startGroup builds, prepares and starts the group gc of the current site.
// g, when not nil, is already built and prepared (by a reload).
func (c *controller) startGroup(gc *conf.Group, g *group) error {
	if g == nil {
		in := c.groupInputFor(c.site, c.node, gc)
		// Not the whole table again for each group started (a site of
		// 10,000 virtual servers takes tens of ms to derive): the one the
		// controller holds, when it is this site's.
		din, _ := c.deriveInputs(nil)
		in.want = derive(din).groups[gc.Name]
		in.peer = c.peer.group(gc.Name)
		var err error
		if g, err = newGroup(in, c.log, c.hooks, c.emit, kernelDeps(c.socks)); err != nil {
			return err
		}
		g.prepare()
	}
	c.inputs[gc.Name] = g.in
	c.groups[gc.Name] = &groupRun{g: g, task: startTask(c.ctx, "group "+gc.Name, c.log, g.Run)}
	return nil
}

// stopGroups stops the named groups in parallel (all their priority-0
// adverts go out at once) and waits for them.
func (c *controller) stopGroups(names []string) {
	var rs []*groupRun
	for _, n := range names {
		if r := c.groups[n]; r != nil {
			rs = append(rs, r)
			r.task.cancel()
			delete(c.groups, n)
			delete(c.inputs, n)
			delete(c.states, n)
			delete(c.faults, n)
		}
	}
	for _, r := range rs {
		r.task.wait()
	}
}

// groupChanged follows a state change: the pair link tells the peer at
// once, the sync daemons follow the node's role, and the other groups of a
// sync group follow.
func (c *controller) groupChanged(ev groupChanged) {
	r := c.groups[ev.g.name]
	if r == nil || r.g != ev.g {
		return // a group a reload has replaced
	}
	c.states[ev.g.name] = ev.to
	f := events.Fields{"group": ev.g.name, "from": ev.from.String(), "to": ev.to.String()}
	if ev.reason != "" {
		f["reason"] = ev.reason
	}
	c.note(events.Transition, f)
	if c.pair != nil {
		c.pair.notify()
	}
	c.followRole()
	c.followSyncGroup(ev)
}

// followRole runs the master sync daemon while any group is master here.
func (c *controller) followRole() {
	master := slices.Contains(mapsValues(c.states), vrrp.Master)
	if c.ipvs == nil || c.syncCfg == nil || master == c.master {
		return
	}
	c.master = master
	c.ipvs.setSync(syncWant{cfg: c.syncCfg, master: master})
}

func (m syncMove) String() string {
	switch m {
	case syncResign:
		return "left MASTER"
	case syncTakeOver:
		return "became MASTER"
	}
	return "stays"
}

func mapsValues[K comparable, V any](m map[K]V) []V {
	out := make([]V, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// loadPairKey reads the site's pair key (nil when it names none).
func loadPairKey(site *conf.Site) (pairwire.Key, error) {
	if site.PairKey == "" {
		return nil, nil
	}
	k, err := pairwire.LoadKey(site.PairKey)
	if err != nil {
		return nil, fmt.Errorf("pair_key: %w", err)
	}
	return k, nil
}

// startPair starts the pair link for site (none for a one-node site).
func (c *controller) startPair(site *conf.Site, node *conf.Node, key pairwire.Key) {
	p := c.newPair(site, node, key)
	if p == nil {
		return
	}
	c.pair, c.pairT = p, startTask(c.ctx, "pair link", c.log, p.Run)
}

func (c *controller) newPair(site *conf.Site, node *conf.Node, key pairwire.Key) *pairLink {
	peers := map[netip.Addr]string{}
	for _, p := range site.Peers(node.Name) {
		peers[p.Address] = p.Name
	}
	if len(peers) == 0 {
		return nil
	}
	p := newPairLink(site.Name, node.Name, node.Address, site.PairPort, peers, key, c.pairLocal, c.emit, c.dualGrace, c.log)
	p.note = c.note
	return p
}

// pairLocal is what the pair link says about this node: read from the
// published view and group snapshots, safe from any goroutine. The pair
// link asks several times a second (each message sent and heard); while
// nothing it says changed, it gets the last one again rather than a new
// map of every group: at 255 groups those maps were most of a backup's
// garbage and a tenth of its CPU (issue 8). Callers never change it.
func (c *controller) pairLocal() pairLocal {
	v := c.view.Load()
	if v == nil {
		return pairLocal{}
	}
	m := c.mirror.Load()
	if old := c.pairCache.Load(); old != nil && old.view == v && old.mirror == m && old.current() {
		return old.l
	}
	l := pairLocal{rev: v.site.Revision, groups: make(map[string]pairGroupMsg, len(v.groups))}
	if m != nil {
		l.drains, l.table = m.drains.wire(), &m.table
	}
	says := make([]*pairGroupMsg, len(v.groups))
	for i, g := range v.groups {
		says[i] = g.snap.Load().says
		msg := *says[i]
		msg.Key = v.keys[g.name]
		l.groups[g.name] = msg
	}
	c.pairCache.Store(&pairLocalCache{view: v, mirror: m, says: says, l: l})
	return l
}

// pairLocalCache is the last pairLocal built and what it was built from:
// the view, the mirror snapshot and what each of the view's groups said.
type pairLocalCache struct {
	view   *ctlView
	mirror *mirrorSnap
	says   []*pairGroupMsg // by index in view.groups: each group's snapshot's says
	l      pairLocal
}

// current: every group of the view still says what it said (a group
// keeps the pointer while it says the same).
func (pc *pairLocalCache) current() bool {
	for i, g := range pc.view.groups {
		if g.snap.Load().says != pc.says[i] {
			return false
		}
	}
	return true
}

// dualGrace is how long both directors may claim a group before it counts
// as a dual master: enough for a normal election to settle.
func (c *controller) dualGrace(group string) time.Duration {
	v := c.view.Load()
	if v != nil {
		if g := v.site.Group(group); g != nil {
			return time.Second + 3*g.Advert
		}
	}
	return time.Second
}

// publish stores a new view for readers.
func (c *controller) publish() {
	v := &ctlView{site: c.site, node: *c.node, loadedAt: c.loadedAt, lastReload: c.last,
		pair: c.pair, ipvs: c.ipvs, checks: c.checks, hooks: c.hooks,
		keys: map[string]string{}, pending: map[string]string{}}
	for i := range c.target.Groups {
		g := &c.target.Groups[i]
		v.keys[g.Name] = sockKeyOf(g).String()
	}
	for name, p := range c.pending {
		v.pending[name] = fmt.Sprintf("restart (%s) waits until the peer runs it", strings.Join(p.what, ", "))
	}
	for _, r := range c.groups {
		v.groups = append(v.groups, r.g)
	}
	sort.Slice(v.groups, func(i, j int) bool { return v.groups[i].name < v.groups[j].name })
	c.view.Store(v)
}

// shutdown stops every task in this order: the groups, in parallel
// (priority-0 adverts, VIPs released: the peer takes over at once); the
// pair link (its last message carries the final states); health checks;
// IPVS (the sync daemons stop, the table stays as configured); notify
// hooks (what is queued runs within hookDrain); metrics; the control
// socket; the link watch.
func (c *controller) shutdown() {
	if c.pair != nil {
		// Before anything closes: the peer must read what follows as a
		// planned stop, not as this daemon's death.
		c.pair.bye("stopping")
	}
	names := make([]string, 0, len(c.groups))
	for n := range c.groups {
		names = append(names, n)
	}
	c.stopGroups(names)
	for name, p := range c.pending {
		p.g.discard()
		delete(c.pending, name)
	}
	c.publish()
	for _, t := range []*taskHandle{c.pairT, c.checksT, c.ipvsT, c.hooksT, c.metricsT, c.controlT} {
		if t != nil {
			t.stop()
		}
	}
	if c.watch != nil {
		c.watch.stop()
	}
	c.log.Info("stopped")
}

// watchdog pets systemd only while the controller and every group answer.
func (c *controller) watchdog(ctx context.Context) {
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
		pctx, cancel := context.WithTimeout(ctx, every/3)
		_, err := ask(pctx, c, func(r chan struct{}) any { return pingReq{reply: r} })
		ok := err == nil
		if !ok {
			c.log.Error("watchdog: controller not responding", "err", err)
		}
		if v := c.view.Load(); ok && v != nil {
			for _, g := range v.groups {
				if err := g.do(pctx, func() {}); err != nil {
					ok = false
					c.log.Error("watchdog: group not responding", "group", g.name, "err", err)
				}
			}
		}
		cancel()
		if ok {
			_, _ = sd.SdNotify(false, sd.SdNotifyWatchdog)
		}
	}
}

func needsIPVS(s *conf.Site) bool { return len(s.VirtualServers) > 0 || s.Sync != nil }

// watchWant is every interface the groups of sites depend on, this
// node's address and their VIPs.
func watchWant(node *conf.Node, sites ...*conf.Site) track.Want {
	set := map[string]bool{}
	for _, site := range sites {
		for _, g := range site.Groups {
			set[g.Interface] = true
			for _, t := range g.Track {
				if t.Interface != "" {
					set[t.Interface] = true
				}
			}
		}
	}
	addrs := map[netip.Addr]bool{node.Address: true}
	for _, site := range sites {
		for _, g := range site.Groups {
			for _, p := range g.VIPs {
				addrs[p.Addr()] = true // see vipGone
			}
		}
	}
	var w track.Want
	for n := range set {
		w.Links = append(w.Links, n)
	}
	for a := range addrs {
		w.Addrs = append(w.Addrs, a)
	}
	sort.Strings(w.Links)
	slices.SortFunc(w.Addrs, netip.Addr.Compare)
	return w
}

// healthFields describes a health change: a real server's check names its
// virtual server and real server, a named [[check]] its name.
func healthFields(x *siteIndex, r checks.Result) events.Fields {
	f := events.Fields{"target": r.Key, "up": r.Up}
	if r.Reason != "" {
		f["reason"] = r.Reason
	}
	if rs, ok := x.rs[r.Key]; ok {
		f["virtual_server"], f["real_server"] = x.site.VirtualServers[rs.vs].Name, rs.addr.String()
		return f
	}
	for _, ch := range x.site.Checks {
		if checks.CheckKey(ch.Name) == r.Key {
			f["check"] = ch.Name
		}
	}
	return f
}

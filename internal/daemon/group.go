package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/havip/havip/internal/conf"
	"github.com/havip/havip/internal/notify"
	"github.com/havip/havip/internal/vip"
	"github.com/havip/havip/internal/vrrp"
	"github.com/havip/havip/internal/vrrpnet"
)

// A group runs one [[vrrp]] instance on one goroutine: the state machine,
// its advert socket, the VIP claimer and the advertised address list. It
// takes its configuration and what derive wants from a mailbox the
// controller fills (the newest input wins, the controller never waits on
// a group), heals its socket by itself (reopened when the interface comes
// back with a new index, or after a read or send error, with backoff),
// and publishes a snapshot after every step for status and metrics.

// sockKey is what the advert socket is made of: changing any of it needs
// a new group (see reload.go); everything else is changed in place.
type sockKey struct {
	iface   string
	vrid    uint8
	version int
	unicast bool
	v6      bool
}

func (k sockKey) String() string {
	mode, fam := "multicast", "inet"
	if k.unicast {
		mode = "unicast"
	}
	if k.v6 {
		fam = "inet6"
	}
	return fmt.Sprintf("%s vrid %d v%d %s %s", k.iface, k.vrid, k.version, mode, fam)
}

func sockKeyOf(g *conf.Group) sockKey {
	return sockKey{iface: g.Interface, vrid: g.VRID, version: g.Version, unicast: g.Unicast, v6: g.IsIPv6()}
}

// groupInput is everything a group runs with.
type groupInput struct {
	cfg   *conf.Group // part of an immutable loaded site
	node  conf.Node
	peers []netip.Addr // unicast destinations: the other directors
	// sources: where adverts may come from (conf.Site.AdvertSources);
	// nil accepts any. A peer's link-local learned later belongs here.
	sources []netip.Prefix
	twoNode bool
	rev     string // revision of the site file cfg comes from
	want    groupWant
	peer    peerGroup
}

// claimer is what a group needs of its VIPs: *vip.Claimer in production,
// a fake in the group's unit tests.
type claimer interface {
	Claim(ctx context.Context) error
	ClaimSome(ctx context.Context, ps []netip.Prefix) error
	Refresh() error
	Announce(ctx context.Context)
	Release() error
	ReleaseSome(ps []netip.Prefix) error
	RemoveStale() (int, error)
	Set(vips []netip.Prefix, opt vip.Options) (added, removed []netip.Prefix, err error)
	Counters() (garpSent, naSent, sendErrors uint64)
	Close() error
}

var _ claimer = (*vip.Claimer)(nil)

// groupDeps are the kernel-facing parts a group is built with.
type groupDeps struct {
	socks      *advertSockets // the daemon's, shared by every group
	newClaimer func(ifname string, vips []netip.Prefix, opt vip.Options) (claimer, error)
	// acceptLocal sets net.ipv4.conf.IFNAME.accept_local to 1 and says
	// whether it was not already.
	acceptLocal func(ifname string) (changed bool, err error)
}

// kernelDeps are the real ones: raw sockets (socks, the daemon's own),
// netlink and sysctls.
func kernelDeps(socks *advertSockets) groupDeps {
	return groupDeps{socks: socks, newClaimer: kernelClaimer, acceptLocal: kernelAcceptLocal}
}

func kernelClaimer(ifname string, vips []netip.Prefix, opt vip.Options) (claimer, error) {
	c, err := vip.New(ifname, vips, opt)
	if err != nil {
		return nil, err
	}
	return offStack{c}, nil
}

func kernelAcceptLocal(ifname string) (bool, error) {
	path := "/proc/sys/net/ipv4/conf/" + ifname + "/accept_local"
	b, err := os.ReadFile(path)
	if err != nil || strings.TrimSpace(string(b)) == "1" {
		return false, err
	}
	return true, os.WriteFile(path, []byte("1"), 0o644)
}

// groupChanged tells the controller about a state change.
type groupChanged struct {
	g        *group
	from, to vrrp.State
	reason   string
	at       time.Time // when; zero for what holds now (alignSyncGroups)
}

// Socket and claim retry bounds.
const (
	minBackoff     = 100 * time.Millisecond
	maxBackoff     = 5 * time.Second
	claimAttempts  = 3
	claimRetry     = 200 * time.Millisecond
	minClaimPause  = 5 * time.Second // FAULT after failed claims lasts this, doubling
	maxClaimPause  = time.Minute
	healthySocket  = 10 * time.Second // a socket that lasted this long resets the backoff
	logEvery       = 10 * time.Second // rate limit of repeated socket errors in the log
	rxBufferSize   = 65535            // fits any advert (at most 255 IPv6 addresses) and more
	rxQueue        = 256
	placeholderSrc = "fe80::" // an IPv6 group's primary before its link-local exists (it is in FAULT then)
)

type group struct {
	name   string
	sock   sockKey
	log    *slog.Logger
	hooks  *notify.Runner
	events func(any) // to the controller; never blocks for long
	deps   groupDeps

	spokenFor   *conf.Group // the configuration spokenCache is of
	spokenCache spoken

	mail *mailbox[groupInput]
	cmds chan func()
	snap atomic.Pointer[groupSnap]
	done chan struct{}

	// quiet, set before the task is cancelled, makes the stop silent: the
	// group is replaced by an instance that takes over its state (see
	// controller.swapGroup), so no priority-0 advert, no notify hook, and
	// the VIPs stay when the successor holds them on the same interface.
	quiet atomic.Pointer[quietStop]
	// resume is the state to start in instead of an election: that of
	// the instance this one replaces. Set before Run.
	resume vrrp.State
	// healing: a heal is queued (see heal).
	healing atomic.Bool

	// Owned by the run goroutine.
	in        groupInput
	m         *vrrp.Machine
	claim     claimer
	lists     advertLists
	conn      *sockHandle // nil: none
	connIdx   int         // ifindex and source of the last open attempt
	connSrc   netip.Addr
	lastMC    vrrp.Config // what the machine was last configured with
	openedAt  time.Time
	sockFault string // why there is no socket, "" when there is
	backoff   time.Duration
	nextOpen  time.Time // no new socket before this
	reopenAt  time.Time // a retry is due then
	openLog   rateLog
	rx        chan *rxPacket // pointers: 255 groups' queues of rxQueue packets each took 10 MB
	sockErrs  chan sockErr
	sendLog   rateLog
	readLog   rateLog
	// strangerLog: adverts from hosts that are no director.
	strangerLog rateLog

	claimFails   int
	claimErr     string
	claimRetryAt time.Time
	claimFault   string    // FAULT after repeated claim failures
	claimUntil   time.Time // when the claim fault is lifted for a new try
	claimPause   time.Duration

	reported string // ownFault as last told the controller
	healLog  rateLog

	lastRx                                  time.Time
	sendErrors, readErrors, reopens, rxDrop uint64

	// A failover drill's watch for the peer's first advert (see
	// watchFirstAdvert): since when, and what it heard.
	drillSince, drillFirst time.Time
	drillSrc               netip.Addr
}

type quietStop struct{ keepVIPs bool }

type rxPacket struct {
	b    []byte
	meta vrrpnet.Meta
	at   time.Time
}

// groupSnap is what a group publishes.
type groupSnap struct {
	cfg        *conf.Group
	rev        string
	status     vrrp.Status
	base, prio uint8
	fault      string
	tracks     []trackState
	adv        []netip.Addr
	holding    bool   // advertising the peer's list, not ours (rolling push)
	spoken     spoken // what cfg has the group say
	// says is what the group tells the pair link (without the key, which
	// is the controller's), the previous snapshot's pointer while it is
	// the same (see controller.pairLocal).
	says       *pairGroupMsg
	src        netip.Addr
	socket     string // why there is no socket
	claimErr   string
	lastRx     time.Time
	sendErrors uint64
	readErrors uint64
	reopens    uint64
	rxDrop     uint64
	garp       uint64
	na         uint64
	annErrors  uint64 // GARP/NA that could not be sent
}

// newGroup builds a group from its first input; it opens nothing yet.
func newGroup(in groupInput, log *slog.Logger, hooks *notify.Runner, events func(any), deps groupDeps) (*group, error) {
	g := &group{
		deps:     deps,
		name:     in.cfg.Name,
		sock:     sockKeyOf(in.cfg),
		log:      log.With("group", in.cfg.Name),
		hooks:    hooks,
		events:   events,
		mail:     newMailbox[groupInput](),
		cmds:     make(chan func(), 64),
		done:     make(chan struct{}),
		in:       in,
		rx:       make(chan *rxPacket, rxQueue),
		sockErrs: make(chan sockErr, 4),
		backoff:  minBackoff,
		lists:    newAdvertLists(cfgSpoken(in.cfg)),
	}
	m, err := vrrp.NewMachine(g.machineConfig())
	if err != nil {
		return nil, fmt.Errorf("group %s: %w", g.name, err)
	}
	g.m, g.lastMC = m, g.machineConfig()
	claim, err := deps.newClaimer(in.cfg.Interface, in.cfg.VIPs, g.vipOptions())
	if err != nil {
		return nil, fmt.Errorf("group %s: %w", g.name, err)
	}
	g.claim = claim
	g.publish()
	return g, nil
}

func (g *group) machineConfig() vrrp.Config {
	cfg := g.in.cfg
	src := g.in.want.source
	if !src.IsValid() {
		src = g.in.node.Address
		if cfg.IsIPv6() {
			src = netip.MustParseAddr(placeholderSrc)
		}
	}
	advert := cfg.Advert
	if g.lists.adv.advert != 0 {
		advert = g.lists.adv.advert // v2: the interval the peer knows, during a rolling push
	}
	return vrrp.Config{
		VRID:         cfg.VRID,
		Version:      uint8(cfg.Version),
		Priority:     g.in.want.base,
		Advert:       advert,
		Preempt:      cfg.Preempt,
		PreemptDelay: cfg.PreemptDelay,
		Accept:       cfg.Accept,
		Primary:      src,
		Addrs:        g.lists.adv.addrs,
		AlsoAccept:   g.lists.alsoAccept(prefixAddrs(cfg.VIPs)),
		TwoNode:      g.in.twoNode,
		Sources:      g.in.sources,
		AdvertGrid:   advert / advertGridSteps,
	}
}

// advertGridSteps: a master's adverts fall on a grid of a tenth of their
// interval (vrrp.Config.AdvertGrid), never more than 5% early or late.
// Groups of one interval then share at most ten instants a cycle, and
// the peer's reader takes a burst of adverts in one wake-up: at 255
// groups that cut both directors' CPU (README "Measured").
const advertGridSteps = 10

// cfgSpoken is what the group's own configuration has it say.
func cfgSpoken(cfg *conf.Group) spoken {
	return spokenOf(prefixAddrs(cfg.VIPs), cfg.Advert, cfg.Version)
}

// spoken is cfgSpoken of the group's configuration, worked out once per
// configuration: at 255 groups it was rebuilt for every input, snapshot
// and pair-link message (issue 8). Its addrs are shared, never changed.
func (g *group) spoken() spoken {
	if g.spokenFor != g.in.cfg {
		g.spokenFor, g.spokenCache = g.in.cfg, cfgSpoken(g.in.cfg)
	}
	return g.spokenCache
}

func (g *group) vipOptions() vip.Options {
	return vip.Options{
		Lifetime:     g.in.cfg.VIPLifetime,
		GARPCount:    g.in.cfg.GARPCount,
		GARPInterval: g.in.cfg.GARPInterval,
		Owner:        g.in.node.Address,
		Logger:       g.log,
	}
}

// prepare removes VIPs a crashed run left behind and opens the socket if
// the interface is there. Nothing here stops the daemon: a missing
// interface or a socket that cannot be opened leaves the group waiting in
// FAULT, retrying (a reload, though, is refused for a socket it cannot
// open: see reload.go).
func (g *group) prepare() {
	if n, err := g.claim.RemoveStale(); err != nil && !errors.Is(err, vip.ErrNoLink) {
		g.log.Warn("removing stale VIPs", "err", err)
	} else if n > 0 {
		g.log.Info("removed stale VIPs left by an earlier run", "count", n)
	}
	if g.wantsSocket() {
		_ = g.open(time.Now())
	}
}

// Run is the group's goroutine; it returns after the graceful stop when
// ctx ends.
func (g *group) Run(ctx context.Context) error {
	defer close(g.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var refreshT, garpT *time.Ticker
	var refresh, garp <-chan time.Time
	stopTickers := func() {
		if refreshT != nil {
			refreshT.Stop()
			refreshT, refresh = nil, nil
		}
		if garpT != nil {
			garpT.Stop()
			garpT, garp = nil, nil
		}
	}
	defer stopTickers()
	var tickFor [2]time.Duration // refresh, garp periods the tickers run at

	now := time.Now()
	g.applyWant(now)
	if g.resume == vrrp.Master || g.resume == vrrp.Backup {
		g.exec(now, g.m.Resume(now, g.resume, "took over the state of the instance it replaces"))
	} else {
		g.exec(now, g.m.Start(now))
	}
	g.reportFault()
	g.publish()
	for {
		// Tickers follow the state and the configured periods.
		if g.m.Status().State == vrrp.Master {
			want := [2]time.Duration{max(g.in.cfg.VIPLifetime/3, 200*time.Millisecond), g.in.cfg.GARPRefresh}
			if want != tickFor || refreshT == nil {
				stopTickers()
				refreshT = time.NewTicker(want[0])
				refresh = refreshT.C
				if want[1] > 0 {
					garpT = time.NewTicker(want[1])
					garp = garpT.C
				}
				tickFor = want
			}
		} else if refreshT != nil {
			stopTickers()
		}
		g.armTimer(timer)
		select {
		case <-ctx.Done():
			g.stop()
			return nil
		case p := <-g.rx:
			acts, drop := g.m.Receive(p.at, p.b, p.meta.Src, p.meta.Dst, p.meta.TTL)
			switch drop {
			case vrrp.DropNone:
				g.lastRx = p.at
				g.noteAdvert(p)
			case vrrp.DropUnknownSource:
				g.strangerLog.warn(g.log, p.at, "advert dropped: its source is no [[node]] of the site", "reason", drop, "src", p.meta.Src)
			}
			g.exec(p.at, acts)
		case <-timer.C:
			g.wake(time.Now())
		case <-g.mail.ready():
			if in, ok := g.mail.take(); ok {
				g.apply(time.Now(), in)
			}
		case fn := <-g.cmds:
			fn()
		case e := <-g.sockErrs:
			if g.conn != nil && e.sub == g.conn.sub {
				g.readErrors++
				g.readLog.warn(g.log, time.Now(), "advert socket read failed; reopening", "err", e.err)
				g.socketFailed(time.Now(), true)
			}
		case <-refresh:
			if err := g.claim.Refresh(); err != nil {
				g.claimFailed(time.Now(), fmt.Errorf("refreshing VIPs: %w", err))
			} else {
				g.claimOK()
			}
		case <-garp:
			g.claim.Announce(context.Background())
		}
		g.reportFault()
		g.publish()
	}
}

// sameSays: a and b tell the peer the same.
func sameSays(a, b pairGroupMsg) bool {
	return a.State == b.State && a.Prio == b.Prio && a.Advert == b.Advert && a.Key == b.Key &&
		slices.Equal(a.Cfg, b.Cfg) && slices.Equal(a.Adv, b.Adv)
}

// armTimer sets t for the earliest of the machine's deadline and the
// group's own retries.
func (g *group) armTimer(t *time.Timer) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	next := g.m.Deadline()
	for _, at := range []time.Time{g.reopenAt, g.claimRetryAt, g.claimUntil} {
		if !at.IsZero() && (next.IsZero() || at.Before(next)) {
			next = at
		}
	}
	if next.IsZero() {
		t.Reset(time.Hour)
		return
	}
	t.Reset(max(time.Until(next), 0))
}

// wake handles every timer that is due.
func (g *group) wake(now time.Time) {
	if !g.reopenAt.IsZero() && !now.Before(g.reopenAt) {
		g.reopenAt = time.Time{}
		if g.wantsSocket() {
			_ = g.open(now)
			g.applyWant(now)
		}
	}
	if !g.claimUntil.IsZero() && !now.Before(g.claimUntil) {
		g.claimUntil, g.claimFault = time.Time{}, ""
		g.log.Info("trying to claim the VIPs again after the pause")
		g.applyWant(now)
	}
	if !g.claimRetryAt.IsZero() && !now.Before(g.claimRetryAt) {
		g.claimRetryAt = time.Time{}
		if g.m.Status().State == vrrp.Master {
			if err := g.claim.Claim(context.Background()); err != nil {
				g.claimFailed(now, fmt.Errorf("claiming VIPs: %w", err))
			} else {
				g.claimOK()
			}
		}
	}
	g.exec(now, g.m.Tick(now))
}

// apply takes a new input: configuration changes in place, then what
// derive wants, then the peer's address lists.
func (g *group) apply(now time.Time, in groupInput) {
	old := g.in
	g.in = in
	if in.cfg != old.cfg || in.node != old.node || !slices.Equal(in.peers, old.peers) || in.twoNode != old.twoNode {
		g.reconfigure(now, old)
	}
	g.ensureSocket(now)
	g.lists = g.lists.heard(now, g.spoken(), in.peer)
	g.reconfigureMachine(now)
	g.applyWant(now)
}

// reconfigure applies a changed [[vrrp]] table without leaving the state.
func (g *group) reconfigure(now time.Time, old groupInput) {
	cfg := g.in.cfg
	if !slices.Equal(cfg.VIPs, old.cfg.VIPs) || cfg.Advert != old.cfg.Advert {
		g.lists = g.lists.reconfigured(now, g.spoken(), g.in.peer)
	}
	added, removed, err := g.claim.Set(cfg.VIPs, g.vipOptions())
	if err != nil {
		// conf validated the VIPs: this is a bug, not bad input.
		g.log.Error("reload: new VIPs refused by the claimer; keeping the old ones", "err", err)
		return
	}
	if g.m.Status().State == vrrp.Master {
		if len(removed) > 0 {
			// Another group may have them now: the controller decides
			// (see handOver).
			g.events(vipsRemoved{g: g, iface: cfg.Interface, vips: removed})
		}
		if len(added) > 0 {
			if err := g.claim.ClaimSome(context.Background(), added); err != nil {
				g.claimFailed(now, fmt.Errorf("claiming added VIPs: %w", err))
			}
		}
	}
	if len(added)+len(removed) > 0 {
		g.log.Info("reload: VIPs changed in place", "added", added, "removed", removed)
	}
}

// reconfigureMachine hands the machine the current configuration and
// address lists; it never changes the state.
func (g *group) reconfigureMachine(now time.Time) {
	mc := g.machineConfig()
	if reflect.DeepEqual(mc, g.lastMC) {
		return
	}
	acts, err := g.m.Reconfigure(now, mc)
	if err != nil {
		g.log.Error("reconfiguring the state machine", "err", err)
		return
	}
	g.lastMC = mc
	g.exec(now, acts)
}

// fault is why the group must be in FAULT now, or "".
func (g *group) fault() string {
	if g.in.want.fault != "" {
		return g.in.want.fault
	}
	return g.ownFault()
}

// ownFault is the part of the fault only the group can see (its socket,
// its VIP claims), not derive; the controller hears of every change
// (reportFault), so the group's sync group shares it.
func (g *group) ownFault() string {
	if g.sockFault != "" {
		return "advert socket: " + g.sockFault
	}
	return g.claimFault
}

// vipsRemoved hands the controller the VIPs a reload removed from a
// master, to give to the group that has them now or to have released.
type vipsRemoved struct {
	g     *group
	iface string
	vips  []netip.Prefix
}

// groupFault tells the controller that a group's own fault changed.
type groupFault struct {
	g     *group
	fault string
}

func (g *group) reportFault() {
	if f := g.ownFault(); f != g.reported {
		g.reported = f
		g.events(groupFault{g: g, fault: f})
	}
}

// applyWant moves the machine to what derive and the group's own faults
// say: FAULT with its reason, or out of it, and the effective priority.
func (g *group) applyWant(now time.Time) {
	if f := g.fault(); f != "" {
		g.exec(now, g.m.SetFault(now, true, f))
		return
	}
	g.exec(now, g.m.SetPriority(now, g.in.want.prio))
	if g.m.Status().State == vrrp.Fault {
		g.exec(now, g.m.SetFault(now, false, ""))
	}
}

// stop ends the group gracefully: a priority-0 advert first so the peer
// takes over at once, then the VIPs go. A quiet stop (the group is being
// replaced by one that takes over its state) sends nothing and keeps the
// VIPs its successor holds.
func (g *group) stop() {
	if q := g.quiet.Load(); q != nil {
		if !q.keepVIPs && g.m.Status().State == vrrp.Master {
			if err := g.claim.Release(); err != nil {
				g.log.Warn("releasing VIPs", "err", err)
			}
		}
		g.discard()
		g.publish()
		return
	}
	now := time.Now()
	g.exec(now, g.m.Stop(now))
	if err := g.claim.Release(); err != nil {
		g.log.Warn("releasing VIPs", "err", err)
	}
	g.discard()
	g.publish()
}

// discard frees the group's socket and claimer without touching the VIPs:
// for a group that never ran (a refused or superseded reload) and at the
// end of stop.
func (g *group) discard() {
	g.claim.Close()
	g.closeConn()
}

func (g *group) exec(now time.Time, acts []vrrp.Action) {
	for _, a := range acts {
		switch a.Kind {
		case vrrp.ActSend:
			g.send(now, a.Priority)
		case vrrp.ActAnnounce:
			g.claim.Announce(context.Background())
		case vrrp.ActBecome:
			g.become(now, a)
		}
	}
}

func (g *group) send(now time.Time, prio uint8) {
	if g.conn == nil {
		return
	}
	pkt := g.m.Advert(prio)
	dsts := []netip.Addr{vrrpnet.Group4}
	if g.sock.v6 {
		dsts = []netip.Addr{vrrpnet.Group6}
	}
	if g.in.cfg.Unicast {
		dsts = g.in.peers
	}
	for _, d := range dsts {
		b, err := pkt.Marshal(g.connSrc, d)
		if err == nil {
			err = g.conn.WriteTo(b, g.connSrc, d)
		}
		if err != nil {
			g.sendErrors++
			g.sendLog.warn(g.log, now, "sending advert failed", "dst", d, "err", err, "send_errors", g.sendErrors)
			g.socketFailed(now, false)
			return
		}
	}
}

func (g *group) become(now time.Time, a vrrp.Action) {
	g.log.Info("state change", "from", a.From.String(), "to", a.To.String(), "reason", a.Reason)
	// The new state is published at once: the other members of a sync
	// group check it (followSyncGroup), and the pair link, which the
	// controller kicks on the event below, tells the peer the new state.
	g.publish()
	switch {
	case a.To == vrrp.Master:
		g.claimFails = 0
		if err := g.claim.Claim(context.Background()); err != nil {
			g.claimFailed(now, fmt.Errorf("claiming VIPs: %w", err))
		} else {
			g.claimOK()
		}
	case a.From == vrrp.Master:
		g.claimRetryAt = time.Time{}
		if err := g.claim.Release(); err != nil {
			g.log.Error("releasing VIPs", "err", err)
		}
	}
	g.events(groupChanged{g: g, from: a.From, to: a.To, reason: a.Reason, at: now})
	resumed := a.From == vrrp.Initialize && a.To == g.resume
	g.resume = vrrp.Initialize
	if resumed {
		g.log.Info("resumed the state of the replaced instance; notify hooks not run again", "state", a.To.String())
	} else if len(g.in.cfg.Notify) > 0 {
		g.hooks.Notify(g.in.cfg.NotifyAs, g.in.cfg.Notify, g.in.cfg.NotifyTimeout, g.name, a.To.String(), fmt.Sprint(g.m.Status().Priority))
	}
}

// claimFailed retries a failed claim or refresh a few times, then leaves
// MASTER for FAULT: a master must not advertise VIPs it does not hold.
func (g *group) claimFailed(now time.Time, err error) {
	g.claimFails++
	g.claimErr = err.Error()
	if g.claimFails < claimAttempts {
		g.log.Warn("VIP claim failed; retrying", "attempt", g.claimFails, "err", err)
		g.claimRetryAt = now.Add(claimRetry)
		return
	}
	g.claimPause = min(max(2*g.claimPause, minClaimPause), maxClaimPause)
	g.log.Error("VIP claim failed repeatedly; going to FAULT", "attempts", g.claimFails, "err", err, "retry_in", g.claimPause)
	g.claimFails, g.claimRetryAt = 0, time.Time{}
	g.claimFault = "VIPs could not be claimed: " + err.Error()
	g.claimUntil = now.Add(g.claimPause)
	g.applyWant(now)
}

func (g *group) claimOK() {
	if g.claimErr != "" {
		g.log.Info("VIPs claimed")
	}
	g.claimFails, g.claimErr, g.claimRetryAt, g.claimPause = 0, "", time.Time{}, 0
}

// do runs fn on the group goroutine and waits for it.
func (g *group) do(ctx context.Context, fn func()) error {
	ran := make(chan struct{})
	select {
	case g.cmds <- func() { fn(); close(ran) }:
	case <-ctx.Done():
		return ctx.Err()
	case <-g.done:
		return fmt.Errorf("group %s stopped", g.name)
	}
	select {
	case <-ran:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-g.done:
		return fmt.Errorf("group %s stopped", g.name)
	}
}

// post queues fn for the group goroutine without waiting, and says
// whether it could; the controller uses it and must never block on a
// group.
func (g *group) post(fn func()) bool {
	select {
	case g.cmds <- fn:
		return true
	default:
		g.log.Error("group command queue full; command dropped")
		return false
	}
}

// heal puts back, if the group is master, the VIPs something deleted
// behind its back (see controller.vipGone); one pending at a time, however
// many VIPs went.
func (g *group) heal() {
	if !g.healing.CompareAndSwap(false, true) {
		return
	}
	if !g.post(func() {
		g.healing.Store(false)
		if g.m.Status().State != vrrp.Master {
			return
		}
		g.healLog.warn(g.log, time.Now(), "a VIP was deleted behind havip's back; adding it again")
		if err := g.claim.Refresh(); err != nil {
			g.claimFailed(time.Now(), fmt.Errorf("adding deleted VIPs again: %w", err))
		} else {
			g.claimOK()
		}
	}) {
		g.healing.Store(false)
	}
}

func (g *group) publish() {
	garp, na, annErrors := g.claim.Counters()
	st, sp := g.m.Status(), g.spoken()
	says := &pairGroupMsg{State: st.State, Prio: st.Priority, Cfg: sp.addrs, Advert: sp.advert, Adv: g.lists.adv.addrs}
	if prev := g.snap.Load(); prev != nil && prev.says != nil && sameSays(*prev.says, *says) {
		says = prev.says // unchanged: the pair link's cache sees the same pointer
	}
	g.snap.Store(&groupSnap{
		says:       says,
		cfg:        g.in.cfg,
		rev:        g.in.rev,
		status:     g.m.Status(),
		base:       g.in.want.base,
		prio:       g.m.Status().Priority,
		fault:      g.fault(),
		tracks:     g.in.want.tracks,
		adv:        g.lists.adv.addrs,
		holding:    g.lists.holding(g.spoken()),
		spoken:     g.spoken(),
		src:        g.connSrc,
		socket:     g.sockFault,
		claimErr:   g.claimErr,
		lastRx:     g.lastRx,
		sendErrors: g.sendErrors,
		readErrors: g.readErrors,
		reopens:    g.reopens,
		rxDrop:     atomic.LoadUint64(&g.rxDrop),
		garp:       garp,
		na:         na,
		annErrors:  annErrors,
	})
}

package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/havip/havip/internal/conf"
	"github.com/havip/havip/internal/ctl"
	"github.com/havip/havip/internal/vip"
	"github.com/havip/havip/internal/vrrp"
	"github.com/havip/havip/internal/vrrpnet"
)

// group runs one [[vrrp]] instance: it owns the state machine, the advert
// socket and the VIP claimer, all driven from one goroutine.
type group struct {
	cfg   conf.Group
	node  conf.Node
	peers []netip.Addr // unicast destinations
	log   *slog.Logger
	hooks *notifier

	m     *vrrp.Machine
	conn  vrrpnet.Conn
	claim *vip.Claimer
	vips  []netip.Addr
	src   netip.Addr

	rx      chan rxPacket
	cmds    chan func()
	tracks  map[string]*trackState
	onState func(g *group, s vrrp.State) // pair link, sync daemons

	base uint8 // configured priority; tracking moves the effective one

	status     atomic.Pointer[ctl.GroupStatus]
	sendErrors atomic.Uint64
	rxOverflow atomic.Uint64
	lastRx     atomic.Pointer[time.Time] // arrival of the last accepted advert
	done       chan struct{}
}

type rxPacket struct {
	b    []byte
	meta vrrpnet.Meta
	at   time.Time
}

type trackState struct {
	ctl.TrackStatus
}

func newGroup(site *conf.Site, node *conf.Node, cfg conf.Group, log *slog.Logger, hooks *notifier) (*group, error) {
	g := &group{
		cfg:    cfg,
		node:   *node,
		log:    log.With("group", cfg.Name),
		hooks:  hooks,
		rx:     make(chan rxPacket, 256),
		cmds:   make(chan func(), 16),
		tracks: map[string]*trackState{},
		done:   make(chan struct{}),
	}
	v6 := len(cfg.VIPs) > 0 && cfg.VIPs[0].Addr().Is6()
	for _, p := range cfg.VIPs {
		g.vips = append(g.vips, p.Addr())
	}
	for _, p := range site.Peers(node.Name) {
		g.peers = append(g.peers, p.Address)
	}
	g.src = node.Address
	if v6 {
		ll, err := vrrpnet.LinkLocal(cfg.Interface)
		if err != nil {
			return nil, fmt.Errorf("group %s: %w", cfg.Name, err)
		}
		g.src = ll
	}
	prio := basePriority(cfg, node)
	g.base = prio
	m, err := vrrp.NewMachine(vrrp.Config{
		VRID:         cfg.VRID,
		Version:      uint8(cfg.Version),
		Priority:     prio,
		Advert:       cfg.Advert,
		Preempt:      cfg.Preempt,
		PreemptDelay: cfg.PreemptDelay,
		Accept:       cfg.Accept,
		Primary:      g.src,
		Addrs:        g.vips,
		TwoNode:      len(site.Nodes) == 2,
	})
	if err != nil {
		return nil, fmt.Errorf("group %s: %w", cfg.Name, err)
	}
	g.m = m
	claim, err := vip.New(cfg.Interface, cfg.VIPs, vip.Options{
		Lifetime:     cfg.VIPLifetime,
		GARPCount:    cfg.GARPCount,
		GARPInterval: cfg.GARPInterval,
		Owner:        node.Address, // an owned VIP is the operator's address: announced, never deleted
		Logger:       g.log,
	})
	if err != nil {
		return nil, fmt.Errorf("group %s: %w", cfg.Name, err)
	}
	g.claim = claim
	// Our own interface is always tracked: no link, no mastership.
	g.tracks["interface:"+cfg.Interface] = &trackState{ctl.TrackStatus{Kind: "interface", Name: cfg.Interface}}
	for _, t := range cfg.Track {
		ts := ctl.TrackStatus{Weight: t.Weight}
		switch {
		case t.Interface != "":
			ts.Kind, ts.Name = "interface", t.Interface
		case t.VirtualServer != "":
			ts.Kind, ts.Name = "virtual_server", t.VirtualServer
		default:
			ts.Kind, ts.Name = "check", t.Check
		}
		g.tracks[ts.Kind+":"+ts.Name] = &trackState{ts}
	}
	g.publish(time.Now())
	return g, nil
}

// basePriority is the node's configured priority in group cfg: 255 when
// it owns one of the VIPs (RFC 5798 address owner).
func basePriority(cfg conf.Group, node *conf.Node) uint8 {
	for _, p := range cfg.VIPs {
		if p.Addr() == node.Address {
			return 255
		}
	}
	return cfg.PriorityOf(node)
}

// repriority applies a reloaded configuration that differs from the
// running one only in priorities, without restarting the group.
func (g *group) repriority(cfg conf.Group, node *conf.Node) {
	g.cfg.Priorities = cfg.Priorities // the only field that may differ; others are read elsewhere
	if p := basePriority(cfg, node); p != g.base {
		g.log.Info("priority changed by reload", "from", g.base, "to", p)
		g.base = p
		g.applyTracks(time.Now())
	}
}

// onlyPriorityChanged reports whether a and b differ in nothing but the
// per-node priority overrides.
func onlyPriorityChanged(a, b conf.Group) bool {
	b.Priorities = a.Priorities
	return reflect.DeepEqual(a, b)
}

// open removes stale VIPs of a crashed run and opens the advert socket.
func (g *group) open() error {
	if n, err := g.claim.RemoveStale(); err != nil {
		g.log.Warn("removing stale VIPs", "err", err)
	} else if n > 0 {
		g.log.Info("removed stale VIPs left by an earlier run", "count", n)
	}
	conn, err := vrrpnet.Listen(vrrpnet.Options{Interface: g.cfg.Interface, Source: g.src, Multicast: !g.cfg.Unicast})
	if err != nil {
		return fmt.Errorf("group %s: %w", g.cfg.Name, err)
	}
	g.conn = conn
	return nil
}

func (g *group) readLoop() {
	buf := make([]byte, 1500)
	for {
		n, meta, err := g.conn.ReadFrom(buf)
		if err != nil {
			return // closed
		}
		p := rxPacket{b: append([]byte(nil), buf[:n]...), meta: meta, at: time.Now()}
		select {
		case g.rx <- p:
		default:
			g.rxOverflow.Add(1)
		}
	}
}

// run is the group's single goroutine. It returns after a graceful stop.
func (g *group) run(ctx context.Context) {
	defer close(g.done)
	go g.readLoop()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var refresh, garp <-chan time.Time
	var refreshT, garpT *time.Ticker

	g.exec(g.m.Start(time.Now()))
	g.applyTracks(time.Now())
	for {
		st := g.m.Status().State
		if st == vrrp.Master && refreshT == nil {
			refreshT = time.NewTicker(max(g.cfg.VIPLifetime/3, 200*time.Millisecond))
			refresh = refreshT.C
			if g.cfg.GARPRefresh > 0 {
				garpT = time.NewTicker(g.cfg.GARPRefresh)
				garp = garpT.C
			}
		} else if st != vrrp.Master && refreshT != nil {
			refreshT.Stop()
			refreshT, refresh = nil, nil
			if garpT != nil {
				garpT.Stop()
				garpT, garp = nil, nil
			}
		}
		g.armTimer(timer)
		select {
		case <-ctx.Done():
			g.stop()
			if refreshT != nil {
				refreshT.Stop()
			}
			if garpT != nil {
				garpT.Stop()
			}
			return
		case p := <-g.rx:
			acts, drop := g.m.Receive(p.at, p.b, p.meta.Src, p.meta.Dst, p.meta.TTL)
			if drop == vrrp.DropNone {
				g.lastRx.Store(&p.at)
			}
			g.exec(acts)
		case <-timer.C:
			g.exec(g.m.Tick(time.Now()))
		case fn := <-g.cmds:
			fn()
		case <-refresh:
			if err := g.claim.Refresh(); err != nil {
				g.log.Warn("refreshing VIP lifetime", "err", err)
			}
		case <-garp:
			g.claim.Announce(context.Background())
		}
		g.publish(time.Now())
	}
}

func (g *group) armTimer(t *time.Timer) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	d := g.m.Deadline()
	if d.IsZero() {
		t.Reset(time.Hour)
		return
	}
	t.Reset(max(time.Until(d), 0))
}

// stop ends the group gracefully: priority-0 advert first so the peer takes
// over at once, then the VIPs go.
func (g *group) stop() {
	g.exec(g.m.Stop(time.Now()))
	if err := g.claim.Release(); err != nil {
		g.log.Warn("releasing VIPs", "err", err)
	}
	g.claim.Close()
	g.conn.Close()
	g.publish(time.Now())
}

func (g *group) exec(acts []vrrp.Action) {
	for _, a := range acts {
		switch a.Kind {
		case vrrp.ActSend:
			g.send(a.Priority)
		case vrrp.ActAnnounce:
			g.claim.Announce(context.Background())
		case vrrp.ActBecome:
			g.become(a)
		}
	}
}

func (g *group) send(prio uint8) {
	pkt := vrrp.Packet{
		Version:  uint8(g.cfg.Version),
		VRID:     g.cfg.VRID,
		Priority: prio,
		Interval: g.cfg.Advert,
		Addrs:    g.vips,
	}
	dsts := []netip.Addr{vrrpnet.Group4}
	if g.src.Is6() {
		dsts = []netip.Addr{vrrpnet.Group6}
	}
	if g.cfg.Unicast {
		dsts = g.peers
	}
	for _, d := range dsts {
		b, err := pkt.Marshal(g.src, d)
		if err == nil {
			err = g.conn.WriteTo(b, d)
		}
		if err != nil {
			if g.sendErrors.Add(1) == 1 {
				g.log.Warn("sending advert", "dst", d, "err", err)
			}
		}
	}
}

func (g *group) become(a vrrp.Action) {
	g.log.Info("state change", "from", a.From.String(), "to", a.To.String(), "reason", a.Reason)
	switch {
	case a.To == vrrp.Master:
		if err := g.claim.Claim(context.Background()); err != nil {
			g.log.Error("claiming VIPs", "err", err)
		}
	case a.From == vrrp.Master:
		if err := g.claim.Release(); err != nil {
			g.log.Error("releasing VIPs", "err", err)
		}
	}
	if g.onState != nil {
		g.onState(g, a.To)
	}
	g.hooks.run(g.cfg.Notify, g.cfg.NotifyTimeout, g.cfg.Name, a.To.String(), g.m.Status().Priority)
}

// setTrack records a tracked object's health; called on the group goroutine.
func (g *group) setTrack(key string, failing bool) {
	ts, ok := g.tracks[key]
	if !ok || ts.Failing == failing {
		return
	}
	ts.Failing = failing
	g.log.Info("tracked object changed", "track", key, "failing", failing)
	g.applyTracks(time.Now())
}

// applyTracks turns the tracked objects into an effective priority or FAULT.
func (g *group) applyTracks(now time.Time) {
	st := g.m.Status()
	prio := int(g.base)
	fault := ""
	for key, ts := range g.tracks {
		if !ts.Failing {
			continue
		}
		if ts.Weight == 0 {
			fault = key + " failing"
			continue
		}
		prio += ts.Weight
	}
	if fault != "" {
		if st.State != vrrp.Fault {
			g.exec(g.m.SetFault(now, true, fault))
		}
		return
	}
	if st.State == vrrp.Fault {
		g.exec(g.m.SetFault(now, false, ""))
	}
	if g.base != 255 {
		prio = min(max(prio, 1), 254)
		if uint8(prio) != g.m.Status().Priority {
			g.exec(g.m.SetPriority(now, uint8(prio)))
		}
	}
}

// do runs fn on the group goroutine and waits for it.
func (g *group) do(ctx context.Context, fn func()) error {
	var wg sync.WaitGroup
	wg.Add(1)
	select {
	case g.cmds <- func() { fn(); wg.Done() }:
	case <-ctx.Done():
		return ctx.Err()
	case <-g.done:
		return fmt.Errorf("group %s stopped", g.cfg.Name)
	}
	ch := make(chan struct{})
	go func() { wg.Wait(); close(ch) }()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *group) publish(now time.Time) {
	st := g.m.Status()
	gs := &ctl.GroupStatus{
		Name:           g.cfg.Name,
		Interface:      g.cfg.Interface,
		VRID:           g.cfg.VRID,
		Version:        g.cfg.Version,
		Unicast:        g.cfg.Unicast,
		State:          st.State.String(),
		Since:          st.Since,
		Priority:       st.Priority,
		BasePriority:   g.base,
		Advert:         g.cfg.Advert.String(),
		MasterPriority: st.MasterPriority,
		Fault:          st.Fault,
		Yielding:       st.Yielding,
		RxAdverts:      st.Counters.RxAdverts,
		TxAdverts:      st.Counters.TxAdverts,
		Transitions:    st.Counters.Transitions,
		Drops:          map[string]uint64{},
		SendErrors:     g.sendErrors.Load(),
	}
	if st.MasterAddr.IsValid() {
		gs.MasterAddr = st.MasterAddr.String()
		gs.MasterInterval = st.MasterInterval.String()
	}
	for _, p := range g.cfg.VIPs {
		gs.VIPs = append(gs.VIPs, p.String())
	}
	for r := vrrp.DropReason(1); r < vrrp.NumDropReasons; r++ {
		if n := st.Counters.Drops[r]; n > 0 {
			gs.Drops[r.String()] = n
		}
	}
	if n := g.rxOverflow.Load(); n > 0 {
		gs.Drops["rx_queue_full"] = n
	}
	for _, ts := range g.tracks {
		gs.Tracks = append(gs.Tracks, ts.TrackStatus)
	}
	sort.Slice(gs.Tracks, func(i, j int) bool {
		return gs.Tracks[i].Kind+gs.Tracks[i].Name < gs.Tracks[j].Kind+gs.Tracks[j].Name
	})
	g.status.Store(gs)
}

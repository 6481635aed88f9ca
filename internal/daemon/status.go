package daemon

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"time"

	"github.com/havip/havip/internal/conf"
	"github.com/havip/havip/internal/ctl"
	"github.com/havip/havip/internal/ipvsync"
	"github.com/havip/havip/internal/vrrp"
)

// status assembles what `havip status` shows from what the controller and
// the tasks published. It touches no kernel and waits on nobody, so a
// status call or a scrape never disturbs the daemon.
func (c *controller) status() *ctl.Status {
	v := c.view.Load()
	st := &ctl.Status{
		Site:         v.site.Name,
		Node:         v.node.Name,
		Address:      v.node.Address.String(),
		Version:      c.opts.Version,
		PID:          os.Getpid(),
		Started:      c.started,
		ConfigFile:   c.opts.ConfigPath,
		ConfigLoaded: v.loadedAt,
		Revision:     v.site.Revision,
		LastReload:   v.lastReload.wire(),
	}
	if r := v.lastReload; r != nil && !r.applied {
		st.ReloadError = strings.Join(r.problems, "\n")
	}
	var ps pairSnap
	if v.pair != nil {
		ps = v.pair.snapshot()
		st.PairError = ps.bindErr
		st.Pair = &ctl.PairStatus{Authenticated: ps.authenticated, Drops: ps.drops, FastTakeovers: ps.fast}
	}
	for _, g := range v.groups {
		gs := groupStatus(g.snap.Load(), ps)
		gs.Pending = v.pending[g.name]
		st.Groups = append(st.Groups, gs)
	}
	st.Sockets = c.socks.status()
	for _, p := range ps.peers {
		out := ctl.PeerStatus{Node: p.node, Address: p.addr.String(), Alive: p.alive, LastSeen: p.lastSeen, Revision: p.rev,
			LinkUp: p.linkUp, Trusted: p.trusted, LinkError: p.dialErr}
		if len(p.groups) > 0 {
			out.Groups = map[string]string{}
			for name, g := range p.groups {
				out.Groups[name] = g.State.String()
			}
		}
		st.Peers = append(st.Peers, out)
	}
	var rows []ipvsync.ServiceStatus
	if v.ipvs != nil {
		st.IPVS = ipvsStatus(v.ipvs)
		rows = v.ipvs.rec.Published().Rows
	}
	if m := c.mirror.Load(); m != nil {
		st.Drains = drainStatus(m.drains, v.site, rows)
		st.Mirror = mirrorStatus(m, ps)
	}
	if v.checks != nil {
		for _, r := range v.checks.runner.Snapshot() {
			st.Checks = append(st.Checks, ctl.CheckStatus{Key: r.Key, Up: r.Up, Reason: r.Reason, Since: r.Since, SharedBy: r.SharedBy})
		}
	}
	return st
}

// drainStatus is each drain with its real server as the kernel holds it.
func drainStatus(d *drainSet, site *conf.Site, rows []ipvsync.ServiceStatus) []ctl.DrainStatus {
	out := []ctl.DrainStatus{}
	for _, k := range d.keys() {
		e := d.entries[k]
		ds := ctl.DrainStatus{VirtualServer: k.vs, RealServer: k.real.String(), Remove: e.remove, Since: e.since, By: e.by, InSite: hasRealServer(site, k)}
		for _, r := range rows {
			if r.Name != k.vs {
				continue
			}
			for _, dst := range r.Dests {
				if dst.Address == k.real && dst.InKernel {
					ds.InKernel, ds.Weight, ds.Active, ds.Inactive = true, dst.Weight, dst.Active, dst.Inactive
				}
			}
		}
		out = append(out, ds)
	}
	return out
}

// mirrorStatus compares our drains and desired table with the live
// peer's.
func mirrorStatus(m *mirrorSnap, ps pairSnap) *ctl.MirrorStatus {
	ms := &ctl.MirrorStatus{DrainsRevision: m.drains.rev, DrainsChanged: m.drains.changed, DrainsBy: m.drains.by,
		Digest: m.table.Digest, BadDrainMessages: ps.badDrains}
	for _, p := range ps.peers {
		ms.Peer, ms.PeerAlive, ms.PeerTrusted = p.node, p.alive, p.trusted
		if p.drains != nil {
			ms.PeerDrainsRevision = p.drains.rev
		}
		if p.table != nil {
			ms.PeerDigest = p.table.Digest
			ms.Match = p.alive && p.table.Digest == m.table.Digest
			ms.Differences = tableDiff(m.table, *p.table)
		}
	}
	return ms
}

func groupStatus(s *groupSnap, ps pairSnap) ctl.GroupStatus {
	gs := ctl.GroupStatus{
		Name:           s.cfg.Name,
		Interface:      s.cfg.Interface,
		VRID:           s.cfg.VRID,
		Version:        s.cfg.Version,
		Unicast:        s.cfg.Unicast,
		State:          s.status.State.String(),
		Since:          s.status.Since,
		Priority:       s.status.Priority,
		BasePriority:   s.base,
		Advert:         s.cfg.Advert.String(),
		MasterPriority: s.status.MasterPriority,
		Fault:          s.fault,
		Yielding:       s.status.Yielding,
		SyncGroup:      s.cfg.SyncGroup,
		DualMaster:     ps.dual[s.cfg.Name],
		RxAdverts:      s.status.Counters.RxAdverts,
		TxAdverts:      s.status.Counters.TxAdverts,
		Transitions:    s.status.Counters.Transitions,
		Drops:          map[string]uint64{},
		SendErrors:     s.sendErrors,
	}
	if s.status.MasterAddr.IsValid() && s.status.State != vrrp.Fault {
		gs.MasterAddr = s.status.MasterAddr.String()
		gs.MasterInterval = s.status.MasterInterval.String()
	}
	for _, p := range ps.peers {
		if g, ok := p.groups[s.cfg.Name]; ok && p.alive {
			gs.PeerState = g.State.String()
		}
	}
	for _, p := range s.cfg.VIPs {
		gs.VIPs = append(gs.VIPs, p.String())
	}
	for r := vrrp.DropReason(1); r < vrrp.NumDropReasons; r++ {
		if n := s.status.Counters.Drops[r]; n > 0 {
			gs.Drops[r.String()] = n
		}
	}
	if s.rxDrop > 0 {
		gs.Drops["rx_queue_full"] = s.rxDrop
	}
	for _, t := range s.tracks {
		gs.Tracks = append(gs.Tracks, ctl.TrackStatus{Kind: t.key.kind.String(), Name: t.key.name, Weight: t.weight, Failing: t.failing})
	}
	gs.ReadErrors, gs.Reopens = s.readErrors, s.reopens
	gs.Announced, gs.AnnounceErrors = s.garp+s.na, s.annErrors
	gs.Socket, gs.ClaimError = s.socket, s.claimErr
	if s.holding {
		for _, a := range s.adv {
			gs.Advertising = append(gs.Advertising, a.String())
		}
	}
	gs.Revision = s.rev
	return gs
}

// ipvsStatus renders the reconciler's last published table and the sync
// daemons' state.
func ipvsStatus(t *ipvsTask) *ctl.IPVSStatus {
	pub, ss := t.published()
	st := &ctl.IPVSStatus{Repairs: t.changes.Load(), AsOf: pub.At}
	var errs []string
	if pub.LastError != "" {
		errs = append(errs, "last reconcile failed: "+pub.LastError)
	}
	if pub.StateError != "" {
		errs = append(errs, "state file: "+pub.StateError)
	}
	if ss.err != "" {
		errs = append(errs, "sync daemons: "+ss.err+" (retrying)")
	}
	st.Error = strings.Join(errs, "; ")
	st.Services, _ = json.Marshal(pub.Rows)
	var b bytes.Buffer
	_ = ipvsync.Format(&b, pub.Rows)
	st.Table = b.String()
	for _, d := range ss.running {
		st.Sync = append(st.Sync, ctl.SyncDaemon{Role: d.Role.String(), Interface: d.Interface, SyncID: d.SyncID})
	}
	return st
}

// wire is r as the control socket sends it.
func (r *reloadResult) wire() *ctl.ReloadResult {
	if r == nil {
		return nil
	}
	out := &ctl.ReloadResult{File: r.file, Applied: r.applied, OldRevision: r.oldRev, Revision: r.rev,
		Changes: r.changes, Problems: r.problems, Warnings: r.warnings}
	if r.applied {
		out.Took = r.took.Round(time.Microsecond).String()
	}
	return out
}

package daemon

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/havip/havip/internal/conf"
	"github.com/havip/havip/internal/vrrp"
)

// Replacing a running group by a new instance (a reload that needs a new
// socket, or a rename): the new one takes over the old one's state, waits
// for the peer when it still runs the old virtual router, and the VIPs a
// reload took from a master group are handed to the group that has them
// now, or released.

// pendingRestart is a group whose reload needs a new socket (a new
// interface, VRID, version, unicast mode or family) while the peer still
// runs the old one: the two would be different virtual routers that
// cannot hear each other, and both would become master. The running
// instance stays, advertising what the peer knows, until the pair link
// says the peer is configured with the new one (or falls silent); then
// the prepared instance takes over its state (swapGroup).
type pendingRestart struct {
	cfg  *conf.Group // in target
	old  *conf.Group // what runs meanwhile
	g    *group      // prepared: built, its socket open
	what []string
}

// swapGroup replaces the running instance of group name with next (of
// the same name, or a new one for a rename), which takes over its state
// without an election (MASTER stays MASTER, BACKUP stays BACKUP): the old
// one stops quietly, keeping its VIPs when next holds them on the same
// interface; those next does not have are handed over or released as a
// reload that removes them in place does (handOver).
func (c *controller) swapGroup(name string, next *group) {
	cfg := next.in.cfg // next.in is its goroutine's once it runs
	var dropped []netip.Prefix
	if r := c.groups[name]; r != nil {
		was := r.g.snap.Load()
		next.resume = was.status.State
		same := r.g.sock.iface == next.sock.iface
		r.g.quiet.Store(&quietStop{keepVIPs: same})
		c.stopGroups([]string{name})
		if same && next.resume == vrrp.Master {
			// The VIPs the old instance kept that next does not hold
			// would stay until their lifetime ran out.
			dropped = slices.DeleteFunc(slices.Clone(was.cfg.VIPs), func(p netip.Prefix) bool { return slices.Contains(cfg.VIPs, p) })
		}
	}
	c.log.Info("group replaced by its new instance", "group", next.name, "was", name, "state", next.resume.String(), "socket", next.sock.String())
	_ = c.startGroup(cfg, next)
	if len(dropped) > 0 {
		c.handOver(vipsRemoved{g: next, iface: cfg.Interface, vips: dropped})
	}
}

// handOver deals with the VIPs a reload removed from a master group. One
// that another group now has on the same interface goes to that group: it
// keeps it if it is master here (claiming it, if it has taken the reload)
// and releases it if not. The others are released by the group that had
// them. A reload that moves a VIP between two groups updates both in
// place, each on its own goroutine, and when the group that lost the VIP
// deleted it after the one that gained it had claimed it, the VIP was
// gone until the next refresh (up to vip_lifetime/3).
func (c *controller) handOver(ev vipsRemoved) {
	to := map[*group][]netip.Prefix{}
	for _, v := range ev.vips {
		holder := ev.g
		for name, r := range c.groups {
			if gc := c.site.Group(name); r.g != ev.g && gc != nil && gc.Interface == ev.iface && slices.Contains(gc.VIPs, v) {
				holder = r.g
			}
		}
		to[holder] = append(to[holder], v)
	}
	for g, ps := range to {
		g.post(func() {
			if g == ev.g || g.m.Status().State != vrrp.Master {
				if err := g.claim.ReleaseSome(ps); err != nil {
					g.log.Warn("reload: releasing removed VIPs", "err", err)
				}
				return
			}
			mine := slices.DeleteFunc(slices.Clone(ps), func(p netip.Prefix) bool { return !slices.Contains(g.in.cfg.VIPs, p) })
			if len(mine) == 0 {
				return // claimed when it takes the reload
			}
			g.log.Info("reload: VIPs handed over by group "+ev.g.name, "vips", mine)
			if err := g.claim.ClaimSome(context.Background(), mine); err != nil {
				g.claimFailed(time.Now(), fmt.Errorf("claiming VIPs: %w", err))
			}
		})
	}
}

// finishPending swaps in the pending restarts the peer now runs too (or
// that no live peer holds back any more).
func (c *controller) finishPending() {
	done := false
	for name, p := range c.pending {
		if pg := c.peer.group(name); pg.runs() && pg.key != sockKeyOf(p.cfg).String() {
			continue
		}
		delete(c.pending, name)
		c.site = effectiveSite(c.target, c.pendingOld())
		c.swapGroup(name, p.g)
		done = true
	}
	if done {
		c.update()
		c.alignSyncGroups(nil)
		c.publish()
		if c.pair != nil {
			c.pair.notify()
		}
	}
}

func (c *controller) pendingOld() map[string]*conf.Group {
	m := make(map[string]*conf.Group, len(c.pending))
	for name, p := range c.pending {
		m[name] = p.old
	}
	return m
}

// effectiveSite is target with the groups in old as they run now.
func effectiveSite(target *conf.Site, old map[string]*conf.Group) *conf.Site {
	if len(old) == 0 {
		return target
	}
	s := *target
	s.Groups = slices.Clone(target.Groups)
	for i := range s.Groups {
		if o := old[s.Groups[i].Name]; o != nil {
			s.Groups[i] = *o
		}
	}
	return &s
}

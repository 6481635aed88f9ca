package daemon

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/havip/havip/internal/vrrp"
)

// Groups of one sync group move together. derive gives them each other's
// faults and penalties; here the controller follows state changes: when
// one member leaves MASTER the others resign, when one becomes MASTER the
// others take over (unless the peer holds them and outranks us).

// followSyncGroup moves the other members of a sync group with ev: when
// one leaves MASTER the others hand over too (or a NAT director would hold
// the front VIP while its peer holds the real servers' gateway, and
// traffic is black-holed); when one becomes MASTER the others take over,
// except one the peer holds as master and outranks us in: the peer would
// answer at once, that member would go back to BACKUP, and the others
// would resign for it; then one of them, hearing no one (VRRP cut on its
// segment only, or its copy on the peer restarted by a rolling push),
// became master again at its next Master_Down_Interval, in a loop. Such a
// member is taken over when the pair link says the peer left it (see
// alignSyncGroups), or when it hears the peer resign it.
func (c *controller) followSyncGroup(ev groupChanged) {
	gc := c.site.Group(ev.g.name) // ev.g.in belongs to the group's goroutine
	if gc == nil || gc.SyncGroup == "" {
		return
	}
	name := gc.SyncGroup
	move := syncFollow(ev)
	if move == syncStay {
		return
	}
	why := fmt.Sprintf("sync group %s: group %s %s", name, ev.g.name, move)
	// Events arrive late: by the time a member acts on one, the group
	// that sent it may have changed again, or the member itself may have
	// (a drill resigned it after the event). Acting on what is no longer
	// so bounced the sync group between the nodes; a member acts only if
	// it has not changed state since the event and the sender is still
	// what the event said (its snapshot is published first thing on each
	// state change).
	from, at := ev.g, ev.at
	stillMaster := func() bool { return from.snap.Load().status.State == vrrp.Master }
	changedSince := func(st vrrp.Status) bool { return !at.IsZero() && st.Since.After(at) }
	for _, member := range c.site.SyncGroupMembers(name) {
		r := c.groups[member]
		if member == ev.g.name || r == nil {
			continue
		}
		g := r.g
		switch move {
		case syncResign:
			g.post(func() {
				if st := g.m.Status(); st.State == vrrp.Master && !changedSince(st) && !stillMaster() {
					g.log.Info("following the sync group", "reason", why)
					g.exec(time.Now(), g.m.Resign(time.Now()))
					g.publish()
				}
			})
		case syncTakeOver:
			p := c.peer.group(member)
			held := p.alive && p.known && p.state == vrrp.Master
			g.post(func() {
				if st := g.m.Status(); st.State == vrrp.Backup && !changedSince(st) && stillMaster() && !(held && outranked(st, g.lastMC.Primary)) {
					g.log.Info("following the sync group", "reason", why)
					g.exec(time.Now(), g.m.TakeOver(time.Now(), why))
					g.publish()
				}
			})
		}
	}
}

// outranked says whether a machine in st, whose own address is primary,
// hears a master that wins the election against it.
func outranked(st vrrp.Status, primary netip.Addr) bool {
	if !st.MasterAddr.IsValid() || st.MasterPriority == 0 {
		return false
	}
	return st.MasterPriority > st.Priority || st.MasterPriority == st.Priority && st.MasterAddr.Compare(primary) > 0
}

// alignSyncGroups has the BACKUP members of sync groups with a MASTER
// member here take over, as if that member had just become MASTER. After
// a reload it aligns every sync group (only nil): the reload may have
// joined running groups, which no state change would bring together.
// When the pair link says the peer left some groups (only), it aligns
// their sync groups: followSyncGroup did not take a member over while the
// peer held it.
func (c *controller) alignSyncGroups(only []string) {
	want := map[string]bool{}
	for _, n := range only {
		if gc := c.site.Group(n); gc != nil {
			want[gc.SyncGroup] = true
		}
	}
	done := map[string]bool{}
	for _, gc := range c.site.Groups {
		name := gc.SyncGroup
		if name == "" || done[name] || only != nil && !want[name] || c.states[gc.Name] != vrrp.Master {
			continue
		}
		if r := c.groups[gc.Name]; r != nil {
			done[name] = true
			// No time: not an old event but what holds now (a member
			// a reload has just started takes over too).
			c.followSyncGroup(groupChanged{g: r.g, from: vrrp.Backup, to: vrrp.Master})
		}
	}
}

// peerLeft lists the groups the peer was master of in old and is not in
// now (or has fallen silent).
func peerLeft(old, now peerView) []string {
	var out []string
	for name, m := range old.groups {
		if old.alive && m.State == vrrp.Master && !(now.alive && now.groups[name].State == vrrp.Master) {
			out = append(out, name)
		}
	}
	return out
}

// syncMove is what a state change of one member asks of the other members
// of its sync group.
type syncMove uint8

const (
	syncStay     syncMove = iota
	syncResign            // it left MASTER: those in MASTER resign
	syncTakeOver          // it became MASTER: those in BACKUP take over
)

// syncFollow decides what ev asks of the other members.
func syncFollow(ev groupChanged) syncMove {
	switch {
	case ev.from == vrrp.Master && ev.to != vrrp.Master:
		return syncResign
	case ev.to == vrrp.Master:
		return syncTakeOver
	}
	return syncStay
}

package daemon

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/havip/havip/internal/events"
)

// The controller's side of drains (drains.go): operator requests, the
// peer's set, reloads. Every change is saved before it is used.

// drainReq is `havip drain` (undo: `havip undrain`).
type drainReq struct {
	vs, real string
	remove   bool
	undo     bool
	reply    chan drainReply
}

type drainReply struct {
	msg string
	at  time.Time // when the new table went to the reconciler
	err error
}

// errDrainInput marks a drain request that names no real server of the
// site (exit 1); other failures are runtime ones.
var errDrainInput = errors.New("bad drain request")

func (c *controller) drain(req drainReq) drainReply {
	k, err := c.drainTarget(req.vs, req.real)
	if err != nil {
		return drainReply{err: err}
	}
	old, had := c.drains.entries[k]
	var e *drainEntry
	var msg string
	switch {
	case req.undo && !had:
		return drainReply{msg: fmt.Sprintf("%s was not drained", k), at: time.Now()}
	case req.undo:
		msg = fmt.Sprintf("%s undrained", k)
	case had && old.remove == req.remove:
		return drainReply{msg: fmt.Sprintf("%s already drained", k), at: time.Now()}
	case len(c.drains.entries) >= maxDrains && !had:
		return drainReply{err: fmt.Errorf("%w: %d real servers are drained already, the most havip mirrors", errDrainInput, maxDrains)}
	default:
		e = &drainEntry{remove: req.remove, since: time.Now(), by: c.node.Name}
		if had {
			e.since = old.since
		}
		msg = fmt.Sprintf("%s drained (weight 0)", k)
		if req.remove {
			msg = fmt.Sprintf("%s drained and removed from the table", k)
		}
	}
	next := c.drains.with(k, e, c.nextDrainRev(), time.Now(), c.node.Name)
	if err := c.setDrains(next); err != nil {
		return drainReply{err: err}
	}
	c.log.Info("drain: "+msg, "revision", next.rev)
	kind := events.Drain
	if req.undo {
		kind = events.Undrain
	}
	c.note(kind, events.Fields{"virtual_server": k.vs, "real_server": k.real.String(), "remove": req.remove, "by": c.node.Name, "revision": next.rev})
	return drainReply{msg: msg, at: time.Now()}
}

// drainTarget checks that vs and real name a real server of the running
// site file.
func (c *controller) drainTarget(vs, real string) (drainKey, error) {
	ap, err := netip.ParseAddrPort(real)
	if err != nil {
		return drainKey{}, fmt.Errorf("%w: real server %q: want ADDRESS:PORT as in the site file", errDrainInput, real)
	}
	k := drainKey{vs, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}
	if c.site.VirtualServer(vs) == nil {
		return k, fmt.Errorf("%w: no [[virtual_server]] named %q", errDrainInput, vs)
	}
	if !hasRealServer(c.site, k) {
		return k, fmt.Errorf("%w: virtual server %s has no real server %s", errDrainInput, vs, k.real)
	}
	return k, nil
}

func (c *controller) nextDrainRev() uint64 {
	c.drainRev = max(c.drainRev, c.drains.rev) + 1
	return c.drainRev
}

// setDrains saves s and makes it the running set.
func (c *controller) setDrains(s *drainSet) error {
	if err := os.MkdirAll(c.site.StateDir, 0o755); err != nil {
		return fmt.Errorf("drains: state_dir: %w", err)
	}
	if err := saveDrains(c.site.StateDir, s); err != nil {
		return fmt.Errorf("drains: %w", err)
	}
	c.drains = s
	c.drainRev = max(c.drainRev, s.rev)
	c.update()
	return nil
}

// adoptDrains takes the peer's set when it is newer and the peer is
// authenticated. A set that cannot be saved is still used (the two tables
// must match) and the failure logged.
func (c *controller) adoptDrains(v peerView) {
	if v.drains == nil {
		return
	}
	c.drainRev = max(c.drainRev, v.drains.rev)
	if !v.trusted || !v.alive || !v.drains.newer(c.drains) {
		return
	}
	changes := drainChanges(c.drains, v.drains)
	if err := c.setDrains(v.drains); err != nil {
		c.log.Error("drains: the peer's set could not be saved; using it anyway", "err", err)
		c.drains = v.drains
	}
	for _, ch := range changes {
		c.log.Info("drain: adopted from the peer: "+ch, "peer", v.node, "revision", v.drains.rev)
	}
	if len(changes) > 0 {
		c.note(events.Drain, events.Fields{"adopted_from": v.node, "revision": v.drains.rev, "changes": changes})
	}
}

// pruneDrains drops the drains of real servers the running site file no
// longer has (at start, after a reload), saying so.
func (c *controller) pruneDrains(when string) {
	n, gone := c.drains.pruned(c.site, c.drainRev+1, time.Now(), c.node.Name)
	if n == nil {
		return
	}
	for _, k := range gone {
		c.log.Info("drain dropped: the real server is no longer in the site file", "drain", k.String(), "at", when)
	}
	c.drainRev = n.rev
	if err := saveDrains(c.site.StateDir, n); err != nil {
		c.log.Error("drains: saving the set without the dropped drains", "err", err)
	}
	c.drains = n
}

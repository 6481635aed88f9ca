package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/havip/havip/internal/vrrp"
)

// failover is the planned-handover drill: every named group (all groups
// this node is master of when none are named) resigns, and the peer's
// takeover is timed from the resign to its first advert as master. The
// controller only picks the groups; the drills run on their own goroutine
// and talk to the groups directly.
func (c *controller) failover(req failoverReq) {
	var todo []*group
	for _, n := range req.groups {
		if c.groups[n] == nil {
			req.reply <- failoverReply{err: fmt.Errorf("no group named %q", n)}
			return
		}
	}
	for name, r := range c.groups {
		if len(req.groups) == 0 && c.states[name] == vrrp.Master || slices.Contains(req.groups, name) {
			todo = append(todo, r.g)
		}
	}
	if len(todo) == 0 {
		req.reply <- failoverReply{err: errors.New("this node is master of no group: run the drill on the master")}
		return
	}
	slices.SortFunc(todo, func(a, b *group) int { return cmp.Compare(a.name, b.name) })
	from := c.node.Name
	go func() {
		out := make([]drillResult, len(todo))
		done := make(chan struct{}, len(todo))
		for i, g := range todo {
			go func() { out[i] = drill(c.ctx, g, from); done <- struct{}{} }()
		}
		for range todo {
			<-done
		}
		var err error
		for _, r := range out {
			if r.err != "" {
				err = errors.New("failover drill failed for at least one group")
			}
		}
		req.reply <- failoverReply{results: out, err: err}
	}()
}

// drillResult is one group's handover.
type drillResult struct {
	group, from, to string
	handover        time.Duration // resign -> the peer's first advert as master
	gap             time.Duration // VIP released -> the peer answers for it
	err             string
}

func drill(ctx context.Context, g *group, from string) drillResult {
	res := drillResult{group: g.name, from: from}
	var start, released time.Time
	var rxBefore uint64
	var src string
	var advert time.Duration
	state := vrrp.Initialize
	err := g.do(ctx, func() {
		state = g.m.Status().State
		if state != vrrp.Master {
			return
		}
		rxBefore = g.m.Status().Counters.RxAdverts
		src, advert = g.connSrc.String(), g.in.cfg.Advert
		start = time.Now()
		g.exec(start, g.m.Resign(start))
		released = time.Now()
		g.publish()
	})
	if err != nil {
		res.err = err.Error()
		return res
	}
	if state != vrrp.Master {
		res.err = "not master here (" + state.String() + ")"
		return res
	}
	// The peer's first advert as master ends the handover.
	limit := time.Now().Add(3*advert + time.Second)
	for time.Now().Before(limit) {
		s := g.snap.Load()
		st := s.status
		if st.Counters.RxAdverts > rxBefore && st.MasterAddr.IsValid() && st.MasterAddr.String() != src && st.MasterPriority > 0 && !s.lastRx.IsZero() {
			at := s.lastRx
			res.to = st.MasterAddr.String()
			res.handover = at.Sub(start)
			// The VIP had no owner from our release until the peer claimed
			// it, just before its first advert; a peer that was faster than
			// our release left no gap at all.
			res.gap = max(at.Sub(released), 0)
			return res
		}
		time.Sleep(200 * time.Microsecond)
	}
	res.err = "the peer did not take over within 3 advert intervals"
	return res
}

package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/havip/havip/internal/events"
	"github.com/havip/havip/internal/vrrp"
)

// The planned-handover drill (havip failover). It refuses, changing
// nothing, unless the peer is alive on the authenticated pair link, BACKUP
// for every group, with a priority above 0 and the same table digest
// (precheck). Then it is make-before-break: the peer is asked over the link
// to take the groups (call "takeover"): it becomes master at once, claims
// and announces the VIPs and answers; only then do we resign (priority-0
// advert, VIPs released). While the call runs we do not answer the peer's
// adverts (vrrp HoldHandover) and the peer drops ours (vrrp TakeOverFrom),
// so neither pulls the clients back. An answer that is not ok, or none
// within takeoverWait, keeps the VIPs here. --force skips the pre-checks;
// without a trusted link it resigns as a plain VRRP drill would
// (break-before-make: the peer takes over when it hears our priority 0).
//
// The controller only checks and picks the groups; the drill runs on its
// own goroutine and talks to the groups directly, never blocking the
// controller.

const (
	takeoverWait = time.Second      // for the peer's answer to "takeover"
	takeoverHold = 2 * time.Second  // the new master drops the old one's adverts this long at most
	handHold     = 3 * time.Second  // the old master does not answer the new one's adverts this long at most
	backWait     = 10 * time.Second // for the peer's whole drill back to us (--back)
)

// Call kinds of the pair link that the drill serves.
const (
	callTakeover = "takeover" // become master of these groups now; we resign right after
	callDrill    = "drill"    // run the drill of these groups back to the caller (havip failover --back)
	// callAbandon: the caller gave up waiting for call Abandon's answer
	// and kept its VIPs (a peer that hung and resumed, or an answer that
	// came too late): undo what that takeover started.
	callAbandon = "abandon"
)

// errDrillRefused is a drill refused by its pre-checks: nothing changed.
var errDrillRefused = errors.New("failover drill refused: the peer is not ready to take over (the VIPs stay here)")

// peerFacts is what the pre-checks need to know of the peer.
type peerFacts struct {
	node    string // "" when the site has no other director
	alive   bool
	trusted bool   // alive on the link authenticated with the site's pair key
	digest  string // its desired-table digest; "" when unknown
	groups  map[string]peerGroupFacts
}

type peerGroupFacts struct {
	state vrrp.State
	prio  uint8 // effective priority
}

// peerFactsOf is what the pre-checks need of the peer.
func peerFactsOf(v peerView) peerFacts {
	f := peerFacts{node: v.node, alive: v.alive, trusted: v.trusted, groups: map[string]peerGroupFacts{}}
	if v.table != nil {
		f.digest = v.table.Digest
	}
	for name, m := range v.groups {
		f.groups[name] = peerGroupFacts{state: m.State, prio: m.Prio}
	}
	return f
}

// precheck says why handing each of groups to the peer is unsafe, every
// reason of each group that fails; a group that passes has no entry. The
// drill runs only when the map is empty (or with --force).
func precheck(groups []string, peer peerFacts, ourDigest string) map[string]string {
	out := map[string]string{}
	for _, name := range groups {
		var why []string
		switch {
		case peer.node == "":
			why = append(why, "the site has no other director")
		case !peer.alive:
			why = append(why, fmt.Sprintf("peer %s is not alive on the pair link", peer.node))
		case !peer.trusted:
			why = append(why, fmt.Sprintf("the pair link to %s is not authenticated (set [site] pair_key on both)", peer.node))
		}
		if peer.node != "" && peer.alive {
			g, known := peer.groups[name]
			switch {
			case !known:
				why = append(why, fmt.Sprintf("peer %s does not run this group", peer.node))
			case g.state != vrrp.Backup:
				why = append(why, fmt.Sprintf("peer %s is %s for it, not BACKUP", peer.node, g.state))
			case g.prio == 0:
				why = append(why, fmt.Sprintf("peer %s has priority 0 for it", peer.node))
			}
			if ourDigest != "" && peer.digest != "" && ourDigest != peer.digest {
				why = append(why, fmt.Sprintf("the IPVS tables differ (digest here %s, on %s %s)", ourDigest, peer.node, peer.digest))
			}
		}
		if len(why) > 0 {
			out[name] = strings.Join(why, "; ")
		}
	}
	return out
}

// drillResult is one group's handover.
type drillResult struct {
	group, from, to string
	mode            string        // modeMBB or modeResign; "" when refused
	handover        time.Duration // make-before-break: takeover request -> the peer's answer; resign: resign -> the peer's first advert
	firstAdvert     time.Duration // drill start -> the peer's first advert as master heard here; 0 when not heard
	refused         bool
	err             string
	resigned        time.Time // when we resigned (resign mode: the handover starts)
}

const (
	modeMBB    = "make-before-break"
	modeResign = "resign"
)

// failover starts the drill of req (see the comment at the top).
func (c *controller) failover(req failoverReq) {
	if req.back {
		c.failoverBack(req)
		return
	}
	for _, n := range req.groups {
		if c.groups[n] == nil {
			req.reply <- failoverReply{err: fmt.Errorf("no group named %q", n)}
			return
		}
	}
	names := map[string]bool{}
	for name := range c.groups {
		if len(req.groups) == 0 && c.states[name] == vrrp.Master || slices.Contains(req.groups, name) {
			names[name] = true
		}
	}
	// A sync group moves whole: its members are handed over together, so
	// the peer takes them all under the same guard.
	for name := range maps.Clone(names) {
		if gc := c.site.Group(name); gc != nil && gc.SyncGroup != "" {
			for _, m := range c.site.SyncGroupMembers(gc.SyncGroup) {
				if c.groups[m] != nil {
					names[m] = true
				}
			}
		}
	}
	if len(names) == 0 {
		req.reply <- failoverReply{err: errors.New("this node is master of no group: run the drill on the master (or havip failover --back here)")}
		return
	}
	sorted := slices.Sorted(maps.Keys(names))
	facts := peerFactsOf(c.peer)
	if c.pair == nil {
		facts.node = ""
	}
	refusals := precheck(sorted, facts, c.ownDigest())
	if len(refusals) > 0 && !req.force {
		var out []drillResult
		for _, n := range sorted {
			why := refusals[n]
			if why == "" {
				why = "not run: another group of the drill is not ready"
			}
			out = append(out, drillResult{group: n, from: c.node.Name, to: facts.node, refused: true, err: why})
		}
		c.log.Warn("failover drill refused; nothing changed", "refusals", refusals)
		c.drillsRefused.Add(1)
		c.note(events.Drill, events.Fields{"groups": sorted, "peer": facts.node, "refused": true, "refusals": refusals})
		req.reply <- failoverReply{results: out, err: errDrillRefused}
		return
	}
	if len(refusals) > 0 {
		c.log.Warn("failover drill forced past its pre-checks", "refusals", refusals)
	}
	todo := make([]*group, 0, len(sorted))
	for _, n := range sorted {
		todo = append(todo, c.groups[n].g)
	}
	d := handover{ctx: c.ctx, pair: c.pair, from: c.node.Name, peer: facts.node, force: req.force, groups: todo}
	mbb := c.pair != nil && facts.alive && facts.trusted
	go func() {
		var out []drillResult
		if mbb {
			out = d.makeBeforeBreak()
		} else {
			out = d.resign(todo)
		}
		slices.SortFunc(out, func(a, b drillResult) int { return cmp.Compare(a.group, b.group) })
		var err error
		if slices.ContainsFunc(out, func(r drillResult) bool { return r.err != "" }) {
			err = errors.New("failover drill failed for at least one group (those keep their VIPs here)")
		}
		errs := map[string]string{}
		for _, r := range out {
			if r.err != "" {
				errs[r.group] = r.err
			}
		}
		mode := modeResign
		if mbb {
			mode = modeMBB
		}
		c.drillsRun.Add(1)
		c.note(events.Drill, events.Fields{"groups": sorted, "peer": facts.node, "refused": false, "forced": req.force && len(refusals) > 0, "mode": mode, "errors": errs})
		req.reply <- failoverReply{results: out, err: err}
	}()
}

// handover is one drill from this node to the peer.
type handover struct {
	ctx        context.Context
	pair       *pairLink
	from, peer string
	force      bool
	groups     []*group
}

// makeBeforeBreak asks the peer to take the groups, then resigns those it
// took.
func (d handover) makeBeforeBreak() []drillResult {
	start := time.Now()
	var ready []*group
	var out []drillResult
	for _, g := range d.groups {
		var st vrrp.State
		err := g.do(d.ctx, func() {
			st = g.m.Status().State
			if st == vrrp.Master {
				g.m.HoldHandover(time.Now().Add(handHold))
				g.watchFirstAdvert(start)
			}
		})
		switch {
		case err != nil:
			out = append(out, d.result(g, modeMBB, err.Error()))
		case st != vrrp.Master:
			out = append(out, d.result(g, modeMBB, "not master here ("+st.String()+")"))
		default:
			ready = append(ready, g)
		}
	}
	if len(ready) == 0 {
		return out
	}
	names := make([]string, len(ready))
	for i, g := range ready {
		names[i] = g.name
	}
	ctx, cancel := context.WithTimeout(d.ctx, takeoverWait)
	ans, err := d.pair.call(ctx, d.peer, pairCall{Kind: callTakeover, Groups: names})
	cancel()
	answered := time.Now()
	var resign []*group
	forced := map[*group]bool{}
	for _, g := range ready {
		why := ""
		switch gerr, ok := ans.Groups[g.name]; {
		case err != nil:
			why = fmt.Sprintf("no takeover answer from %s: %v", d.peer, err)
		case ans.Err != "":
			why = fmt.Sprintf("%s refused the takeover: %s", d.peer, ans.Err)
		case !ok:
			why = fmt.Sprintf("%s did not answer for this group", d.peer)
		case gerr != "":
			why = fmt.Sprintf("%s could not take over: %s", d.peer, gerr)
		default:
			// Its word is not enough: make before break means its
			// advert as master has reached us before we release (a
			// broken peer, or one whose adverts do not reach us, would
			// leave the VIPs unowned until our timer).
			if lim, ok := d.awaitPeerAdvert(g); !ok {
				why = fmt.Sprintf("%s said it took over, but no advert of it as master reached this node within %s", d.peer, lim)
			}
		}
		if why == "" {
			resign = append(resign, g)
			continue
		}
		if d.force {
			// Forced: resign anyway; the peer takes over when it hears
			// our priority 0, as in a plain VRRP drill.
			g.log.Warn("failover drill: the peer did not take over; forced, resigning anyway", "reason", why)
			resign = append(resign, g)
			forced[g] = true
			continue
		}
		// Keep the VIPs, and make sure the clients know they are here
		// in case the peer claimed them before failing.
		_ = g.do(d.ctx, func() {
			g.m.HoldHandover(time.Time{})
			g.stopWatch()
			if g.m.Status().State == vrrp.Master {
				g.claim.Announce(context.Background())
			}
		})
		g.log.Warn("failover drill: the peer did not take over; keeping the VIPs", "reason", why)
		out = append(out, d.result(g, modeMBB, why))
	}
	for _, g := range resign {
		var st vrrp.State
		var at time.Time
		err := g.do(d.ctx, func() {
			st = g.m.Status().State
			at = time.Now()
			g.exec(at, g.m.Resign(at))
			g.publish()
		})
		r := d.result(g, modeMBB, "")
		r.resigned, r.handover = at, answered.Sub(start)
		if forced[g] {
			// Break-before-make after all: timed like the resign drill.
			r.mode, r.handover = modeResign, 0
		}
		switch {
		case err != nil:
			r.err = err.Error()
		case st == vrrp.Backup:
			// A peer that outranks us sent us to BACKUP with its first
			// advert as master (after it claimed the VIPs): handed over.
		case st != vrrp.Master:
			r.err = "left MASTER during the drill (" + st.String() + ")"
		}
		out = append(out, r)
	}
	d.firstAdverts(out, start)
	return out
}

// awaitPeerAdvert waits (bounded: 3 advert intervals, at most 2 s, well
// within handHold) until g's watch has seen the peer's first advert as
// master since the drill began. The watch stays on for firstAdverts.
func (d handover) awaitPeerAdvert(g *group) (time.Duration, bool) {
	lim := min(3*g.snap.Load().cfg.Advert, 2*time.Second)
	limit := time.Now().Add(lim)
	for {
		var seen bool
		_ = g.do(d.ctx, func() { seen = !g.drillFirst.IsZero() })
		if seen {
			return lim, true
		}
		if !time.Now().Before(limit) || d.ctx.Err() != nil {
			return lim, false
		}
		time.Sleep(time.Millisecond)
	}
}

// resign is the drill without a trusted peer (forced): resign, and time
// the peer's takeover by its first advert as master.
func (d handover) resign(todo []*group) []drillResult {
	start := time.Now()
	var out []drillResult
	for _, g := range todo {
		var st vrrp.State
		var resigned time.Time
		err := g.do(d.ctx, func() {
			st = g.m.Status().State
			if st != vrrp.Master {
				return
			}
			now := time.Now()
			g.watchFirstAdvert(now)
			g.exec(now, g.m.Resign(now))
			g.publish()
			resigned = now
		})
		r := d.result(g, modeResign, "")
		r.resigned = resigned
		switch {
		case err != nil:
			r.err = err.Error()
		case st != vrrp.Master:
			r.err = "not master here (" + st.String() + ")"
		}
		out = append(out, r)
	}
	d.firstAdverts(out, start)
	return out
}

// firstAdverts waits (bounded) for the peer's first advert as master of
// each group that handed over and fills it in. A group that resigned
// without the peer's answer fails if its advert does not come: nothing
// else confirms the takeover.
func (d handover) firstAdverts(out []drillResult, start time.Time) {
	byName := map[string]*group{}
	for _, g := range d.groups {
		byName[g.name] = g
	}
	for i := range out {
		r := &out[i]
		g := byName[r.group]
		if r.err != "" || g == nil {
			continue
		}
		limit := time.Now().Add(3*g.snap.Load().cfg.Advert + time.Second)
		var at time.Time
		var src string
		for {
			_ = g.do(d.ctx, func() {
				at, src = g.drillFirst, g.drillSrc.String()
				if !at.IsZero() || !time.Now().Before(limit) {
					g.stopWatch()
				}
			})
			if !at.IsZero() || !time.Now().Before(limit) || d.ctx.Err() != nil {
				break
			}
			time.Sleep(time.Millisecond)
		}
		switch {
		case !at.IsZero():
			r.firstAdvert = at.Sub(start)
			if r.mode == modeResign {
				r.handover = max(at.Sub(r.resigned), 0)
			}
			if r.to == "" {
				r.to = src
			}
		case r.mode == modeResign:
			r.err = "the peer did not take over within 3 advert intervals"
		}
	}
}

func (d handover) result(g *group, mode, err string) drillResult {
	return drillResult{group: g.name, from: d.from, to: d.peer, mode: mode, err: err}
}

// watchFirstAdvert has the group note the first advert with a priority
// above 0 from another router after since (see noteAdvert). On the group
// goroutine.
func (g *group) watchFirstAdvert(since time.Time) {
	g.drillSince, g.drillFirst, g.drillSrc = since, time.Time{}, netip.Addr{}
}

func (g *group) stopWatch() { g.drillSince = time.Time{} }

// noteAdvert is the watch: called for each advert the machine accepted.
func (g *group) noteAdvert(p *rxPacket) {
	if g.drillSince.IsZero() || !g.drillFirst.IsZero() || p.at.Before(g.drillSince) || p.meta.Src == g.connSrc {
		return
	}
	if pkt, r := vrrp.Parse(p.b, p.meta.Src, p.meta.Dst); r == vrrp.DropNone && pkt.Priority > 0 {
		g.drillFirst, g.drillSrc = p.at, p.meta.Src
	}
}

// ownDigest is the digest of this node's desired IPVS table, as the pair
// link tells the peer; "" before the first.
func (c *controller) ownDigest() string {
	if m := c.mirror.Load(); m != nil {
		return m.table.Digest
	}
	return ""
}

// takeover is the peer's side of make-before-break: each named group
// that is BACKUP here with a priority above 0 becomes master at once
// (claiming and announcing its VIPs) and drops the old master's adverts
// until it resigns (at most takeoverHold); the answer says, per group,
// whether it is master now.
func (c *controller) takeover(pc peerCall) {
	ans := pairAnswer{ID: pc.call.ID, Groups: map[string]string{}}
	type pending struct {
		name  string
		done  chan string
		state *atomic.Int32
	}
	var waits []pending
	rec := takeoverRec{from: pc.from, id: pc.call.ID}
	for _, name := range pc.call.Groups {
		r := c.groups[name]
		if r == nil {
			ans.Groups[name] = "no such group here"
			continue
		}
		if st := c.states[name]; st != vrrp.Backup {
			ans.Groups[name] = "not BACKUP here (" + st.String() + ")"
			continue
		}
		g := r.g
		done := make(chan string, 1)
		state := new(atomic.Int32)
		// Posted now, before any state change of a group reaches the
		// controller: a sync group member that follows another (a plain
		// TakeOver, without the guard) finds itself master already.
		reason := "planned handover from " + pc.from
		if !g.post(func() {
			if !state.CompareAndSwap(notYet, started) {
				return // the answer went without this group: leave it be
			}
			if st := g.m.Status().State; st != vrrp.Backup {
				done <- "not BACKUP here (" + st.String() + ")"
				return
			}
			now := time.Now()
			g.exec(now, g.m.TakeOverFrom(now, takeoverHold, reason))
			g.log.Info("planned handover: master now; the old master's adverts are dropped (reason handover) until it resigns", "at_most", takeoverHold)
			g.publish()
			switch {
			case g.m.Status().State != vrrp.Master:
				done <- "could not become master (" + g.m.Status().State.String() + ")"
			case g.claimErr != "":
				done <- "VIPs not claimed: " + g.claimErr
			default:
				done <- ""
			}
		}) {
			ans.Groups[name] = "group busy"
			continue
		}
		waits = append(waits, pending{name, done, state})
		rec.groups = append(rec.groups, takeoverGroup{g: g, state: state})
	}
	c.takeovers = append(c.takeovers, rec)
	if len(c.takeovers) > maxTakeoverRecs {
		c.takeovers = c.takeovers[1:]
	}
	c.log.Info("planned handover: taking over for the peer", "peer", pc.from, "groups", pc.call.Groups)
	go func() {
		// Answer in time for the caller's bound, which counts the trip.
		timer := time.NewTimer(takeoverWait * 3 / 4)
		defer timer.Stop()
		expired := false
		for _, w := range waits {
			if !expired {
				select {
				case e := <-w.done:
					ans.Groups[w.name] = e
					continue
				case <-timer.C:
					expired = true
				}
			}
			if w.state.CompareAndSwap(notYet, abandoned) {
				ans.Groups[w.name] = "timed out (not taken over)"
			} else {
				ans.Groups[w.name] = <-w.done // it is running: its result comes at once
			}
		}
		pc.reply(ans)
	}()
}

// Each group's takeover for a call starts at most once, and not after
// the answer has left without it or the caller abandoned the call.
const (
	notYet int32 = iota
	started
	abandoned
)

// takeoverRec is a takeover call this node served, kept (the last
// maxTakeoverRecs) so that the caller can abandon it.
type takeoverRec struct {
	from   string
	id     uint64
	groups []takeoverGroup
}

type takeoverGroup struct {
	g     *group
	state *atomic.Int32
}

const maxTakeoverRecs = 16

// abandonTakeover undoes a takeover call the caller gave up on: a group
// not started yet never starts; one that took over drops its guard, so
// the caller's adverts (it kept its VIPs, at its own priority) count
// again and the election settles within an advert interval, instead of
// both holding the VIPs for takeoverHold.
func (c *controller) abandonTakeover(pc peerCall) {
	defer pc.reply(pairAnswer{})
	for i, rec := range c.takeovers {
		if rec.from != pc.from || rec.id != pc.call.Abandon {
			continue
		}
		c.takeovers = append(c.takeovers[:i], c.takeovers[i+1:]...)
		for _, tg := range rec.groups {
			if tg.state.CompareAndSwap(notYet, abandoned) {
				continue
			}
			g := tg.g
			g.post(func() {
				if g.m.EndGuard() {
					g.log.Warn("planned handover abandoned by the old master (it kept its VIPs): its adverts count again", "peer", pc.from)
				}
			})
		}
		return
	}
}

// failoverBack (havip failover --back) asks the peer to run the drill of
// the groups back to this node: by default those this node is BACKUP of
// and the peer MASTER of. The peer runs its own pre-checks against us.
func (c *controller) failoverBack(req failoverReq) {
	facts := peerFactsOf(c.peer)
	for _, n := range req.groups {
		if c.groups[n] == nil {
			req.reply <- failoverReply{err: fmt.Errorf("no group named %q", n)}
			return
		}
	}
	names := slices.Clone(req.groups)
	if len(names) == 0 {
		for name := range c.groups {
			if c.states[name] == vrrp.Backup && facts.groups[name].state == vrrp.Master {
				names = append(names, name)
			}
		}
	}
	slices.Sort(names)
	if len(names) == 0 {
		req.reply <- failoverReply{err: errors.New("the peer is master of no group this node is BACKUP of: nothing to take back")}
		return
	}
	refuse := func(why string) {
		var out []drillResult
		for _, n := range names {
			out = append(out, drillResult{group: n, from: facts.node, to: c.node.Name, refused: true, err: why})
		}
		req.reply <- failoverReply{results: out, err: errDrillRefused}
	}
	switch {
	case c.pair == nil || facts.node == "":
		refuse("the site has no other director")
		return
	case !facts.alive:
		refuse(fmt.Sprintf("peer %s is not alive on the pair link", facts.node))
		return
	case !facts.trusted:
		refuse(fmt.Sprintf("the pair link to %s is not authenticated (set [site] pair_key on both)", facts.node))
		return
	}
	groups := map[string]*group{}
	for _, n := range names {
		groups[n] = c.groups[n].g
	}
	pair, peer, self := c.pair, facts.node, c.node.Name
	ctx := c.ctx
	go func() {
		start := time.Now()
		cctx, cancel := context.WithTimeout(ctx, backWait)
		ans, err := pair.call(cctx, peer, pairCall{Kind: callDrill, Groups: names})
		cancel()
		var out []drillResult
		refused := false
		for _, n := range names {
			r := drillResult{group: n, from: peer, to: self, mode: modeMBB}
			gerr, ok := ans.Groups[n]
			switch {
			case err != nil:
				r.err = fmt.Sprintf("no answer from %s: %v", peer, err)
			case !ok && ans.Err != "":
				r.err = ans.Err
			case !ok:
				r.err = fmt.Sprintf("%s did not answer for this group", peer)
			case strings.HasPrefix(gerr, refusedPrefix):
				r.refused, refused = true, true
				r.err = strings.TrimPrefix(gerr, refusedPrefix)
			case gerr != "":
				r.err = gerr
			}
			// The handover as seen here: the request until this node
			// became master of the group.
			if s := groups[n].snap.Load().status; r.err == "" && s.State == vrrp.Master && s.Since.After(start) {
				r.handover = s.Since.Sub(start)
			}
			out = append(out, r)
		}
		var rerr error
		switch {
		case refused:
			rerr = errDrillRefused
		case slices.ContainsFunc(out, func(r drillResult) bool { return r.err != "" }):
			rerr = errors.New("failover drill back failed for at least one group")
		}
		req.reply <- failoverReply{results: out, err: rerr}
	}()
}

// refusedPrefix marks, in a drill's answer, a group refused by the
// pre-checks (nothing changed) rather than failed.
const refusedPrefix = "refused: "

// drillBack is the peer's side of --back: the drill of the named groups
// from here to the caller, with the usual pre-checks against it.
func (c *controller) drillBack(pc peerCall) {
	if pc.from != c.peer.node {
		pc.reply(pairAnswer{ID: pc.call.ID, Err: fmt.Sprintf("%s is not the peer this node hands over to", pc.from)})
		return
	}
	if len(pc.call.Groups) == 0 {
		pc.reply(pairAnswer{ID: pc.call.ID, Err: "no groups named"})
		return
	}
	reply := make(chan failoverReply, 1)
	c.log.Info("the peer asks for its groups back", "peer", pc.from, "groups", pc.call.Groups)
	c.failover(failoverReq{groups: pc.call.Groups, reply: reply})
	go func() {
		r := <-reply
		ans := pairAnswer{ID: pc.call.ID, Groups: map[string]string{}}
		for _, res := range r.results {
			switch {
			case res.refused:
				ans.Groups[res.group] = refusedPrefix + res.err
			default:
				ans.Groups[res.group] = res.err
			}
		}
		if len(r.results) == 0 && r.err != nil {
			ans.Err = r.err.Error()
		}
		pc.reply(ans)
	}()
}

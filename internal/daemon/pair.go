package daemon

import (
	"bytes"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/havip/havip/internal/pairwire"

	"github.com/havip/havip/internal/events"
	"github.com/havip/havip/internal/vrrp"
)

// pairLink is the state link between the two directors, outside VRRP
// (transport in pairconn.go). Each side says which site-file revision it
// runs, per group its state, priority, configured VIPs and the list it
// advertises, and its operator state. VRRP alone decides who is master;
// the pair link lets a node see a dual master when adverts do not cross,
// lets a group keep advertising the list the peer knows during a rolling
// push, mirrors drains, lets a drill hand over make-before-break, and
// takes over in milliseconds when the master's daemon dies.
//
// Without a pair key it only observes: what it hears is shown, but no
// action follows from it (peerView.trusted is false).
//
// It owns its sockets and what it heard; it reads the local side through
// local() (published snapshots, never a lock of the controller's) and
// tells the controller about news through events(). Sockets that cannot
// be bound (the node address is not there yet) are retried with backoff.
type pairLink struct {
	node   string
	self   netip.Addr
	port   uint16
	log    *slog.Logger
	local  func() pairLocal
	events func(any)
	grace  func(group string) time.Duration // a dual master shorter than this is an election, not a fault
	note   func(events.Kind, events.Fields) // the event journal (havip events); nil: none
	nonces pairwire.Nonces

	mu        sync.Mutex
	key       pairwire.Key // nil: unauthenticated, observe only
	site      string
	peers     map[netip.Addr]string // address -> node name
	ln        *net.TCPListener
	udp       *net.UDPConn
	bindErr   string
	sessions  map[string]*pairSession // node -> the established session
	dialErr   map[string]string       // node -> why the last dial failed
	seq       uint64
	byeWhy    string                     // set once this node announced its close
	heard     map[string]peerHeard       // node -> last message
	alive     map[string]bool            // node -> alive as last reported to the controller
	dualSince map[string]time.Time       // group -> both sides master since
	dual      map[string]bool            // group -> dual master reported
	drops     map[string]uint64          // reason -> count
	fast      uint64                     // fast-path takeovers (the peer died as master of something)
	calls     map[uint64]chan pairAnswer // our calls waiting for an answer
	callID    uint64

	badDrains atomic.Uint64 // messages whose drain set did not validate (the rest was used)

	// Messages sent in full and as heartbeats (pairMsg.Same).
	sentFull, sentSame atomic.Uint64
	// noHeartbeats: speak as a havip from before heartbeats (never say
	// HB): for tests of a mixed pair.
	noHeartbeats bool
}

// pairLocal is what this node says.
type pairLocal struct {
	rev    string
	groups map[string]pairGroupMsg
	drains *drainsJSON // operator drains (drains.go)
	table  *pairTable  // the desired IPVS table (mirror.go)
}

type pairMsg struct {
	Site   string                  `json:"site"`
	Node   string                  `json:"node"`
	Seq    uint64                  `json:"seq"`
	Rev    string                  `json:"rev"`
	Groups map[string]pairGroupMsg `json:"groups"`
	Drains *drainsJSON             `json:"drains,omitempty"`
	Table  *pairTable              `json:"table,omitempty"`
	// Bye: this node is about to close the link on purpose (why); the
	// close that follows is no crash.
	Bye string `json:"bye,omitempty"`
	// A request to the peer, or the answer to one (pairCall).
	Call   *pairCall   `json:"call,omitempty"`
	Answer *pairAnswer `json:"answer,omitempty"`
	// HB: the sender understands Same, so it may be sent heartbeats.
	// Same: a heartbeat: Rev, Groups, Drains and Table are left out and
	// are those of the last message on this session that had them. A
	// site of 255 groups would otherwise marshal, MAC and parse them all
	// four times a second, on both directors, for nothing.
	HB   bool `json:"hb,omitempty"`
	Same bool `json:"same,omitempty"`
}

type pairGroupMsg struct {
	State  vrrp.State    `json:"state"`
	Prio   uint8         `json:"prio"`             // effective priority
	Cfg    []netip.Addr  `json:"cfg"`              // configured VIPs
	Advert time.Duration `json:"advert,omitempty"` // configured advert interval, VRRPv2 only
	Adv    []netip.Addr  `json:"adv"`              // the list advertised now
	Key    string        `json:"key"`              // interface, VRID, version, mode, family in the site file
}

type peerHeard struct {
	at     time.Time
	closed bool // the session that carried it ended
	addr   netip.Addr
	rev    string
	groups map[string]pairGroupMsg
	drains *drainSet // nil: none sent, or it did not validate
	table  *pairTable
}

// peerView is what the controller learns: the peer's revision and groups.
type peerView struct {
	node   string
	alive  bool
	rev    string
	groups map[string]pairGroupMsg
	drains *drainSet
	table  *pairTable
	// trusted: the peer is authenticated, so its operator state may be
	// adopted.
	trusted bool
}

// group returns what the peer said about group name. An untrusted peer
// counts as not alive: nothing follows from what it says.
func (v peerView) group(name string) peerGroup {
	m, ok := v.groups[name]
	return peerGroup{alive: v.alive && v.trusted, known: ok, state: m.State, cfg: spoken{addrs: m.Cfg, advert: m.Advert}, adv: m.Adv, key: m.Key}
}

// peerYielded: the peer stopped being master of a group this node is
// master of (the end of a dual master): re-announce, since the peer's
// last gratuitous ARPs may be what the clients kept.
type peerYielded struct{ group string }

const (
	pairInterval = 250 * time.Millisecond
	pairAlive    = 2 * time.Second
)

func newPairLink(site, node string, self netip.Addr, port uint16, peers map[netip.Addr]string, key pairwire.Key,
	local func() pairLocal, events func(any), grace func(string) time.Duration, log *slog.Logger) *pairLink {
	return &pairLink{
		site: site, node: node, self: self, port: port, peers: peers, key: key, log: log, local: local, events: events, grace: grace,
		heard: map[string]peerHeard{}, alive: map[string]bool{}, sessions: map[string]*pairSession{}, dialErr: map[string]string{}, calls: map[uint64]chan pairAnswer{},
		dual: map[string]bool{}, dualSince: map[string]time.Time{}, drops: map[string]uint64{},
	}
}

// update changes the site name, peers and key in place (a reload that
// keeps the node address and port). A new key, or a site or peer
// change, closes the sessions after a bye, so each is authenticated
// again under what the file now says.
func (p *pairLink) update(site string, peers map[netip.Addr]string, key pairwire.Key) {
	p.mu.Lock()
	again := !bytes.Equal(p.key, key) || p.site != site || !maps.Equal(p.peers, peers)
	p.mu.Unlock()
	if again {
		p.bye("reload: the pair link's site, peers or key changed")
	}
	p.mu.Lock()
	p.site, p.peers, p.key = site, peers, key
	for name := range p.heard {
		if !slices.Contains(slices.Collect(maps.Values(peers)), name) {
			delete(p.heard, name)
			delete(p.alive, name)
		}
	}
	if again {
		for _, s := range p.sessions {
			s.ours = true
			s.s.Close()
		}
		p.byeWhy = ""
	}
	p.mu.Unlock()
}

func (p *pairLink) config() (string, map[netip.Addr]string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.site, p.peers
}

// heardFrom records m, a message from the peer name; same: m is a
// heartbeat (readFrom filled in the state of the session's last full
// message), so nothing in it is new and its drains are not checked again.
func (p *pairLink) heardFrom(name string, addr netip.Addr, m pairMsg, same bool) {
	local := p.local()
	p.mu.Lock()
	prev, had := p.heard[name]
	var yielded []string
	for g, st := range prev.groups {
		if st.State == vrrp.Master && m.Groups[g].State != vrrp.Master && local.groups[g].State == vrrp.Master {
			yielded = append(yielded, g)
		}
	}
	h := peerHeard{at: time.Now(), addr: addr, rev: m.Rev, groups: m.Groups, table: m.Table}
	if same && had {
		h.drains = prev.drains
	} else if m.Drains != nil {
		d, err := m.Drains.set()
		if err != nil && p.badDrains.Add(1) == 1 {
			p.log.Warn("pair link: the peer's drain set does not validate; ignoring it (further ones are only counted)", "peer", name, "err", err)
		}
		h.drains = d
	}
	p.heard[name] = h
	news := !had || !p.alive[name] || !same && (prev.rev != m.Rev || !sameGroupMsgs(prev.groups, m.Groups) ||
		!sameDrains(prev.drains, h.drains) || !sameTable(prev.table, h.table))
	if !had || !p.alive[name] {
		p.record(events.PairLinkUp, events.Fields{"peer": name, "address": addr.String()})
	}
	p.alive[name] = true
	trusted := p.key != nil
	p.mu.Unlock()
	for _, g := range yielded {
		if trusted {
			p.events(peerYielded{group: g})
		}
	}
	if news {
		p.events(p.view(name))
	}
	p.checkPeers()
}

// view is what the controller gets about peer name.
func (p *pairLink) view(name string) peerView {
	p.mu.Lock()
	defer p.mu.Unlock()
	h := p.heard[name]
	// Trusted: the peer proved it holds the pair key (every session is
	// authenticated with the key of the moment; without one, nobody is).
	return peerView{node: name, alive: p.alive[name], rev: h.rev, groups: h.groups, drains: h.drains, table: h.table, trusted: p.key != nil}
}

// checkPeers reports peers that fell silent and logs the start and end of
// dual-master episodes. Both sides being master for a moment is normal
// VRRP convergence; only one that outlasts the grace is reported.
func (p *pairLink) checkPeers() {
	local := p.local()
	now := time.Now()
	var silent []string
	p.mu.Lock()
	for name, h := range p.heard {
		if p.alive[name] && (h.closed || now.Sub(h.at) >= pairAlive) {
			p.alive[name] = false
			silent = append(silent, name)
			f := events.Fields{"peer": name, "address": h.addr.String(), "silent_for": now.Sub(h.at).Round(time.Millisecond).String()}
			if h.closed {
				f["why"] = "the connection ended"
			}
			p.record(events.PairLinkDown, f)
		}
	}
	for g := range p.dualSince {
		if _, ok := local.groups[g]; !ok {
			delete(p.dualSince, g)
		}
	}
	fresh := p.peerFreshLocked(now)
	for g, st := range local.groups {
		both := st.State == vrrp.Master && p.peerStateLocked(g) == vrrp.Master
		if both && !fresh {
			// The peer's last word is older than a few heartbeats: it may
			// have died as master (a crash we just took over from), so its
			// state neither starts nor confirms a dual master until it
			// speaks again or falls silent.
			continue
		}
		if !both {
			delete(p.dualSince, g)
			if p.dual[g] {
				p.dual[g] = false
				p.log.Info("dual master resolved", "group", g)
				p.record(events.DualMasterEnd, events.Fields{"group": g})
			}
			continue
		}
		since, ok := p.dualSince[g]
		if !ok {
			p.dualSince[g] = now
			continue
		}
		if !p.dual[g] && now.Sub(since) >= p.grace(g) {
			p.dual[g] = true
			p.log.Error("DUAL MASTER: the peer also holds this group; adverts are not crossing between the directors",
				"group", g, "for", now.Sub(since).Round(time.Millisecond))
			p.record(events.DualMasterStart, events.Fields{"group": g, "for": now.Sub(since).Round(time.Millisecond).String()})
		}
	}
	p.mu.Unlock()
	for _, name := range silent {
		p.log.Warn("pair link: peer no longer heard", "peer", name)
		p.events(p.view(name))
	}
}

// pairStale is how old the peer's last message may be for its state to
// count towards a dual master: a few heartbeats.
const pairStale = 3 * pairInterval

// peerFreshLocked reports whether a live peer was heard within pairStale.
func (p *pairLink) peerFreshLocked(now time.Time) bool {
	for name, h := range p.heard {
		if p.alive[name] && now.Sub(h.at) < pairStale {
			return true
		}
	}
	return false
}

// record appends an event to the journal, when there is one.
func (p *pairLink) record(k events.Kind, f events.Fields) {
	if p.note != nil {
		p.note(k, f)
	}
}

// peerStateLocked is the state the live peer last reported for group g
// (Initialize when none).
func (p *pairLink) peerStateLocked(g string) vrrp.State {
	for name, h := range p.heard {
		if p.alive[name] {
			if st, ok := h.groups[g]; ok {
				return st.State
			}
		}
	}
	return vrrp.Initialize
}

// pairSnap is what status shows of the pair link.
type pairSnap struct {
	bindErr       string
	authenticated bool              // a pair key is set
	drops         map[string]uint64 // reason -> count
	fast          uint64            // fast-path takeovers
	badDrains     uint64
	peers         []pairPeerSnap
	dual          map[string]bool // group -> dual master reported and still holding
}

type pairPeerSnap struct {
	node     string
	addr     netip.Addr
	alive    bool
	lastSeen time.Time
	rev      string
	groups   map[string]pairGroupMsg
	drains   *drainSet
	table    *pairTable
	trusted  bool
	linkUp   bool   // a session is established
	dialErr  string // why the last dial failed, while the link is down
}

func (p *pairLink) snapshot() pairSnap {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := pairSnap{bindErr: p.bindErr, authenticated: p.key != nil, drops: maps.Clone(p.drops), fast: p.fast,
		badDrains: p.badDrains.Load(), dual: map[string]bool{}}
	for a, name := range p.peers {
		ps := pairPeerSnap{node: name, addr: a, linkUp: p.sessions[name] != nil}
		if !ps.linkUp {
			ps.dialErr = p.dialErr[name]
		}
		if h, ok := p.heard[name]; ok {
			ps.lastSeen, ps.alive, ps.rev, ps.groups = h.at, !h.closed && time.Since(h.at) < pairAlive, h.rev, h.groups
			ps.drains, ps.table, ps.trusted = h.drains, h.table, p.key != nil
		}
		s.peers = append(s.peers, ps)
	}
	sort.Slice(s.peers, func(i, j int) bool { return s.peers[i].node < s.peers[j].node })
	for g, d := range p.dual {
		if d && p.peerStateLocked(g) == vrrp.Master {
			s.dual[g] = true
		}
	}
	return s
}

func sameGroupMsgs(a, b map[string]pairGroupMsg) bool {
	if len(a) != len(b) {
		return false
	}
	for k, x := range a {
		y, ok := b[k]
		if !ok || x.State != y.State || x.Prio != y.Prio || x.Advert != y.Advert || x.Key != y.Key || !sameAddrSet(x.Cfg, y.Cfg) || !sameAddrSet(x.Adv, y.Adv) {
			return false
		}
	}
	return true
}

// sameLocal: a and b say the same (a heartbeat may stand for b).
func sameLocal(a, b pairLocal) bool {
	return a.rev == b.rev && sameGroupMsgs(a.groups, b.groups) && sameDrainsWire(a.drains, b.drains) && sameTable(a.table, b.table)
}

func sameDrainsWire(a, b *drainsJSON) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Revision == b.Revision && a.Changed.Equal(b.Changed) && a.By == b.By && len(a.Drains) == len(b.Drains)
}

func sameDrains(a, b *drainSet) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.rev == b.rev && a.changed.Equal(b.changed) && a.by == b.by
}

func sameTable(a, b *pairTable) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Digest == b.Digest
}

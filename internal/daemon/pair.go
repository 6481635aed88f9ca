package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/havip/havip/internal/ctl"
)

// pairLink is a small UDP heartbeat between the two directors, outside VRRP:
// each side says which groups it holds. It is how a node notices a dual
// master when adverts cannot cross (a partition that drops protocol 112),
// and how a failover drill learns that the peer took over.
type pairLink struct {
	site, node string
	conn       *net.UDPConn
	peers      map[netip.Addr]string // address -> node name
	port       uint16
	log        *slog.Logger
	local      func() map[string]string // group -> state

	grace func(group string) time.Duration // how long a dual master may last before it is reported
	// peerYielded is called when the peer stops being master of a group
	// we are master of: the end of a dual master, so we re-announce
	// (the peer's last gratuitous ARPs may have been the ones clients kept).
	peerYielded func(group string)

	mu        sync.Mutex
	heard     map[string]peerHeard // node -> last message
	dualSince map[string]time.Time // group -> both sides master since
	dual      map[string]bool      // group -> dual master reported

	drops atomic.Uint64
	kick  chan struct{}
	recv  chan struct{} // closed and replaced on every message (wakes drills)
}

type pairMsg struct {
	Site   string            `json:"site"`
	Node   string            `json:"node"`
	Seq    uint64            `json:"seq"`
	Groups map[string]string `json:"groups"`
}

type peerHeard struct {
	at     time.Time
	addr   netip.Addr
	groups map[string]string
}

const (
	pairInterval = 250 * time.Millisecond
	pairAlive    = 2 * time.Second
)

func newPairLink(site, node string, self netip.Addr, port uint16, peers map[netip.Addr]string, local func() map[string]string, grace func(string) time.Duration, log *slog.Logger) (*pairLink, error) {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(self, port)))
	if err != nil {
		return nil, fmt.Errorf("pair link: listen %s port %d: %w", self, port, err)
	}
	return &pairLink{
		site: site, node: node, conn: c, peers: peers, port: port, log: log, local: local,
		grace: grace, heard: map[string]peerHeard{}, dual: map[string]bool{}, dualSince: map[string]time.Time{},
		kick: make(chan struct{}, 1), recv: make(chan struct{}),
	}, nil
}

// notify asks for an immediate heartbeat (after a state change).
func (p *pairLink) notify() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

func (p *pairLink) run(ctx context.Context) {
	go p.readLoop()
	t := time.NewTicker(pairInterval)
	defer t.Stop()
	var seq uint64
	for {
		seq++
		p.send(seq)
		p.checkDual()
		select {
		case <-ctx.Done():
			seq++
			p.send(seq) // our final states (INIT) reach the peer at once
			p.conn.Close()
			return
		case <-t.C:
		case <-p.kick:
		}
	}
}

func (p *pairLink) send(seq uint64) {
	b, _ := json.Marshal(pairMsg{Site: p.site, Node: p.node, Seq: seq, Groups: p.local()})
	for a := range p.peers {
		_, _ = p.conn.WriteToUDPAddrPort(b, netip.AddrPortFrom(a, p.port))
	}
}

func (p *pairLink) readLoop() {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := p.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		var m pairMsg
		name, known := p.peers[from.Addr().Unmap()]
		if !known || json.Unmarshal(buf[:n], &m) != nil || m.Site != p.site || m.Node != name {
			if p.drops.Add(1) == 1 {
				p.log.Warn("pair link: dropped a message (unknown sender, wrong site or garbage); further drops are only counted", "from", from)
			}
			continue
		}
		local := p.local()
		p.mu.Lock()
		prev := p.heard[name]
		for g, st := range prev.groups {
			if st == "MASTER" && m.Groups[g] != "MASTER" && local[g] == "MASTER" && p.peerYielded != nil {
				go p.peerYielded(g)
			}
		}
		p.heard[name] = peerHeard{at: time.Now(), addr: from.Addr().Unmap(), groups: m.Groups}
		close(p.recv)
		p.recv = make(chan struct{})
		p.mu.Unlock()
		p.checkDual()
	}
}

// checkDual logs the start and end of a dual-master episode once each.
// Both sides being master for a moment is normal VRRP convergence (two
// nodes starting together); only one that outlasts the grace is reported.
func (p *pairLink) checkDual() {
	local := p.local()
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for g := range p.dualSince {
		if _, ok := local[g]; !ok {
			delete(p.dualSince, g)
		}
	}
	for g, st := range local {
		both := st == "MASTER" && p.peerStateLocked(g) == "MASTER"
		if !both {
			delete(p.dualSince, g)
			if p.dual[g] {
				p.dual[g] = false
				p.log.Info("dual master resolved", "group", g)
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
		}
	}
}

// peerStateLocked is the state the live peer last reported for group g.
func (p *pairLink) peerStateLocked(g string) string {
	for _, h := range p.heard {
		if time.Since(h.at) < pairAlive {
			if st, ok := h.groups[g]; ok {
				return st
			}
		}
	}
	return ""
}

// peerState returns the peer's state for group g and a channel closed on
// the next message heard.
func (p *pairLink) peerState(g string) (string, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.peerStateLocked(g), p.recv
}

// dualMaster reports a dual master that is reported and still holds: the
// peer must still be heard saying MASTER.
func (p *pairLink) dualMaster(g string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dual[g] && p.peerStateLocked(g) == "MASTER"
}

func (p *pairLink) status() []ctl.PeerStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []ctl.PeerStatus
	for a, name := range p.peers {
		ps := ctl.PeerStatus{Node: name, Address: a.String()}
		if h, ok := p.heard[name]; ok {
			ps.LastSeen = h.at
			ps.Alive = time.Since(h.at) < pairAlive
			ps.Groups = h.groups
		}
		out = append(out, ps)
	}
	return out
}

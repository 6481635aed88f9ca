package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/havip/havip/internal/pairwire"
	"github.com/havip/havip/internal/vrrp"
)

// The pair link's transport: one TCP connection per peer, opened by the
// node with the lower address and authenticated both ways with the pair
// key (package pairwire). Each side sends its state every pairInterval
// and at once on a change. Messages that fail authentication, replay an
// old exchange, come from an address that is no peer, or name another
// site are dropped and counted by reason, and the connection is closed.
//
// A connection that the peer's kernel closes (FIN or RST) without a
// "bye" first means the peer's process died while its host stays up:
// the fast path (peerDied) takes over the groups it was master of.
// Nothing else triggers it: a silent peer, a read timeout or a
// connection we closed ourselves are not evidence of death.

const (
	pairHandshake  = 2 * time.Second // a handshake that takes longer is dropped
	pairIdle       = 5 * time.Second // no frame for this long: close and redial (never the fast path)
	pairHandshakes = 4               // handshakes in progress at once; a newer one pushes out the oldest
)

// Drop reasons of the pair link, as counted in status and metrics.
const (
	dropUnknownSource = "unknown_source" // a connection from an address that is no peer
	dropWrongSite     = "wrong_site"     // another site's name, or a node name the address does not have
	dropForged        = "forged"         // authentication failed: no key, another key, or altered bytes
	dropReplayed      = "replayed"       // a recorded handshake or frame played again
	dropMalformed     = "malformed"      // not the protocol: garbage, cut short, oversized, bad JSON
	dropBusy          = "busy"           // a handshake pushed out by a newer one (too many in progress)
	dropLegacyUDP     = "legacy_udp"     // a datagram to the pair port: an old havip, or a forger
)

var pairDropReasons = []string{dropUnknownSource, dropWrongSite, dropForged, dropReplayed, dropMalformed, dropBusy, dropLegacyUDP}

// peerDied: the peer's kernel closed an authenticated connection that
// had not said bye: its daemon is gone. groups are those it was master
// of in its last message.
type peerDied struct {
	node   string
	groups []string
}

// pairSession is one established connection.
type pairSession struct {
	s    *pairwire.Session
	peer string
	kick chan struct{}
	// set by the reader: the peer said bye (a planned close follows)
	bye string
	// set by us: we close it, so its end is no evidence of anything
	ours bool
	// peerHB: the peer said it understands heartbeats (pairMsg.HB).
	peerHB atomic.Bool
	// sendMu orders what is sent on the session: a heartbeat must follow
	// the full message it stands for. sent is that message's state.
	sendMu sync.Mutex
	sent   *pairLocal
}

// bind opens the listening sockets; reloads call it before committing,
// so a port in use refuses the reload. The UDP socket on the same port
// only counts datagrams (the old protocol, or a forger).
func (p *pairLink) bind() error {
	ap := netip.AddrPortFrom(p.self, p.port)
	ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(ap))
	if err != nil {
		return fmt.Errorf("pair link: listen %s port %d: %w", p.self, p.port, err)
	}
	udp, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
	if err != nil {
		ln.Close()
		return fmt.Errorf("pair link: listen %s udp port %d: %w", p.self, p.port, err)
	}
	p.mu.Lock()
	p.ln, p.udp, p.bindErr = ln, udp, ""
	p.mu.Unlock()
	return nil
}

// closeSockets closes what bind opened (a prepared reload that is refused).
func (p *pairLink) closeSockets() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.udp.Close()
	}
}

func (p *pairLink) bound() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ln != nil
}

// notify asks every session for an immediate message (after a change).
func (p *pairLink) notify() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.sessions {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

// Run keeps the link up until ctx ends; then it says bye on every
// session, sends the final states and closes.
func (p *pairLink) Run(ctx context.Context) error {
	backoff := minBackoff
	for !p.bound() {
		if err := p.bind(); err != nil {
			p.mu.Lock()
			first := p.bindErr == ""
			p.bindErr = err.Error()
			p.mu.Unlock()
			if first {
				p.log.Warn("pair link: cannot bind yet; retrying", "err", err)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
	}
	p.log.Info("pair link listening", "address", p.self, "port", p.port, "authenticated", p.key != nil)
	var wg sync.WaitGroup
	p.mu.Lock()
	ln, udp := p.ln, p.udp
	p.mu.Unlock()
	wg.Add(2)
	go func() { defer wg.Done(); p.acceptLoop(ctx, ln, &wg) }()
	go func() { defer wg.Done(); p.udpLoop(udp) }()
	dialing := map[string]bool{}
	dialed := make(chan string, 16)
	t := time.NewTicker(pairInterval)
	defer t.Stop()
	for {
		p.checkPeers()
		for a, name := range p.dialTargets() {
			if !dialing[name] {
				dialing[name] = true
				wg.Add(1)
				go func() { defer wg.Done(); p.dialLoop(ctx, a, name); dialed <- name }()
			}
		}
		select {
		case <-ctx.Done():
			p.bye("stopping")
			ln.Close()
			udp.Close()
			p.closeAll()
			wg.Wait()
			return nil
		case name := <-dialed:
			delete(dialing, name)
		case <-t.C:
		}
	}
}

// dialTargets are the peers this node dials: those with a higher address.
func (p *pairLink) dialTargets() map[netip.Addr]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[netip.Addr]string{}
	for a, name := range p.peers {
		if p.self.Less(a) {
			out[a] = name
		}
	}
	return out
}

func (p *pairLink) isPeer(a netip.Addr, name string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	n, ok := p.peers[a]
	return ok && n == name
}

// dialLoop keeps a session to the peer at a up until ctx ends or a is no
// longer a peer.
func (p *pairLink) dialLoop(ctx context.Context, a netip.Addr, name string) {
	backoff := minBackoff
	for ctx.Err() == nil && p.isPeer(a, name) {
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(p.self, 0)), Timeout: time.Second}
		c, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(a, p.port).String())
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(pairHandshake))
			var s *pairwire.Session
			s, err = pairwire.Dial(c, p.key, p.identity(), name, &p.nonces)
			if err != nil {
				c.Close()
				if isDrop(err) {
					p.dropped(reasonOf(err), a, err)
				}
			} else {
				backoff = minBackoff
				p.serve(ctx, s, a)
			}
		}
		if err != nil {
			p.setDialErr(name, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// acceptLoop accepts until ln is closed; the handshakes and sessions it
// starts join wg, so Run returns only when they have ended.
func (p *pairLink) acceptLoop(ctx context.Context, ln *net.TCPListener, wg *sync.WaitGroup) {
	// Handshakes in progress, oldest first. When all pairHandshakes are
	// taken, a new connection from a peer's address pushes out the
	// oldest (counted busy): slow handshakes that hold every slot (from
	// someone who holds the peer's address while it is down) cannot lock
	// the real peer out when it comes back, as refusing the newcomer did.
	var mu sync.Mutex
	var inflight []*pendingHandshake
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				p.log.Warn("pair link: accept failed", "err", err)
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return
		}
		from := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
		p.mu.Lock()
		name, known := p.peers[from]
		p.mu.Unlock()
		if !known {
			c.SetLinger(0)
			c.Close()
			p.dropped(dropUnknownSource, from, errors.New("a connection from an address that is no [[node]] of the site"))
			continue
		}
		hs := &pendingHandshake{c: c}
		mu.Lock()
		if len(inflight) >= pairHandshakes {
			old := inflight[0]
			inflight = inflight[1:]
			old.evicted.Store(true)
			old.c.SetLinger(0)
			old.c.Close()
		}
		inflight = append(inflight, hs)
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				mu.Lock()
				for i, x := range inflight {
					if x == hs {
						inflight = append(inflight[:i], inflight[i+1:]...)
						break
					}
				}
				mu.Unlock()
			}()
			_ = c.SetDeadline(time.Now().Add(pairHandshake))
			s, err := pairwire.Accept(c, p.key, p.identity(), func(n string) bool { return n == name }, &p.nonces)
			if err != nil {
				c.Close()
				switch {
				case hs.evicted.Load():
					p.dropped(dropBusy, from, fmt.Errorf("a handshake pushed out by a newer one: %d were in progress", pairHandshakes))
				case isDrop(err):
					p.dropped(reasonOf(err), from, err)
				default:
					p.dropped(dropMalformed, from, fmt.Errorf("handshake: %w", err)) // a timeout or a reset mid-handshake
				}
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); p.serve(ctx, s, from) }() // the slot is freed: it bounds handshakes, not sessions
		}()
	}
}

// pendingHandshake is a connection whose handshake is in progress.
type pendingHandshake struct {
	c       *net.TCPConn
	evicted atomic.Bool // pushed out by a newer connection
}

// udpLoop counts datagrams to the pair port: havip speaks TCP there now.
func (p *pairLink) udpLoop(c *net.UDPConn) {
	buf := make([]byte, 2048)
	for {
		_, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		p.dropped(dropLegacyUDP, from.Addr().Unmap(), errors.New("a UDP datagram: the peer runs an older havip (upgrade it), or someone forges the old protocol"))
	}
}

func (p *pairLink) identity() pairwire.Identity {
	site, _ := p.config()
	return pairwire.Identity{Site: site, Node: p.node}
}

// serve runs an established session until it ends; it replaces any
// older session with the same peer.
func (p *pairLink) serve(ctx context.Context, s *pairwire.Session, from netip.Addr) {
	ps := &pairSession{s: s, peer: s.Peer, kick: make(chan struct{}, 1)}
	p.mu.Lock()
	if old := p.sessions[ps.peer]; old != nil {
		old.ours = true
		old.s.Close()
	}
	p.sessions[ps.peer] = ps
	delete(p.dialErr, ps.peer)
	p.mu.Unlock()
	p.log.Info("pair link up", "peer", ps.peer, "address", from, "authenticated", p.key != nil)

	done, stop := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(pairInterval)
		defer t.Stop()
		for {
			if err := p.sendTo(ps); err != nil {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-stop:
				return
			case <-ps.kick:
			case <-t.C:
			}
		}
	}()
	err := p.readFrom(ps, from)
	close(stop)
	p.mu.Lock()
	ours, bye := ps.ours, ps.bye
	if p.sessions[ps.peer] == ps {
		delete(p.sessions, ps.peer)
	}
	p.mu.Unlock()
	s.Close()
	<-done
	p.ended(ps.peer, from, err, ours || ctx.Err() != nil, bye)
}

// readFrom reads frames until the session fails; it returns why.
func (p *pairLink) readFrom(ps *pairSession, from netip.Addr) error {
	var last *pairMsg // the last message that carried the peer's state
	for {
		_ = ps.s.Conn().SetReadDeadline(time.Now().Add(pairIdle))
		b, err := ps.s.Recv()
		if err != nil {
			return err
		}
		var m pairMsg
		site, _ := p.config()
		if err := json.Unmarshal(b, &m); err != nil {
			return fmt.Errorf("%w: %v", pairwire.ErrMalformed, err)
		}
		if m.Site != site || m.Node != ps.peer {
			return fmt.Errorf("%w: a message from node %q of site %q", pairwire.ErrWrongSite, m.Node, m.Site)
		}
		if len(m.Groups) > maxPairGroups {
			return fmt.Errorf("%w: %d groups", pairwire.ErrMalformed, len(m.Groups))
		}
		if m.Bye != "" {
			p.mu.Lock()
			first := ps.bye == ""
			ps.bye = m.Bye
			p.mu.Unlock()
			if first {
				p.log.Info("pair link: the peer says it will close", "peer", ps.peer, "why", m.Bye)
			}
		}
		same := m.Same
		if same {
			if last == nil {
				return fmt.Errorf("%w: a heartbeat before any state", pairwire.ErrMalformed)
			}
			m.Rev, m.Groups, m.Drains, m.Table = last.Rev, last.Groups, last.Drains, last.Table
		} else {
			last = &m
		}
		if m.HB {
			ps.peerHB.Store(true)
		}
		p.heardFrom(ps.peer, from, m, same)
		if m.Call != nil {
			p.takeCall(ps, *m.Call)
		}
		if m.Answer != nil {
			p.takeAnswer(*m.Answer)
		}
	}
}

// maxPairGroups bounds the groups one message may carry (a site allows
// 255 per interface; this is far above any real site).
const maxPairGroups = 4096

// ended handles the end of a session: a drop is counted; the peer is no
// longer heard; and a close by the peer's kernel without bye triggers
// the fast path when the link is authenticated.
func (p *pairLink) ended(peer string, from netip.Addr, err error, ours bool, bye string) {
	closedByPeer := errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
	p.mu.Lock()
	replaced := p.sessions[peer] != nil // a newer session carries the peer now
	p.mu.Unlock()
	if !replaced {
		p.silence(peer) // first: "pair link down" comes before what follows from it
	}
	switch {
	case ours:
	case closedByPeer && bye != "":
		p.log.Info("pair link: the peer closed it as announced", "peer", peer, "why", bye)
	case closedByPeer:
		p.peerGone(peer, err)
	case errors.Is(err, os.ErrDeadlineExceeded):
		p.log.Warn("pair link: nothing heard for a while; closing and reconnecting", "peer", peer, "for", pairIdle)
	case isDrop(err):
		p.dropped(reasonOf(err), from, err)
	default:
		p.log.Warn("pair link: connection failed; reconnecting", "peer", peer, "err", err)
	}
}

// isDrop: err is the protocol's refusal of what the other end sent, not
// a network failure.
func isDrop(err error) bool {
	return errors.Is(err, pairwire.ErrForged) || errors.Is(err, pairwire.ErrReplayed) ||
		errors.Is(err, pairwire.ErrMalformed) || errors.Is(err, pairwire.ErrWrongSite)
}

// peerGone is the fast path: the peer's daemon died. Its groups that
// were master in its last word go to the controller; each of ours that
// is Backup takes over at once. VRRP still rules afterwards: a master
// that is in fact alive keeps advertising and wins the election back.
func (p *pairLink) peerGone(peer string, how error) {
	p.mu.Lock()
	h := p.heard[peer]
	var masters []string
	for g, st := range h.groups {
		if st.State == vrrp.Master {
			masters = append(masters, g)
		}
	}
	trusted := p.key != nil
	p.mu.Unlock()
	if !trusted {
		p.log.Warn("pair link: the peer's kernel closed the connection without notice (its daemon died?); no takeover: the link is not authenticated (no pair_key)", "peer", peer, "how", how)
		return
	}
	p.log.Warn("pair link: the peer's kernel closed the connection without notice: its daemon died", "peer", peer, "was_master_of", masters, "how", how)
	if len(masters) > 0 {
		p.events(peerDied{node: peer, groups: masters})
	}
}

// tookOverFast counts a fast-path takeover: the controller calls it
// when a group did take over on a peerDied.
func (p *pairLink) tookOverFast() {
	p.mu.Lock()
	p.fast++
	p.mu.Unlock()
}

// silence marks the peer as not heard any more, at once: the session
// that carried it is gone.
func (p *pairLink) silence(peer string) {
	p.mu.Lock()
	h, ok := p.heard[peer]
	wasAlive := p.alive[peer]
	if ok {
		h.closed = true
		p.heard[peer] = h
	}
	p.mu.Unlock()
	if wasAlive {
		p.checkPeers()
	}
}

// sendTo sends our state on one session.
func (p *pairLink) sendTo(ps *pairSession) error { return p.sendExtra(ps, nil, nil) }

// bye tells every peer that this node closes the link on purpose (a
// stop, a restart, a reload that re-creates the link), so the close that
// follows is not read as a crash. Every later message says it too.
func (p *pairLink) bye(why string) {
	p.mu.Lock()
	if p.byeWhy == "" {
		p.byeWhy = why
	}
	sessions := make([]*pairSession, 0, len(p.sessions))
	for _, s := range p.sessions {
		sessions = append(sessions, s)
	}
	p.mu.Unlock()
	for _, s := range sessions {
		_ = p.sendTo(s)
	}
}

// closeAll closes every session (ours: no evidence for the peer's side
// beyond the bye it got).
func (p *pairLink) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.sessions {
		s.ours = true
		s.s.Close()
	}
}

// dropped counts a drop by reason and logs the first of each reason.
func (p *pairLink) dropped(reason string, from netip.Addr, err error) {
	p.mu.Lock()
	p.drops[reason]++
	n := p.drops[reason]
	p.mu.Unlock()
	if n == 1 {
		p.log.Warn("pair link: dropped; further drops of this kind are only counted", "reason", reason, "from", from, "err", err)
	}
}

func (p *pairLink) setDialErr(peer string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dialErr[peer] = err.Error()
}

// reasonOf maps a session error to its drop reason.
func reasonOf(err error) string {
	switch {
	case errors.Is(err, pairwire.ErrForged):
		return dropForged
	case errors.Is(err, pairwire.ErrReplayed):
		return dropReplayed
	case errors.Is(err, pairwire.ErrWrongSite):
		return dropWrongSite
	default:
		return dropMalformed
	}
}

// pairCall asks the peer to do something (a drill's takeover); the peer
// answers with a pairAnswer of the same ID. Only an authenticated link
// carries calls.
type pairCall struct {
	ID     uint64   `json:"id"`
	Kind   string   `json:"kind"`
	Groups []string `json:"groups,omitempty"`
	// Abandon: for callAbandon, the call given up on.
	Abandon uint64 `json:"abandon,omitempty"`
}

// pairAnswer: Err for the call as a whole; Groups: group -> "" when done,
// else why not.
type pairAnswer struct {
	ID     uint64            `json:"id"`
	Err    string            `json:"err,omitempty"`
	Groups map[string]string `json:"groups,omitempty"`
}

// peerCall reaches the controller: answer it with reply, exactly once;
// reply is safe from any goroutine and never blocks long.
type peerCall struct {
	from  string
	call  pairCall
	reply func(pairAnswer)
}

// errNotAuthenticated: calls need the pair key.
var errNotAuthenticated = errors.New("pair link: not authenticated (no pair_key): the peer cannot be asked anything")

// call sends c to peer and waits for its answer, or ctx.
func (p *pairLink) call(ctx context.Context, peer string, c pairCall) (pairAnswer, error) {
	p.mu.Lock()
	if p.key == nil {
		p.mu.Unlock()
		return pairAnswer{}, errNotAuthenticated
	}
	s := p.sessions[peer]
	if s == nil {
		p.mu.Unlock()
		return pairAnswer{}, fmt.Errorf("pair link: no session with %s", peer)
	}
	p.callID++
	c.ID = p.callID
	ch := make(chan pairAnswer, 1)
	p.calls[c.ID] = ch
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.calls, c.ID)
		p.mu.Unlock()
	}()
	if err := p.sendExtra(s, &c, nil); err != nil {
		return pairAnswer{}, fmt.Errorf("pair link: sending the call: %w", err)
	}
	select {
	case a := <-ch:
		return a, nil
	case <-ctx.Done():
		// Tell the peer, which may yet act on it (it hung and resumes,
		// or its answer is late): it comes after the call on the stream.
		p.mu.Lock()
		p.callID++
		ab := pairCall{ID: p.callID, Kind: callAbandon, Abandon: c.ID}
		p.mu.Unlock()
		_ = p.sendExtra(s, &ab, nil)
		return pairAnswer{}, fmt.Errorf("pair link: no answer from %s: %w", peer, ctx.Err())
	}
}

// sendExtra sends our state with a call or an answer attached: in full
// when it changed since the last full message on the session (or the
// peer does not understand heartbeats), else as a heartbeat.
func (p *pairLink) sendExtra(ps *pairSession, c *pairCall, a *pairAnswer) error {
	ps.sendMu.Lock()
	defer ps.sendMu.Unlock()
	l := p.local()
	site, _ := p.config()
	same := ps.peerHB.Load() && ps.sent != nil && sameLocal(*ps.sent, l)
	p.mu.Lock()
	p.seq++
	m := pairMsg{Site: site, Node: p.node, Seq: p.seq, Bye: p.byeWhy, Call: c, Answer: a, HB: !p.noHeartbeats, Same: same}
	p.mu.Unlock()
	if !same {
		m.Rev, m.Groups, m.Drains, m.Table = l.rev, l.groups, l.drains, l.table
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	_ = ps.s.Conn().SetWriteDeadline(time.Now().Add(pairIdle))
	if err := ps.s.Send(b); err != nil {
		return err
	}
	if same {
		p.sentSame.Add(1)
	} else {
		p.sentFull.Add(1)
		ps.sent = &l
	}
	return nil
}

// takeCall hands a call from the peer to the controller, or refuses it.
func (p *pairLink) takeCall(ps *pairSession, c pairCall) {
	p.mu.Lock()
	trusted := p.key != nil
	p.mu.Unlock()
	var once sync.Once
	reply := func(a pairAnswer) {
		once.Do(func() {
			a.ID = c.ID
			go func() {
				if err := p.sendExtra(ps, nil, &a); err != nil {
					p.log.Warn("pair link: the answer to the peer's request could not be sent", "peer", ps.peer, "kind", c.Kind, "err", err)
				}
			}()
		})
	}
	switch {
	case !trusted:
		reply(pairAnswer{Err: errNotAuthenticated.Error()})
		return
	case len(c.Groups) > maxCallGroups:
		// Its answer would not fit a frame; no site has that many.
		p.dropped(dropMalformed, netip.Addr{}, fmt.Errorf("a %q request naming %d groups", c.Kind, len(c.Groups)))
		reply(pairAnswer{Err: fmt.Sprintf("a request may name at most %d groups", maxCallGroups)})
		return
	}
	p.events(peerCall{from: ps.peer, call: c, reply: reply})
}

// maxCallGroups bounds the groups of one request, so that its answer
// (a reason per group) always fits a frame.
const maxCallGroups = 1024

// takeAnswer delivers an answer to the call waiting for it.
func (p *pairLink) takeAnswer(a pairAnswer) {
	p.mu.Lock()
	ch := p.calls[a.ID]
	p.mu.Unlock()
	if ch != nil {
		select {
		case ch <- a:
		default:
		}
	}
}

package daemon

import (
	"net/netip"
	"slices"
	"time"
)

// The advert socket of a group: its interface's shared socket
// (advertsock.go), attached to when its interface and source address are
// there, replaced when the interface comes back with a new index or after
// read and send errors (with backoff, keeping the old one meanwhile).
// Sending goes through the shared socket too, each advert naming the
// group's source: a send-only raw socket per group would still be handed
// a copy of every advert on the interface.

// sockErr is a shared socket's failure, told to each group attached (sub).
type sockErr struct {
	sub *sockSub
	err error
}

func (g *group) wantsSocket() bool { return g.in.want.link.Exists && g.in.want.source.IsValid() }

// ensureSocket opens, reopens or closes the socket to match the link: a
// new interface index (deleted and created again) or source address means
// a new socket at once; a socket that failed waits for its retry.
func (g *group) ensureSocket(now time.Time) {
	switch {
	case !g.wantsSocket():
		if g.conn != nil {
			g.log.Info("closing the advert socket: the interface or source address is gone")
			g.closeConn()
		}
		g.sockFault, g.reopenAt, g.connIdx, g.connSrc = "", time.Time{}, 0, netip.Addr{}
	case g.connIdx != g.in.want.link.Index || g.connSrc != g.in.want.source:
		if g.conn != nil {
			// Bound to an interface index that is gone, or sending from
			// an old source: useless now.
			g.log.Info("reopening the advert socket", "ifindex", g.in.want.link.Index, "source", g.in.want.source)
			g.closeConn()
		}
		g.backoff, g.nextOpen = minBackoff, time.Time{}
		_ = g.open(now)
	}
}

// open attaches to the interface's advert socket (a new one after an
// error on the current) and, once that works, gives up the current one. A
// failure keeps the current socket; with none the group is in FAULT. Each
// attempt pushes the next one back (backoff).
func (g *group) open(now time.Time) error {
	g.connIdx, g.connSrc = g.in.want.link.Index, g.in.want.source
	g.nextOpen = now.Add(g.backoff)
	g.backoff = min(2*g.backoff, maxBackoff)
	req := attachReq{
		fam:       sockFamily{iface: g.in.cfg.Interface, v6: g.sock.v6},
		multicast: !g.in.cfg.Unicast,
		ifindex:   g.connIdx,
		sub:       &sockSub{vrid: g.in.cfg.VRID, rx: g.rx, errs: g.sockErrs, rxDrop: &g.rxDrop},
	}
	if g.conn != nil {
		req.replace = g.conn.s
	}
	c, err := g.deps.socks.attach(req, now)
	if err != nil {
		g.reopenAt = g.nextOpen
		if g.conn == nil {
			g.sockFault = err.Error()
		}
		g.openLog.warn(g.log, now, "opening the advert socket failed; retrying", "err", err, "retry_in", g.nextOpen.Sub(now))
		return err
	}
	if g.conn == nil && g.reopens > 0 {
		// The end of a spell without a socket (the interface was gone or
		// the socket could not be opened): say so, as its start was.
		g.log.Info("advert socket reopened", "ifindex", g.connIdx, "source", g.connSrc)
	}
	if g.conn == nil || g.conn.s != c.s {
		g.reopens++ // a socket this group did not have: socket_opens
	}
	g.closeConn()
	g.conn, g.openedAt = c, now
	g.hearOwner()
	g.sockFault, g.reopenAt = "", time.Time{}
	return nil
}

// hearOwner makes sure the kernel delivers the address owner's adverts
// while this node holds the owner's address (a peer's node address is one
// of the VIPs): IPv4 drops packets whose source is a local address as
// martians unless the interface has accept_local, so a returning owner
// would never be heard, and both would stay master. A new interface
// starts with the default, so this runs with every new socket.
func (g *group) hearOwner() {
	if g.sock.v6 || !slices.ContainsFunc(g.in.cfg.VIPs, func(p netip.Prefix) bool { return slices.Contains(g.in.peers, p.Addr()) }) {
		return
	}
	changed, err := g.deps.acceptLocal(g.in.cfg.Interface)
	switch {
	case err != nil:
		g.log.Error("cannot set accept_local: while this node holds the address owner's address it will not hear the owner's adverts", "interface", g.in.cfg.Interface, "err", err)
	case changed:
		g.log.Info("set accept_local, to hear the address owner's adverts while holding its address", "interface", g.in.cfg.Interface)
	}
}

func (g *group) closeConn() {
	if g.conn != nil {
		g.deps.socks.detach(g.conn)
		g.conn = nil
	}
}

// socketFailed handles a read or send error: the socket is replaced by a
// new one, at most once per backoff period (doubling; reset after a
// healthy spell). Until then the old socket stays: a firewall that drops
// our adverts must not take the group down (the pair link reports the
// dual master that follows); a socket whose reader died is replaced when
// the period ends.
func (g *group) socketFailed(now time.Time, readerDead bool) {
	if now.Sub(g.openedAt) > healthySocket {
		g.backoff, g.nextOpen = minBackoff, time.Time{}
	}
	if now.Before(g.nextOpen) {
		if readerDead && g.reopenAt.IsZero() {
			g.reopenAt = g.nextOpen
		}
		return
	}
	_ = g.open(now)
	g.applyWant(now)
}

package daemon

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/havip/havip/internal/ctl"
	"github.com/havip/havip/internal/vrrp"
	"github.com/havip/havip/internal/vrrpnet"
)

// advertSockets holds the daemon's advert sockets: one per interface and
// address family, shared by every group there, whatever its mode (the
// socket joins the VRRP multicast group once a multicast group attaches).
// One reader per socket hands each packet to the groups running its VRID
// (one; two for a moment while a reload replaces a group by a new
// instance of the same virtual router) and counts, per interface and
// family, what names a VRID no group runs. With a socket per group every
// advert on the interface was delivered to every group: 255 groups, 255
// times each.
//
// Groups attach and detach from their own goroutines and keep their own
// backoff and FAULT (groupsock.go); mu guards the table of sockets and
// each socket's subscribers, which the reader reads under a read lock.
// Counters are kept per interface and family for the daemon's life, across
// the sockets that come and go there.
type advertSockets struct {
	listen func(vrrpnet.Options) (vrrpnet.Conn, error)
	log    *slog.Logger

	mu   sync.Mutex
	fams map[sockFamily]*famSockets
}

// sockFamily is what one shared socket serves.
type sockFamily struct {
	iface string
	v6    bool
}

// famSockets is one interface and family: the socket groups attach to now,
// and what every socket there counted.
type famSockets struct {
	key  sockFamily
	cur  *sharedSock // nil: none yet, or it failed or closed
	live int         // sockets open, cur and older ones groups still hold

	opens      atomic.Uint64
	readErrors atomic.Uint64
	drops      [vrrp.NumDropReasons]atomic.Uint64
	logMu      sync.Mutex // guards strangers: an old socket's reader may still run next to cur's
	strangers  rateLog
}

// sharedSock is one open socket and its subscribers by VRID.
type sharedSock struct {
	fam     *famSockets
	conn    vrrpnet.Conn
	ifindex int // the interface index it was opened for
	opened  time.Time
	joined  bool // member of the VRRP multicast group (advertSockets.mu)
	refs    int  // attachments (advertSockets.mu)
	dead    atomic.Bool
	closed  atomic.Bool // closed by its last detach, not failed

	subsMu sync.RWMutex
	subs   map[uint8][]*sockSub
}

// sockSub is one group's attachment: where its packets and the socket's
// failure go.
type sockSub struct {
	vrid   uint8
	rx     chan<- *rxPacket
	errs   chan<- sockErr
	rxDrop *uint64 // the group's count of packets its full queue dropped
}

// sockHandle is a group's hold on a shared socket.
type sockHandle struct {
	s   *sharedSock
	sub *sockSub
}

// WriteTo sends b from src to dst on the shared socket.
func (h *sockHandle) WriteTo(b []byte, src, dst netip.Addr) error {
	return h.s.conn.WriteTo(b, src, dst)
}

func newAdvertSockets(listen func(vrrpnet.Options) (vrrpnet.Conn, error), log *slog.Logger) *advertSockets {
	return &advertSockets{listen: listen, log: log, fams: map[sockFamily]*famSockets{}}
}

// attachReq is what a group attaches with.
type attachReq struct {
	fam       sockFamily
	multicast bool
	ifindex   int // the interface index the group sees; a socket opened for another is not shared
	// replace is the socket the group gives up after an error on it: it
	// is not handed out again once it lasted minBackoff (a newer one is
	// opened), so a broken socket is replaced, at most once per
	// minBackoff however many groups report it.
	replace *sharedSock
	sub     *sockSub
}

// attach hands the group the interface's socket, opening one when there is
// none that fits.
func (a *advertSockets) attach(r attachReq, now time.Time) (*sockHandle, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f := a.fams[r.fam]
	if f == nil {
		f = &famSockets{key: r.fam}
		a.fams[r.fam] = f
	}
	s := f.cur
	if s != nil && (s.dead.Load() || s.ifindex != r.ifindex || r.replace == s && now.Sub(s.opened) >= minBackoff) {
		f.cur, s = nil, nil // it stays open for the groups that hold it
	}
	if s == nil {
		c, err := a.listen(vrrpnet.Options{Interface: r.fam.iface, IPv6: r.fam.v6, Multicast: r.multicast})
		if err != nil {
			return nil, err
		}
		s = &sharedSock{fam: f, conn: c, ifindex: r.ifindex, opened: now, joined: r.multicast, subs: map[uint8][]*sockSub{}}
		f.cur = s
		f.live++
		f.opens.Add(1)
		go a.read(s)
	}
	if r.multicast && !s.joined {
		if err := s.conn.Join(); err != nil {
			a.release(s)
			return nil, err
		}
		s.joined = true
	}
	s.refs++
	s.subsMu.Lock()
	s.subs[r.sub.vrid] = append(s.subs[r.sub.vrid], r.sub)
	s.subsMu.Unlock()
	return &sockHandle{s: s, sub: r.sub}, nil
}

// detach ends a group's hold; the last one closes the socket.
func (a *advertSockets) detach(h *sockHandle) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := h.s
	s.subsMu.Lock()
	l := s.subs[h.sub.vrid]
	for i, sub := range l {
		if sub == h.sub {
			l = append(l[:i:i], l[i+1:]...)
			break
		}
	}
	if len(l) == 0 {
		delete(s.subs, h.sub.vrid)
	} else {
		s.subs[h.sub.vrid] = l
	}
	s.subsMu.Unlock()
	s.refs--
	a.release(s)
}

// release closes s once nothing holds it (a.mu held).
func (a *advertSockets) release(s *sharedSock) {
	if s.refs > 0 {
		return
	}
	s.closed.Store(true)
	s.conn.Close()
	s.fam.live--
	if s.fam.cur == s {
		s.fam.cur = nil
	}
}

// read is a socket's reader: each packet goes to the groups that run its
// VRID; a read error (not the close by the last detach) tells them all,
// and each replaces its socket (see group.socketFailed).
func (a *advertSockets) read(s *sharedSock) {
	f := s.fam
	buf := make([]byte, rxBufferSize)
	for {
		n, meta, err := s.conn.ReadFrom(buf)
		if err != nil {
			s.dead.Store(true)
			if s.closed.Load() && errors.Is(err, net.ErrClosed) {
				return
			}
			f.readErrors.Add(1)
			s.subsMu.RLock()
			for _, l := range s.subs {
				for _, sub := range l {
					select {
					case sub.errs <- sockErr{sub, err}:
					default:
					}
				}
			}
			s.subsMu.RUnlock()
			return
		}
		at := time.Now()
		vrid, drop := vrrp.VRIDOf(buf[:n])
		s.subsMu.RLock()
		subs := s.subs[vrid]
		if drop == vrrp.DropNone && len(subs) == 0 {
			drop = vrrp.DropVRID
		}
		for _, sub := range subs {
			if drop != vrrp.DropNone {
				break
			}
			p := &rxPacket{b: append([]byte(nil), buf[:n]...), meta: meta, at: at}
			select {
			case sub.rx <- p:
			default:
				atomic.AddUint64(sub.rxDrop, 1)
			}
		}
		s.subsMu.RUnlock()
		if drop != vrrp.DropNone {
			f.drops[drop].Add(1)
			f.logMu.Lock()
			f.strangers.warn(a.log, at, "advert dropped: no group runs its VRID here", "interface", f.key.iface,
				"reason", drop, "vrid", vrid, "src", meta.Src)
			f.logMu.Unlock()
		}
	}
}

// status is every interface and family that had a socket, for havip
// status and metrics.
func (a *advertSockets) status() []ctl.SocketStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]ctl.SocketStatus, 0, len(a.fams))
	for _, f := range a.fams {
		st := ctl.SocketStatus{Interface: f.key.iface, Family: "inet", Open: f.live, Opens: f.opens.Load(),
			ReadErrors: f.readErrors.Load(), Drops: map[string]uint64{}}
		if f.key.v6 {
			st.Family = "inet6"
		}
		if s := f.cur; s != nil {
			st.IfIndex, st.Multicast = s.ifindex, s.joined
			s.subsMu.RLock()
			for _, l := range s.subs {
				st.Groups += len(l)
			}
			s.subsMu.RUnlock()
		}
		for r := vrrp.DropReason(1); r < vrrp.NumDropReasons; r++ {
			if n := f.drops[r].Load(); n > 0 {
				st.Drops[r.String()] = n
			}
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Interface != out[j].Interface {
			return out[i].Interface < out[j].Interface
		}
		return out[i].Family < out[j].Family
	})
	return out
}

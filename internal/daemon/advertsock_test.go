package daemon

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/havip/havip/internal/vrrpnet"
)

// feedNet hands out feedConns, which deliver what the test feeds them.
type feedNet struct {
	mu     sync.Mutex
	conns  []*feedConn
	joins  int
	refuse bool
}

func (n *feedNet) listen(opt vrrpnet.Options) (vrrpnet.Conn, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.refuse {
		return nil, errRefused
	}
	c := &feedConn{net: n, in: make(chan []byte, 16), closed: make(chan struct{}), fail: make(chan error, 1)}
	if opt.Multicast {
		n.joins++
	}
	n.conns = append(n.conns, c)
	return c, nil
}

func (n *feedNet) opened() []*feedConn {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]*feedConn(nil), n.conns...)
}

type feedConn struct {
	net    *feedNet
	in     chan []byte
	once   sync.Once
	closed chan struct{}
	fail   chan error // a read error to return
}

var _ vrrpnet.Conn = (*feedConn)(nil)

func (c *feedConn) ReadFrom(b []byte) (int, vrrpnet.Meta, error) {
	select {
	case p := <-c.in:
		return copy(b, p), vrrpnet.Meta{Src: netip.MustParseAddr("198.18.0.12"), TTL: 255}, nil
	case err := <-c.fail:
		return 0, vrrpnet.Meta{}, err
	case <-c.closed:
		return 0, vrrpnet.Meta{}, net.ErrClosed
	}
}

func (c *feedConn) WriteTo([]byte, netip.Addr, netip.Addr) error { return nil }

func (c *feedConn) Join() error {
	c.net.mu.Lock()
	defer c.net.mu.Unlock()
	c.net.joins++
	return nil
}

func (c *feedConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *feedConn) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

// testSub is a group's end of an attachment.
type testSub struct {
	rx   chan *rxPacket
	errs chan sockErr
	drop uint64
}

func newTestSub(vrid uint8) (*testSub, *sockSub) {
	s := &testSub{rx: make(chan *rxPacket, 4), errs: make(chan sockErr, 1)}
	return s, &sockSub{vrid: vrid, rx: s.rx, errs: s.errs, rxDrop: &s.drop}
}

func eth0(v6 bool) sockFamily { return sockFamily{iface: "eth0", v6: v6} }

// Groups of one interface and family share one socket whatever their
// mode (it joins the multicast group once a multicast group attaches);
// each gets only its VRID's packets; a VRID no group runs and a packet
// too short to name one are counted on the socket; the other family gets
// a socket of its own; the last detach closes the socket.
func TestAdvertSocketsShared(t *testing.T) {
	fn := &feedNet{}
	a := newAdvertSockets(fn.listen, slog.New(slog.DiscardHandler))
	now := time.Now()
	var subs []*testSub
	var hs []*sockHandle
	for i, vrid := range []uint8{1, 2, 3} {
		s, sub := newTestSub(vrid)
		h, err := a.attach(attachReq{fam: eth0(false), multicast: i > 0, ifindex: 2, sub: sub}, now)
		if err != nil {
			t.Fatal(err)
		}
		subs, hs = append(subs, s), append(hs, h)
	}
	_, sub6 := newTestSub(1)
	h6, err := a.attach(attachReq{fam: eth0(true), multicast: true, ifindex: 2, sub: sub6}, now)
	if err != nil {
		t.Fatal(err)
	}
	conns := fn.opened()
	if len(conns) != 2 || fn.joins != 2 {
		t.Fatalf("%d sockets opened, %d joins: want one per family, each joined once", len(conns), fn.joins)
	}
	c4 := conns[0]
	for _, p := range [][]byte{{0x31, 2, 100}, {0x31, 9, 100}, {0x31}, {0x31, 3}, {0x31, 2}} {
		c4.in <- p
	}
	for i, want := range []int{0, 2, 1} {
		if got := len(waitPackets(t, subs[i].rx, want)); got != want {
			t.Errorf("group of VRID %d got %d packets, want %d", i+1, got, want)
		}
	}
	st := a.status()
	deadline := time.Now().Add(time.Second)
	for st[0].Drops["vrid"]+st[0].Drops["truncated"] < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
		st = a.status()
	}
	if len(st) != 2 || st[0].Family != "inet" || st[0].Groups != 3 || st[0].Opens != 1 || st[0].Open != 1 || !st[0].Multicast ||
		st[0].Drops["vrid"] != 1 || st[0].Drops["truncated"] != 1 || st[1].Family != "inet6" || st[1].Groups != 1 {
		t.Errorf("status %+v: want inet with 3 groups, 1 socket, drops vrid 1 truncated 1; inet6 with 1 group", st)
	}
	for _, h := range hs[:2] {
		a.detach(h)
	}
	if c4.isClosed() {
		t.Fatal("the socket closed while a group still holds it")
	}
	a.detach(hs[2])
	if !c4.isClosed() {
		t.Fatal("the last detach left the socket open")
	}
	if st := a.status(); st[0].Open != 0 || st[0].Groups != 0 || st[1].Open != 1 {
		t.Errorf("after the last inet detach: %+v", st)
	}
	a.detach(h6)
}

// A group that gives up a socket after an error gets a new one, unless
// it is younger than minBackoff: however many groups report the same
// socket, it is replaced once; the old one stays open until the last of
// its groups moved. A socket whose reader failed tells every group on it
// and is not handed out again; a new interface index means a new socket.
func TestAdvertSocketsReplace(t *testing.T) {
	fn := &feedNet{}
	a := newAdvertSockets(fn.listen, slog.New(slog.DiscardHandler))
	t0 := time.Now()
	_, sub1 := newTestSub(1)
	_, sub2 := newTestSub(2)
	h1, _ := a.attach(attachReq{fam: eth0(false), ifindex: 2, sub: sub1}, t0)
	h2, _ := a.attach(attachReq{fam: eth0(false), ifindex: 2, sub: sub2}, t0)
	_, sub := newTestSub(1)
	if h, _ := a.attach(attachReq{fam: eth0(false), ifindex: 2, replace: h1.s, sub: sub}, t0.Add(minBackoff/2)); h.s != h1.s {
		t.Errorf("a socket younger than minBackoff was replaced")
	} else {
		a.detach(h)
	}
	s1, sub := newTestSub(1)
	n1, _ := a.attach(attachReq{fam: eth0(false), ifindex: 2, replace: h1.s, sub: sub}, t0.Add(minBackoff))
	a.detach(h1)
	s2, sub := newTestSub(2)
	n2, _ := a.attach(attachReq{fam: eth0(false), ifindex: 2, replace: h2.s, sub: sub}, t0.Add(minBackoff+time.Millisecond))
	if n1.s == h1.s || n2.s != n1.s || len(fn.opened()) != 2 {
		t.Fatalf("after two groups reported one socket: %d opened, shared %t; want one new socket for both", len(fn.opened()), n2.s == n1.s)
	}
	if old := fn.opened()[0]; old.isClosed() {
		t.Error("the old socket closed while a group still held it")
	}
	a.detach(h2)
	if old := fn.opened()[0]; !old.isClosed() {
		t.Error("the old socket stayed open after its last group moved")
	}

	// The reader fails: both groups hear it, on their own attachment.
	fn.opened()[1].fail <- errors.New("boom")
	for i, s := range []*testSub{s1, s2} {
		select {
		case e := <-s.errs:
			if e.sub != []*sockHandle{n1, n2}[i].sub {
				t.Errorf("group %d heard of the failure on another attachment", i+1)
			}
		case <-time.After(time.Second):
			t.Fatalf("group %d did not hear of its socket's read error", i+1)
		}
	}
	_, sub = newTestSub(3)
	n3, _ := a.attach(attachReq{fam: eth0(false), ifindex: 2, sub: sub}, t0.Add(time.Second))
	if n3.s == n1.s {
		t.Error("a socket whose reader failed was handed out again")
	}
	_, sub = newTestSub(4)
	n4, _ := a.attach(attachReq{fam: eth0(false), ifindex: 7, sub: sub}, t0.Add(time.Second))
	if n4.s == n3.s || n4.s.ifindex != 7 {
		t.Error("a group that sees a new interface index got the socket of the old one")
	}
	if st := a.status(); st[0].Opens != 4 || st[0].ReadErrors != 1 {
		t.Errorf("status %+v: want 4 sockets opened, 1 read error", st)
	}

	// No socket can be opened: the error goes to the group.
	fn.mu.Lock()
	fn.refuse = true
	fn.mu.Unlock()
	_, sub = newTestSub(5)
	if _, err := a.attach(attachReq{fam: eth0(true), ifindex: 2, sub: sub}, t0); !errors.Is(err, errRefused) {
		t.Errorf("attach with no socket to be had: %v", err)
	}
	for _, h := range []*sockHandle{n1, n2, n3, n4} {
		a.detach(h)
	}
}

// waitPackets collects want packets from rx (and a moment more, to catch
// any extra).
func waitPackets(t *testing.T, rx chan *rxPacket, want int) []*rxPacket {
	t.Helper()
	var got []*rxPacket
	deadline := time.After(time.Second)
	for len(got) < want {
		select {
		case p := <-rx:
			got = append(got, p)
		case <-deadline:
			return got
		}
	}
	select {
	case p := <-rx:
		got = append(got, p)
	case <-time.After(20 * time.Millisecond):
	}
	return got
}

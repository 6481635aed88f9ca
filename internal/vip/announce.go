package vip

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// reason says why an announcement failed; it is logged with the failure.
type reason string

const (
	reasonNoLink reason = "no-interface"
	reasonNoMAC  reason = "no-hardware-address"
	reasonSocket reason = "socket"
	reasonSend   reason = "send"
)

// allNodesMAC is the Ethernet address of ff02::1.
var allNodesMAC = net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}

// frame is one complete Ethernet frame to send.
type frame struct {
	etherType ethernet.EtherType
	dst       net.HardwareAddr
	b         []byte
	vip       netip.Addr // the address it announces
}

// sender puts complete Ethernet frames on the wire.
type sender interface {
	send(f frame) error
	close() error
}

// garpFrame builds a gratuitous ARP request: sender IP = target IP = ip,
// sender MAC = mac, target MAC zero, Ethernet broadcast.
func garpFrame(mac net.HardwareAddr, ip netip.Addr) (frame, error) {
	if !ip.Is4() || len(mac) != 6 {
		return frame{}, fmt.Errorf("vip: GARP for %s from %s: need IPv4 and a 6-byte MAC", ip, mac)
	}
	// Target MAC all zero, as RFC 5227 asks of an announcement.
	p, err := arp.NewPacket(arp.OperationRequest, mac, ip, make(net.HardwareAddr, 6), ip)
	if err != nil {
		return frame{}, fmt.Errorf("vip: GARP for %s: %w", ip, err)
	}
	a, err := p.MarshalBinary()
	if err != nil {
		return frame{}, fmt.Errorf("vip: GARP for %s: %w", ip, err)
	}
	f := &ethernet.Frame{Destination: ethernet.Broadcast, Source: mac, EtherType: ethernet.EtherTypeARP, Payload: a}
	b, err := f.MarshalBinary()
	if err != nil {
		return frame{}, fmt.Errorf("vip: GARP for %s: %w", ip, err)
	}
	return frame{etherType: ethernet.EtherTypeARP, dst: ethernet.Broadcast, b: b}, nil
}

// naFrame builds an unsolicited Neighbor Advertisement (RFC 4861 7.2.6)
// from ip to ff02::1: Override set, Solicited and Router clear, target ip,
// target link-layer address option mac, hop limit 255.
func naFrame(mac net.HardwareAddr, ip netip.Addr) (frame, error) {
	src, dst := ip.AsSlice(), net.IPv6linklocalallnodes
	body := make([]byte, 4, 4+16+2+len(mac))
	body[0] = 0x20 // R=0 S=0 O=1
	body = append(body, src...)
	body = append(body, 2, byte((2+len(mac)+7)/8)) // target link-layer address option
	body = append(body, mac...)
	for len(body)%8 != 4 { // pad the option to a multiple of 8 octets
		body = append(body, 0)
	}
	m := icmp.Message{Type: ipv6.ICMPTypeNeighborAdvertisement, Body: &icmp.RawBody{Data: body}}
	payload, err := m.Marshal(icmp.IPv6PseudoHeader(src, dst))
	if err != nil {
		return frame{}, fmt.Errorf("vip: NA for %s: %w", ip, err)
	}
	hdr := make([]byte, ipv6.HeaderLen, ipv6.HeaderLen+len(payload))
	hdr[0] = 6 << 4
	binary.BigEndian.PutUint16(hdr[4:6], uint16(len(payload)))
	hdr[6] = unix.IPPROTO_ICMPV6
	hdr[7] = 255
	copy(hdr[8:24], src)
	copy(hdr[24:40], dst)
	f := &ethernet.Frame{Destination: allNodesMAC, Source: mac, EtherType: ethernet.EtherTypeIPv6, Payload: append(hdr, payload...)}
	b, err := f.MarshalBinary()
	if err != nil {
		return frame{}, fmt.Errorf("vip: NA for %s: %w", ip, err)
	}
	return frame{etherType: ethernet.EtherTypeIPv6, dst: allNodesMAC, b: b}, nil
}

// frames builds one round of announcements for vips.
func frames(mac net.HardwareAddr, vips []netip.Prefix) ([]frame, error) {
	var out []frame
	for _, p := range vips {
		build := garpFrame
		if p.Addr().Is6() {
			build = naFrame
		}
		f, err := build(mac, p.Addr())
		if err != nil {
			return nil, err
		}
		f.vip = p.Addr()
		out = append(out, f)
	}
	return out, nil
}

// burstRun is one running (or ended) burst.
type burstRun struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// announce starts a burst of cfg's options for vips on l, after stopping the
// running ones if replace is set.
func (c *Claimer) announce(ctx context.Context, l netlink.Link, cfg *config, vips []netip.Prefix, replace bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if replace {
		c.stopBurstsLocked()
	}
	if cfg.opt.GARPCount == 0 {
		return
	}
	mac := l.Attrs().HardwareAddr
	if len(mac) != 6 {
		c.errs.Add(1)
		cfg.log.Warn("announce failed", "reason", reasonNoMAC, "mac", mac)
		return
	}
	fs, err := frames(mac, vips)
	if err != nil {
		c.errs.Add(1)
		cfg.log.Warn("announce failed", "reason", reasonSend, "err", err)
		return
	}
	if c.snd != nil && c.sndIndex != l.Attrs().Index {
		// The interface was recreated: bursts on the old one stop.
		c.stopBurstsLocked()
		c.snd.close()
		c.snd = nil
	}
	if c.snd == nil {
		s, err := c.open(&net.Interface{Index: l.Attrs().Index, Name: l.Attrs().Name, HardwareAddr: mac, MTU: l.Attrs().MTU})
		if err != nil {
			c.errs.Add(1)
			cfg.log.Warn("announce failed", "reason", reasonSocket, "err", err)
			return
		}
		c.snd, c.sndIndex = s, l.Attrs().Index
	}
	s := c.snd
	ctx, cancel := context.WithCancel(ctx)
	b := burstRun{cancel: cancel, done: make(chan struct{})}
	c.bursts = slices.DeleteFunc(c.bursts, burstRun.ended)
	c.bursts = append(c.bursts, b)
	go func() {
		defer close(b.done)
		defer cancel()
		c.burst(ctx, s, fs, cfg)
	}()
}

func (b burstRun) ended() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

// stopBurstsLocked cancels the running bursts and waits for them to end (at
// most one frame's send each: the socket stays open).
func (c *Claimer) stopBurstsLocked() {
	for _, b := range c.bursts {
		b.cancel()
		<-b.done
	}
	c.bursts = nil
}

// burst sends cfg's GARPCount rounds of fs, GARPInterval apart, the first at
// once. Each round leaves out the VIPs that Set has removed since.
func (c *Claimer) burst(ctx context.Context, s sender, fs []frame, cfg *config) {
	var tick <-chan time.Time
	if cfg.opt.GARPCount > 1 {
		t := time.NewTicker(cfg.opt.GARPInterval)
		defer t.Stop()
		tick = t.C
	}
	var logged bool
	for round := 0; ; {
		cur := c.cfg.Load()
		for _, f := range fs {
			if !cur.in[f.vip] {
				continue
			}
			if err := s.send(f); err != nil {
				c.errs.Add(1)
				if !logged { // once per burst: the next rounds fail alike
					cfg.log.Warn("announce failed", "reason", reasonSend, "err", err)
					logged = true
				}
				continue
			}
			if f.etherType == ethernet.EtherTypeIPv6 {
				c.naSent.Add(1)
			} else {
				c.garpSent.Add(1)
			}
		}
		if round++; round >= cfg.opt.GARPCount {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick:
		}
	}
}

// packetSender sends through the namespace's shared AF_PACKET socket
// (packetSocket) on one interface.
type packetSender struct {
	ifindex int
	fd      int
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// sharedPackets holds one send-only AF_PACKET socket per network
// namespace, shared by every Claimer in it, opened on first use and never
// closed.
//
// Closing a packet socket waits for an RCU grace period (about 15 ms
// measured here). When the daemon is killed, the kernel releases its
// files from the highest descriptor down, so every packet socket above
// the pair link's TCP connection held back its FIN, and with it the
// peer's takeover, by one grace period: two per group, 30 ms for one
// group. One socket per namespace, moved to a descriptor reserved when
// the program starts (below any connection), costs nothing there; nor
// does a Claimer's Close, nor a group that comes and goes.
var sharedPackets struct {
	mu  sync.Mutex
	fds map[uint64]int // namespace inode -> socket
	low []int          // descriptors reserved at start, on /dev/null
}

func init() {
	for range 2 {
		if fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
			sharedPackets.low = append(sharedPackets.low, fd)
		}
	}
}

// packetSocket returns ns's shared packet socket, opening it if needed.
func packetSocket(ns netns.NsHandle) (int, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(ns), &st); err != nil {
		return -1, fmt.Errorf("vip: netns: %w", err)
	}
	sharedPackets.mu.Lock()
	defer sharedPackets.mu.Unlock()
	if fd, ok := sharedPackets.fds[st.Ino]; ok {
		return fd, nil
	}
	var fd int
	err := inNS(ns, func() error {
		// Protocol 0 and never bound: it queues no received frames;
		// each send names the interface and the EtherType.
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return -1, fmt.Errorf("vip: packet socket: %w", err)
	}
	if n := len(sharedPackets.low); n > 0 {
		low := sharedPackets.low[n-1]
		if unix.Dup3(fd, low, unix.O_CLOEXEC) == nil {
			unix.Close(fd)
			fd, sharedPackets.low = low, sharedPackets.low[:n-1]
		}
	}
	if sharedPackets.fds == nil {
		sharedPackets.fds = map[uint64]int{}
	}
	sharedPackets.fds[st.Ino] = fd
	return fd, nil
}

func (c *Claimer) openPacket(ifi *net.Interface) (sender, error) {
	fd, err := packetSocket(c.ns)
	if err != nil {
		return nil, err
	}
	return &packetSender{ifindex: ifi.Index, fd: fd}, nil
}

func (s *packetSender) send(f frame) error {
	to := &unix.SockaddrLinklayer{
		Protocol: htons(uint16(f.etherType)),
		Ifindex:  s.ifindex,
		Halen:    uint8(len(f.dst)),
	}
	copy(to.Addr[:], f.dst)
	if err := unix.Sendto(s.fd, f.b, 0, to); err != nil {
		return fmt.Errorf("vip: send %v frame: %w", f.etherType, err)
	}
	return nil
}

// close does nothing: the socket is the namespace's (sharedPackets).
func (s *packetSender) close() error { return nil }

// inNS runs fn on a locked thread in ns. Sockets opened by fn stay in ns.
func inNS(ns netns.NsHandle, fn func() error) error {
	runtime.LockOSThread()
	cur, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("vip: current netns: %w", err)
	}
	defer cur.Close()
	if cur.Equal(ns) {
		defer runtime.UnlockOSThread()
		return fn()
	}
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("vip: enter netns: %w", err)
	}
	fnErr := fn()
	if err := netns.Set(cur); err != nil {
		// Keep the thread locked so the runtime discards it.
		return errors.Join(fnErr, fmt.Errorf("vip: restore netns: %w", err))
	}
	runtime.UnlockOSThread()
	return fnErr
}

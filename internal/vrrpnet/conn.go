// Package vrrpnet carries VRRP advertisements over raw IP sockets
// (protocol 112) on one interface: multicast to 224.0.0.18 / ff02::12 or
// unicast to the peers, always with TTL / hop limit 255.
//
// One Conn serves every virtual router of its interface and address family:
// it receives every VRRP packet arriving there (the runner demultiplexes by
// VRID) and each write names its own source address.
//
// It owns the sockets only; it never parses or judges packets (package vrrp
// does) and never touches addresses or routes.
package vrrpnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// Protocol is the IP protocol number of VRRP.
const Protocol = 112

// Multicast destinations of RFC 5798.
var (
	Group4 = netip.MustParseAddr("224.0.0.18")
	Group6 = netip.MustParseAddr("ff02::12")
)

// Meta describes one received datagram.
type Meta struct {
	Src, Dst netip.Addr
	TTL      int // TTL or hop limit; -1 when the kernel did not say
	IfIndex  int
}

// Conn sends and receives VRRP messages (without IP header).
type Conn interface {
	ReadFrom(b []byte) (int, Meta, error)
	// WriteTo sends b from src (an address of the interface; invalid:
	// the kernel chooses) to dst.
	WriteTo(b []byte, src, dst netip.Addr) error
	// Join joins the VRRP multicast group on the interface, if Listen did
	// not; the socket stays a member until it is closed.
	Join() error
	Close() error
}

var (
	_ Conn = &conn4{}
	_ Conn = &conn6{}
)

// Options select how a Conn is opened.
type Options struct {
	Interface string
	IPv6      bool // the address family: IPv6, else IPv4
	Multicast bool // join the VRRP group now (see Conn.Join); false for unicast mode
}

// Listen opens a Conn on opt.Interface for the family opt.IPv6 says.
func Listen(opt Options) (Conn, error) {
	ifi, err := net.InterfaceByName(opt.Interface)
	if err != nil {
		return nil, fmt.Errorf("vrrpnet: interface %q: %w", opt.Interface, err)
	}
	if !opt.IPv6 {
		return listen4(ifi, opt)
	}
	return listen6(ifi, opt)
}

func bindToDevice(c syscall.Conn, name string) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, name)
	}); err != nil {
		return err
	}
	return serr
}

// multicaster is what ipv4.PacketConn and ipv6.PacketConn share.
type multicaster interface {
	SetMulticastLoopback(bool) error
	SetMulticastInterface(*net.Interface) error
	JoinGroup(*net.Interface, net.Addr) error
}

// multicastOut sends multicast out of ifi without looping it back and, in
// multicast mode, joins the VRRP group there.
func multicastOut(c multicaster, ifi *net.Interface, group netip.Addr, join bool) error {
	if err := c.SetMulticastLoopback(false); err != nil {
		return err
	}
	if err := c.SetMulticastInterface(ifi); err != nil {
		return err
	}
	if join {
		return joinGroup(c, ifi, group)
	}
	return nil
}

func joinGroup(c multicaster, ifi *net.Interface, group netip.Addr) error {
	if err := c.JoinGroup(ifi, &net.IPAddr{IP: group.AsSlice()}); err != nil {
		return fmt.Errorf("join %s: %w", group, err)
	}
	return nil
}

type conn4 struct {
	ip  *net.IPConn
	pc  *ipv4.PacketConn // socket options
	io  *rawIO           // reads and writes
	ifi *net.Interface
}

func listen4(ifi *net.Interface, opt Options) (Conn, error) {
	c, err := net.ListenIP("ip4:112", &net.IPAddr{IP: net.IPv4zero})
	if err != nil {
		return nil, fmt.Errorf("vrrpnet: raw socket: %w", err)
	}
	io, err := newRawIO(c, false)
	if err != nil {
		c.Close()
		return nil, err
	}
	cn := &conn4{ip: c, pc: ipv4.NewPacketConn(c), io: io, ifi: ifi}
	if err := cn.setup(opt); err != nil {
		c.Close()
		return nil, fmt.Errorf("vrrpnet: %s: %w", opt.Interface, err)
	}
	return cn, nil
}

func (c *conn4) setup(opt Options) error {
	if err := bindToDevice(c.ip, opt.Interface); err != nil {
		return fmt.Errorf("bind to device: %w", err)
	}
	if err := c.pc.SetControlMessage(ipv4.FlagTTL|ipv4.FlagDst|ipv4.FlagInterface, true); err != nil {
		return err
	}
	if err := c.pc.SetTTL(255); err != nil {
		return err
	}
	if err := c.pc.SetMulticastTTL(255); err != nil {
		return err
	}
	return multicastOut(c.pc, c.ifi, Group4, opt.Multicast)
}

func (c *conn4) ReadFrom(b []byte) (int, Meta, error) { return c.io.readFrom(b) }

func (c *conn4) WriteTo(b []byte, src, dst netip.Addr) error {
	return c.io.writeTo(b, src, dst, c.ifi.Index)
}

func (c *conn4) Join() error { return joined(c.ifi, joinGroup(c.pc, c.ifi, Group4)) }

func (c *conn4) Close() error { return c.ip.Close() }

type conn6 struct {
	ip  *net.IPConn
	pc  *ipv6.PacketConn // socket options
	io  *rawIO           // reads and writes
	ifi *net.Interface
}

func listen6(ifi *net.Interface, opt Options) (Conn, error) {
	c, err := net.ListenIP("ip6:112", &net.IPAddr{IP: net.IPv6unspecified})
	if err != nil {
		return nil, fmt.Errorf("vrrpnet: raw socket: %w", err)
	}
	io, err := newRawIO(c, true)
	if err != nil {
		c.Close()
		return nil, err
	}
	cn := &conn6{ip: c, pc: ipv6.NewPacketConn(c), io: io, ifi: ifi}
	if err := cn.setup(opt); err != nil {
		c.Close()
		return nil, fmt.Errorf("vrrpnet: %s: %w", opt.Interface, err)
	}
	return cn, nil
}

func (c *conn6) setup(opt Options) error {
	if err := bindToDevice(c.ip, opt.Interface); err != nil {
		return fmt.Errorf("bind to device: %w", err)
	}
	if err := c.pc.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagDst|ipv6.FlagInterface, true); err != nil {
		return err
	}
	if err := c.pc.SetHopLimit(255); err != nil {
		return err
	}
	if err := c.pc.SetMulticastHopLimit(255); err != nil {
		return err
	}
	return multicastOut(c.pc, c.ifi, Group6, opt.Multicast)
}

func (c *conn6) ReadFrom(b []byte) (int, Meta, error) { return c.io.readFrom(b) }

func (c *conn6) WriteTo(b []byte, src, dst netip.Addr) error {
	return c.io.writeTo(b, src.WithZone(""), dst, c.ifi.Index)
}

func (c *conn6) Join() error { return joined(c.ifi, joinGroup(c.pc, c.ifi, Group6)) }

func joined(ifi *net.Interface, err error) error {
	if err != nil {
		return fmt.Errorf("vrrpnet: %s: %w", ifi.Name, err)
	}
	return nil
}

func (c *conn6) Close() error { return c.ip.Close() }

// LinkLocal returns the first IPv6 link-local address of an interface: the
// source of v3 IPv6 adverts (RFC 5798 section 5.1.2.1).
func LinkLocal(ifname string) (netip.Addr, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("vrrpnet: %w", err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("vrrpnet: %s addresses: %w", ifname, err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() == nil && n.IP.IsLinkLocalUnicast() {
			ip, _ := netip.AddrFromSlice(n.IP)
			return ip, nil
		}
	}
	return netip.Addr{}, errors.New("vrrpnet: " + ifname + " has no IPv6 link-local address")
}

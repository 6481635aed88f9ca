package ipvsync

import (
	"encoding/binary"
	"net"
	"net/netip"

	"github.com/moby/ipvs"
	"golang.org/x/sys/unix"
)

// Kernel is the part of the IPVS netlink API the reconciler uses. One
// Kernel value must be used by one goroutine at a time.
type Kernel interface {
	// Services lists every service; a dump the kernel flags interrupted
	// is an error (errInconsistent). IPVS's dumps resume by position, so
	// one racing with a writer can also skip or repeat a service
	// unflagged: the reconciler lists twice around its destination reads.
	Services() ([]*ipvs.Service, error)
	// Service reads one service; (nil, nil) when the kernel has none.
	Service(*ipvs.Service) (*ipvs.Service, error)
	Destinations(*ipvs.Service) ([]*ipvs.Destination, error)
	// Write makes the writes in order and returns one error for each (nil
	// when it was done). A failed write does not stop the ones after it.
	Write([]Write) []error
}

// Write is one kernel write: Dest is nil for the service operations.
type Write struct {
	Op      Op
	Service *ipvs.Service
	Dest    *ipvs.Destination
}

// NetlinkKernel is Kernel over the IPVS generic netlink family, with
// pipelined writes (netlink.go).
type NetlinkKernel struct {
	c *ipvsConn
}

var _ Kernel = (*NetlinkKernel)(nil)

// OpenKernel opens an IPVS netlink socket in the calling thread's network
// namespace. It first checks that the kernel has IPVS at all, and says
// how to fix it when it has not.
func OpenKernel() (*NetlinkKernel, error) {
	if err := Probe(); err != nil {
		return nil, err
	}
	c, err := dialIPVS()
	if err != nil {
		return nil, err
	}
	return &NetlinkKernel{c: c}, nil
}

// Close releases the netlink socket.
func (k *NetlinkKernel) Close() { k.c.close() }

func (k *NetlinkKernel) Services() ([]*ipvs.Service, error) { return k.c.services() }
func (k *NetlinkKernel) Service(s *ipvs.Service) (*ipvs.Service, error) {
	got, err := k.c.service(s)
	if isNotExist(err) {
		return nil, nil
	}
	return got, err
}
func (k *NetlinkKernel) Destinations(s *ipvs.Service) ([]*ipvs.Destination, error) {
	return k.c.dests(s)
}
func (k *NetlinkKernel) Write(ws []Write) []error { return k.c.write(ws) }

// Flush removes every IPVS service, havip's and everybody else's. havip
// itself never calls it; tests use it to break the table behind the
// reconciler's back.
func (k *NetlinkKernel) Flush() error { return k.c.flush() }

// kernelNetmask encodes a persistence prefix length the way the kernel
// reads IPVS_SVC_ATTR_NETMASK: for IPv4 a netmask in network byte order,
// for IPv6 the prefix length as a plain number. moby/ipvs writes and reads
// the attribute in host byte order (as moby/ipvs did), so the IPv4 mask is
// pre-swapped here.
func kernelNetmask(fam uint16, bits int) uint32 {
	if fam == unix.AF_INET6 {
		return uint32(bits)
	}
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], ^uint32(0)<<(32-bits))
	if bits == 0 {
		b = [4]byte{}
	}
	return binary.NativeEndian.Uint32(b[:])
}

// toKernel builds the kernel service for s, complete enough for
// NewService and UpdateService (Netmask and AddressFamily are mandatory).
func (s *Service) toKernel() *ipvs.Service {
	ks := &ipvs.Service{
		FWMark:        s.Key.FWMark,
		AddressFamily: s.Key.Family,
		SchedName:     s.Scheduler,
		Flags:         s.Flags,
		Timeout:       s.Timeout,
		Netmask:       kernelNetmask(s.Key.Family, s.Netmask),
	}
	if s.Key.FWMark == 0 {
		ks.Protocol = s.Key.Protocol
		ks.Address = net.IP(s.Key.Address.Addr().AsSlice())
		ks.Port = s.Key.Address.Port()
	}
	return ks
}

func (d Dest) toKernel() *ipvs.Destination {
	fwd, _ := forwardFlag(d.Forward)
	fam, _ := addrFamily(d.Address.Addr())
	return &ipvs.Destination{
		Address:         net.IP(d.Address.Addr().AsSlice()),
		Port:            d.Address.Port(),
		Weight:          d.Weight,
		ConnectionFlags: fwd,
		AddressFamily:   fam,
	}
}

// keyOf is the identity of a service read from the kernel.
func keyOf(ks *ipvs.Service) ServiceKey {
	if ks.FWMark != 0 {
		return ServiceKey{FWMark: ks.FWMark, Family: ks.AddressFamily}
	}
	return ServiceKey{Family: ks.AddressFamily, Protocol: ks.Protocol, Address: netip.AddrPortFrom(ipAddr(ks.Address), ks.Port)}
}

func destAddr(d *ipvs.Destination) netip.AddrPort {
	return netip.AddrPortFrom(ipAddr(d.Address), d.Port)
}

func ipAddr(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

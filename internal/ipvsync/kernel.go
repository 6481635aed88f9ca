package ipvsync

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/moby/ipvs"
	"golang.org/x/sys/unix"
)

// Kernel is the part of the IPVS netlink API the reconciler uses. One
// Kernel value must be used by one goroutine at a time.
type Kernel interface {
	Services() ([]*ipvs.Service, error)
	// Service reads one service; (nil, nil) when the kernel has none.
	Service(*ipvs.Service) (*ipvs.Service, error)
	Destinations(*ipvs.Service) ([]*ipvs.Destination, error)
	NewService(*ipvs.Service) error
	UpdateService(*ipvs.Service) error
	DelService(*ipvs.Service) error
	NewDestination(*ipvs.Service, *ipvs.Destination) error
	UpdateDestination(*ipvs.Service, *ipvs.Destination) error
	DelDestination(*ipvs.Service, *ipvs.Destination) error
}

// NetlinkKernel is Kernel over a moby/ipvs handle.
type NetlinkKernel struct {
	h *ipvs.Handle
}

var _ Kernel = (*NetlinkKernel)(nil)

// OpenKernel opens an IPVS handle in the network namespace at nsPath ("" =
// the current one). It first checks that the kernel has IPVS at all,
// because moby/ipvs silently accepts every command when it has not.
func OpenKernel(nsPath string) (*NetlinkKernel, error) {
	if err := Probe(); err != nil {
		return nil, err
	}
	h, err := ipvs.New(nsPath)
	if err != nil {
		return nil, fmt.Errorf("ipvsync: open IPVS netlink handle: %w", err)
	}
	return &NetlinkKernel{h: h}, nil
}

// Close releases the netlink socket.
func (k *NetlinkKernel) Close() { k.h.Close() }

func (k *NetlinkKernel) Services() ([]*ipvs.Service, error) { return k.h.GetServices() }
func (k *NetlinkKernel) Service(s *ipvs.Service) (*ipvs.Service, error) {
	got, err := k.h.GetService(s)
	if errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	return got, err
}
func (k *NetlinkKernel) Destinations(s *ipvs.Service) ([]*ipvs.Destination, error) {
	return k.h.GetDestinations(s)
}
func (k *NetlinkKernel) NewService(s *ipvs.Service) error    { return k.h.NewService(s) }
func (k *NetlinkKernel) UpdateService(s *ipvs.Service) error { return k.h.UpdateService(s) }
func (k *NetlinkKernel) DelService(s *ipvs.Service) error    { return k.h.DelService(s) }
func (k *NetlinkKernel) NewDestination(s *ipvs.Service, d *ipvs.Destination) error {
	return k.h.NewDestination(s, d)
}
func (k *NetlinkKernel) UpdateDestination(s *ipvs.Service, d *ipvs.Destination) error {
	return k.h.UpdateDestination(s, d)
}
func (k *NetlinkKernel) DelDestination(s *ipvs.Service, d *ipvs.Destination) error {
	return k.h.DelDestination(s, d)
}

// Flush removes every IPVS service, havip's and everybody else's. havip
// itself never calls it; tests use it to break the table behind the
// reconciler's back.
func (k *NetlinkKernel) Flush() error { return k.h.Flush() }

// kernelNetmask encodes a persistence prefix length the way the kernel
// reads IPVS_SVC_ATTR_NETMASK: for IPv4 a netmask in network byte order,
// for IPv6 the prefix length as a plain number. moby/ipvs writes and reads
// the attribute in host byte order, so the IPv4 mask is pre-swapped here.
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

// toKernel builds the moby/ipvs service for s, complete enough for
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

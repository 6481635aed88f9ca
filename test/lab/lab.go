// Package lab builds throw-away network topologies for havip's privileged
// tests: switches (a namespace holding a bridge) and hosts (a named network
// namespace wired to one or more switches by veth pairs).
//
// Everything is done over netlink from Go, never by running ip(8), so the
// same helpers work on a Debian host and inside a busybox-only qemu VM, whose
// ip applet cannot create veth pairs or move links between namespaces.
//
// lab owns only the namespaces and links it creates; every one of them is
// removed in t.Cleanup. Names start with "hv" and a short random tag so that
// parallel test runs never collide.
package lab

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetnsDir is where named namespaces are bind-mounted, as ip-netns(8) does,
// so `ip netns exec` and nsenter can reach them while debugging.
const NetnsDir = "/run/netns"

// Switch is a namespace holding a bridge named "br0". Hosts attach to it
// with a veth pair whose outer end is a port of the bridge.
type Switch struct {
	Name string
	NS   netns.NsHandle

	nl     *netlink.Handle
	bridge netlink.Link

	mu    sync.Mutex
	ports int
}

// Host is a named network namespace with a loopback and at least one
// interface ("eth0") plugged into a Switch.
type Host struct {
	Name   string // the name given by the test
	NS     netns.NsHandle
	NSPath string // bind mount of the namespace, e.g. /run/netns/hv1a2b3c-dir1
	Ifname string // "eth0"
	MAC    net.HardwareAddr
	Addrs  []netip.Prefix

	nl *netlink.Handle
}

// tag returns a short random name fragment.
func tag() string {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("lab: crypto/rand: %v", err))
	}
	return hex.EncodeToString(b[:])
}

// RequireRoot fails the test (it never skips) unless the process can create
// network namespaces, which is what every lab topology needs.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("lab: this test needs root to create network namespaces (euid %d); run it as root, or with -short to leave it out", os.Geteuid())
	}
	err := onThread(func() error {
		ns, err := netns.New()
		if err != nil {
			return err
		}
		return ns.Close()
	})
	if err != nil {
		t.Fatalf("lab: cannot create a network namespace: %v", err)
	}
}

// onThread runs fn on a locked OS thread and puts that thread back into the
// network namespace it started in. If the thread cannot be restored it stays
// locked, so the Go runtime discards it instead of reusing a thread in the
// wrong namespace.
func onThread(fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("lab: current netns: %w", err)
	}
	defer orig.Close()
	fnErr := fn()
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: it dies with this goroutine.
		return errors.Join(fnErr, fmt.Errorf("lab: restore netns: %w", err))
	}
	runtime.UnlockOSThread()
	return fnErr
}

// newNamedNS creates a network namespace bind-mounted at NetnsDir/name,
// without leaving the calling thread in it.
func newNamedNS(name string) (netns.NsHandle, string, error) {
	if err := os.MkdirAll(NetnsDir, 0o755); err != nil {
		return netns.None(), "", fmt.Errorf("lab: %w", err)
	}
	path := filepath.Join(NetnsDir, name)
	var ns netns.NsHandle
	err := onThread(func() error {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
		if err != nil {
			return err
		}
		f.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			os.Remove(path)
			return fmt.Errorf("unshare: %w", err)
		}
		self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(self, path, "none", unix.MS_BIND, ""); err != nil {
			os.Remove(path)
			return fmt.Errorf("bind mount %s: %w", path, err)
		}
		ns, err = netns.GetFromPath(path)
		return err
	})
	if err != nil {
		return netns.None(), "", fmt.Errorf("lab: new netns %s: %w", name, err)
	}
	return ns, path, nil
}

func deleteNamedNS(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("lab: unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("lab: %w", err)
	}
	return nil
}

// namespace creates a named namespace with lo up and IPv6 DAD disabled for
// every interface created in it later, and registers its removal.
func namespace(t testing.TB, name string) (netns.NsHandle, string, *netlink.Handle) {
	t.Helper()
	ns, path, err := newNamedNS(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ns.Close()
		if err := deleteNamedNS(path); err != nil {
			t.Errorf("lab: cleanup: %v", err)
		}
	})
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatalf("lab: netlink handle in %s: %v", name, err)
	}
	t.Cleanup(h.Close)
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatalf("lab: %s: lo: %v", name, err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		t.Fatalf("lab: %s: lo up: %v", name, err)
	}
	// Addresses get IFA_F_NODAD anyway; this also covers link-local ones.
	for _, key := range []string{"net/ipv6/conf/default/accept_dad", "net/ipv6/conf/all/accept_dad"} {
		if err := sysctlIn(ns, key, "0"); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("lab: %s: %v", name, err)
		}
	}
	return ns, path, h
}

// NewSwitch creates a namespace holding an up bridge "br0" with multicast
// snooping off (VRRP adverts, ARP and NDP must reach every port).
func NewSwitch(t testing.TB) *Switch {
	t.Helper()
	name := "hv" + tag() + "-sw"
	ns, _, h := namespace(t, name)
	off := false
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}, MulticastSnooping: &off}
	if err := h.LinkAdd(br); err != nil {
		t.Fatalf("lab: switch %s: add br0: %v", name, err)
	}
	link, err := h.LinkByName("br0")
	if err != nil {
		t.Fatalf("lab: switch %s: %v", name, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		t.Fatalf("lab: switch %s: br0 up: %v", name, err)
	}
	return &Switch{Name: name, NS: ns, nl: h, bridge: link}
}

// AddHost creates a host namespace whose eth0 is plugged into s and carries
// addrs. name only has to be unique within the test.
func (s *Switch) AddHost(t testing.TB, name string, addrs ...netip.Prefix) *Host {
	t.Helper()
	nsName := "hv" + tag() + "-" + name
	ns, path, h := namespace(t, nsName)
	host := &Host{Name: name, NS: ns, NSPath: path, Ifname: "eth0", nl: h}
	host.MAC = s.Attach(t, host, "eth0", addrs...)
	host.Addrs = append([]netip.Prefix(nil), addrs...)
	return host
}

// Attach plugs a new interface ifname of host h into s (for example a NAT
// director's eth1 on a back-end switch), brings it up with addrs, and
// returns its MAC address.
func (s *Switch) Attach(t testing.TB, h *Host, ifname string, addrs ...netip.Prefix) net.HardwareAddr {
	t.Helper()
	s.mu.Lock()
	s.ports++
	port := fmt.Sprintf("p%d", s.ports)
	s.mu.Unlock()

	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: port, MasterIndex: s.bridge.Attrs().Index},
		PeerName:      ifname,
		PeerNamespace: netlink.NsFd(h.NS),
	}
	if err := s.nl.LinkAdd(veth); err != nil {
		t.Fatalf("lab: attach %s/%s to %s: %v", h.Name, ifname, s.Name, err)
	}
	t.Cleanup(func() {
		// Deleting one end removes both; the link may already be gone
		// with a namespace a test deleted itself.
		if l, err := s.nl.LinkByName(port); err == nil {
			s.nl.LinkDel(l)
		}
	})
	p, err := s.nl.LinkByName(port)
	if err != nil {
		t.Fatalf("lab: %s: %v", s.Name, err)
	}
	if err := s.nl.LinkSetUp(p); err != nil {
		t.Fatalf("lab: %s: %s up: %v", s.Name, port, err)
	}
	link, err := h.nl.LinkByName(ifname)
	if err != nil {
		t.Fatalf("lab: %s: %v", h.Name, err)
	}
	for _, a := range addrs {
		if err := h.nl.AddrAdd(link, Addr(a)); err != nil {
			t.Fatalf("lab: %s: add %s to %s: %v", h.Name, a, ifname, err)
		}
	}
	if err := h.nl.LinkSetUp(link); err != nil {
		t.Fatalf("lab: %s: %s up: %v", h.Name, ifname, err)
	}
	return link.Attrs().HardwareAddr
}

// Addr converts p to a netlink address; IPv6 ones get IFA_F_NODAD so they
// are usable at once.
func Addr(p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: &net.IPNet{
		IP:   p.Addr().AsSlice(),
		Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
	}}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

// Netlink returns a netlink handle bound to h's namespace, usable from any
// goroutine.
func (h *Host) Netlink() *netlink.Handle { return h.nl }

// Do runs fn on a locked OS thread switched into h's namespace and restores
// the thread afterwards. Sockets fn opens stay in h's namespace for their
// whole life, whichever thread uses them later; goroutines fn starts do not
// inherit the namespace.
func (h *Host) Do(fn func() error) error {
	return onThread(func() error {
		if err := netns.Set(h.NS); err != nil {
			return fmt.Errorf("lab: enter %s: %w", h.Name, err)
		}
		return fn()
	})
}

// Sysctl writes value to /proc/sys/KEY inside h's namespace. key is either
// a dotted name ("net.ipv4.ip_forward") or a slash path
// ("net/ipv4/conf/eth0.10/rp_filter").
func (h *Host) Sysctl(t testing.TB, key, value string) {
	t.Helper()
	if err := sysctlIn(h.NS, key, value); err != nil {
		t.Fatalf("lab: %s: %v", h.Name, err)
	}
}

func sysctlIn(ns netns.NsHandle, key, value string) error {
	if !strings.Contains(key, "/") {
		key = strings.ReplaceAll(key, ".", "/")
	}
	path := filepath.Join("/proc/sys", key)
	return onThread(func() error {
		if err := netns.Set(ns); err != nil {
			return err
		}
		// /proc/sys/net resolves against the opening thread's namespace.
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("sysctl: %w", err)
		}
		_, err = f.WriteString(value)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
		}
		return nil
	})
}

func (h *Host) link(t testing.TB, ifname string) netlink.Link {
	t.Helper()
	l, err := h.nl.LinkByName(ifname)
	if err != nil {
		t.Fatalf("lab: %s: link %s: %v", h.Name, ifname, err)
	}
	return l
}

// SetLinkDown sets ifname administratively down.
func (h *Host) SetLinkDown(t testing.TB, ifname string) {
	t.Helper()
	if err := h.nl.LinkSetDown(h.link(t, ifname)); err != nil {
		t.Fatalf("lab: %s: %s down: %v", h.Name, ifname, err)
	}
}

// SetLinkUp sets ifname administratively up.
func (h *Host) SetLinkUp(t testing.TB, ifname string) {
	t.Helper()
	if err := h.nl.LinkSetUp(h.link(t, ifname)); err != nil {
		t.Fatalf("lab: %s: %s up: %v", h.Name, ifname, err)
	}
}

// AddVethPair creates a veth pair name <-> peer inside h, both ends up, with
// addrs on name: a local interface a test can flap, delete and recreate
// (the host kernel has no dummy driver).
func (h *Host) AddVethPair(t testing.TB, name, peer string, addrs ...netip.Prefix) {
	t.Helper()
	if err := h.nl.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peer}); err != nil {
		t.Fatalf("lab: %s: add veth %s/%s: %v", h.Name, name, peer, err)
	}
	l := h.link(t, name)
	for _, a := range addrs {
		if err := h.nl.AddrAdd(l, Addr(a)); err != nil {
			t.Fatalf("lab: %s: add %s to %s: %v", h.Name, a, name, err)
		}
	}
	for _, l := range []netlink.Link{l, h.link(t, peer)} {
		if err := h.nl.LinkSetUp(l); err != nil {
			t.Fatalf("lab: %s: %s up: %v", h.Name, l.Attrs().Name, err)
		}
	}
}

// DelLink deletes ifname.
func (h *Host) DelLink(t testing.TB, ifname string) {
	t.Helper()
	if err := h.nl.LinkDel(h.link(t, ifname)); err != nil {
		t.Fatalf("lab: %s: delete %s: %v", h.Name, ifname, err)
	}
}

// SetLinkName renames ifname to name (Linux renames an up link too).
func (h *Host) SetLinkName(t testing.TB, ifname, name string) {
	t.Helper()
	if err := h.nl.LinkSetName(h.link(t, ifname), name); err != nil {
		t.Fatalf("lab: %s: rename %s to %s: %v", h.Name, ifname, name, err)
	}
}

// SetMTU sets the MTU of ifname.
func (h *Host) SetMTU(t testing.TB, ifname string, mtu int) {
	t.Helper()
	if err := h.nl.LinkSetMTU(h.link(t, ifname), mtu); err != nil {
		t.Fatalf("lab: %s: MTU %d on %s: %v", h.Name, mtu, ifname, err)
	}
}

// DelAddr deletes p from ifname.
func (h *Host) DelAddr(t testing.TB, ifname string, p netip.Prefix) {
	t.Helper()
	if err := h.nl.AddrDel(h.link(t, ifname), Addr(p)); err != nil {
		t.Fatalf("lab: %s: delete %s from %s: %v", h.Name, p, ifname, err)
	}
}

// AddAddr adds p to ifname.
func (h *Host) AddAddr(t testing.TB, ifname string, p netip.Prefix) {
	t.Helper()
	if err := h.nl.AddrAdd(h.link(t, ifname), Addr(p)); err != nil {
		t.Fatalf("lab: %s: add %s to %s: %v", h.Name, p, ifname, err)
	}
}

// AddrsOn returns the addresses on ifname as the kernel reports them,
// lifetimes and flags included.
func (h *Host) AddrsOn(t testing.TB, ifname string) []netlink.Addr {
	t.Helper()
	addrs, err := h.nl.AddrList(h.link(t, ifname), netlink.FAMILY_ALL)
	if err != nil {
		t.Fatalf("lab: %s: addresses of %s: %v", h.Name, ifname, err)
	}
	return addrs
}

// HasAddr reports whether ip is configured on ifname.
func (h *Host) HasAddr(t testing.TB, ifname string, ip netip.Addr) bool {
	t.Helper()
	for _, a := range h.AddrsOn(t, ifname) {
		if got, ok := netip.AddrFromSlice(a.IP); ok && got.Unmap() == ip {
			return true
		}
	}
	return false
}

// Neigh returns the link-layer address h's neighbour table holds for ip
// (any interface), or nil if there is no entry with an address.
func (h *Host) Neigh(t testing.TB, ip netip.Addr) net.HardwareAddr {
	t.Helper()
	family := netlink.FAMILY_V4
	if ip.Is6() {
		family = netlink.FAMILY_V6
	}
	neighs, err := h.nl.NeighList(0, family)
	if err != nil {
		t.Fatalf("lab: %s: neighbours: %v", h.Name, err)
	}
	for _, n := range neighs {
		if got, ok := netip.AddrFromSlice(n.IP); ok && got.Unmap() == ip && len(n.HardwareAddr) > 0 {
			return n.HardwareAddr
		}
	}
	return nil
}

// SetNeigh installs a static-looking (but replaceable) neighbour entry
// ip -> mac on ifname, in state STALE so that a gratuitous ARP or an
// unsolicited NA with Override may update it.
func (h *Host) SetNeigh(t testing.TB, ifname string, ip netip.Addr, mac net.HardwareAddr) {
	t.Helper()
	family := netlink.FAMILY_V4
	if ip.Is6() {
		family = netlink.FAMILY_V6
	}
	n := &netlink.Neigh{
		LinkIndex:    h.link(t, ifname).Attrs().Index,
		Family:       family,
		State:        netlink.NUD_STALE,
		IP:           ip.AsSlice(),
		HardwareAddr: mac,
	}
	if err := h.nl.NeighSet(n); err != nil {
		t.Fatalf("lab: %s: neighbour %s -> %s: %v", h.Name, ip, mac, err)
	}
}

// WaitCarrier waits up to 5s until ifname is up and running (has carrier):
// a new veth gets its carrier asynchronously, after the kernel's link
// watch delay.
func (h *Host) WaitCarrier(t testing.TB, ifname string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		l := h.link(t, ifname)
		f := l.Attrs().RawFlags
		if f&unix.IFF_UP != 0 && f&unix.IFF_RUNNING != 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("lab: %s: %s has no carrier after 5s (flags %#x, operstate %v)", h.Name, ifname, f, l.Attrs().OperState)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// EnterNewNetns locks the test goroutine to its thread and moves that
// thread into a fresh network namespace, with lo up, until the test ends:
// for tests of code that works on "the current namespace" (its own links,
// /proc/sys/net and IPVS table). Goroutines the test starts stay outside.
func EnterNewNetns(t testing.TB) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("lab: current netns: %v", err)
	}
	ns, err := netns.New()
	if err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		t.Fatalf("lab: new netns (needs root): %v", err)
	}
	t.Cleanup(func() {
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: the runtime then discards it
			// rather than reuse a thread in the wrong namespace.
			t.Errorf("lab: restore netns: %v", err)
			return
		}
		ns.Close()
		orig.Close()
		runtime.UnlockOSThread()
	})
	// Until the namespace has an address, the kernel refuses IPv4 IPVS
	// destinations as broadcast: bring lo up.
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("lab: lo up: %v", err)
	}
}

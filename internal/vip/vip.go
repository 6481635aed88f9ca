// Package vip claims and releases the virtual IP addresses of one VRRP group
// on one interface: it adds them with netlink (with a finite lifetime, so
// that the kernel drops them by itself if havip dies without releasing
// them), announces them with gratuitous ARP (IPv4) and unsolicited Neighbor
// Advertisements (IPv6), and deletes them again.
//
// vip owns exactly the addresses it was given on exactly that interface. It
// never touches other addresses, routes, neighbour tables or IPVS, and it
// takes no decision: the VRRP state machine says when to claim and release.
//
// # Address lifetimes
//
// Addresses are added with valid_lft = preferred_lft = Options.Lifetime and
// pushed forward by Refresh. The kernel removes an expired address on its
// own: IPv4 from the devinet check_lifetime worker, IPv6 from
// addrconf_verify. Both reschedule themselves for the next expiry, so the
// removal is prompt: measured on Linux 6.18 (TestLifetimeExpiry, polling
// every 20ms), an address added with a 2s lifetime was gone 2.02-2.25s
// later, IPv4 and IPv6 alike. A SIGKILLed master therefore stops owning its
// VIPs at most about Lifetime + 0.5s after its last Refresh, without help.
// Lifetimes are whole seconds: Options.Lifetime is rounded up.
//
// # Why bursts
//
// The first round goes out at once; a Linux peer updates its neighbour
// entry from that first GARP (the kernel lets a gratuitous ARP override an
// entry even within neigh/locktime) or NA (Override flag). The further
// GARPCount-1 rounds, GARPInterval apart (default 5 x 500ms), cover lost
// frames and peers or switches that were busy or not yet listening.
//
// # Namespaces
//
// A Claimer acts in the network namespace of the thread that called New,
// whichever goroutine calls its methods later.
package vip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Defaults for zero Options fields.
const (
	DefaultGARPCount    = 5
	DefaultGARPInterval = 500 * time.Millisecond
)

// ErrNoLink is returned (wrapped) when the interface does not exist.
var ErrNoLink = errors.New("vip: no such interface")

// Options tune a Claimer.
type Options struct {
	// Lifetime is the valid and preferred lifetime of every VIP, rounded
	// up to whole seconds; zero means permanent (no self-expiry).
	Lifetime time.Duration
	// GARPCount is the number of GARP/NA rounds per burst (default 5).
	GARPCount int
	// GARPInterval is the time between rounds (default 500ms).
	GARPInterval time.Duration
	// Logger receives announce failures; nil discards them.
	Logger *slog.Logger
}

// Claimer adds, announces and removes one group's VIPs on one interface.
type Claimer struct {
	ifname string
	vips   []netip.Prefix
	opt    Options
	log    *slog.Logger
	ns     netns.NsHandle
	nl     *netlink.Handle
	// open returns a sender for the given link; replaced in tests.
	open func(ifi *net.Interface) (sender, error)

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
	// snd is kept open between bursts: closing a packet socket waits for
	// an RCU grace period (tens of milliseconds), which must never stall
	// a state change. It is reopened when the interface index changes.
	snd      sender
	sndIndex int

	garpSent, naSent, errs atomic.Uint64
}

// New validates its arguments and returns a Claimer bound to the calling
// thread's network namespace. It does not touch the interface, which need
// not exist yet.
func New(ifname string, vips []netip.Prefix, opt Options) (*Claimer, error) {
	if ifname == "" || len(ifname) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("vip: invalid interface name %q", ifname)
	}
	if len(vips) == 0 {
		return nil, errors.New("vip: no VIPs")
	}
	seen := make(map[netip.Addr]bool)
	for _, p := range vips {
		if !p.IsValid() || p.Addr().Is4In6() {
			return nil, fmt.Errorf("vip: invalid VIP %s", p)
		}
		if seen[p.Addr()] {
			return nil, fmt.Errorf("vip: duplicate VIP %s", p.Addr())
		}
		seen[p.Addr()] = true
	}
	if opt.Lifetime < 0 {
		return nil, fmt.Errorf("vip: negative lifetime %v", opt.Lifetime)
	}
	if opt.GARPCount <= 0 {
		opt.GARPCount = DefaultGARPCount
	}
	if opt.GARPInterval <= 0 {
		opt.GARPInterval = DefaultGARPInterval
	}
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ns, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("vip: current netns: %w", err)
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("vip: netlink: %w", err)
	}
	c := &Claimer{
		ifname: ifname,
		vips:   append([]netip.Prefix(nil), vips...),
		opt:    opt,
		log:    log.With("interface", ifname),
		ns:     ns,
		nl:     h,
	}
	c.open = c.openPacket
	return c, nil
}

// Close stops a running burst and frees the Claimer's handles. It leaves
// the addresses as they are (call Release first to drop them).
func (c *Claimer) Close() error {
	c.mu.Lock()
	c.stopBurstLocked()
	if c.snd != nil {
		c.snd.close()
		c.snd = nil
	}
	c.mu.Unlock()
	c.nl.Close()
	return c.ns.Close()
}

func (c *Claimer) link() (netlink.Link, error) {
	l, err := c.nl.LinkByName(c.ifname)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, fmt.Errorf("%w: %s", ErrNoLink, c.ifname)
		}
		return nil, fmt.Errorf("vip: %s: %w", c.ifname, err)
	}
	return l, nil
}

func (c *Claimer) addr(p netip.Prefix, index int) *netlink.Addr {
	a := &netlink.Addr{
		IPNet: &net.IPNet{
			IP:   p.Addr().AsSlice(),
			Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
		},
		LinkIndex: index,
	}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	if c.opt.Lifetime > 0 {
		secs := int(min(math.Ceil(c.opt.Lifetime.Seconds()), math.MaxInt32))
		a.ValidLft, a.PreferedLft = secs, secs
	}
	return a
}

// replace adds or updates every VIP, returning the ones now present.
func (c *Claimer) replace() ([]netip.Prefix, netlink.Link, error) {
	l, err := c.link()
	if err != nil {
		return nil, nil, err
	}
	var ok []netip.Prefix
	var errs []error
	for _, p := range c.vips {
		if err := c.nl.AddrReplace(l, c.addr(p, l.Attrs().Index)); err != nil {
			errs = append(errs, fmt.Errorf("vip: add %s to %s: %w", p, c.ifname, err))
			continue
		}
		ok = append(ok, p)
	}
	return ok, l, errors.Join(errs...)
}

// Claim adds every VIP to the interface and starts an announce burst whose
// first round goes out at once. The burst ends after GARPCount rounds, when
// ctx is done, or with Release. VIPs that could be added are announced even
// if others failed; the error names the failures.
func (c *Claimer) Claim(ctx context.Context) error {
	ok, l, err := c.replace()
	if len(ok) > 0 {
		c.announce(ctx, l, ok)
	}
	return err
}

// Refresh re-adds every VIP, which pushes its lifetime forward (and puts
// back one somebody deleted). Call it well within Lifetime, e.g. every
// Lifetime/3.
func (c *Claimer) Refresh() error {
	_, _, err := c.replace()
	return err
}

// Announce starts a new burst for every VIP, cancelling a running one.
// Failures are counted (see Counters) and logged, not returned.
func (c *Claimer) Announce(ctx context.Context) {
	l, err := c.link()
	if err != nil {
		c.errs.Add(1)
		c.log.Warn("announce failed", "reason", reasonNoLink, "err", err)
		return
	}
	c.announce(ctx, l, c.vips)
}

// Release stops any burst and deletes every VIP; VIPs already absent, or an
// interface that no longer exists, are not errors.
func (c *Claimer) Release() error {
	c.mu.Lock()
	c.stopBurstLocked()
	c.mu.Unlock()
	l, err := c.link()
	if errors.Is(err, ErrNoLink) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range c.vips {
		err := c.nl.AddrDel(l, c.addr(p, l.Attrs().Index))
		if err != nil && !isAbsent(err) {
			errs = append(errs, fmt.Errorf("vip: delete %s from %s: %w", p, c.ifname, err))
		}
	}
	return errors.Join(errs...)
}

func isAbsent(err error) bool {
	return errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV)
}

// RemoveStale deletes those of the Claimer's VIPs that are on the interface
// (left there by a crashed havip) and returns how many it deleted. Call it
// at startup, before this node has claimed anything.
func (c *Claimer) RemoveStale() (int, error) {
	l, err := c.link()
	if err != nil {
		return 0, err
	}
	present, err := c.nl.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return 0, fmt.Errorf("vip: list addresses of %s: %w", c.ifname, err)
	}
	ours := make(map[netip.Addr]bool, len(c.vips))
	for _, p := range c.vips {
		ours[p.Addr()] = true
	}
	n := 0
	var errs []error
	for _, a := range present {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || !ours[ip.Unmap()] {
			continue
		}
		if err := c.nl.AddrDel(l, &a); err != nil && !isAbsent(err) {
			errs = append(errs, fmt.Errorf("vip: delete stale %s from %s: %w", ip, c.ifname, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// Counters returns the GARPs and NAs sent and the send failures so far.
func (c *Claimer) Counters() (garpSent, naSent, sendErrors uint64) {
	return c.garpSent.Load(), c.naSent.Load(), c.errs.Load()
}

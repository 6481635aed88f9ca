// Package vip claims and releases the virtual IP addresses of one VRRP group
// on one interface: it adds them with netlink (with a finite lifetime, so
// that the kernel drops them by itself if havip dies without releasing
// them), announces them with gratuitous ARP (IPv4) and unsolicited Neighbor
// Advertisements (IPv6), and deletes them again.
//
// vip owns exactly the addresses it was given on exactly that interface. It
// never touches other addresses, routes, neighbour tables or IPVS, and it
// takes no decision: the VRRP state machine says when to claim and release.
// A VIP that is this director's own address (Options.Owner: the VRRP address
// owner) belongs to the operator: vip announces it, and never adds, refreshes
// or deletes it.
//
// Options are taken literally, without defaults (those live with the site
// configuration): a GARPCount of 0 announces nothing.
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
// GARPCount-1 rounds, GARPInterval apart, cover lost frames and peers or
// switches that were busy or not yet listening.
//
// # Changing the set in place
//
// Set replaces the VIPs and options without touching the kernel and says
// which VIPs came and went; ClaimSome and ReleaseSome then add and announce,
// or delete, just those, so a reload never drops the VIPs that stay. A
// running burst goes on for the VIPs still in the set, with the options it
// started with.
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
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/havip/havip/internal/samens"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ErrNoLink is returned (wrapped) when the interface does not exist.
var ErrNoLink = errors.New("vip: no such interface")

// Options tune a Claimer. Every field is taken as given.
type Options struct {
	// Lifetime is the valid and preferred lifetime of every VIP, rounded
	// up to whole seconds; zero means permanent (no self-expiry).
	Lifetime time.Duration
	// GARPCount is the number of GARP/NA rounds per burst; zero announces
	// nothing.
	GARPCount int
	// GARPInterval is the time between rounds; it must be positive when
	// GARPCount is more than 1.
	GARPInterval time.Duration
	// Owner is this director's own address; a VIP equal to it is only
	// announced (see the package doc). The zero Addr means none.
	Owner netip.Addr
	// Logger receives announce failures; nil discards them.
	Logger *slog.Logger
}

// Claimer adds, announces and removes one group's VIPs on one interface. It
// is safe for concurrent use, though its calls are meant to come in order
// from the runner that follows the VRRP state.
type Claimer struct {
	ifname string
	ns     netns.NsHandle
	nl     *netlink.Handle
	// open returns a sender for the given link; replaced in tests.
	open func(ifi *net.Interface) (sender, error)

	// cfg is the current set and options, replaced whole by Set; a
	// running burst reads it every round.
	cfg atomic.Pointer[config]

	mu     sync.Mutex
	bursts []burstRun // running, or ended and not yet reaped
	// snd sends on the interface; it is replaced when the interface
	// index changes (its socket is the namespace's, see sharedPackets).
	snd      sender
	sndIndex int

	// addedAt is the ifindex the VIPs were last added on. Release and
	// ReleaseSome delete there too: an interface renamed away is no
	// longer found by its name but still carries them, and may still be
	// plugged into the segment.
	addedAt atomic.Int32
	// found is the link the last lookup by name found; Refresh adds on it
	// without a lookup of its own (a master refreshing 255 groups' VIPs
	// made 150 lookups a second, half of the refresh's cost), and looks
	// again if that fails. A link renamed or re-created in between puts
	// the group in FAULT (package track), which stops the refreshes; the
	// next Claim looks it up by name.
	found atomic.Pointer[netlink.Link]

	garpSent, naSent, errs atomic.Uint64
}

// config is one validated set of VIPs and options; never modified.
type config struct {
	vips []netip.Prefix
	opt  Options
	log  *slog.Logger
	in   map[netip.Addr]bool // the VIPs' addresses
}

func newConfig(ifname string, vips []netip.Prefix, opt Options) (*config, error) {
	if len(vips) == 0 {
		return nil, errors.New("vip: no VIPs")
	}
	in := make(map[netip.Addr]bool, len(vips))
	for _, p := range vips {
		if !p.IsValid() || p.Addr().Is4In6() {
			return nil, fmt.Errorf("vip: invalid VIP %s", p)
		}
		if in[p.Addr()] {
			return nil, fmt.Errorf("vip: duplicate VIP %s", p.Addr())
		}
		in[p.Addr()] = true
	}
	if opt.Lifetime < 0 {
		return nil, fmt.Errorf("vip: negative lifetime %v", opt.Lifetime)
	}
	if opt.GARPCount < 0 {
		return nil, fmt.Errorf("vip: negative GARP count %d", opt.GARPCount)
	}
	if opt.GARPInterval < 0 || opt.GARPInterval == 0 && opt.GARPCount > 1 {
		return nil, fmt.Errorf("vip: GARP interval %v: %d rounds need a positive interval", opt.GARPInterval, opt.GARPCount)
	}
	if opt.Owner.IsValid() && (opt.Owner.Is4In6() || opt.Owner.Zone() != "") {
		return nil, fmt.Errorf("vip: invalid owner address %s", opt.Owner)
	}
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &config{vips: slices.Clone(vips), opt: opt, log: log.With("interface", ifname), in: in}, nil
}

// owned reports whether p is the owner's address, which vip never adds or
// deletes.
func (cfg *config) owned(p netip.Prefix) bool {
	return cfg.opt.Owner.IsValid() && p.Addr() == cfg.opt.Owner
}

// notOwned returns ps without the owner's address.
func (cfg *config) notOwned(ps []netip.Prefix) []netip.Prefix {
	return slices.DeleteFunc(slices.Clone(ps), cfg.owned)
}

// New validates its arguments and returns a Claimer bound to the calling
// thread's network namespace. It does not touch the interface, which need
// not exist yet.
func New(ifname string, vips []netip.Prefix, opt Options) (*Claimer, error) {
	if ifname == "" || len(ifname) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("vip: invalid interface name %q", ifname)
	}
	cfg, err := newConfig(ifname, vips, opt)
	if err != nil {
		return nil, err
	}
	ns, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("vip: current netns: %w", err)
	}
	h, err := samens.Handle(ns, unix.NETLINK_ROUTE)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("vip: netlink: %w", err)
	}
	c := &Claimer{ifname: ifname, ns: ns, nl: h}
	c.cfg.Store(cfg)
	c.open = c.openPacket
	return c, nil
}

// Set replaces the VIPs and options, validated as by New; on error nothing
// changes. It does not touch the kernel: it returns the VIPs added to the set
// and those removed from it, for ClaimSome and ReleaseSome (prefixes are
// compared whole, so a VIP whose length changed is in both). A change of
// Owner is not reported: later calls follow it, and Refresh adds a VIP that
// stopped being the owner's.
func (c *Claimer) Set(vips []netip.Prefix, opt Options) (added, removed []netip.Prefix, err error) {
	cfg, err := newConfig(c.ifname, vips, opt)
	if err != nil {
		return nil, nil, err
	}
	old := c.cfg.Swap(cfg)
	for _, p := range cfg.vips {
		if !slices.Contains(old.vips, p) {
			added = append(added, p)
		}
	}
	for _, p := range old.vips {
		if !slices.Contains(cfg.vips, p) {
			removed = append(removed, p)
		}
	}
	return added, removed, nil
}

// Close stops a running burst and frees the Claimer's handles. It leaves
// the addresses as they are (call Release first to drop them).
func (c *Claimer) Close() error {
	c.mu.Lock()
	c.stopBurstsLocked()
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
		c.found.Store(nil)
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, fmt.Errorf("%w: %s", ErrNoLink, c.ifname)
		}
		return nil, fmt.Errorf("vip: %s: %w", c.ifname, err)
	}
	c.found.Store(&l)
	return l, nil
}

func (c *Claimer) addr(cfg *config, p netip.Prefix, index int) *netlink.Addr {
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
	if cfg.opt.Lifetime > 0 {
		secs := int(min(math.Ceil(cfg.opt.Lifetime.Seconds()), math.MaxInt32))
		a.ValidLft, a.PreferedLft = secs, secs
	}
	return a
}

// replace adds or updates ps but the owner's address, and returns those of
// ps to announce: the ones now present, and the owner's.
func (c *Claimer) replace(cfg *config, ps []netip.Prefix) ([]netip.Prefix, netlink.Link, error) {
	l, err := c.link()
	if err != nil {
		return nil, nil, err
	}
	return c.replaceOn(l, cfg, ps)
}

// replaceOn adds or refreshes ps on l.
func (c *Claimer) replaceOn(l netlink.Link, cfg *config, ps []netip.Prefix) ([]netip.Prefix, netlink.Link, error) {
	c.addedAt.Store(int32(l.Attrs().Index))
	var ok []netip.Prefix
	var errs []error
	for _, p := range ps {
		if !cfg.owned(p) {
			if err := c.nl.AddrReplace(l, c.addr(cfg, p, l.Attrs().Index)); err != nil {
				errs = append(errs, fmt.Errorf("vip: add %s to %s: %w", p, c.ifname, err))
				continue
			}
		}
		ok = append(ok, p)
	}
	return ok, l, errors.Join(errs...)
}

// Claim adds every VIP to the interface and starts an announce burst whose
// first round goes out at once, replacing any running burst. The burst ends
// after GARPCount rounds, when ctx is done, or with Release. VIPs that could
// be added are announced even if others failed; the error names the
// failures.
func (c *Claimer) Claim(ctx context.Context) error {
	cfg := c.cfg.Load()
	return c.claim(ctx, cfg, cfg.vips, true)
}

// ClaimSome is Claim for ps only, which must be VIPs of the current set (see
// Set); a running burst goes on.
func (c *Claimer) ClaimSome(ctx context.Context, ps []netip.Prefix) error {
	cfg := c.cfg.Load()
	for _, p := range ps {
		if !slices.Contains(cfg.vips, p) {
			return fmt.Errorf("vip: %s is not one of the VIPs on %s", p, c.ifname)
		}
	}
	return c.claim(ctx, cfg, ps, false)
}

func (c *Claimer) claim(ctx context.Context, cfg *config, ps []netip.Prefix, replace bool) error {
	ok, l, err := c.replace(cfg, ps)
	if len(ok) > 0 {
		c.announce(ctx, l, cfg, ok, replace)
	}
	return err
}

// Refresh re-adds every VIP, which pushes its lifetime forward (and puts
// back one somebody deleted). Call it well within Lifetime, e.g. every
// Lifetime/3.
func (c *Claimer) Refresh() error {
	cfg := c.cfg.Load()
	ps := cfg.notOwned(cfg.vips)
	if l := c.found.Load(); l != nil {
		if _, _, err := c.replaceOn(*l, cfg, ps); err == nil {
			return nil
		}
	}
	_, _, err := c.replace(cfg, ps)
	return err
}

// Announce starts a new burst for every VIP, cancelling a running one.
// Failures are counted (see Counters) and logged, not returned.
func (c *Claimer) Announce(ctx context.Context) {
	cfg := c.cfg.Load()
	l, err := c.link()
	if err != nil {
		c.errs.Add(1)
		cfg.log.Warn("announce failed", "reason", reasonNoLink, "err", err)
		return
	}
	c.announce(ctx, l, cfg, cfg.vips, true)
}

// Release stops any burst and deletes every VIP; VIPs already absent, or an
// interface that no longer exists, are not errors.
func (c *Claimer) Release() error {
	c.mu.Lock()
	c.stopBurstsLocked()
	c.mu.Unlock()
	cfg := c.cfg.Load()
	return c.del(cfg, cfg.vips)
}

// ReleaseSome deletes ps only, such as VIPs just removed by Set; a running
// burst goes on for the VIPs still in the set. As with Release, absent
// addresses and a missing interface are not errors.
func (c *Claimer) ReleaseSome(ps []netip.Prefix) error {
	for _, p := range ps {
		if !p.IsValid() {
			return fmt.Errorf("vip: invalid VIP %s", p)
		}
	}
	return c.del(c.cfg.Load(), ps)
}

// del deletes ps but the owner's address from the interface and from the
// link they were last added on, if that is another one now (renamed).
func (c *Claimer) del(cfg *config, ps []netip.Prefix) error {
	var at []int
	l, err := c.link()
	switch {
	case err == nil:
		at = append(at, l.Attrs().Index)
	case !errors.Is(err, ErrNoLink):
		return err
	}
	if i := int(c.addedAt.Load()); i != 0 && !slices.Contains(at, i) {
		at = append(at, i)
	}
	var errs []error
	for _, index := range at {
		for _, p := range cfg.notOwned(ps) {
			err := c.nl.AddrDel(nil, c.addr(cfg, p, index))
			if err != nil && !isAbsent(err) {
				errs = append(errs, fmt.Errorf("vip: delete %s from %s (ifindex %d): %w", p, c.ifname, index, err))
			}
		}
	}
	return errors.Join(errs...)
}

func isAbsent(err error) bool {
	return errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV)
}

// RemoveStale deletes those of the Claimer's VIPs that are on the interface
// (left there by a crashed havip), but the owner's address, and returns how
// many it deleted. Call it at startup, before this node has claimed anything.
func (c *Claimer) RemoveStale() (int, error) {
	l, err := c.link()
	if err != nil {
		return 0, err
	}
	present, err := c.nl.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return 0, fmt.Errorf("vip: list addresses of %s: %w", c.ifname, err)
	}
	cfg := c.cfg.Load()
	ours := make(map[netip.Addr]bool, len(cfg.vips))
	for _, p := range cfg.notOwned(cfg.vips) {
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

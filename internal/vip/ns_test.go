package vip

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/havip/havip/test/lab"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

var discard = slog.New(slog.DiscardHandler)

func fakeLink(mac net.HardwareAddr) netlink.Link {
	return &netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "eth0", Index: 1, HardwareAddr: mac}}
}

var (
	vip4 = netip.MustParsePrefix("10.0.0.100/24")
	vip6 = netip.MustParsePrefix("fd00::100/64")
)

// pair builds a director and a peer on one switch.
func pair(t *testing.T) (dir, peer *lab.Host) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipped with -short: needs root and network namespaces")
	}
	lab.RequireRoot(t)
	sw := lab.NewSwitch(t)
	dir = sw.AddHost(t, "dir", netip.MustParsePrefix("10.0.0.1/24"), netip.MustParsePrefix("fd00::1/64"))
	peer = sw.AddHost(t, "peer", netip.MustParsePrefix("10.0.0.2/24"), netip.MustParsePrefix("fd00::2/64"))
	return dir, peer
}

// newIn creates a Claimer bound to h's namespace.
func newIn(t *testing.T, h *lab.Host, vips []netip.Prefix, opt Options) *Claimer {
	t.Helper()
	var c *Claimer
	if err := h.Do(func() (err error) {
		c, err = New("eth0", vips, opt)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// capture collects every frame arriving on h's eth0 until the test ends.
type capture struct {
	mu     sync.Mutex
	frames [][]byte
}

func startCapture(t *testing.T, h *lab.Host) *capture {
	t.Helper()
	var fd int
	if err := h.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		l, err := h.Netlink().LinkByName("eth0")
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: l.Attrs().Index})
	}); err != nil {
		t.Fatalf("capture socket: %v", err)
	}
	tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	c := &capture{}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			select {
			case <-stop:
				return
			default:
			}
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				continue // timeout: check stop
			}
			c.mu.Lock()
			c.frames = append(c.frames, append([]byte(nil), buf[:n]...))
			c.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
		unix.Close(fd)
	})
	return c
}

func (c *capture) snapshot() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.frames...)
}

// waitFor polls cond every 20ms until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for {
		if cond() {
			return time.Since(start), true
		}
		if time.Since(start) > d {
			return time.Since(start), false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func findAddr(t *testing.T, h *lab.Host, ip netip.Addr) (netlink.Addr, bool) {
	t.Helper()
	for _, a := range h.AddrsOn(t, "eth0") {
		if got, _ := netip.AddrFromSlice(a.IP); got.Unmap() == ip {
			return a, true
		}
	}
	return netlink.Addr{}, false
}

func TestClaimRefreshRelease(t *testing.T) {
	dir, _ := pair(t)
	c := newIn(t, dir, []netip.Prefix{vip4, vip6}, Options{Lifetime: 30 * time.Second, GARPCount: 1})
	if err := c.Claim(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, p := range []netip.Prefix{vip4, vip6} {
		a, ok := findAddr(t, dir, p.Addr())
		if !ok {
			t.Fatalf("%s not on eth0 after Claim", p)
		}
		ones, _ := a.Mask.Size()
		if ones != p.Bits() {
			t.Errorf("%s: prefix length %d, want %d", p, ones, p.Bits())
		}
		if a.ValidLft > 30 || a.ValidLft < 28 || a.PreferedLft > 30 || a.PreferedLft < 28 {
			t.Errorf("%s: valid_lft %d preferred_lft %d, want about 30", p, a.ValidLft, a.PreferedLft)
		}
		if a.Flags&unix.IFA_F_PERMANENT != 0 {
			t.Errorf("%s: permanent despite a lifetime (flags %#x)", p, a.Flags)
		}
		if p.Addr().Is6() && a.Flags&unix.IFA_F_NODAD == 0 {
			t.Errorf("%s: no IFA_F_NODAD (flags %#x)", p, a.Flags)
		}
	}

	// Refresh pushes the lifetime forward.
	time.Sleep(2100 * time.Millisecond)
	if a, _ := findAddr(t, dir, vip4.Addr()); a.ValidLft > 28 {
		t.Fatalf("valid_lft %d after 2s, want it counting down", a.ValidLft)
	}
	if err := c.Refresh(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []netip.Prefix{vip4, vip6} {
		if a, _ := findAddr(t, dir, p.Addr()); a.ValidLft < 29 {
			t.Errorf("%s: valid_lft %d after Refresh, want 30", p, a.ValidLft)
		}
	}

	if err := c.Release(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []netip.Prefix{vip4, vip6} {
		if _, ok := findAddr(t, dir, p.Addr()); ok {
			t.Errorf("%s still on eth0 after Release", p)
		}
	}
	if !dir.HasAddr(t, "eth0", netip.MustParseAddr("10.0.0.1")) || !dir.HasAddr(t, "eth0", netip.MustParseAddr("fd00::1")) {
		t.Error("Release removed an address that is not a VIP")
	}
	// Releasing again (VIPs absent) is fine.
	if err := c.Release(); err != nil {
		t.Errorf("second Release: %v", err)
	}
}

func TestPermanentWithoutLifetime(t *testing.T) {
	dir, _ := pair(t)
	c := newIn(t, dir, []netip.Prefix{vip4}, Options{GARPCount: 1})
	if err := c.Claim(context.Background()); err != nil {
		t.Fatal(err)
	}
	a, ok := findAddr(t, dir, vip4.Addr())
	if !ok || a.Flags&unix.IFA_F_PERMANENT == 0 {
		t.Errorf("VIP without lifetime: present %v flags %#x, want permanent", ok, a.Flags)
	}
}

func TestGARPUpdatesNeighbour(t *testing.T) {
	dir, peer := pair(t)
	old := net.HardwareAddr{0x02, 0xde, 0xad, 0xbe, 0xef, 0x01}
	peer.SetNeigh(t, "eth0", vip4.Addr(), old)
	if got := peer.Neigh(t, vip4.Addr()); got.String() != old.String() {
		t.Fatalf("pre-populated entry %v, want %v", got, old)
	}
	cap := startCapture(t, peer)
	c := newIn(t, dir, []netip.Prefix{vip4}, Options{Lifetime: 30 * time.Second, GARPCount: 5, GARPInterval: 300 * time.Millisecond})
	if err := c.Claim(context.Background()); err != nil {
		t.Fatal(err)
	}
	took, ok := waitFor(5*time.Second, func() bool { return peer.Neigh(t, vip4.Addr()).String() == dir.MAC.String() })
	if !ok {
		t.Fatalf("peer's entry for %s is %v after %v, want %v", vip4.Addr(), peer.Neigh(t, vip4.Addr()), took, dir.MAC)
	}
	t.Logf("peer's ARP entry switched to the claimer after %v", took)

	waitFor(3*time.Second, func() bool { g, _, _ := c.Counters(); return g == 5 })
	garp, na, errs := c.Counters()
	if diff := cmp.Diff([3]uint64{5, 0, 0}, [3]uint64{garp, na, errs}); diff != "" {
		t.Errorf("counters garp/na/errors (-want +got):\n%s", diff)
	}
	time.Sleep(100 * time.Millisecond)
	var n int
	for _, b := range cap.snapshot() {
		got, ok := decodeARP(t, b)
		if !ok || got.SndIP != vip4.Addr().String() {
			continue
		}
		n++
		if diff := cmp.Diff(wantARP(dir.MAC, vip4.Addr().String()), got); diff != "" {
			t.Errorf("captured GARP (-want +got):\n%s", diff)
		}
	}
	if n != 5 {
		t.Errorf("captured %d GARPs for %s, want 5", n, vip4.Addr())
	}
}

func TestNAUpdatesNeighbour(t *testing.T) {
	dir, peer := pair(t)
	old := net.HardwareAddr{0x02, 0xde, 0xad, 0xbe, 0xef, 0x02}
	peer.SetNeigh(t, "eth0", vip6.Addr(), old)
	cap := startCapture(t, peer)
	c := newIn(t, dir, []netip.Prefix{vip6}, Options{Lifetime: 30 * time.Second, GARPCount: 2, GARPInterval: 200 * time.Millisecond})
	if err := c.Claim(context.Background()); err != nil {
		t.Fatal(err)
	}
	took, ok := waitFor(5*time.Second, func() bool { return peer.Neigh(t, vip6.Addr()).String() == dir.MAC.String() })
	if !ok {
		t.Fatalf("peer's entry for %s is %v after %v, want %v", vip6.Addr(), peer.Neigh(t, vip6.Addr()), took, dir.MAC)
	}
	t.Logf("peer's ND entry switched to the claimer after %v", took)
	waitFor(3*time.Second, func() bool { _, n, _ := c.Counters(); return n == 2 })
	time.Sleep(100 * time.Millisecond)
	var n int
	for _, b := range cap.snapshot() {
		got, ok := decodeNA(t, b)
		if !ok || got.Target != vip6.Addr().String() {
			continue
		}
		n++
		if diff := cmp.Diff(wantNA(dir.MAC, vip6.Addr().String()), got); diff != "" {
			t.Errorf("captured NA (-want +got):\n%s", diff)
		}
	}
	if n != 2 {
		t.Errorf("captured %d NAs for %s, want 2", n, vip6.Addr())
	}
	// The VIP is reachable from the peer through the new entry.
	peer.Ping(t, vip6.Addr())
}

// TestLifetimeExpiry measures how long the kernel takes to drop a VIP
// whose lifetime ran out (the daemon relies on it after a SIGKILL).
func TestLifetimeExpiry(t *testing.T) {
	dir, _ := pair(t)
	c := newIn(t, dir, []netip.Prefix{vip4, vip6}, Options{Lifetime: 2 * time.Second, GARPCount: 1})
	start := time.Now()
	if err := c.Claim(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Measured 2.02-2.25s on Linux 6.18; the bound is generous.
	const bound = 6 * time.Second
	gone := map[netip.Prefix]time.Duration{}
	waitFor(bound, func() bool {
		for _, p := range []netip.Prefix{vip4, vip6} {
			if _, ok := findAddr(t, dir, p.Addr()); !ok && gone[p] == 0 {
				gone[p] = time.Since(start)
			}
		}
		return len(gone) == 2
	})
	for _, p := range []netip.Prefix{vip4, vip6} {
		took, ok := gone[p]
		if !ok {
			t.Errorf("%s with a 2s lifetime still present after %v", p, bound)
			continue
		}
		if took < 1500*time.Millisecond {
			t.Errorf("%s gone after %v, before its 2s lifetime", p, took)
		}
		t.Logf("%s with a 2s lifetime expired after %v", p, took)
	}
}

func TestRemoveStale(t *testing.T) {
	dir, _ := pair(t)
	dir.AddAddr(t, "eth0", vip4)
	dir.AddAddr(t, "eth0", vip6)
	other := netip.MustParsePrefix("10.0.0.50/24")
	dir.AddAddr(t, "eth0", other)
	extra := netip.MustParsePrefix("10.0.0.101/24") // ours, but not present
	c := newIn(t, dir, []netip.Prefix{vip4, vip6, extra}, Options{})
	n, err := c.RemoveStale()
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("RemoveStale = %d, want 2", n)
	}
	for _, p := range []netip.Prefix{vip4, vip6} {
		if _, ok := findAddr(t, dir, p.Addr()); ok {
			t.Errorf("stale %s still present", p)
		}
	}
	if _, ok := findAddr(t, dir, other.Addr()); !ok {
		t.Error("RemoveStale removed an address that is not ours")
	}
	if n, err := c.RemoveStale(); n != 0 || err != nil {
		t.Errorf("second RemoveStale = %d, %v; want 0, nil", n, err)
	}
}

// An interface renamed after the claim keeps the VIPs under its new name;
// Release still deletes them there.
func TestReleaseAfterRename(t *testing.T) {
	dir, _ := pair(t)
	c := newIn(t, dir, []netip.Prefix{vip4, vip6}, Options{Lifetime: 30 * time.Second})
	if err := c.Claim(context.Background()); err != nil {
		t.Fatal(err)
	}
	dir.SetLinkName(t, "eth0", "eth9")
	if err := c.Release(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []netip.Prefix{vip4, vip6} {
		if dir.HasAddr(t, "eth9", p.Addr()) {
			t.Errorf("%s still on the renamed interface after Release", p)
		}
	}
	if !dir.HasAddr(t, "eth9", netip.MustParseAddr("10.0.0.1")) {
		t.Error("Release removed an address that is not a VIP")
	}
}

func TestMissingInterface(t *testing.T) {
	dir, _ := pair(t)
	var c *Claimer
	if err := dir.Do(func() (err error) {
		c, err = New("nosuch0", []netip.Prefix{vip4}, Options{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Claim(context.Background()); !errors.Is(err, ErrNoLink) {
		t.Errorf("Claim on a missing interface: %v, want ErrNoLink", err)
	}
	if _, err := c.RemoveStale(); !errors.Is(err, ErrNoLink) {
		t.Errorf("RemoveStale on a missing interface: %v, want ErrNoLink", err)
	}
	if err := c.Release(); err != nil {
		t.Errorf("Release on a missing interface: %v, want nil", err)
	}
	c.Announce(context.Background())
	if _, _, errs := c.Counters(); errs != 1 {
		t.Errorf("Announce on a missing interface counted %d errors, want 1", errs)
	}
}

// announced counts the GARPs (IPv4) or NAs (IPv6) for ip that c captured.
func (c *capture) announced(t *testing.T, ip netip.Addr) int {
	t.Helper()
	n := 0
	for _, b := range c.snapshot() {
		if a, ok := decodeARP(t, b); ok && ip.Is4() && a.SndIP == ip.String() {
			n++
		}
		if na, ok := decodeNA(t, b); ok && ip.Is6() && na.Target == ip.String() {
			n++
		}
	}
	return n
}

// waitSent waits until c has sent garp GARPs and na NAs in all.
func waitSent(t *testing.T, c *Claimer, garp, na uint64) {
	t.Helper()
	if _, ok := waitFor(3*time.Second, func() bool { g, n, _ := c.Counters(); return g >= garp && n >= na }); !ok {
		g, n, e := c.Counters()
		t.Fatalf("sent %d GARPs and %d NAs (%d errors), want %d and %d", g, n, e, garp, na)
	}
	time.Sleep(100 * time.Millisecond) // let the capture read them
}

// TestOwnerAddressOnlyAnnounced: the director's own address among the VIPs
// (the VRRP address owner) is announced but never added, given a lifetime,
// refreshed, deleted or removed as stale.
func TestOwnerAddressOnlyAnnounced(t *testing.T) {
	dir, peer := pair(t)
	own := netip.MustParsePrefix("10.0.0.1/24") // the lab's address of dir
	orig, ok := findAddr(t, dir, own.Addr())
	if !ok || orig.Flags&unix.IFA_F_PERMANENT == 0 {
		t.Fatalf("dir's own %s: present %v flags %#x, want permanent", own, ok, orig.Flags)
	}
	untouched := func(when string) {
		t.Helper()
		a, ok := findAddr(t, dir, own.Addr())
		if !ok {
			t.Fatalf("after %s: the owner's %s is gone", when, own)
		}
		if a.Flags != orig.Flags || a.ValidLft != orig.ValidLft || a.PreferedLft != orig.PreferedLft {
			t.Errorf("after %s: owner's %s has flags %#x valid_lft %d preferred_lft %d, was %#x %d %d",
				when, own, a.Flags, a.ValidLft, a.PreferedLft, orig.Flags, orig.ValidLft, orig.PreferedLft)
		}
	}
	cap := startCapture(t, peer)
	c := newIn(t, dir, []netip.Prefix{own, vip4}, Options{Lifetime: 30 * time.Second, GARPCount: 1, Owner: own.Addr()})

	dir.AddAddr(t, "eth0", vip4) // stale from an earlier run
	if n, err := c.RemoveStale(); n != 1 || err != nil {
		t.Errorf("RemoveStale = %d, %v; want 1 (the stale VIP, not the owner's address)", n, err)
	}
	untouched("RemoveStale")

	if err := c.Claim(context.Background()); err != nil {
		t.Fatal(err)
	}
	if a, ok := findAddr(t, dir, vip4.Addr()); !ok || a.ValidLft > 30 || a.ValidLft < 28 {
		t.Errorf("%s after Claim: present %v valid_lft %d, want about 30", vip4, ok, a.ValidLft)
	}
	untouched("Claim")
	waitSent(t, c, 2, 0)
	if n := cap.announced(t, own.Addr()); n != 1 {
		t.Errorf("Claim: captured %d GARPs for the owner's %s, want 1", n, own.Addr())
	}

	if err := c.Refresh(); err != nil {
		t.Fatal(err)
	}
	untouched("Refresh")
	c.Announce(context.Background())
	waitSent(t, c, 4, 0)
	if n := cap.announced(t, own.Addr()); n != 2 {
		t.Errorf("Announce: captured %d GARPs for the owner's %s in all, want 2", n, own.Addr())
	}

	if err := c.ReleaseSome([]netip.Prefix{own}); err != nil {
		t.Fatal(err)
	}
	untouched("ReleaseSome")
	if err := c.Release(); err != nil {
		t.Fatal(err)
	}
	untouched("Release")
	if _, ok := findAddr(t, dir, vip4.Addr()); ok {
		t.Errorf("%s still present after Release", vip4)
	}
}

// TestSetClaimSomeReleaseSome: a claimed group gains one VIP and loses
// another in place; the VIPs that stay are neither re-added nor announced.
func TestSetClaimSomeReleaseSome(t *testing.T) {
	dir, peer := pair(t)
	gone, added4 := netip.MustParsePrefix("10.0.0.101/24"), netip.MustParsePrefix("10.0.0.102/24")
	opt := Options{Lifetime: 30 * time.Second, GARPCount: 1}
	c := newIn(t, dir, []netip.Prefix{vip4, gone, vip6}, opt)
	if err := c.Claim(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitSent(t, c, 2, 1)
	cap := startCapture(t, peer)

	opt.GARPCount, opt.GARPInterval = 2, 100*time.Millisecond
	added, removed, err := c.Set([]netip.Prefix{vip4, vip6, added4}, opt)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([2][]netip.Prefix{{added4}, {gone}}, [2][]netip.Prefix{added, removed}, cmpPrefix); diff != "" {
		t.Fatalf("Set added, removed (-want +got):\n%s", diff)
	}
	if _, ok := findAddr(t, dir, gone.Addr()); !ok {
		t.Errorf("Set deleted %s", gone)
	}
	if _, ok := findAddr(t, dir, added4.Addr()); ok {
		t.Errorf("Set added %s", added4)
	}

	time.Sleep(2100 * time.Millisecond) // the kept VIPs' lifetimes count down
	if err := c.ClaimSome(context.Background(), added); err != nil {
		t.Fatal(err)
	}
	if a, ok := findAddr(t, dir, added4.Addr()); !ok || a.ValidLft < 29 {
		t.Errorf("%s after ClaimSome: present %v valid_lft %d, want 30", added4, ok, a.ValidLft)
	}
	for _, p := range []netip.Prefix{vip4, vip6} {
		if a, _ := findAddr(t, dir, p.Addr()); a.ValidLft > 28 {
			t.Errorf("%s: valid_lft %d after ClaimSome, want it left counting down", p, a.ValidLft)
		}
	}
	waitSent(t, c, 4, 1)
	got := map[netip.Addr]int{}
	for _, p := range []netip.Prefix{vip4, vip6, gone, added4} {
		got[p.Addr()] = cap.announced(t, p.Addr())
	}
	want := map[netip.Addr]int{vip4.Addr(): 0, vip6.Addr(): 0, gone.Addr(): 0, added4.Addr(): 2}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("captured announcements after ClaimSome (-want +got):\n%s", diff)
	}

	if err := c.ReleaseSome(removed); err != nil {
		t.Fatal(err)
	}
	if _, ok := findAddr(t, dir, gone.Addr()); ok {
		t.Errorf("%s still present after ReleaseSome", gone)
	}
	for _, p := range []netip.Prefix{vip4, vip6, added4} {
		if _, ok := findAddr(t, dir, p.Addr()); !ok {
			t.Errorf("ReleaseSome removed %s", p)
		}
	}
	if err := c.ReleaseSome(removed); err != nil {
		t.Errorf("ReleaseSome of an absent VIP: %v", err)
	}
	if err := c.Release(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []netip.Prefix{vip4, vip6, added4} {
		if _, ok := findAddr(t, dir, p.Addr()); ok {
			t.Errorf("%s still present after Release", p)
		}
	}
}

// TestGARPCountZeroAnnouncesNothing: GARPCount 0 is taken as given.
func TestGARPCountZeroAnnouncesNothing(t *testing.T) {
	dir, peer := pair(t)
	cap := startCapture(t, peer)
	c := newIn(t, dir, []netip.Prefix{vip4, vip6}, Options{Lifetime: 30 * time.Second})
	if err := c.Claim(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, p := range []netip.Prefix{vip4, vip6} {
		if _, ok := findAddr(t, dir, p.Addr()); !ok {
			t.Errorf("%s not added by Claim", p)
		}
	}
	c.Announce(context.Background())
	if err := c.ClaimSome(context.Background(), []netip.Prefix{vip6}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	garp, na, errs := c.Counters()
	if diff := cmp.Diff([3]uint64{0, 0, 0}, [3]uint64{garp, na, errs}); diff != "" {
		t.Errorf("counters garp/na/errors (-want +got):\n%s", diff)
	}
	if n4, n6 := cap.announced(t, vip4.Addr()), cap.announced(t, vip6.Addr()); n4+n6 != 0 {
		t.Errorf("captured %d GARPs and %d NAs, want none", n4, n6)
	}
}

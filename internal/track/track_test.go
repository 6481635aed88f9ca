package track

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/havip/havip/test/lab"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

var (
	discard = slog.New(slog.DiscardHandler)
	cmpAddr = cmpopts.EquateComparable(netip.Addr{})
)

const (
	upRunning = unix.IFF_UP | unix.IFF_RUNNING
	upNoCarr  = unix.IFF_UP
	tentative = unix.IFA_F_TENTATIVE
	dadFailed = unix.IFA_F_DADFAILED | unix.IFA_F_TENTATIVE
)

func link(name string, index int, flags uint32, mtu int) netlink.Link {
	return &netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: name, Index: index, RawFlags: flags, MTU: mtu}}
}

func linkMsg(typ uint16, l netlink.Link) netlink.LinkUpdate {
	u := netlink.LinkUpdate{Link: l}
	u.Header.Type = typ
	u.IfInfomsg = *nl.NewIfInfomsg(unix.AF_UNSPEC)
	return u
}

func addr(index int, ip string, flags int) netlink.Addr {
	a := netip.MustParseAddr(ip)
	return netlink.Addr{
		IPNet:     &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(a.BitLen(), a.BitLen())},
		Flags:     flags,
		LinkIndex: index,
	}
}

func addrMsg(add bool, a netlink.Addr) netlink.AddrUpdate {
	return netlink.AddrUpdate{LinkAddress: *a.IPNet, LinkIndex: a.LinkIndex, Flags: a.Flags, NewAddr: add}
}

func linkU(st LinkState) Update { return Update{Link: &st} }
func addrU(st AddrState) Update { return Update{Addr: &st} }

var (
	ll1  = netip.MustParseAddr("fe80::1")
	ll2  = netip.MustParseAddr("fe80::2")
	own4 = netip.MustParseAddr("10.0.0.1")
	own6 = netip.MustParseAddr("fd00::1")
)

func TestApply(t *testing.T) {
	bridgeDel := linkMsg(unix.RTM_DELLINK, link("eth0", 2, upRunning, 1500))
	bridgeDel.IfInfomsg.Family = unix.AF_BRIDGE
	eth0 := LinkState{Name: "eth0", Exists: true, Up: true, Index: 2, MTU: 1500}
	with := func(st LinkState, edit func(*LinkState)) LinkState { edit(&st); return st }

	steps := []struct {
		name string
		u    any // netlink.LinkUpdate or netlink.AddrUpdate
		want []Update
	}{
		{"untracked link ignored", linkMsg(unix.RTM_NEWLINK, link("other", 9, upRunning, 1500)), nil},
		{"eth0 up", linkMsg(unix.RTM_NEWLINK, link("eth0", 2, upRunning, 1500)), []Update{linkU(eth0)}},
		{"same state again", linkMsg(unix.RTM_NEWLINK, link("eth0", 2, upRunning, 1500)), nil},
		{"carrier lost", linkMsg(unix.RTM_NEWLINK, link("eth0", 2, upNoCarr, 1500)),
			[]Update{linkU(with(eth0, func(s *LinkState) { s.Up = false }))}},
		{"admin down", linkMsg(unix.RTM_NEWLINK, link("eth0", 2, 0, 1500)), nil},
		{"running but admin down", linkMsg(unix.RTM_NEWLINK, link("eth0", 2, unix.IFF_RUNNING, 1500)), nil},
		{"back up", linkMsg(unix.RTM_NEWLINK, link("eth0", 2, upRunning, 1500)), []Update{linkU(eth0)}},
		{"MTU changed", linkMsg(unix.RTM_NEWLINK, link("eth0", 2, upRunning, 9000)),
			[]Update{linkU(with(eth0, func(s *LinkState) { s.MTU = 9000 }))}},
		{"MTU back", linkMsg(unix.RTM_NEWLINK, link("eth0", 2, upRunning, 1500)), []Update{linkU(eth0)}},
		{"link-local tentative", addrMsg(true, addr(2, "fe80::2", tentative)), nil},
		{"link-local usable", addrMsg(true, addr(2, "fe80::2", 0)),
			[]Update{linkU(with(eth0, func(s *LinkState) { s.LinkLocal = ll2 }))}},
		{"lower link-local, DAD failed", addrMsg(true, addr(2, "fe80::1", dadFailed)), nil},
		{"lower link-local usable", addrMsg(true, addr(2, "fe80::1", unix.IFA_F_PERMANENT)),
			[]Update{linkU(with(eth0, func(s *LinkState) { s.LinkLocal = ll1 }))}},
		{"lower link-local removed", addrMsg(false, addr(2, "fe80::1", 0)),
			[]Update{linkU(with(eth0, func(s *LinkState) { s.LinkLocal = ll2 }))}},
		{"unwanted global address ignored", addrMsg(true, addr(2, "fd00::9", 0)), nil},
		{"own address tentative", addrMsg(true, addr(2, "fd00::1", tentative)), nil},
		{"own address usable", addrMsg(true, addr(2, "fd00::1", 0)),
			[]Update{addrU(AddrState{own6, true, "eth0"})}},
		{"address before its link", addrMsg(true, addr(8, "10.0.0.1", 0)), nil},
		{"its link appears", linkMsg(unix.RTM_NEWLINK, link("lan1", 8, upRunning, 1500)),
			[]Update{addrU(AddrState{own4, true, "lan1"})}},
		{"address also on a lower ifindex", addrMsg(true, addr(2, "10.0.0.1", 0)),
			[]Update{addrU(AddrState{own4, true, "eth0"})}},
		{"removed from the lower one", addrMsg(false, addr(2, "10.0.0.1", 0)),
			[]Update{addrU(AddrState{own4, true, "lan1"})}},
		{"its link deleted", linkMsg(unix.RTM_DELLINK, link("lan1", 8, 0, 1500)),
			[]Update{addrU(AddrState{Addr: own4})}},
		{"late removal from the deleted link", addrMsg(false, addr(8, "10.0.0.1", 0)), nil},
		{"bridge port event ignored", bridgeDel, nil},
		{"deleted, with its addresses", linkMsg(unix.RTM_DELLINK, link("eth0", 2, upRunning, 1500)),
			[]Update{linkU(LinkState{Name: "eth0"}), addrU(AddrState{Addr: own6})}},
		{"recreated down", linkMsg(unix.RTM_NEWLINK, link("eth0", 7, 0, 1500)),
			[]Update{linkU(LinkState{Name: "eth0", Exists: true, Index: 7, MTU: 1500})}},
		{"recreated up", linkMsg(unix.RTM_NEWLINK, link("eth0", 7, upRunning, 1500)),
			[]Update{linkU(LinkState{Name: "eth0", Exists: true, Up: true, Index: 7, MTU: 1500})}},
		{"own address on the new link", addrMsg(true, addr(7, "fd00::1", 0)),
			[]Update{addrU(AddrState{own6, true, "eth0"})}},
		{"renamed eth0 -> wan1", linkMsg(unix.RTM_NEWLINK, link("wan1", 7, upRunning, 1500)), []Update{
			linkU(LinkState{Name: "eth0"}),
			linkU(LinkState{Name: "wan1", Exists: true, Up: true, Index: 7, MTU: 1500}),
			addrU(AddrState{own6, true, "wan1"}),
		}},
		{"wan1 moved to another namespace", linkMsg(unix.RTM_DELLINK, link("wan1", 7, upRunning, 1500)),
			[]Update{linkU(LinkState{Name: "wan1"}), addrU(AddrState{Addr: own6})}},
		{"and back: same ifindex, no addresses", linkMsg(unix.RTM_NEWLINK, link("wan1", 7, 0, 1500)),
			[]Update{linkU(LinkState{Name: "wan1", Exists: true, Index: 7, MTU: 1500})}},
		{"wan1 deleted by index", linkMsg(unix.RTM_DELLINK, link("wan1", 7, 0, 1500)),
			[]Update{linkU(LinkState{Name: "wan1"})}},
		{"untracked deleted", linkMsg(unix.RTM_DELLINK, link("other", 9, 0, 1500)), nil},
	}
	w := newWatcher(Want{Links: []string{"eth0", "wan1"}, Addrs: []netip.Addr{own4, own6}}, discard, nil)
	initial := []Update{
		linkU(LinkState{Name: "eth0"}), linkU(LinkState{Name: "wan1"}),
		addrU(AddrState{Addr: own4}), addrU(AddrState{Addr: own6}),
	}
	if diff := cmp.Diff(initial, w.changes(), cmpAddr); diff != "" {
		t.Fatalf("initial states (-want +got):\n%s", diff)
	}
	for _, s := range steps {
		switch u := s.u.(type) {
		case netlink.LinkUpdate:
			w.applyLink(u)
		case netlink.AddrUpdate:
			w.applyAddr(u)
		}
		if diff := cmp.Diff(s.want, w.changes(), cmpAddr); diff != "" {
			t.Errorf("%s: changes (-want +got):\n%s", s.name, diff)
		}
	}
}

func TestWatchRefusesBadWant(t *testing.T) {
	for _, want := range []Want{
		{},
		{Links: []string{"eth0"}, Addrs: []netip.Addr{{}}},
		{Addrs: []netip.Addr{netip.MustParseAddr("fe80::1%eth0")}},
		{Addrs: []netip.Addr{netip.MustParseAddr("::ffff:10.0.0.1")}},
	} {
		if _, err := Watch(context.Background(), want, nil); err == nil {
			t.Errorf("Watch(%+v): no error", want)
		}
	}
}

// fakeSource is a kernel whose subscriptions the test can break.
type fakeSource struct {
	mu          sync.Mutex
	links       []netlink.Link
	addrs       []netlink.Addr
	failLinks   int // link subscribe attempts to fail
	failAddrs   int // address subscribe attempts to fail
	interrupted int // dumps to report as interrupted
	linkSubs    chan *fakeSub[netlink.LinkUpdate]
	addrSubs    chan *fakeSub[netlink.AddrUpdate]
}

func newFakeSource() *fakeSource {
	return &fakeSource{
		linkSubs: make(chan *fakeSub[netlink.LinkUpdate], 10),
		addrSubs: make(chan *fakeSub[netlink.AddrUpdate], 10),
	}
}

type fakeSub[T any] struct {
	ch    chan<- T
	done  <-chan struct{}
	once  sync.Once
	onErr func(error)
}

func (s *fakeSub[T]) close() { s.once.Do(func() { close(s.ch) }) }

// fakeSubscribe fails if *fail says so, else hands the test a subscription
// that closes with done.
func fakeSubscribe[T any](f *fakeSource, fail *int, subs chan<- *fakeSub[T], ch chan<- T, done <-chan struct{}, onErr func(error)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if *fail > 0 {
		*fail--
		return errors.New("no buffer space")
	}
	s := &fakeSub[T]{ch: ch, done: done, onErr: onErr}
	go func() { <-done; s.close() }()
	subs <- s
	return nil
}

func (f *fakeSource) subscribeLinks(ch chan<- netlink.LinkUpdate, done <-chan struct{}, onErr func(error)) error {
	return fakeSubscribe(f, &f.failLinks, f.linkSubs, ch, done, onErr)
}

func (f *fakeSource) subscribeAddrs(ch chan<- netlink.AddrUpdate, done <-chan struct{}, onErr func(error)) error {
	return fakeSubscribe(f, &f.failAddrs, f.addrSubs, ch, done, onErr)
}

func (f *fakeSource) listLinks() ([]netlink.Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.interrupted > 0 {
		f.interrupted--
		return nil, netlink.ErrDumpInterrupted
	}
	return append([]netlink.Link(nil), f.links...), nil
}

func (f *fakeSource) listAddrs() ([]netlink.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]netlink.Addr(nil), f.addrs...), nil
}

func (f *fakeSource) set(links []netlink.Link, addrs ...netlink.Addr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.links, f.addrs = links, addrs
}

func recv(t *testing.T, ch <-chan Update) Update {
	t.Helper()
	select {
	case u, ok := <-ch:
		if !ok {
			t.Fatal("channel closed")
		}
		return u
	case <-time.After(5 * time.Second):
		t.Fatal("no update within 5s")
	}
	return Update{}
}

func recvN(t *testing.T, ch <-chan Update, n int) []Update {
	t.Helper()
	var got []Update
	for range n {
		got = append(got, recv(t, ch))
	}
	return got
}

func noMore(t *testing.T, ch <-chan Update) {
	t.Helper()
	select {
	case u := <-ch:
		t.Errorf("unexpected update %s", describe(u))
	case <-time.After(100 * time.Millisecond):
	}
}

func describe(u Update) string {
	if u.Link != nil {
		return fmt.Sprintf("%+v", *u.Link)
	}
	return fmt.Sprintf("%+v", *u.Addr)
}

func TestResubscribeMissesNothing(t *testing.T) {
	src := newFakeSource()
	src.set([]netlink.Link{link("eth0", 2, upRunning, 1500), link("eth1", 3, upRunning, 1500)},
		addr(2, "fe80::1", 0), addr(3, "10.0.0.1", 0))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := watch(ctx, Want{Links: []string{"eth0", "eth1", "eth2"}, Addrs: []netip.Addr{own4}}, discard, src)
	if err != nil {
		t.Fatal(err)
	}
	eth0 := LinkState{Name: "eth0", Exists: true, Up: true, Index: 2, MTU: 1500, LinkLocal: ll1}
	eth1 := LinkState{Name: "eth1", Exists: true, Up: true, Index: 3, MTU: 1500}
	want := []Update{linkU(eth0), linkU(eth1), linkU(LinkState{Name: "eth2"}), addrU(AddrState{own4, true, "eth1"})}
	if diff := cmp.Diff(want, recvN(t, ch, 4), cmpAddr); diff != "" {
		t.Fatalf("initial states (-want +got):\n%s", diff)
	}
	firstLinks, firstAddrs := <-src.linkSubs, <-src.addrSubs

	// The link subscription dies. Meanwhile eth0 loses carrier, eth1 is
	// deleted and created again just as it was but for its ifindex (its
	// address went with it), and eth2 appears, holding the address. The
	// first resubscription fails on links, the second on addresses.
	src.mu.Lock()
	src.failLinks, src.failAddrs = 1, 1
	src.mu.Unlock()
	src.set([]netlink.Link{link("eth0", 2, upNoCarr, 1500), link("eth1", 5, upRunning, 1500), link("eth2", 4, upRunning, 1500)},
		addr(2, "fe80::1", 0), addr(4, "10.0.0.1", 0))
	firstLinks.onErr(errors.New("Receive failed: no buffer space available"))
	firstLinks.close()
	eth0.Up, eth1.Index = false, 5
	eth2 := LinkState{Name: "eth2", Exists: true, Up: true, Index: 4, MTU: 1500}
	want = []Update{linkU(eth0), linkU(eth1), linkU(eth2), addrU(AddrState{own4, true, "eth2"})}
	if diff := cmp.Diff(want, recvN(t, ch, 4), cmpAddr); diff != "" {
		t.Fatalf("after resubscribing (-want +got):\n%s", diff)
	}
	// Neither the dead link subscription's partner nor the link half of
	// the attempt whose address half failed is left open. (The watcher
	// may take the error's resync before it sees the closed channel: then
	// the states above come from that resync and the resubscription
	// follows, so this waits for it.)
	for _, done := range []<-chan struct{}{firstAddrs.done, (<-src.linkSubs).done} {
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			t.Error("a subscription the watcher gave up is still open")
		}
	}
	links, addrs := <-src.linkSubs, <-src.addrSubs
	noMore(t, ch)

	// The new subscriptions deliver changes.
	links.ch <- linkMsg(unix.RTM_NEWLINK, link("eth2", 4, upRunning, 1400))
	eth2.MTU = 1400
	if diff := cmp.Diff(linkU(eth2), recv(t, ch), cmpAddr); diff != "" {
		t.Errorf("after MTU change (-want +got):\n%s", diff)
	}
	addrs.ch <- addrMsg(false, addr(4, "10.0.0.1", 0))
	if diff := cmp.Diff(addrU(AddrState{Addr: own4}), recv(t, ch), cmpAddr); diff != "" {
		t.Errorf("after address removal (-want +got):\n%s", diff)
	}

	// An address message is lost (eth1's link-local became usable); the
	// error that says so leaves the subscription open but triggers a
	// comparison with a dump.
	src.set([]netlink.Link{link("eth0", 2, upNoCarr, 1500), link("eth1", 5, upRunning, 1500), link("eth2", 4, upRunning, 1400)},
		addr(2, "fe80::1", 0), addr(5, "fe80::2", 0))
	addrs.onErr(errors.New("error message: ENOBUFS"))
	eth1.LinkLocal = ll2
	if diff := cmp.Diff(linkU(eth1), recv(t, ch), cmpAddr); diff != "" {
		t.Errorf("after resync (-want +got):\n%s", diff)
	}
	noMore(t, ch)

	cancel()
	for range ch {
	}
}

func TestDumpInterrupted(t *testing.T) {
	src := newFakeSource()
	src.set([]netlink.Link{link("eth0", 2, upRunning, 1500)})
	src.interrupted = dumpTries - 1
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := watch(ctx, Want{Links: []string{"eth0"}}, discard, src)
	if err != nil {
		t.Fatalf("after %d interrupted dumps: %v", dumpTries-1, err)
	}
	want := linkU(LinkState{Name: "eth0", Exists: true, Up: true, Index: 2, MTU: 1500})
	if diff := cmp.Diff(want, recv(t, ch), cmpAddr); diff != "" {
		t.Errorf("initial state (-want +got):\n%s", diff)
	}
	cancel()
	for range ch {
	}

	src.interrupted = dumpTries
	if _, err := watch(context.Background(), Want{Links: []string{"eth0"}}, discard, src); !errors.Is(err, netlink.ErrDumpInterrupted) {
		t.Errorf("after %d interrupted dumps: %v, want ErrDumpInterrupted", dumpTries, err)
	}
}

// nsWatch is a Watch running in a lab host's namespace. It remembers the
// states last read and fails the test on a repeated one: only changes are
// emitted.
type nsWatch struct {
	t     *testing.T
	h     *lab.Host
	ch    <-chan Update
	links map[string]LinkState
	addrs map[netip.Addr]AddrState
}

// watchIn starts Watch in h's namespace, reads the initial states and
// stops the watch at the end of the test, failing it if the channel does
// not close.
func watchIn(t *testing.T, h *lab.Host, want Want) *nsWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var ch <-chan Update
	if err := h.Do(func() (err error) {
		ch, err = Watch(ctx, want, discard)
		return err
	}); err != nil {
		cancel()
		t.Fatal(err)
	}
	w := &nsWatch{t: t, h: h, ch: ch, links: map[string]LinkState{}, addrs: map[netip.Addr]AddrState{}}
	t.Cleanup(func() {
		cancel()
		timeout := time.After(5 * time.Second)
		for {
			select {
			case _, ok := <-ch:
				if !ok {
					return
				}
			case <-timeout:
				t.Error("channel not closed after cancel")
				return
			}
		}
	})
	deadline := time.After(5 * time.Second)
	for range len(want.Links) + len(want.Addrs) {
		w.next("initial states", deadline)
	}
	return w
}

func (w *nsWatch) next(step string, deadline <-chan time.Time) {
	w.t.Helper()
	select {
	case u := <-w.ch:
		switch {
		case u.Link != nil:
			if old, ok := w.links[u.Link.Name]; ok && old == *u.Link {
				w.t.Errorf("%s: repeated state %+v", step, old)
			}
			w.links[u.Link.Name] = *u.Link
		case u.Addr != nil:
			if old, ok := w.addrs[u.Addr.Addr]; ok && old == *u.Addr {
				w.t.Errorf("%s: repeated state %+v", step, old)
			}
			w.addrs[u.Addr.Addr] = *u.Addr
		}
	case <-deadline:
		w.t.Fatalf("%s: nothing within 5s (links %+v, addresses %+v)", step, w.links, w.addrs)
	}
}

// link reads updates until the state of name satisfies ok, and returns it.
func (w *nsWatch) link(step, name string, ok func(LinkState) bool) LinkState {
	w.t.Helper()
	deadline := time.After(5 * time.Second)
	for !ok(w.links[name]) {
		w.next(step, deadline)
	}
	return w.links[name]
}

// addr reads updates until the state of want.Addr is want.
func (w *nsWatch) addr(step string, want AddrState) {
	w.t.Helper()
	deadline := time.After(5 * time.Second)
	for w.addrs[want.Addr] != want {
		w.next(step, deadline)
	}
}

func (w *nsWatch) noMore() {
	w.t.Helper()
	noMore(w.t, w.ch)
}

// settled is a link that is up and has its link-local address, which
// the lab's namespaces make usable at once (no DAD).
func settled(st LinkState) bool { return st.Up && st.LinkLocal.IsValid() }

// downNoLL is a link that exists, is down and has lost its link-local
// address, as IPv6 drops it when the link goes administratively down.
func downNoLL(st LinkState) bool { return st.Exists && !st.Up && !st.LinkLocal.IsValid() }

// fromKernel returns what the kernel says of ifname in h: its index, MTU
// and link-local address.
func fromKernel(t *testing.T, h *lab.Host, ifname string) LinkState {
	t.Helper()
	l, err := h.Netlink().LinkByName(ifname)
	if err != nil {
		t.Fatalf("%s: %v", ifname, err)
	}
	st := LinkState{Name: ifname, Exists: true, Up: true, Index: l.Attrs().Index, MTU: l.Attrs().MTU}
	st.LinkLocal, _ = kernelAddr(t, h, ifname, func(a netip.Addr) bool { return a.IsLinkLocalUnicast() })
	return st
}

// kernelAddr returns the first IPv6 address on ifname that ok accepts,
// with its IFA_F_* flags; invalid if there is none.
func kernelAddr(t *testing.T, h *lab.Host, ifname string, ok func(netip.Addr) bool) (netip.Addr, int) {
	t.Helper()
	for _, a := range h.AddrsOn(t, ifname) {
		if ip, _ := netip.AddrFromSlice(a.IP); ip.Is6() && !ip.Is4In6() && ok(ip) {
			return ip, a.Flags
		}
	}
	return netip.Addr{}, 0
}

func setName(t *testing.T, h *lab.Host, from, to string) {
	t.Helper()
	l, err := h.Netlink().LinkByName(from)
	if err == nil {
		err = h.Netlink().LinkSetName(l, to)
	}
	if err != nil {
		t.Fatalf("rename %s -> %s: %v", from, to, err)
	}
}

func newHost(t *testing.T) *lab.Host {
	t.Helper()
	if testing.Short() {
		t.Skip("skipped with -short: needs root and network namespaces")
	}
	lab.RequireRoot(t)
	h := lab.NewSwitch(t).AddHost(t, "trk", netip.MustParsePrefix("10.0.0.1/24"))
	h.WaitCarrier(t, "eth0")
	return h
}

// TestWatchNamespace flaps, deletes and recreates real links.
func TestWatchNamespace(t *testing.T) {
	h := newHost(t)
	h.AddVethPair(t, "trk0", "trk1")
	h.WaitCarrier(t, "trk0")
	w := watchIn(t, h, Want{Links: []string{"trk0", "eth0", "late0"}})

	w.link("initial", "eth0", settled)
	trk0 := w.link("initial", "trk0", settled)
	if diff := cmp.Diff(fromKernel(t, h, "trk0"), trk0, cmpAddr); diff != "" {
		t.Errorf("trk0 against the kernel (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(LinkState{Name: "late0"}, w.links["late0"], cmpAddr); diff != "" {
		t.Errorf("late0 (-want +got):\n%s", diff)
	}
	same := func(st LinkState) bool { return st.Index == trk0.Index }

	h.SetLinkDown(t, "trk0")
	w.link("admin down", "trk0", func(st LinkState) bool { return downNoLL(st) && same(st) })
	h.SetLinkUp(t, "trk0")
	w.link("admin up", "trk0", func(st LinkState) bool { return settled(st) && same(st) })
	h.SetLinkDown(t, "trk1")
	w.link("peer down (no carrier)", "trk0", func(st LinkState) bool { return st.Exists && !st.Up && same(st) })
	h.SetLinkUp(t, "trk1")
	w.link("peer up", "trk0", func(st LinkState) bool { return settled(st) && same(st) })
	h.DelLink(t, "trk0")
	w.link("deleted", "trk0", func(st LinkState) bool { return st == LinkState{Name: "trk0"} })
	h.AddVethPair(t, "trk0", "trk1")
	again := w.link("recreated", "trk0", settled)
	if again.Index == trk0.Index {
		t.Errorf("recreated trk0 has the old ifindex %d", again.Index)
	}
	if diff := cmp.Diff(fromKernel(t, h, "trk0"), again, cmpAddr); diff != "" {
		t.Errorf("recreated trk0 against the kernel (-want +got):\n%s", diff)
	}
	h.AddVethPair(t, "late0", "late1")
	w.link("late link appears", "late0", settled)
	h.SetLinkDown(t, "eth0")
	w.link("eth0 down", "eth0", downNoLL)
	w.noMore()
}

// TestWatchNamespaceRename renames a link away and back: the name it left
// is absent, the one it took has its ifindex, and so does its address.
func TestWatchNamespaceRename(t *testing.T) {
	h := newHost(t)
	own := netip.MustParseAddr("10.9.0.1")
	h.AddVethPair(t, "trk0", "trk1", netip.PrefixFrom(own, 32))
	w := watchIn(t, h, Want{Links: []string{"trk0", "trkz"}, Addrs: []netip.Addr{own}})
	trk0 := w.link("initial", "trk0", settled)
	w.addr("initial", AddrState{own, true, "trk0"})

	h.SetLinkDown(t, "trk0") // a link is renamed only while down
	setName(t, h, "trk0", "trkz")
	w.link("renamed away", "trk0", func(st LinkState) bool { return st == LinkState{Name: "trk0"} })
	w.link("renamed away", "trkz", func(st LinkState) bool { return downNoLL(st) && st.Index == trk0.Index })
	w.addr("renamed away", AddrState{own, true, "trkz"})

	setName(t, h, "trkz", "trk0")
	h.SetLinkUp(t, "trk0")
	w.link("renamed back", "trkz", func(st LinkState) bool { return st == LinkState{Name: "trkz"} })
	w.link("renamed back", "trk0", func(st LinkState) bool { return settled(st) && st.Index == trk0.Index })
	w.addr("renamed back", AddrState{own, true, "trk0"})
	w.noMore()
}

func TestWatchNamespaceMTU(t *testing.T) {
	h := newHost(t)
	h.AddVethPair(t, "trk0", "trk1")
	w := watchIn(t, h, Want{Links: []string{"trk0"}})
	trk0 := w.link("initial", "trk0", settled)

	l, err := h.Netlink().LinkByName("trk0")
	if err == nil {
		err = h.Netlink().LinkSetMTU(l, 1400)
	}
	if err != nil {
		t.Fatal(err)
	}
	trk0.MTU = 1400
	w.link("MTU 1400", "trk0", func(st LinkState) bool { return st == trk0 })
	w.noMore()
}

// TestWatchNamespaceAddrs watches addresses only: added, removed, moved to
// another link, and gone with their link.
func TestWatchNamespaceAddrs(t *testing.T) {
	h := newHost(t)
	own4, own6 := netip.MustParseAddr("10.9.0.1"), netip.MustParseAddr("fd00:9::1")
	w := watchIn(t, h, Want{Addrs: []netip.Addr{own4, own6}})
	want := map[netip.Addr]AddrState{own4: {Addr: own4}, own6: {Addr: own6}}
	if diff := cmp.Diff(want, w.addrs, cmpAddr); diff != "" {
		t.Fatalf("initial states (-want +got):\n%s", diff)
	}

	h.AddVethPair(t, "adr0", "adr1")
	h.AddAddr(t, "adr0", netip.PrefixFrom(own4, 32))
	w.addr("IPv4 added", AddrState{own4, true, "adr0"})
	h.AddAddr(t, "adr0", netip.PrefixFrom(own6, 128))
	w.addr("IPv6 added", AddrState{own6, true, "adr0"})
	l, err := h.Netlink().LinkByName("adr0")
	if err == nil {
		err = h.Netlink().AddrDel(l, lab.Addr(netip.PrefixFrom(own4, 32)))
	}
	if err != nil {
		t.Fatal(err)
	}
	w.addr("IPv4 deleted", AddrState{Addr: own4})
	h.AddAddr(t, "eth0", netip.PrefixFrom(own4, 32))
	w.addr("IPv4 on eth0", AddrState{own4, true, "eth0"})
	h.DelLink(t, "adr0")
	w.addr("gone with its link", AddrState{Addr: own6})
	w.noMore()
}

// TestWatchNamespaceDAD runs duplicate address detection on a link: its
// link-local address, and an address added to it, are reported only once
// the kernel no longer marks them tentative.
func TestWatchNamespaceDAD(t *testing.T) {
	h := newHost(t)
	own := netip.MustParseAddr("fd00:9::2")
	w := watchIn(t, h, Want{Links: []string{"dad0"}, Addrs: []netip.Addr{own}})

	if err := h.Netlink().LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "dad0"}, PeerName: "dad1"}); err != nil {
		t.Fatal(err)
	}
	h.Sysctl(t, "net/ipv6/conf/dad0/accept_dad", "1") // the lab turns DAD off
	h.SetLinkUp(t, "dad1")
	h.SetLinkUp(t, "dad0")
	l, err := h.Netlink().LinkByName("dad0")
	if err != nil {
		t.Fatal(err)
	}
	p := &netlink.Addr{IPNet: &net.IPNet{IP: own.AsSlice(), Mask: net.CIDRMask(64, 128)}} // no IFA_F_NODAD
	if err := h.Netlink().AddrAdd(l, p); err != nil {
		t.Fatal(err)
	}

	// DAD takes a second or more; see both addresses tentative first.
	isLL := func(a netip.Addr) bool { return a.IsLinkLocalUnicast() }
	isOwn := func(a netip.Addr) bool { return a == own }
	for _, is := range []func(netip.Addr) bool{isLL, isOwn} {
		deadline := time.Now().Add(time.Second)
		for {
			a, flags := kernelAddr(t, h, "dad0", is)
			if a.IsValid() && flags&unix.IFA_F_TENTATIVE != 0 {
				break
			}
			if a.IsValid() || time.Now().After(deadline) {
				t.Fatalf("dad0: no tentative address (got %v, flags %#x): DAD did not run", a, flags)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	// Every state read before the link-local one has none, and when it
	// comes the kernel has finished DAD.
	dad0 := w.link("DAD done", "dad0", func(st LinkState) bool { return st.LinkLocal.IsValid() })
	if ll, flags := kernelAddr(t, h, "dad0", isLL); dad0.LinkLocal != ll || flags&unix.IFA_F_TENTATIVE != 0 {
		t.Errorf("reported link-local %v; the kernel has %v with flags %#x", dad0.LinkLocal, ll, flags)
	}
	w.addr("DAD done", AddrState{own, true, "dad0"})
	if _, flags := kernelAddr(t, h, "dad0", isOwn); flags&unix.IFA_F_TENTATIVE != 0 {
		t.Errorf("%v reported present while tentative (flags %#x)", own, flags)
	}
	if !dad0.Up {
		t.Errorf("dad0 with its link-local: %+v, want up", dad0)
	}
	w.noMore()
}

// Package track reports the state of the network interfaces and addresses
// havip depends on: whether each interface exists and is up, its ifindex,
// MTU and IPv6 link-local address, and whether each address (such as the
// node's own) is configured, and on which interface.
//
// It reads that state from netlink subscriptions to link and address
// changes in the network namespace of the thread that called Watch, and
// never changes anything. What a state means for VRRP is the caller's
// business.
//
// A link counts as up when it is administratively up (IFF_UP) and the
// kernel reports it running (IFF_RUNNING, which Linux sets exactly when the
// operational state is "up" or "unknown", i.e. there is carrier). A link
// whose veth peer or cable is gone is therefore down even though it is
// still configured up.
//
// An address counts only while it is usable: an IPv6 address that is
// tentative (duplicate address detection still running) or whose DAD
// failed is reported as if it were absent.
package track

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/havip/havip/internal/samens"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// LinkState is the state of one wanted interface name. A link that does
// not exist has only its Name set.
type LinkState struct {
	Name   string
	Exists bool
	Up     bool // IFF_UP and IFF_RUNNING
	// Index is the ifindex; a new one means the link was deleted and
	// created again, so sockets bound to the old one are dead.
	Index int
	MTU   int
	// LinkLocal is the lowest usable IPv6 link-local address of the link,
	// without a zone; invalid if the link has none.
	LinkLocal netip.Addr
}

// AddrState is the state of one wanted address. Whether the link holding
// it is up does not matter here; an address is usable on a down link.
type AddrState struct {
	Addr    netip.Addr
	Present bool // configured on some link of the namespace and usable
	// Link is the name of the link holding the address (the one with the
	// lowest ifindex if several do); "" when absent.
	Link string
}

// Want is what Watch reports on. Either list may be empty, but not both.
type Want struct {
	Links []string     // interface names
	Addrs []netip.Addr // unzoned; IPv4 ones plain, not IPv4-mapped
}

// Update is one state Watch emits. It carries exactly one of Link or Addr.
type Update struct {
	Link *LinkState
	Addr *AddrState
}

// Resubscription and dump retry backoff bounds.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// dumpTries bounds how often a dump the kernel marks as interrupted (the
// tables changed while it ran) is taken again at once.
const dumpTries = 5

// source is the kernel side of Watch: link and address subscriptions and
// dumps. A subscription that fails leaves its channel untouched; one that
// started closes its channel once done is closed.
type source interface {
	subscribeLinks(ch chan<- netlink.LinkUpdate, done <-chan struct{}, onErr func(error)) error
	subscribeAddrs(ch chan<- netlink.AddrUpdate, done <-chan struct{}, onErr func(error)) error
	listLinks() ([]netlink.Link, error)
	listAddrs() ([]netlink.Addr, error)
}

var _ source = &netlinkSource{}

// Watch emits the state of every wanted link and address once (links
// first, each in the order of want), then each change, until ctx is done;
// then it closes the channel. If a netlink
// subscription fails (for instance its socket buffer overflowed) Watch
// subscribes again and compares a fresh dump with what it last emitted, so
// no change is lost. Only changes are emitted; a link deleted and created
// again always differs by its Index, even when only a dump saw it.
func Watch(ctx context.Context, want Want, log *slog.Logger) (<-chan Update, error) {
	if len(want.Links) == 0 && len(want.Addrs) == 0 {
		return nil, errors.New("track: nothing to watch")
	}
	for _, a := range want.Addrs {
		if !a.IsValid() || a.Zone() != "" || a.Is4In6() {
			return nil, fmt.Errorf("track: address %v: want an unzoned IPv4 or IPv6 address", a)
		}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ns, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("track: current netns: %w", err)
	}
	h, err := samens.Handle(ns, unix.NETLINK_ROUTE)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("track: netlink: %w", err)
	}
	src := &netlinkSource{ns: ns, h: h}
	out, err := watch(ctx, want, log, src)
	if err != nil {
		src.close()
		return nil, err
	}
	return out, nil
}

// watch runs the watcher over src; src is closed when watching ends if it
// has a close method.
func watch(ctx context.Context, want Want, log *slog.Logger, src source) (<-chan Update, error) {
	w := newWatcher(want, log, src)
	sub, err := w.subscribe()
	if err != nil {
		return nil, err
	}
	if w.k, err = w.dump(); err != nil {
		sub.stop()
		return nil, err
	}
	go w.run(ctx, sub, w.changes())
	return w.out, nil
}

type watcher struct {
	log    *slog.Logger
	src    source
	want   Want                // without repeats, in the caller's order
	wanted map[netip.Addr]bool // want.Addrs as a set
	k      kernel
	links  map[string]LinkState     // last emitted
	addrs  map[netip.Addr]AddrState // last emitted
	resync chan struct{}
	out    chan Update
	// only: the round's one message was about this wanted address, not
	// an IPv6 link-local one, so only its state can have changed: a
	// master refreshing 255 VIPs' lifetimes sends 150 such messages a
	// second, and comparing every wanted state for each was a fifth of
	// its CPU (issue 8). Invalid: compare everything.
	only netip.Addr
}

func newWatcher(want Want, log *slog.Logger, src source) *watcher {
	w := &watcher{
		log:    log,
		src:    src,
		wanted: make(map[netip.Addr]bool, len(want.Addrs)),
		k:      newKernel(),
		links:  make(map[string]LinkState, len(want.Links)),
		addrs:  make(map[netip.Addr]AddrState, len(want.Addrs)),
		resync: make(chan struct{}, 1),
		out:    make(chan Update, 2*(len(want.Links)+len(want.Addrs))),
	}
	seen := make(map[string]bool, len(want.Links))
	for _, n := range want.Links {
		if !seen[n] {
			seen[n] = true
			w.want.Links = append(w.want.Links, n)
		}
	}
	for _, a := range want.Addrs {
		if !w.wanted[a] {
			w.wanted[a] = true
			w.want.Addrs = append(w.want.Addrs, a)
		}
	}
	return w
}

// kernel is what the watcher knows of the namespace: every link, and the
// addresses that can matter (wanted ones and IPv6 link-local ones), both
// by ifindex. Link and address messages come on separate sockets in no
// common order, so an address may be known before its link; it counts
// only once the link is known too.
type kernel struct {
	links map[int]kernelLink
	addrs map[int]map[netip.Addr]int // ifindex -> address -> IFA_F_* flags
}

type kernelLink struct {
	name string
	up   bool
	mtu  int
}

func newKernel() kernel {
	return kernel{links: map[int]kernelLink{}, addrs: map[int]map[netip.Addr]int{}}
}

func (k kernel) setLink(a *netlink.LinkAttrs) {
	k.links[a.Index] = kernelLink{
		name: a.Name,
		up:   a.RawFlags&unix.IFF_UP != 0 && a.RawFlags&unix.IFF_RUNNING != 0,
		mtu:  a.MTU,
	}
}

// delLink forgets a link and its addresses, which the kernel drops with it.
func (k kernel) delLink(index int) {
	delete(k.links, index)
	delete(k.addrs, index)
}

func (k kernel) setAddr(index int, a netip.Addr, flags int) {
	if k.addrs[index] == nil {
		k.addrs[index] = map[netip.Addr]int{}
	}
	k.addrs[index][a] = flags
}

func (k kernel) delAddr(index int, a netip.Addr) {
	delete(k.addrs[index], a)
	if len(k.addrs[index]) == 0 {
		delete(k.addrs, index)
	}
}

func usable(flags int) bool {
	return flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) == 0
}

// index returns the ifindex of the link named name, 0 if there is none.
// Messages replayed after a resync may briefly give two links one name;
// the lowest ifindex wins until the later messages settle it.
func (k kernel) index(name string) int {
	found := 0
	for idx, l := range k.links {
		if l.name == name && (found == 0 || idx < found) {
			found = idx
		}
	}
	return found
}

func (k kernel) linkState(name string) LinkState {
	idx := k.index(name)
	if idx == 0 {
		return LinkState{Name: name}
	}
	l := k.links[idx]
	st := LinkState{Name: name, Exists: true, Up: l.up, Index: idx, MTU: l.mtu}
	for a, flags := range k.addrs[idx] {
		if a.Is6() && a.IsLinkLocalUnicast() && usable(flags) && (!st.LinkLocal.IsValid() || a.Less(st.LinkLocal)) {
			st.LinkLocal = a
		}
	}
	return st
}

func (k kernel) addrState(a netip.Addr) AddrState {
	found := 0
	for idx, addrs := range k.addrs {
		flags, ok := addrs[a]
		if _, known := k.links[idx]; ok && known && usable(flags) && (found == 0 || idx < found) {
			found = idx
		}
	}
	if found == 0 {
		return AddrState{Addr: a}
	}
	return AddrState{Addr: a, Present: true, Link: k.links[found].name}
}

// changes returns the wanted states that differ from the last emitted
// ones, links first, each in the order of want, and records them as
// emitted. Before anything was emitted, that is every state.
func (w *watcher) changes() []Update {
	var ups []Update
	if a := w.only; a.IsValid() {
		w.only = netip.Addr{}
		if st := w.k.addrState(a); st != w.addrs[a] {
			w.addrs[a] = st
			ups = append(ups, Update{Addr: &st})
		}
		return ups
	}
	for _, n := range w.want.Links {
		if st := w.k.linkState(n); st != w.links[n] {
			w.links[n] = st
			ups = append(ups, Update{Link: &st})
		}
	}
	for _, a := range w.want.Addrs {
		if st := w.k.addrState(a); st != w.addrs[a] {
			w.addrs[a] = st
			ups = append(ups, Update{Addr: &st})
		}
	}
	return ups
}

// applyLink folds one link message into what the watcher knows.
func (w *watcher) applyLink(u netlink.LinkUpdate) {
	// Bridge port events (AF_BRIDGE) describe the port, not the link:
	// RTM_DELLINK there means "left the bridge".
	if u.IfInfomsg.Family == unix.AF_BRIDGE || u.Link == nil {
		return
	}
	a := u.Link.Attrs()
	switch u.Header.Type {
	case unix.RTM_DELLINK: // deleted, or moved to another namespace
		w.k.delLink(a.Index)
	case unix.RTM_NEWLINK: // new, changed or renamed
		w.k.setLink(a)
	}
}

// applyAddr folds one address message into what the watcher knows.
func (w *watcher) applyAddr(u netlink.AddrUpdate) {
	a, ok := w.keep(u.LinkAddress.IP)
	switch {
	case !ok:
	case u.NewAddr: // new, or its flags changed (DAD done or failed)
		w.k.setAddr(u.LinkIndex, a, u.Flags)
	default:
		w.k.delAddr(u.LinkIndex, a)
	}
}

// keep returns ip as an address and whether it can matter: wanted, or an
// IPv6 link-local one.
func (w *watcher) keep(ip []byte) (netip.Addr, bool) {
	a, ok := netip.AddrFromSlice(ip)
	a = a.Unmap()
	return a, ok && (w.wanted[a] || a.Is6() && a.IsLinkLocalUnicast())
}

// dump reads every link and address from the kernel.
func (w *watcher) dump() (kernel, error) {
	var err error
	for range dumpTries {
		var k kernel
		if k, err = w.dumpOnce(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return k, err
		}
	}
	return kernel{}, err
}

func (w *watcher) dumpOnce() (kernel, error) {
	links, err := w.src.listLinks()
	if err != nil {
		return kernel{}, fmt.Errorf("track: list links: %w", err)
	}
	addrs, err := w.src.listAddrs()
	if err != nil {
		return kernel{}, fmt.Errorf("track: list addresses: %w", err)
	}
	k := newKernel()
	for _, l := range links {
		k.setLink(l.Attrs())
	}
	for _, a := range addrs {
		if ip, ok := w.keep(a.IP); ok {
			k.setAddr(a.LinkIndex, ip, a.Flags)
		}
	}
	return k, nil
}

type subscription struct {
	links chan netlink.LinkUpdate
	addrs chan netlink.AddrUpdate
	done  chan struct{}
}

func (w *watcher) subscribe() (subscription, error) {
	s := subscription{
		links: make(chan netlink.LinkUpdate, 64),
		addrs: make(chan netlink.AddrUpdate, 64),
		done:  make(chan struct{}),
	}
	if err := w.src.subscribeLinks(s.links, s.done, w.onErr("link")); err != nil {
		close(s.done)
		return subscription{}, fmt.Errorf("track: subscribe to link changes: %w", err)
	}
	if err := w.src.subscribeAddrs(s.addrs, s.done, w.onErr("address")); err != nil {
		close(s.done)
		for range s.links {
		}
		return subscription{}, fmt.Errorf("track: subscribe to address changes: %w", err)
	}
	return s, nil
}

// onErr returns the error callback of a subscription. It is called from
// the subscription's goroutine, so it never blocks; any error may mean a
// lost message, so it asks for a comparison with a dump.
func (w *watcher) onErr(what string) func(error) {
	return func(err error) {
		w.log.Debug(what+" subscription error", "err", err)
		select {
		case w.resync <- struct{}{}:
		default:
		}
	}
}

// stop ends a subscription and drains it, so its goroutines can exit.
func (s subscription) stop() {
	close(s.done)
	for range s.links {
	}
	for range s.addrs {
	}
}

func (w *watcher) run(ctx context.Context, sub subscription, initial []Update) {
	defer close(w.out)
	if c, ok := w.src.(interface{ close() }); ok {
		defer c.close()
	}
	defer func() {
		if sub.done != nil {
			sub.stop()
		}
	}()
	// Each round emits what changed, then waits for one message, a
	// resync or a dead subscription.
	for ups := initial; w.emitAll(ctx, ups); ups = w.changes() {
		var closed string
		resync := false
		select {
		case <-ctx.Done():
			return
		case u, ok := <-sub.links:
			if !ok {
				closed = "link"
				break
			}
			w.applyLink(u)
		case u, ok := <-sub.addrs:
			if !ok {
				closed = "address"
				break
			}
			if a, ok := w.keep(u.LinkAddress.IP); ok && !a.IsLinkLocalUnicast() {
				w.only = a
			}
			w.applyAddr(u)
		case <-w.resync:
			resync = true
		}
		if closed != "" {
			w.log.Warn(closed + " subscription closed; subscribing again")
			sub.stop()
			var err error
			if sub, err = w.resubscribe(ctx); err != nil {
				return // ctx done
			}
			resync = true
		}
		if resync || closed != "" {
			w.only = netip.Addr{}
		}
		if resync && w.sync(ctx) != nil {
			return // ctx done
		}
	}
}

// resubscribe retries with backoff until it succeeds or ctx is done.
func (w *watcher) resubscribe(ctx context.Context) (sub subscription, err error) {
	err = w.retry(ctx, "subscription", func() (err error) {
		sub, err = w.subscribe()
		return err
	})
	return sub, err
}

// sync replaces what the watcher knows with a fresh dump, which it retries
// with backoff until it succeeds or ctx is done; changes then compares it
// with what was last emitted.
func (w *watcher) sync(ctx context.Context) error {
	return w.retry(ctx, "dump", func() error {
		k, err := w.dump()
		if err == nil {
			w.k = k
		}
		return err
	})
}

func (w *watcher) retry(ctx context.Context, what string, fn func() error) error {
	backoff := minBackoff
	for {
		err := fn()
		if err == nil {
			return nil
		}
		w.log.Warn(what+" failed", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func (w *watcher) emitAll(ctx context.Context, ups []Update) bool {
	for _, u := range ups {
		if l := u.Link; l != nil {
			w.log.Debug("link state", "name", l.Name, "exists", l.Exists, "up", l.Up, "index", l.Index, "mtu", l.MTU, "link_local", l.LinkLocal)
		} else {
			w.log.Debug("address state", "addr", u.Addr.Addr, "present", u.Addr.Present, "link", u.Addr.Link)
		}
		select {
		case w.out <- u:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// netlinkSource is the real kernel, in one namespace.
type netlinkSource struct {
	ns netns.NsHandle
	h  *netlink.Handle
}

// recvBuf is the receive buffer of each subscription socket: a burst of
// messages (a boot creating VLANs, a flapping bond) should not overflow it.
const recvBuf = 1 << 20

func (s *netlinkSource) subscribeLinks(ch chan<- netlink.LinkUpdate, done <-chan struct{}, onErr func(error)) error {
	return samens.Do(s.ns, func(at *netns.NsHandle) error {
		return netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{
			Namespace:         at,
			ErrorCallback:     onErr,
			ReceiveBufferSize: recvBuf,
		})
	})
}

func (s *netlinkSource) subscribeAddrs(ch chan<- netlink.AddrUpdate, done <-chan struct{}, onErr func(error)) error {
	return samens.Do(s.ns, func(at *netns.NsHandle) error {
		return netlink.AddrSubscribeWithOptions(ch, done, netlink.AddrSubscribeOptions{
			Namespace:         at,
			ErrorCallback:     onErr,
			ReceiveBufferSize: recvBuf,
		})
	})
}

func (s *netlinkSource) listLinks() ([]netlink.Link, error) { return s.h.LinkList() }

func (s *netlinkSource) listAddrs() ([]netlink.Addr, error) {
	return s.h.AddrList(nil, netlink.FAMILY_ALL)
}

func (s *netlinkSource) close() {
	s.h.Close()
	s.ns.Close()
}

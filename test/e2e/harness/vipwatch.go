package harness

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/havip/havip/test/lab"
)

// VIPWatch follows the address tables of several hosts through netlink
// subscriptions (as WaitAddr does) and records every moment one of the
// watched addresses was on more than one host: a dual master as the
// kernels, not the daemons, tell it.
type VIPWatch struct {
	vips []netip.Addr

	mu        sync.Mutex
	on        map[netip.Addr][]string // address -> hosts holding it
	bothSince map[netip.Addr]time.Time
	both      map[netip.Addr]time.Duration
	events    []string
	changes   []vipChange // the events, for Split
	overlaps  []string
	errs      []error
}

type addrEvent struct {
	host string
	u    netlink.AddrUpdate
}

// WatchVIPs starts watching vips on hosts (the current tables included)
// until the test ends.
func WatchVIPs(t testing.TB, vips []netip.Addr, hosts ...*lab.Host) *VIPWatch {
	t.Helper()
	w := &VIPWatch{vips: vips, on: map[netip.Addr][]string{}, bothSince: map[netip.Addr]time.Time{}, both: map[netip.Addr]time.Duration{}}
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	all := make(chan addrEvent, 256)
	var subscribed sync.WaitGroup
	for _, h := range hosts {
		updates := make(chan netlink.AddrUpdate, 256)
		ns := h.NS
		opts := netlink.AddrSubscribeOptions{Namespace: &ns, ListExisting: true, ReceiveBufferSize: 1 << 20,
			ErrorCallback: func(err error) {
				w.mu.Lock()
				w.errs = append(w.errs, fmt.Errorf("%s: %w", h.Name, err))
				w.mu.Unlock()
			}}
		if err := netlink.AddrSubscribeWithOptions(updates, done, opts); err != nil {
			t.Fatalf("harness: address subscription in %s: %v", h.Name, err)
		}
		subscribed.Add(1)
		go func() {
			subscribed.Done()
			for u := range updates {
				select {
				case all <- addrEvent{h.Name, u}:
				case <-done:
					return
				}
			}
		}()
	}
	subscribed.Wait()
	go func() {
		for {
			select {
			case e := <-all:
				w.take(e)
			case <-done:
				return
			}
		}
	}()
	return w
}

func (w *VIPWatch) take(e addrEvent) {
	a, ok := netip.AddrFromSlice(e.u.LinkAddress.IP)
	if !ok || !slices.Contains(w.vips, a.Unmap()) {
		return
	}
	a = a.Unmap()
	w.mu.Lock()
	defer w.mu.Unlock()
	at := time.Now()
	now := at.Format("15:04:05.000000")
	holders := w.on[a]
	has := slices.Contains(holders, e.host)
	switch {
	case e.u.NewAddr && !has:
		holders = append(holders, e.host)
		w.events = append(w.events, fmt.Sprintf("%s %s +%s", now, e.host, a))
		w.changes = append(w.changes, vipChange{at: at, host: e.host, vip: a, added: true})
		if len(holders) == 2 {
			w.bothSince[a] = at
		}
		if len(holders) > 1 {
			w.overlaps = append(w.overlaps, fmt.Sprintf("%s %s on %v", now, a, holders))
		}
	case !e.u.NewAddr && has:
		holders = slices.DeleteFunc(holders, func(h string) bool { return h == e.host })
		w.events = append(w.events, fmt.Sprintf("%s %s -%s", now, e.host, a))
		w.changes = append(w.changes, vipChange{at: at, host: e.host, vip: a})
		if len(holders) == 1 {
			w.both[a] += at.Sub(w.bothSince[a])
		}
	}
	w.on[a] = holders
}

// Overlaps lists each moment a VIP was on more than one host.
func (w *VIPWatch) Overlaps() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.overlaps)
}

// Both is how long ip has been on more than one host, in all.
func (w *VIPWatch) Both(ip netip.Addr) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	d := w.both[ip]
	if len(w.on[ip]) > 1 {
		d += time.Since(w.bothSince[ip])
	}
	return d
}

// Events is every add and removal of a watched VIP, in order, one line
// each.
func (w *VIPWatch) Events() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.events)
}

// Holders returns the hosts that hold ip now.
func (w *VIPWatch) Holders(ip netip.Addr) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.on[ip])
}

// Errors are subscription errors (a lost message would make the watch
// blind).
func (w *VIPWatch) Errors() []error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.errs)
}

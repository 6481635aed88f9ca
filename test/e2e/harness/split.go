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

// SplitWatch follows, through netlink address subscriptions, which hosts
// hold each VIP of a set that must move together (a sync group's VIPs),
// and measures the spells in which a host holds some of them but not all:
// a split, in which a NAT director holds the front VIP while its peer
// holds the real servers' gateway.
type SplitWatch struct {
	vips []netip.Addr

	mu     sync.Mutex
	held   map[string]map[netip.Addr]bool // host -> VIPs it holds
	events []splitEvent
	errs   []error
}

type splitEvent struct {
	at    time.Time
	host  string
	vip   netip.Addr
	added bool
}

// WatchSplit starts watching vips on hosts, the current tables included,
// until the test ends.
func WatchSplit(t testing.TB, vips []netip.Addr, hosts ...*lab.Host) *SplitWatch {
	t.Helper()
	w := &SplitWatch{vips: vips, held: map[string]map[netip.Addr]bool{}}
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	for _, h := range hosts {
		w.held[h.Name] = map[netip.Addr]bool{}
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
		go func() {
			for u := range updates {
				w.take(h.Name, u)
			}
		}()
	}
	return w
}

func (w *SplitWatch) take(host string, u netlink.AddrUpdate) {
	a, ok := netip.AddrFromSlice(u.LinkAddress.IP)
	if !ok || !slices.Contains(w.vips, a.Unmap()) {
		return
	}
	a = a.Unmap()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.held[host][a] == u.NewAddr {
		return // a refresh of a held VIP
	}
	w.held[host][a] = u.NewAddr
	w.events = append(w.events, splitEvent{at: time.Now(), host: host, vip: a, added: u.NewAddr})
}

// Split is the longest spell within [from, to] in which one of hosts
// (every watched host when none are named) held some but not all of the
// VIPs, and a line saying where and when; 0 and "" when there was none.
func (w *SplitWatch) Split(from, to time.Time, hosts ...string) (time.Duration, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var worst time.Duration
	var where string
	for host := range w.held {
		if len(hosts) > 0 && !slices.Contains(hosts, host) {
			continue
		}
		held := map[netip.Addr]bool{}
		var since time.Time // start of the current partial spell
		var partial []netip.Addr
		end := func(at time.Time) {
			if since.IsZero() {
				return
			}
			s, e := since, at
			if s.Before(from) {
				s = from
			}
			if e.After(to) {
				e = to
			}
			if d := e.Sub(s); d > worst {
				worst, where = d, fmt.Sprintf("%s held only %v for %s from %s", host, partial, d, s.Format("15:04:05.000000"))
			}
			since = time.Time{}
		}
		for _, e := range w.events {
			if e.host != host {
				continue
			}
			held[e.vip] = e.added
			if n := w.count(held); n > 0 && n < len(w.vips) {
				if since.IsZero() {
					since = e.at
					partial = partial[:0]
					for _, v := range w.vips {
						if held[v] {
							partial = append(partial, v)
						}
					}
				}
			} else {
				end(e.at)
			}
		}
		end(to)
	}
	return worst, where
}

func (w *SplitWatch) count(held map[netip.Addr]bool) int {
	n := 0
	for _, v := range w.vips {
		if held[v] {
			n++
		}
	}
	return n
}

// Events is every change of a watched VIP, one line each, in the order
// they were seen.
func (w *SplitWatch) Events() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]string, 0, len(w.events))
	for _, e := range w.events {
		sign := "-"
		if e.added {
			sign = "+"
		}
		out = append(out, fmt.Sprintf("%s %s %s%s", e.at.Format("15:04:05.000000"), e.host, sign, e.vip))
	}
	return out
}

// Errors are subscription errors (a lost message would make the watch
// blind).
func (w *SplitWatch) Errors() []error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.errs)
}

package harness

import (
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// vipChange is one VIP added to or removed from one host.
type vipChange struct {
	at    time.Time
	host  string
	vip   netip.Addr
	added bool
}

// Split treats the watched VIPs as a set that must move together (a sync
// group's): it returns the longest spell within [from, to] in which one of
// hosts (every host seen when none are named) held some of them but not
// all, a split in which a NAT director holds the front VIP while its peer
// holds the real servers' gateway, and a line saying where and when; 0 and
// "" when there was none.
func (w *VIPWatch) Split(from, to time.Time, hosts ...string) (time.Duration, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var worst time.Duration
	var where string
	seen := map[string]bool{}
	for _, c := range w.changes {
		seen[c.host] = true
	}
	for host := range seen {
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
		for _, c := range w.changes {
			if c.host != host {
				continue
			}
			held[c.vip] = c.added
			var now []netip.Addr
			for _, v := range w.vips {
				if held[v] {
					now = append(now, v)
				}
			}
			switch {
			case len(now) == 0 || len(now) == len(w.vips):
				end(c.at)
			case since.IsZero():
				since, partial = c.at, now
			}
		}
		end(to)
	}
	return worst, where
}

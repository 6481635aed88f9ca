package daemon

import (
	"net/netip"
	"slices"
	"time"

	"github.com/havip/havip/internal/vrrp"
)

// During a rolling push the two directors run different site files for a
// while. RFC 5798 7.1 (and RFC 3768) drop a non-owner's advert whose
// address list differs from ours, so a group whose VIPs changed on one
// side only would stop hearing the other side and both would become
// master. advertLists avoids that within the RFC: a group keeps
// advertising the list the peer knows until the pair link says the peer
// is configured with the new one, and meanwhile also accepts the old list
// (the check of the list is a MAY; what we accept is a transitional
// configuration of the virtual router). The VIPs themselves are claimed
// from the new configuration at once.

// transitionGrace bounds how long a superseded list is still accepted when
// the peer never says it stopped advertising it (a peer without a pair
// link, such as keepalived during a migration).
const transitionGrace = 2 * time.Minute

// spoken is what a group's adverts carry that the peer checks: the address
// list and, for VRRPv2, the advert interval (RFC 3768 drops an advert whose
// interval differs from the receiver's; v3 learns the master's, so its
// interval is left zero here and never held).
type spoken struct {
	addrs  []netip.Addr
	advert time.Duration // v2 only
}

func (s spoken) same(o spoken) bool { return sameAddrSet(s.addrs, o.addrs) && s.advert == o.advert }

// spokenOf is what cfg would have a group say.
func spokenOf(addrs []netip.Addr, advert time.Duration, version int) spoken {
	if version != 2 {
		advert = 0
	}
	return spoken{addrs: addrs, advert: advert}
}

// peerGroup is what the pair link last heard about one group from the
// peer.
type peerGroup struct {
	alive bool // the peer is heard on the pair link
	known bool // the peer runs this group
	state vrrp.State
	cfg   spoken       // the peer's configuration
	adv   []netip.Addr // the list the peer advertises
	key   string       // the peer's socket key for the group (sockKey.String)
}

func (p peerGroup) runs() bool { return p.alive && p.known }

// advertLists is what a group says and the older list it still accepts.
type advertLists struct {
	adv   spoken       // advertised (and accepted)
	prev  []netip.Addr // also accepted until the peer stops advertising it; nil when none
	until time.Time    // prev is dropped after this
}

func newAdvertLists(cfg spoken) advertLists { return advertLists{adv: cfg} }

// switchTo says cfg from now on, accepting the list it replaces for a
// while.
func (a advertLists) switchTo(now time.Time, cfg spoken) advertLists {
	if sameAddrSet(a.adv.addrs, cfg.addrs) {
		a.adv = cfg
		return a
	}
	return advertLists{adv: cfg, prev: a.adv.addrs, until: now.Add(transitionGrace)}
}

// reconfigured is the group's new configuration cfg after a reload.
func (a advertLists) reconfigured(now time.Time, cfg spoken, peer peerGroup) advertLists {
	if peer.runs() && !peer.cfg.same(cfg) {
		return a.heard(now, cfg, peer) // hold what the peer knows
	}
	return a.switchTo(now, cfg).heard(now, cfg, peer)
}

// heard updates the lists after news from the peer (or its silence).
func (a advertLists) heard(now time.Time, cfg spoken, peer peerGroup) advertLists {
	if !a.adv.same(cfg) && (!peer.runs() || peer.cfg.same(cfg)) {
		a = a.switchTo(now, cfg)
	}
	if a.prev != nil && (now.After(a.until) || peer.runs() && !sameAddrSet(peer.adv, a.prev) && !sameAddrSet(peer.cfg.addrs, a.prev)) {
		a.prev, a.until = nil, time.Time{}
	}
	return a
}

// alsoAccept lists what is accepted besides the advertised list: the
// configured list while it is not advertised yet, and the superseded one.
func (a advertLists) alsoAccept(cfg []netip.Addr) [][]netip.Addr {
	var out [][]netip.Addr
	for _, l := range [][]netip.Addr{cfg, a.prev} {
		if l == nil || sameAddrSet(l, a.adv.addrs) || slices.ContainsFunc(out, func(o []netip.Addr) bool { return sameAddrSet(o, l) }) {
			continue
		}
		out = append(out, l)
	}
	return out
}

// holding reports whether the group says something else than its own
// configuration.
func (a advertLists) holding(cfg spoken) bool { return !a.adv.same(cfg) }

func sameAddrSet(a, b []netip.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	if slices.Equal(a, b) {
		return true // the usual case, without the two copies below
	}
	x, y := slices.Clone(a), slices.Clone(b)
	slices.SortFunc(x, netip.Addr.Compare)
	slices.SortFunc(y, netip.Addr.Compare)
	return slices.Equal(x, y)
}

func prefixAddrs(ps []netip.Prefix) []netip.Addr {
	out := make([]netip.Addr, len(ps))
	for i, p := range ps {
		out[i] = p.Addr()
	}
	return out
}

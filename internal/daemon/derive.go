package daemon

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	"github.com/havip/havip/internal/checks"
	"github.com/havip/havip/internal/conf"
	"github.com/havip/havip/internal/ipvsync"
	"github.com/havip/havip/internal/track"
)

// What the daemon wants is one pure function of what it knows: derive
// turns the site, this node, health results, link and address states and
// the operator's drains into
// the IPVS table and each group's tracked objects, effective priority and
// fault. The controller calls it after every input changes and hands the
// parts to their owners; nothing else computes any of it.

// trackKind is what a tracked object is.
type trackKind uint8

const (
	trackInterface trackKind = iota + 1
	trackVirtualServer
	trackCheck
)

func (k trackKind) String() string {
	switch k {
	case trackInterface:
		return "interface"
	case trackVirtualServer:
		return "virtual_server"
	case trackCheck:
		return "check"
	}
	return fmt.Sprintf("trackKind(%d)", uint8(k))
}

// trackKey names one tracked object.
type trackKey struct {
	kind trackKind
	name string
}

func (k trackKey) String() string { return k.kind.String() + " " + k.name }

func compareTrackKeys(a, b trackKey) int {
	return cmp.Or(cmp.Compare(a.kind, b.kind), cmp.Compare(a.name, b.name))
}

// trackState is one tracked object of a group and whether it fails.
type trackState struct {
	key     trackKey
	weight  int // 0: FAULT while failing
	failing bool
	own     bool // the group's own interface (always tracked, weight 0)
}

// inputs is everything derive looks at. The maps are read, never written.
type inputs struct {
	site   *conf.Site
	node   *conf.Node
	health map[string]bool                // checks key -> up; absent: not probed yet, up unless start = "down"
	links  map[string]track.LinkState     // by interface name; absent = not reported (missing)
	addrs  map[netip.Addr]track.AddrState // watched addresses (this node's own)
	faults map[string]string              // by group: a fault only the group sees (socket, VIP claims); absent = none
	drains *drainSet                      // operator drains; nil = none
	// vsDown is each virtual server's quorum state at the previous
	// derive (true: down), for quorum_hysteresis: the controller keeps it
	// from the last table (wanted.table's Service.Down); absent = judged
	// for the first time.
	vsDown map[string]bool

	// vsIndex is the position of each virtual server in
	// site.VirtualServers; nil = look them up one by one.
	vsIndex map[string]int
	// prev, when not nil, is the table derived before for this site and
	// these drains; only the virtual servers at the positions in dirty
	// (real servers whose health changed) are derived again, into
	// wanted.set. vsIndex must be set with it.
	prev  *ipvsync.Table
	dirty []int
}

// wanted is what derive returns.
type wanted struct {
	table  ipvsync.Table // the whole table; empty when inputs.prev was given
	set    []ipvsync.Service
	groups map[string]groupWant
}

// groupWant is what one group must run with.
type groupWant struct {
	base   uint8 // configured priority (255 for the address owner)
	prio   uint8 // effective priority: base moved by failing weighted tracks
	fault  string
	tracks []trackState // sorted by key
	link   track.LinkState
	source netip.Addr // advert source: the node address (IPv4) or the link-local (IPv6); invalid while unusable
}

// healthOf answers ipvsync's question from the health map; a real server
// not probed yet is up unless its check says start = "down".
type healthOf struct {
	m      map[string]bool
	site   *conf.Site
	index  map[string]int  // inputs.vsIndex
	vsDown map[string]bool // inputs.vsDown
}

// WasDown gives ipvsync the previous quorum state (ipvsync.QuorumHistory).
func (h healthOf) WasDown(vs string) (down, known bool) {
	down, known = h.vsDown[vs]
	return down, known
}

func (h healthOf) Up(vs string, rs netip.AddrPort) bool {
	if up, ok := h.m[checks.RealServerKey(vs, rs)]; ok {
		return up
	}
	v := h.vs(vs)
	return v == nil || !v.Check.StartDown
}

func (h healthOf) vs(name string) *conf.VirtualServer {
	if h.index == nil {
		return h.site.VirtualServer(name)
	}
	if i, ok := h.index[name]; ok {
		return &h.site.VirtualServers[i]
	}
	return nil
}

func derive(in inputs) wanted {
	w := wanted{groups: make(map[string]groupWant, len(in.site.Groups))}
	vsDown := deriveTable(in, &w)
	// Penalty and fault of each group on its own, before sync groups join them.
	penalty := make(map[string]int, len(in.site.Groups))
	own := make(map[string]string, len(in.site.Groups))
	for i := range in.site.Groups {
		g := &in.site.Groups[i]
		gw := groupWant{base: basePriority(g, in.node), link: in.links[g.Interface]}
		gw.link.Name = g.Interface
		gw.tracks = append(gw.tracks, trackState{key: trackKey{trackInterface, g.Interface}, failing: !gw.link.Up, own: true})
		for _, t := range g.Track {
			ts := trackState{weight: t.Weight}
			switch {
			case t.Interface != "":
				ts.key = trackKey{trackInterface, t.Interface}
				ts.failing = !in.links[t.Interface].Up
			case t.VirtualServer != "":
				ts.key = trackKey{trackVirtualServer, t.VirtualServer}
				ts.failing = vsDown(t.VirtualServer)
			default:
				ts.key = trackKey{trackCheck, t.Check}
				up, ok := in.health[checks.CheckKey(t.Check)]
				if !ok { // not probed yet
					c := in.site.Check(t.Check)
					up = c == nil || !c.StartDown
				}
				ts.failing = !up
			}
			gw.tracks = append(gw.tracks, ts)
		}
		slices.SortStableFunc(gw.tracks, func(a, b trackState) int { return compareTrackKeys(a.key, b.key) })
		gw.source = advertSource(g, in)
		gw.fault = ownFault(g, gw, in)
		own[g.Name] = cmp.Or(gw.fault, in.faults[g.Name])
		for _, ts := range gw.tracks {
			if ts.failing && ts.weight != 0 {
				penalty[g.Name] += ts.weight
			}
		}
		w.groups[g.Name] = gw
	}
	// Groups of one sync group move together: a fault of one (derive's or
	// its own) is a fault of all, and their penalties add up, so both
	// directors rank every member the same way (when the members' priorities
	// are alike: an equal penalty can reorder two nodes in one member and
	// not in another whose priorities lie further apart) and preemption
	// moves them as one.
	for i := range in.site.Groups {
		g := &in.site.Groups[i]
		gw := w.groups[g.Name]
		total := penalty[g.Name]
		if g.SyncGroup != "" {
			total = 0
			for _, name := range in.site.SyncGroupMembers(g.SyncGroup) {
				total += penalty[name]
				if gw.fault == "" && name != g.Name && own[name] != "" {
					gw.fault = fmt.Sprintf("sync group %s: group %s in FAULT (%s)", g.SyncGroup, name, own[name])
				}
			}
		}
		gw.prio = gw.base
		if gw.base != 255 {
			gw.prio = uint8(min(max(int(gw.base)+total, 1), 254))
		}
		w.groups[g.Name] = gw
	}
	return w
}

// deriveTable is the IPVS part of derive: the whole table into w.table,
// or with in.prev the services of in.dirty into w.set, so a health change
// costs in proportion to the services it touches. It returns whether a
// virtual server is down (below its quorum) in the result.
func deriveTable(in inputs, w *wanted) (vsDown func(name string) bool) {
	h := healthOf{m: in.health, site: in.site, index: in.vsIndex, vsDown: in.vsDown}
	if in.prev == nil {
		w.table = ipvsync.Desired(in.site.VirtualServers, h)
		applyDrains(&w.table, in.drains)
		down := make(map[string]bool, len(w.table.Services))
		for _, s := range w.table.Services {
			down[s.Name] = s.Down
		}
		return func(name string) bool { return down[name] }
	}
	for _, i := range in.dirty {
		s := ipvsync.DesiredService(in.site.VirtualServers[i], h)
		drainService(&s, in.drains)
		w.set = append(w.set, s)
	}
	return func(name string) bool {
		for i := len(w.set) - 1; i >= 0; i-- {
			if w.set[i].Name == name {
				return w.set[i].Down
			}
		}
		i, ok := in.vsIndex[name]
		return ok && in.prev.Services[i].Down
	}
}

// basePriority is the node's configured priority in g: 255 when its own
// address is one of the VIPs (RFC 5798 address owner).
func basePriority(g *conf.Group, node *conf.Node) uint8 {
	if ownsVIP(g, node) {
		return 255
	}
	return g.PriorityOf(node)
}

func ownsVIP(g *conf.Group, node *conf.Node) bool {
	return slices.ContainsFunc(g.VIPs, func(p netip.Prefix) bool { return p.Addr() == node.Address })
}

// advertSource is where g's adverts come from: the node address for IPv4
// (present on this host), the interface's link-local address for IPv6
// (RFC 5798 5.1.2.1). Invalid while it is not usable.
func advertSource(g *conf.Group, in inputs) netip.Addr {
	if g.IsIPv6() {
		return in.links[g.Interface].LinkLocal
	}
	if in.addrs[in.node.Address].Present {
		return in.node.Address
	}
	return netip.Addr{}
}

// ownFault is why g cannot run here now, or "".
func ownFault(g *conf.Group, gw groupWant, in inputs) string {
	switch l := gw.link; {
	case !l.Exists:
		return fmt.Sprintf("interface %s does not exist", g.Interface)
	case !l.Up:
		return fmt.Sprintf("interface %s is down", g.Interface)
	case !gw.source.IsValid() && g.IsIPv6():
		return fmt.Sprintf("interface %s has no usable IPv6 link-local address", g.Interface)
	case g.IsIPv6() && in.node.LinkLocal.IsValid() && gw.source != in.node.LinkLocal:
		// The other directors drop adverts from any link-local but the
		// site's: advertising from this one would make a dual master.
		return fmt.Sprintf("interface %s sends IPv6 adverts from %s, not from this node's link_local %s", g.Interface, gw.source, in.node.LinkLocal)
	case !gw.source.IsValid():
		return fmt.Sprintf("node address %s is not configured on this host", in.node.Address)
	case l.MTU > 0 && g.AdvertSize() > l.MTU:
		return fmt.Sprintf("an advert is %d bytes, more than the MTU %d of %s", g.AdvertSize(), l.MTU, g.Interface)
	}
	for _, ts := range gw.tracks {
		if ts.failing && ts.weight == 0 && !ts.own {
			return fmt.Sprintf("track %s failing", ts.key)
		}
	}
	return ""
}

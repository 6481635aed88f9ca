package conf

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Checks across tables: names, references, and what only the whole pair
// can tell (priority collisions, address ownership, sync groups). Every
// one is linear: repeats are found with maps, and what each group needs to
// know about the nodes is computed once (nodeView).

// unique reports every repeat of a non-empty value of key among ts.
func (p *parser) unique(what string, ts []*table, key string, val func(i int) string) {
	first := map[string]int{}
	for i, t := range ts {
		v := val(i)
		if v == "" {
			continue
		}
		if j, dup := first[v]; dup {
			t.errorf(key, "duplicate %s %q (first at line %d)", what, v, ts[j].pos(key).line)
			continue
		}
		first[v] = i
	}
}

func (p *parser) crossNodes(root *table, s *Site, nodeT []*table) {
	switch len(s.Nodes) {
	case 0:
		if !root.has("node") {
			p.errorf(root.at, "no [[node]]: list both directors of the pair")
		}
	case 1:
		p.warnf(nodeT[0].at, "%s: only one [[node]]: there is no peer to fail over to", nodeT[0].name())
	}
	p.unique("node name", nodeT, "name", func(i int) string { return s.Nodes[i].Name })
	p.unique("node address", nodeT, "address", func(i int) string {
		if !s.Nodes[i].Address.IsValid() {
			return ""
		}
		return s.Nodes[i].Address.String()
	})
	p.unique("link_local", nodeT, "link_local", func(i int) string {
		if !s.Nodes[i].LinkLocal.IsValid() {
			return ""
		}
		return s.Nodes[i].LinkLocal.String()
	})
}

// crossSources warns, once, about the nodes without link_local when IPv6
// groups filter their adverts by source: the other nodes cannot tell
// their adverts from a stranger's, so they accept any link-local.
func (p *parser) crossSources(s *Site, nodeT []*table) {
	var v6, bare []string
	for _, g := range s.Groups {
		if g.IsIPv6() && !g.AcceptUnknownSources {
			v6 = append(v6, g.Name)
		}
	}
	first := -1
	for i, n := range s.Nodes {
		if !n.LinkLocal.IsValid() {
			bare = append(bare, n.Name)
			if first < 0 {
				first = i
			}
		}
	}
	if len(v6) == 0 || first < 0 {
		return
	}
	groups := "group " + v6[0] + " accepts"
	if len(v6) > 1 {
		groups = "groups " + list(v6[:min(3, len(v6))], len(v6)) + " accept"
	}
	p.warnf(nodeT[first].at, "%s: no link_local on node %s, so IPv6 %s adverts from any link-local address (a stranger's too)",
		nodeT[first].name(), list(bare[:min(3, len(bare))], len(bare)), groups)
}

// vipAt is where a VIP is first listed.
type vipAt struct {
	group string
	at    pos
}

// crossGroups checks the groups against each other and the nodes, and
// returns where each VIP is listed.
func (p *parser) crossGroups(s *Site, groups []groupAux, nodeT []*table) map[netip.Addr]vipAt {
	gt := make([]*table, len(groups))
	for i := range groups {
		gt[i] = groups[i].t
	}
	p.unique("vrrp group name", gt, "name", func(i int) string { return s.Groups[i].Name })
	type ifVRID struct {
		ifname string
		vrid   uint8
	}
	vrids := map[ifVRID]int{}
	for i, g := range s.Groups {
		if g.VRID == 0 || g.Interface == "" {
			continue
		}
		k := ifVRID{g.Interface, g.VRID}
		if j, dup := vrids[k]; dup {
			gt[i].errorf("vrid", "vrid %d is already used on %s by vrrp group %q (line %d)", g.VRID, g.Interface, s.Groups[j].Name, gt[j].pos("vrid").line)
			continue
		}
		vrids[k] = i
	}

	nv := newNodeView(s)
	vsNames, checkNames := map[string]bool{}, map[string]bool{}
	for _, vs := range s.VirtualServers {
		vsNames[vs.Name] = true
	}
	for _, c := range s.Checks {
		checkNames[c.Name] = true
	}
	vips := map[netip.Addr]vipAt{}
	gvs := make([]groupView, len(s.Groups))
	for gi := range s.Groups {
		g, aux := &s.Groups[gi], groups[gi]
		for k, pre := range g.VIPs {
			if other, dup := vips[pre.Addr()]; dup {
				p.errorf(aux.vipPos[k], "%s: VIP %s is also in vrrp group %q (line %d)", index(aux.t.keyPath("vips"), k), pre.Addr(), other.group, other.at.line)
				continue
			}
			vips[pre.Addr()] = vipAt{g.Name, aux.vipPos[k]}
		}
		gvs[gi] = p.groupPriorities(s, gi, aux, nv)
		if g.Unicast && len(g.VIPs) > 0 {
			v := ipVersion(g.VIPs[0].Addr())
			others := nv.v6
			if g.VIPs[0].Addr().Is6() {
				others = nv.v4
			}
			switch len(others) {
			case 0:
			case 1:
				n := s.Nodes[others[0]]
				aux.t.errorf("unicast", "unicast adverts for %s VIPs go to %s node addresses, but node %s has %s", v, v, n.Name, n.Address)
			default:
				var names []string
				for _, ni := range others[:min(3, len(others))] {
					names = append(names, s.Nodes[ni].Name)
				}
				aux.t.errorf("unicast", "unicast adverts for %s VIPs go to %s node addresses, but nodes %s have %s addresses",
					v, v, list(names, len(others)), ipVersion(s.Nodes[others[0]].Address))
			}
		}
		for ti, tr := range g.Track {
			tt := aux.tracks[ti]
			if tr.VirtualServer != "" && !vsNames[tr.VirtualServer] {
				tt.errorf("virtual_server", "no [[virtual_server]] named %q", tr.VirtualServer)
			}
			if tr.Check != "" && !checkNames[tr.Check] {
				tt.errorf("check", "no top-level [[check]] named %q", tr.Check)
			}
		}
	}
	p.nodePriorities(s, nv, nodeT)
	p.syncGroups(s, groups, gvs, nv)
	return vips
}

// nodeView is what the checks of every group need to know about the
// nodes. It is computed once, and the checks of a group look only at what
// the group changes (its overrides, the nodes owning its VIPs), so that a
// group costs its own size and not the number of nodes.
type nodeView struct {
	names    map[string]bool    // every node name
	whole    []int              // nodes with a name and an address, not repeats (those have errors), in file order
	byName   map[string]int     // whole nodes
	byAddr   map[netip.Addr]int // whole nodes
	byPrio   map[uint8][]int    // whole nodes by their own priority, in file order
	ranked   []int              // whole nodes by their own rank, lowest first
	ownRanks []rank             // parallel to ranked
	v4, v6   []int              // nodes with an address of that family

	// By node: the groups that override its priority, and those it owns
	// a VIP of; appended by groupPriorities.
	overriddenIn, ownerIn [][]int
}

func newNodeView(s *Site) *nodeView {
	nv := &nodeView{names: map[string]bool{}, byName: map[string]int{}, byAddr: map[netip.Addr]int{}, byPrio: map[uint8][]int{},
		overriddenIn: make([][]int, len(s.Nodes)), ownerIn: make([][]int, len(s.Nodes))}
	for ni, n := range s.Nodes {
		switch {
		case !n.Address.IsValid():
		case n.Address.Is4():
			nv.v4 = append(nv.v4, ni)
		default:
			nv.v6 = append(nv.v6, ni)
		}
		repeat := nv.names[n.Name]
		nv.names[n.Name] = true
		if repeat || n.Name == "" || !n.Address.IsValid() {
			continue
		}
		nv.whole = append(nv.whole, ni)
		nv.byName[n.Name] = ni
		if _, dup := nv.byAddr[n.Address]; !dup {
			nv.byAddr[n.Address] = ni
		}
		nv.byPrio[n.Priority] = append(nv.byPrio[n.Priority], ni)
	}
	nv.ranked = slices.Clone(nv.whole)
	slices.SortStableFunc(nv.ranked, func(a, b int) int { return ownRank(&s.Nodes[a]).compare(ownRank(&s.Nodes[b])) })
	for _, ni := range nv.ranked {
		nv.ownRanks = append(nv.ownRanks, ownRank(&s.Nodes[ni]))
	}
	return nv
}

// groupView is one group's difference from the nodes' own priorities.
type groupView struct {
	over  map[int]uint8 // whole node -> its override
	owner map[int]bool  // whole nodes whose address is a VIP of the group
}

// groupPriorities checks each node's priority in group gi: overrides must
// name a node, 255 belongs to an address owner only, and equal priorities
// are legal but leave the election to the address tie-break. A node's own
// priority is checked once for all groups, by nodePriorities.
func (p *parser) groupPriorities(s *Site, gi int, aux groupAux, nv *nodeView) groupView {
	g := &s.Groups[gi]
	gv := groupView{over: map[int]uint8{}, owner: map[int]bool{}}
	for _, v := range g.VIPs {
		if ni, ok := nv.byAddr[v.Addr()]; ok && !gv.owner[ni] {
			gv.owner[ni] = true
			nv.ownerIn[ni] = append(nv.ownerIn[ni], gi)
		}
	}
	prioPath := aux.t.keyPath("priorities")
	overrideAt := func(name string) pos {
		if aux.prio != nil {
			return aux.prio.pos(name)
		}
		return aux.t.pos("priorities")
	}
	var overridden []int
	for name, prio := range g.Priorities {
		ni, ok := nv.byName[name]
		if !ok {
			if !nv.names[name] {
				p.errorf(overrideAt(name), "%s: no [[node]] named %q", join(prioPath, name), name)
			}
			continue
		}
		gv.over[ni] = prio
		overridden = append(overridden, ni)
		nv.overriddenIn[ni] = append(nv.overriddenIn[ni], gi)
	}
	slices.Sort(overridden)
	for _, ni := range overridden {
		if n := &s.Nodes[ni]; gv.over[ni] == 255 && !gv.owner[ni] {
			p.errorf(overrideAt(n.Name), "%s: priority 255 is only for an address owner, and node %s's address %s is not a VIP of this group",
				join(prioPath, n.Name), n.Name, n.Address)
		}
	}
	// Equal priorities an override makes: each overridden node against
	// the first node before it with the same override, or with that
	// priority of its own and no override here.
	firstOver := map[uint8]int{}
	firstOwn := map[uint8]int{}
	for _, ni := range overridden {
		prio := gv.over[ni]
		other, seen := firstOver[prio]
		if !seen {
			other = -1
			firstOver[prio] = ni
		}
		own, done := firstOwn[prio]
		if !done {
			own = -1
			if k := slices.IndexFunc(nv.byPrio[prio], func(nj int) bool { _, o := gv.over[nj]; return !o }); k >= 0 {
				own = nv.byPrio[prio][k]
			}
			firstOwn[prio] = own
		}
		if own >= 0 && (other < 0 || own < other) {
			other = own
		}
		if other >= 0 {
			a, b := &s.Nodes[min(ni, other)], &s.Nodes[max(ni, other)]
			p.warnf(overrideAt(s.Nodes[ni].Name), "%s: nodes %s and %s both have priority %d in this group; the higher address wins every election",
				aux.t.name(), a.Name, b.Name, prio)
		}
	}
	return gv
}

// nodePriorities checks each node's own priority against every group that
// does not override it, once for the node rather than once for each group.
func (p *parser) nodePriorities(s *Site, nv *nodeView, nodeT []*table) {
	groups := len(s.Groups)
	for _, ni := range nv.whole {
		n := &s.Nodes[ni]
		if n.Priority != 255 {
			continue
		}
		exempt := map[int]bool{}
		for _, gi := range slices.Concat(nv.overriddenIn[ni], nv.ownerIn[ni]) {
			exempt[gi] = true
		}
		var names []string
		for gi := 0; gi < groups && len(names) < 3; gi++ {
			if !exempt[gi] {
				names = append(names, strconv.Quote(s.Groups[gi].Name))
			}
		}
		switch total := groups - len(exempt); {
		case total == 1:
			nodeT[ni].errorf("priority", "priority 255 is only for an address owner, and %s is not a VIP of vrrp group %s; override it in that group's priorities",
				n.Address, names[0])
		case total > 1:
			nodeT[ni].errorf("priority", "priority 255 is only for an address owner, and %s is not a VIP of vrrp groups %s; override it in those groups' priorities",
				n.Address, list(names, total))
		}
	}
	// Nodes sharing their own priority: they tie in every group that
	// overrides neither.
	firstOver := map[int]map[int]bool{} // first node of a priority -> the groups overriding it
	for _, ni := range nv.whole {
		n := &s.Nodes[ni]
		first := nv.byPrio[n.Priority][0]
		if first == ni {
			continue
		}
		over, ok := firstOver[first]
		if !ok {
			over = map[int]bool{}
			for _, gi := range nv.overriddenIn[first] {
				over[gi] = true
			}
			firstOver[first] = over
		}
		covered := len(over)
		for _, gi := range nv.overriddenIn[ni] {
			if !over[gi] {
				covered++
			}
		}
		if covered < groups {
			nodeT[ni].warnf("priority", "nodes %s and %s both have priority %d; in a vrrp group that overrides neither, the higher address wins every election",
				s.Nodes[first].Name, n.Name, n.Priority)
		}
	}
}

// rank is where a node stands in one group's election: its priority
// there, 255 as the owner of a VIP, then its address, the tie-break.
type rank struct {
	prio uint8
	addr netip.Addr
}

func (a rank) compare(b rank) int {
	if c := cmp.Compare(a.prio, b.prio); c != 0 {
		return c
	}
	return a.addr.Compare(b.addr)
}

// ownRank is n's rank in a group that neither overrides its priority nor
// has its address as a VIP.
func ownRank(n *Node) rank { return rank{n.Priority, n.Address} }

func (gv groupView) rank(g *Group, n *Node, ni int) rank {
	if gv.owner[ni] {
		return rank{255, n.Address}
	}
	return rank{g.PriorityOf(n), n.Address}
}

// syncGroups checks that the groups of each sync group could move
// together: more than one of them, ranking the nodes alike.
func (p *parser) syncGroups(s *Site, groups []groupAux, gvs []groupView, nv *nodeView) {
	var names []string
	members := map[string][]int{}
	for gi, g := range s.Groups {
		if g.SyncGroup == "" {
			continue
		}
		if _, ok := members[g.SyncGroup]; !ok {
			names = append(names, g.SyncGroup)
		}
		members[g.SyncGroup] = append(members[g.SyncGroup], gi)
	}
	for _, name := range names {
		ms := members[name]
		if len(ms) == 1 {
			groups[ms[0]].t.warnf("sync_group", "sync group %q has no other member: no [[vrrp]] moves together with this one", name)
			continue
		}
		// Ranking alike is transitive, so each member is held against
		// the one before it.
		for k := 1; k < len(ms); k++ {
			a, b := ms[k-1], ms[k]
			if ga, gb := &s.Groups[a], &s.Groups[b]; ga.Preempt != gb.Preempt || ga.PreemptDelay != gb.PreemptDelay {
				groups[b].t.warnf("sync_group", "sync group %q: vrrp group %q has preempt = %t, preempt_delay = %s but %q has %t, %s; the one that preempts brings the others along, so give them the same",
					name, gb.Name, gb.Preempt, gb.PreemptDelay, ga.Name, ga.Preempt, ga.PreemptDelay)
			}
			hi, lo, ok := misranked(s, a, b, gvs, nv)
			if !ok {
				continue
			}
			ga, gb := &s.Groups[a], &s.Groups[b]
			nh, nl := &s.Nodes[hi], &s.Nodes[lo]
			groups[b].t.errorf("sync_group", "sync group %q: node %s ranks above %s in vrrp group %q (priority %d to %d) but below it in %q (%d to %d); the members of a sync group must prefer the same node",
				name, nh.Name, nl.Name, ga.Name, gvs[a].rank(ga, nh, hi).prio, gvs[a].rank(ga, nl, lo).prio,
				gb.Name, gvs[b].rank(gb, nh, hi).prio, gvs[b].rank(gb, nl, lo).prio)
		}
	}
}

// misranked finds two nodes that groups a and b rank in opposite order:
// hi above lo in a, below it in b. Only nodes whose rank a or b changes
// can be part of such a pair, so it costs the size of the two groups, not
// the number of nodes.
func misranked(s *Site, a, b int, gvs []groupView, nv *nodeView) (hi, lo int, ok bool) {
	ga, gb := &s.Groups[a], &s.Groups[b]
	rankIn := func(g *Group, gi, ni int) rank { return gvs[gi].rank(g, &s.Nodes[ni], ni) }
	changed := map[int]bool{}
	for _, gv := range []groupView{gvs[a], gvs[b]} {
		for ni := range gv.over {
			changed[ni] = true
		}
		for ni := range gv.owner {
			changed[ni] = true
		}
	}
	d := slices.Sorted(maps.Keys(changed))
	// Two changed nodes: in a's order, b's must rise at every step.
	slices.SortStableFunc(d, func(x, y int) int { return rankIn(ga, a, x).compare(rankIn(ga, a, y)) })
	for k := 1; k < len(d); k++ {
		if rankIn(gb, b, d[k]).compare(rankIn(gb, b, d[k-1])) < 0 {
			return d[k], d[k-1], true
		}
	}
	// A changed node and one that ranks as its own in both: that one
	// must not lie between the changed node's ranks in a and in b.
	dOwn := make([]rank, len(d))
	for k, ni := range d {
		dOwn[k] = ownRank(&s.Nodes[ni])
	}
	slices.SortFunc(dOwn, rank.compare)
	for _, ni := range d {
		ra, rb := rankIn(ga, a, ni), rankIn(gb, b, ni)
		lower, upper := ra, rb
		if rb.compare(ra) < 0 {
			lower, upper = rb, ra
		}
		from, to := between(nv.ownRanks, lower, upper)
		if dFrom, dTo := between(dOwn, lower, upper); to-from == dTo-dFrom {
			continue // only changed nodes lie between: the loop above saw them
		}
		for k := from; k < to; k++ {
			if w := nv.ranked[k]; !changed[w] {
				if ra.compare(rb) < 0 {
					return w, ni, true
				}
				return ni, w, true
			}
		}
	}
	return 0, 0, false
}

// between returns the range of the sorted rs that lies strictly between
// lower and upper.
func between(rs []rank, lower, upper rank) (from, to int) {
	from = sort.Search(len(rs), func(k int) bool { return rs[k].compare(lower) > 0 })
	to = sort.Search(len(rs), func(k int) bool { return rs[k].compare(upper) >= 0 })
	return from, max(from, to)
}

// list joins items for a message, naming the first few of total:
// "a", "a and b", "a, b and c", "a, b, c and 4 more".
func list(items []string, total int) string {
	if more := total - len(items); more > 0 {
		items = append(slices.Clip(items), fmt.Sprintf("%d more", more))
	}
	if len(items) <= 1 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " and " + items[len(items)-1]
}

func (p *parser) crossVirtualServers(s *Site, vsT []*table, vips map[netip.Addr]vipAt) {
	p.unique("virtual server name", vsT, "name", func(i int) string { return s.VirtualServers[i].Name })
	p.unique("virtual service", vsT, "address", func(i int) string {
		vs := s.VirtualServers[i]
		if !vs.Address.IsValid() {
			return ""
		}
		return vs.Protocol + " " + vs.Address.String()
	})
	p.unique("virtual service", vsT, "fwmark", func(i int) string {
		vs := s.VirtualServers[i]
		if vs.FWMark == 0 {
			return ""
		}
		return fmt.Sprintf("fwmark %d %s", vs.FWMark, vs.Family)
	})
	if len(vips) == 0 {
		return
	}
	for i, vs := range s.VirtualServers {
		if _, held := vips[vs.Address.Addr()]; vs.Address.IsValid() && !held {
			vsT[i].warnf("address", "%s is not a VIP of any [[vrrp]] group, so havip never holds it", vs.Address.Addr())
		}
	}
}

func ipVersion(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

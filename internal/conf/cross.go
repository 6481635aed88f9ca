package conf

import (
	"fmt"
	"net/netip"
)

// Checks across tables: names, references, and what only the whole pair
// can tell (priority collisions, address ownership).

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
}

func (p *parser) crossGroups(s *Site, groups []groupAux, nodeT []*table) {
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

	type vipAt struct {
		group string
		at    pos
	}
	vips := map[netip.Addr]vipAt{}
	for gi := range s.Groups {
		g, aux := &s.Groups[gi], groups[gi]
		for k, pre := range g.VIPs {
			if other, dup := vips[pre.Addr()]; dup {
				p.errorf(aux.vipPos[k], "%s: VIP %s is also in vrrp group %q (line %d)", index(aux.t.keyPath("vips"), k), pre.Addr(), other.group, other.at.line)
				continue
			}
			vips[pre.Addr()] = vipAt{g.Name, aux.vipPos[k]}
		}
		p.groupPriorities(s, g, aux, nodeT)
		if g.Unicast && len(g.VIPs) > 0 {
			for _, n := range s.Nodes {
				if n.Address.IsValid() && n.Address.Is4() != g.VIPs[0].Addr().Is4() {
					aux.t.errorf("unicast", "unicast adverts for %s VIPs go to %s node addresses, but node %s has %s",
						ipVersion(g.VIPs[0].Addr()), ipVersion(g.VIPs[0].Addr()), n.Name, n.Address)
				}
			}
		}
		for ti, tr := range g.Track {
			tt := aux.tracks[ti]
			if tr.VirtualServer != "" && s.VirtualServer(tr.VirtualServer) == nil {
				tt.errorf("virtual_server", "no [[virtual_server]] named %q", tr.VirtualServer)
			}
			if tr.Check != "" && s.Check(tr.Check) == nil {
				tt.errorf("check", "no top-level [[check]] named %q", tr.Check)
			}
		}
	}
}

// groupPriorities checks each node's effective priority in g: overrides
// must name a node, 255 belongs to an address owner only, and equal
// priorities are legal but leave the election to the address tie-break.
func (p *parser) groupPriorities(s *Site, g *Group, aux groupAux, nodeT []*table) {
	prioPath := aux.t.keyPath("priorities")
	overrideAt := func(node string) pos {
		if aux.prio != nil {
			return aux.prio.pos(node)
		}
		return aux.t.pos("priorities")
	}
	for name := range g.Priorities {
		if !s.hasNode(name) {
			p.errorf(overrideAt(name), "%s: no [[node]] named %q", join(prioPath, name), name)
		}
	}
	owns := func(a netip.Addr) bool {
		for _, v := range g.VIPs {
			if v.Addr() == a {
				return true
			}
		}
		return false
	}
	// Only nodes that are whole and not repeats: those already have errors.
	var nodes []int
	for ni, n := range s.Nodes {
		if n.Name != "" && n.Address.IsValid() && s.node(n.Name) == &s.Nodes[ni] {
			nodes = append(nodes, ni)
		}
	}
	for _, ni := range nodes {
		n := &s.Nodes[ni]
		if g.PriorityOf(n) != 255 || owns(n.Address) {
			continue
		}
		if _, over := g.Priorities[n.Name]; over {
			p.errorf(overrideAt(n.Name), "%s: priority 255 is only for an address owner, and node %s's address %s is not a VIP of this group",
				join(prioPath, n.Name), n.Name, n.Address)
		} else {
			nodeT[ni].errorf("priority", "priority 255 is only for an address owner, and %s is not a VIP of vrrp group %q; override it in that group's priorities",
				n.Address, g.Name)
		}
	}
	for i, ni := range nodes {
		for _, nj := range nodes[i+1:] {
			a, b := &s.Nodes[ni], &s.Nodes[nj]
			if g.PriorityOf(a) != g.PriorityOf(b) {
				continue
			}
			at := aux.t.at
			if _, over := g.Priorities[b.Name]; over {
				at = overrideAt(b.Name)
			} else if _, over := g.Priorities[a.Name]; over {
				at = overrideAt(a.Name)
			}
			p.warnf(at, "%s: nodes %s and %s both have priority %d in this group; the higher address wins every election",
				aux.t.name(), a.Name, b.Name, g.PriorityOf(a))
		}
	}
}

func (p *parser) crossVirtualServers(s *Site, vsT []*table) {
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
	vips := map[netip.Addr]bool{}
	for _, g := range s.Groups {
		for _, v := range g.VIPs {
			vips[v.Addr()] = true
		}
	}
	if len(vips) == 0 {
		return
	}
	for i, vs := range s.VirtualServers {
		if vs.Address.IsValid() && !vips[vs.Address.Addr()] {
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

package conf

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
)

// ErrNoNode is returned (wrapped) by SelectNode when no [[node]] matches.
var ErrNoNode = errors.New("no matching [[node]]")

// SelectNode returns this director's [[node]]: the one named name, or, when
// name is empty, the one named like the hostname (the full name first,
// then its first label).
func (s *Site) SelectNode(name string) (*Node, error) {
	if name != "" {
		if n := s.node(name); n != nil {
			return n, nil
		}
		return nil, fmt.Errorf("conf: %w named %q in %s (nodes: %s)", ErrNoNode, name, s.File, s.nodeNames())
	}
	host, err := os.Hostname()
	if err != nil {
		return nil, fmt.Errorf("conf: finding this node by hostname: %w", err)
	}
	short, _, _ := strings.Cut(host, ".")
	for _, h := range []string{host, short} {
		if n := s.node(h); n != nil {
			return n, nil
		}
	}
	return nil, fmt.Errorf("conf: %w for hostname %q in %s (nodes: %s); pass --node NAME", ErrNoNode, host, s.File, s.nodeNames())
}

// Peers returns every node but the one named self.
func (s *Site) Peers(self string) []Node {
	var out []Node
	for _, n := range s.Nodes {
		if n.Name != self {
			out = append(out, n)
		}
	}
	return out
}

// linkLocals is where IPv6 adverts come from (RFC 5798 section 5.1.2.1).
var linkLocals = netip.MustParsePrefix("fe80::/10")

// IsIPv6 reports whether g's VIPs, and so its adverts, are IPv6.
func (g *Group) IsIPv6() bool { return len(g.VIPs) > 0 && g.VIPs[0].Addr().Is6() }

// AdvertSources are the sources g's adverts may come from, for node self:
// every node's address of g's family and, for an IPv6 group, every node's
// link_local; and all of fe80::/10 while another node has no link_local
// (its IPv6 adverts may come from any link-local). It returns nil when g
// accepts unknown sources (vrrp.Config.Sources: empty accepts all).
func (s *Site) AdvertSources(g *Group, self string) []netip.Prefix {
	if g.AcceptUnknownSources {
		return nil
	}
	v6 := g.IsIPv6()
	bits := 32
	if v6 {
		bits = 128
	}
	var out []netip.Prefix
	anyLinkLocal := false
	for _, n := range s.Nodes {
		if n.Address.IsValid() && n.Address.Is6() == v6 {
			out = append(out, netip.PrefixFrom(n.Address, bits))
		}
		switch {
		case !v6:
		case n.LinkLocal.IsValid():
			out = append(out, netip.PrefixFrom(n.LinkLocal, 128))
		case n.Name != self:
			anyLinkLocal = true
		}
	}
	if anyLinkLocal {
		out = append(out, linkLocals)
	}
	return out
}

// PriorityOf returns node's priority in g: its override in the group's
// priorities, else the node's own.
func (g *Group) PriorityOf(node *Node) uint8 {
	if p, ok := g.Priorities[node.Name]; ok {
		return p
	}
	return node.Priority
}

// AdvertSize is the size in bytes of the IP packet that carries g's
// advertisement: the IPv4 (20) or IPv6 (40) header, the VRRP header (8),
// every VIP (4 or 16 bytes each) and, for VRRPv2, 8 bytes of
// authentication data. conf refuses a group whose advert exceeds the
// 1500-byte Ethernet MTU; the daemon can hold it against the interface's.
func (g *Group) AdvertSize() int {
	ipHeader, addr := 20, 4
	if len(g.VIPs) > 0 && g.VIPs[0].Addr().Is6() {
		ipHeader, addr = 40, 16
	}
	n := ipHeader + 8 + addr*len(g.VIPs)
	if g.Version == 2 {
		n += 8
	}
	return n
}

// SyncGroupMembers returns the names of the [[vrrp]] groups whose
// sync_group is name, in file order; none for "".
func (s *Site) SyncGroupMembers(name string) []string {
	var out []string
	for _, g := range s.Groups {
		if name != "" && g.SyncGroup == name {
			out = append(out, g.Name)
		}
	}
	return out
}

// Group returns the [[vrrp]] group named name, or nil.
func (s *Site) Group(name string) *Group {
	for i := range s.Groups {
		if s.Groups[i].Name == name {
			return &s.Groups[i]
		}
	}
	return nil
}

// VirtualServer returns the [[virtual_server]] named name, or nil.
func (s *Site) VirtualServer(name string) *VirtualServer {
	for i := range s.VirtualServers {
		if s.VirtualServers[i].Name == name {
			return &s.VirtualServers[i]
		}
	}
	return nil
}

// Check returns the top-level [[check]] named name, or nil.
func (s *Site) Check(name string) *Check {
	for i := range s.Checks {
		if s.Checks[i].Name == name {
			return &s.Checks[i]
		}
	}
	return nil
}

func (s *Site) node(name string) *Node {
	for i := range s.Nodes {
		if s.Nodes[i].Name == name {
			return &s.Nodes[i]
		}
	}
	return nil
}

func (s *Site) nodeNames() string {
	names := make([]string, len(s.Nodes))
	for i, n := range s.Nodes {
		names[i] = n.Name
	}
	return strings.Join(names, ", ")
}

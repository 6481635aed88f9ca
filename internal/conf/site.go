package conf

import (
	"errors"
	"fmt"
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

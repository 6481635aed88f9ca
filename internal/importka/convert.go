// Package importka converts keepalived configurations into a havip site
// file: a lexer and parser for keepalived's block syntax (includes,
// parameters, comments, quoting), and a converter from its VRRP
// instances, scripts, sync groups, virtual servers and checkers to the
// siteout model. One file per director; the first is the MASTER's. It
// is pure logic: it reads the configuration files and nothing else, and
// every construct it cannot carry over is a Note at its FILE:LINE.
package importka

import (
	"cmp"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"

	"github.com/havip/havip/internal/siteout"
)

// PeerPlaceholder names the peer node of a site converted from one
// configuration: no director has that hostname, so the operator has to
// rename it.
const PeerPlaceholder = "peer-REPLACE-ME"

// placeholderNet is where addresses nobody wrote down come from:
// TEST-NET-1 (RFC 5737), never a director's.
var placeholderNet = netip.MustParsePrefix("192.0.2.0/24")

// Options are what the configurations cannot say.
type Options struct {
	SiteName string // default "imported"
	// Addresses: a node's address by its havip name (the router_id, the
	// file's name, or PeerPlaceholder), for nodes whose keepalived
	// configuration names no source address; it wins over the file.
	Addresses map[string]netip.Addr
}

// Convert reads one keepalived configuration per director (the first is
// the MASTER's) and returns the site and every note. The error is for a
// file that cannot be read at all.
func Convert(paths []string, opts Options) (*siteout.Site, []siteout.Note, error) {
	if len(paths) < 1 || len(paths) > 2 {
		return nil, nil, fmt.Errorf("importka: want one or two keepalived configurations, got %d", len(paths))
	}
	c := &conv{}
	for _, p := range paths {
		stmts, notes, err := Parse(p)
		if err != nil {
			return nil, nil, err
		}
		c.notes = append(c.notes, notes...)
		c.files = append(c.files, c.file(p, stmts))
	}
	site := c.site(opts)
	return site, tidy(append(c.notes, siteout.Validate(site)...)), nil
}

// tidy drops repeated notes (a file both configurations include is
// read twice) and sorts them by line within each file, the files in the
// order they were first noted.
func tidy(ns []siteout.Note) []siteout.Note {
	seen := map[siteout.Note]bool{}
	fileAt := map[string]int{}
	out := ns[:0]
	for _, n := range ns {
		if _, ok := fileAt[n.File]; !ok {
			fileAt[n.File] = len(fileAt)
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	slices.SortStableFunc(out, func(a, b siteout.Note) int {
		return cmp.Or(cmp.Compare(fileAt[a.File], fileAt[b.File]), cmp.Compare(a.Line, b.Line))
	})
	return out
}

type conv struct {
	files []*kaFile
	notes []siteout.Note
}

func (c *conv) add(s *Stmt, unsafe bool, format string, args ...any) {
	n := siteout.Note{Msg: fmt.Sprintf(format, args...), Unsafe: unsafe}
	if s != nil {
		n.File, n.Line = s.File, s.Line
	}
	c.notes = append(c.notes, n)
}

// skip notes a statement that is not converted.
func (c *conv) skip(s *Stmt, why string) {
	c.add(s, false, "%s: %s", s.Key(), why)
}

// unknown notes a keyword the converter has no mapping for.
func (c *conv) unknown(s *Stmt, where string) {
	c.add(s, false, "%s (in %s): no havip equivalent; left out", s.Key(), where)
}

// kaFile is what one keepalived configuration says.
type kaFile struct {
	path           string
	routerID       string
	version        int // global vrrp_version; 0 = keepalived's default, 2
	garp           garp
	scriptUser     string
	scriptGroup    string
	scriptSecurity bool
	instances      []*instance
	scripts        map[string]*vrrpScript
	scriptOrder    []string
	vsGroups       map[string]*Stmt
	vss            []vsConv
	sync           *siteout.Sync
}

func (c *conv) file(path string, stmts []*Stmt) *kaFile {
	f := &kaFile{path: path, scripts: map[string]*vrrpScript{}, vsGroups: map[string]*Stmt{}}
	var vsStmts, syncGroups []*Stmt
	for _, s := range stmts {
		switch s.Key() {
		case "global_defs":
			c.globalDefs(f, s)
		case "vrrp_instance":
			if in := c.instance(f, s); in != nil {
				f.instances = append(f.instances, in)
			}
		case "vrrp_script":
			c.vrrpScript(f, s)
		case "vrrp_sync_group":
			syncGroups = append(syncGroups, s)
		case "virtual_server":
			vsStmts = append(vsStmts, s)
		case "virtual_server_group":
			if len(s.Args()) != 1 {
				c.add(s, false, "virtual_server_group needs one name")
				continue
			}
			f.vsGroups[s.Args()[0]] = s
		case "static_ipaddress", "static_routes", "static_rules":
			c.skip(s, "havip does not manage static addresses, routes or rules; keep them in the system's network configuration")
		default:
			c.unknown(s, "the top level")
		}
	}
	for _, s := range syncGroups {
		c.syncGroup(f, s)
	}
	for _, s := range vsStmts {
		f.vss = append(f.vss, c.virtualServer(f, s)...)
	}
	return f
}

// node is one director: a file, its name and address.
type node struct {
	f      *kaFile
	name   string
	addr   string
	placed bool // addr is a placeholder
}

func (c *conv) site(opts Options) *siteout.Site {
	master := c.files[0]
	s := &siteout.Site{Name: cmp.Or(opts.SiteName, "imported")}
	files := make([]string, len(c.files))
	for i, f := range c.files {
		files[i] = f.path
	}
	s.Header = []string{
		"Converted from keepalived by havip import keepalived " + strings.Join(files, " ") + ".",
		"Review it, with the notes the import printed, before any director runs it: havip check -c FILE.",
		"The same file goes to both directors; each picks its [[node]] by hostname or --node.",
	}
	if len(master.instances) == 0 {
		c.add(&Stmt{File: master.path}, true, "no vrrp_instance converted: the site would hold no VIP")
	}
	if master.scriptUser != "" {
		s.ScriptUser, s.ScriptGroup = master.scriptUser, master.scriptGroup
	}
	if master.scriptSecurity {
		t := true
		s.ScriptSecurity = &t
	}
	nodes := c.nodes(opts)
	for _, n := range nodes {
		s.Nodes = append(s.Nodes, siteout.Node{Name: n.name, Address: n.addr})
	}
	c.groups(s, nodes)
	c.virtualServers(s)
	if master.sync != nil {
		s.Sync = master.sync
	}
	return s
}

// nodes names the directors and finds their addresses.
func (c *conv) nodes(opts Options) []*node {
	var ns []*node
	for i, f := range c.files {
		name := f.routerID
		if name == "" {
			name = strings.TrimSuffix(filepath.Base(f.path), filepath.Ext(f.path))
		}
		if i > 0 && name == ns[0].name {
			name += "-2"
		}
		ns = append(ns, &node{f: f, name: name})
	}
	if len(c.files) == 1 {
		ns = append(ns, &node{name: PeerPlaceholder})
		c.add(&Stmt{File: c.files[0].path}, false, "only one keepalived configuration: the peer is a placeholder [[node]] %q; rename it to the peer's hostname, and check its address and priorities", PeerPlaceholder)
	}
	for i, n := range ns {
		var other *kaFile
		if j := 1 - i; j < len(ns) {
			other = ns[j].f
		}
		own := ""
		if n.f != nil {
			own = c.ownAddr(n.f)
		}
		switch {
		case opts.Addresses[n.name].IsValid():
			n.addr = opts.Addresses[n.name].String()
		case own != "":
			n.addr = own
		case other != nil && onePeer(other) != "":
			n.addr = onePeer(other)
		default:
			n.addr = placeholderAddr(i)
			n.placed = true
			at := &Stmt{File: c.files[0].path}
			if n.f != nil {
				at.File = n.f.path
			}
			c.add(at, true, "no unicast_src_ip, mcast_src_ip or unicast_peer says node %s's address: it is the placeholder %s, and havip drops adverts from any other address; give it with --address %s=IP",
				n.name, n.addr, n.name)
		}
	}
	return ns
}

func placeholderAddr(i int) string {
	b := placeholderNet.Addr().As4()
	b[3] = byte(11 + i)
	return netip.AddrFrom4(b).String()
}

// ownAddr is the file's source address: the first instance's that names
// one. Instances naming others are noted.
func (c *conv) ownAddr(f *kaFile) string {
	addr := ""
	var at *Stmt
	for _, in := range f.instances {
		switch {
		case in.src == "":
		case addr == "":
			addr, at = in.src, in.srcAt
		case in.src != addr:
			c.add(in.srcAt, false, "%s %s: a havip node has one address; it uses %s (%s:%d)", in.srcAt.Key(), in.src, addr, at.File, at.Line)
			in.src = addr // noted once
		}
	}
	return addr
}

// onePeer is the address the file's instances name as their only unicast
// peer, or "".
func onePeer(f *kaFile) string {
	for _, in := range f.instances {
		if len(in.peers) == 1 {
			return in.peers[0]
		}
	}
	return ""
}

// groups converts the MASTER file's instances, with each node's
// priorities.
func (c *conv) groups(s *siteout.Site, nodes []*node) {
	master := c.files[0]
	used := map[string]bool{}
	for _, in := range master.instances {
		g, tracks := c.group(master, in)
		// Each node's priority in this group: its own file's instance,
		// or for the placeholder peer the other side of the MASTER's.
		prios := make([]int, len(nodes))
		for i, n := range nodes {
			switch {
			case n.f == nil:
				prios[i] = placeholderPriority(in)
			case n.f == master:
				prios[i] = in.priority
			default:
				other := n.f.match(in)
				if other == nil {
					c.add(in.st, true, "vrrp_instance %s (vrid %d on %s) is not in %s: havip runs every group on both nodes; node %s gets priority %d in it",
						in.name, in.vrid, in.iface, n.f.path, n.name, placeholderPriority(in))
					prios[i] = placeholderPriority(in)
					continue
				}
				prios[i] = other.priority
				c.compareGroup(master, in, n.f, other, g)
			}
		}
		// keepalived adds a positive weight while its track is up;
		// havip subtracts while failing: the same priorities, raised by
		// the positive weights.
		raise := 0
		for _, t := range tracks {
			if t.Weight > 0 {
				raise += t.Weight
			}
		}
		for i := range g.Track {
			if g.Track[i].Weight > 0 {
				g.Track[i].Comment = append(g.Track[i].Comment, fmt.Sprintf("keepalived's weight +%d while up is havip's %d while failing, with every node's priority raised by %d", g.Track[i].Weight, -g.Track[i].Weight, g.Track[i].Weight))
				g.Track[i].Weight = -g.Track[i].Weight
			}
		}
		for i, n := range nodes {
			p := prios[i] + raise
			if p == 255 && !ownsVIP(n.addr, g.VIPs) {
				p = 254
				c.add(in.st, false, "vrrp_instance %s: priority 255 is for the address owner; node %s does not own a VIP, so it gets 254", in.name, n.name)
			}
			if p > 254 && raise > 0 {
				c.add(in.st, false, "vrrp_instance %s: node %s's priority %d plus the positive track weights (%d) is above 254; capped at 254", in.name, n.name, prios[i], raise)
				p = 254
			}
			if !used[n.name] {
				used[n.name] = true
				s.Nodes[i].Priority = p
			} else if s.Nodes[i].Priority != p {
				g.Priorities = append(g.Priorities, siteout.Priority{Node: n.name, Priority: p})
			}
		}
		s.Groups = append(s.Groups, g)
		for _, name := range trackedScripts(tracks) {
			if !slices.ContainsFunc(s.Checks, func(ck siteout.Check) bool { return ck.Name == name }) {
				s.Checks = append(s.Checks, master.scripts[name].check)
			}
		}
	}
	for _, name := range master.scriptOrder {
		if !slices.ContainsFunc(s.Checks, func(ck siteout.Check) bool { return ck.Name == name }) {
			c.add(master.scripts[name].st, false, "vrrp_script %s is tracked by no converted instance; left out", name)
		}
	}
	for _, f := range c.files[1:] {
		for _, in := range f.instances {
			if master.match(in) == nil {
				c.add(in.st, true, "vrrp_instance %s is only in this file, not in %s: not converted (run it on both nodes, or not at all)", in.name, master.path)
			}
		}
	}
}

func trackedScripts(ts []siteout.Track) []string {
	var out []string
	for _, t := range ts {
		if t.Check != "" {
			out = append(out, t.Check)
		}
	}
	return out
}

func ownsVIP(addr string, vips []string) bool {
	for _, v := range vips {
		if p, err := netip.ParsePrefix(v); err == nil && p.Addr().String() == addr {
			return true
		}
	}
	return false
}

// placeholderPriority is what a peer nobody configured gets: below a
// MASTER, above a BACKUP.
func placeholderPriority(in *instance) int {
	if in.state == "BACKUP" {
		return min(in.priority+50, 254)
	}
	return max(in.priority-50, 1)
}

// match is the file's instance for the MASTER's in: the same name, else
// the same VRID on the same interface.
func (f *kaFile) match(in *instance) *instance {
	if m := f.instanceNamed(in.name); m != nil {
		return m
	}
	for _, m := range f.instances {
		if m.vrid == in.vrid && m.iface == in.iface {
			return m
		}
	}
	return nil
}

// compareGroup notes where the BACKUP's instance would make a different
// group than the MASTER's.
func (c *conv) compareGroup(master *kaFile, in *instance, f *kaFile, other *instance, g siteout.Group) {
	og, _ := c.quiet(func() (siteout.Group, []siteout.Track) { return c.group(f, other) })
	if d := diffLines(siteout.Render(&siteout.Site{Groups: []siteout.Group{g}}), siteout.Render(&siteout.Site{Groups: []siteout.Group{og}})); d != "" {
		c.add(other.st, false, "vrrp_instance %s differs from %s:%d beyond its priority; havip uses the MASTER's (one site file for both):\n%s", other.name, in.st.File, in.st.Line, d)
	}
	if len(in.peers) == 1 && other.src != "" && in.peers[0] != other.src {
		c.add(in.peersAt, false, "unicast_peer %s is not %s's unicast_src_ip %s", in.peers[0], f.path, other.src)
	}
}

// quiet runs fn and drops the notes it adds (a second conversion of
// what is compared only).
func (c *conv) quiet(fn func() (siteout.Group, []siteout.Track)) (siteout.Group, []siteout.Track) {
	n := len(c.notes)
	g, t := fn()
	c.notes = c.notes[:n]
	return g, t
}

// diffLines lists the lines only in a (-) or only in b (+), ignoring
// comments.
func diffLines(a, b string) string {
	var out []string
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for _, l := range al {
		if !strings.HasPrefix(l, "#") && !slices.Contains(bl, l) {
			out = append(out, "    - "+l)
		}
	}
	for _, l := range bl {
		if !strings.HasPrefix(l, "#") && !slices.Contains(al, l) {
			out = append(out, "    + "+l)
		}
	}
	return strings.Join(out, "\n")
}

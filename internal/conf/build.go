package conf

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"net"
	"net/netip"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Enumerations, in the order messages list them.
var (
	protocols  = []string{"tcp", "udp", "sctp"}
	schedulers = []string{"rr", "wrr", "lc", "wlc", "sh", "mh", "sed", "nq", "dh", "lblc", "lblcr", "fo", "ovf"}
	forwards   = []string{"dr", "tun", "nat"}
	onFailures = []string{"remove", "weight0"}
	checkTypes = []string{"tcp", "http", "https", "udp", "dns", "smtp", "ping", "exec", "none"}
	dnsTypes   = []string{"A", "AAAA", "SOA", "MX", "TXT", "CNAME", "NS", "PTR", "SRV"}
	families   = []string{"inet", "inet6"}
	// schedFlags maps each IPVS scheduler flag to the scheduler it belongs to.
	schedFlags = map[string]string{"sh-fallback": "sh", "sh-port": "sh", "mh-fallback": "mh", "mh-port": "mh"}
)

// maxPersistence is the longest persistence the kernel keeps: it counts it
// in 32 bits of jiffies, 49.7 days at HZ=1000.
const maxPersistence = 49 * 24 * time.Hour

// One advert carries every VIP of its group: its address count is one
// byte, and it must fit the link.
const (
	maxVIPs     = 255
	ethernetMTU = 1500
)

// groupAux is what cross-checks need to know about a [[vrrp]] table
// beyond the Group itself.
type groupAux struct {
	t      *table
	prio   *table // priorities; nil when absent
	vipPos []pos  // parallel to Group.VIPs
	tracks []*table
}

func (p *parser) site(root *table) *Site {
	s := &Site{ControlSocket: DefaultControlSocket, Metrics: DefaultMetrics, StateDir: DefaultStateDir, PairPort: DefaultPairPort}
	p.siteTable(root, s)

	nodeT := root.tables("node")
	for _, t := range nodeT {
		s.Nodes = append(s.Nodes, p.node(t))
	}
	checkT := root.tables("check")
	for _, t := range checkT {
		s.Checks = append(s.Checks, p.check(t, true))
	}
	vsT := root.tables("virtual_server")
	s.VirtualServers = p.virtualServers(vsT)
	var groups []groupAux
	for _, t := range root.tables("vrrp") {
		g, aux := p.group(t)
		s.Groups = append(s.Groups, g)
		groups = append(groups, aux)
	}
	if t := root.sub("sync"); t != nil {
		s.Sync = p.sync(t)
	}
	root.finish()

	p.crossNodes(root, s, nodeT)
	if st := root.sub("site"); st != nil && len(s.Nodes) > 1 && s.PairKey == "" {
		st.tableWarnf("no pair_key: the pair link between the directors is not authenticated, so it only observes " +
			"(no takeover in milliseconds when the master's daemon dies, no mirrored drains, drills refuse without --force); " +
			"write a key with havip keygen FILE, copy it to both directors and name it in pair_key")
	}
	p.crossSources(s, nodeT)
	vips := p.crossGroups(s, groups, nodeT)
	p.unique("check name", checkT, "name", func(i int) string { return s.Checks[i].Name })
	p.crossVirtualServers(s, vsT, vips)
	p.scriptsDone()
	return s
}

func (p *parser) siteTable(root *table, s *Site) {
	t := root.sub("site")
	if t == nil {
		if !root.has("site") {
			p.errorf(root.at, "a [site] table with a name is required")
		}
		return
	}
	s.Name = p.name(t)
	if v, ok := t.str("control_socket"); ok {
		p.absPath(t, "control_socket", v)
		s.ControlSocket = v
	}
	if v, ok := t.str("metrics"); ok {
		if v != "" {
			if err := checkHostPort(v, false); err != nil {
				t.errorf("metrics", "%q: %v (write host:port, or \"\" to disable)", v, err)
			}
		}
		s.Metrics = v
	}
	if v, ok := t.str("state_dir"); ok {
		p.absPath(t, "state_dir", v)
		s.StateDir = v
	}
	if v, ok := t.intIn("pair_port", 1, 65535); ok {
		s.PairPort = uint16(v)
	}
	if v, ok := t.str("pair_key"); ok {
		p.absPath(t, "pair_key", v)
		s.PairKey = v
	}
	p.scriptKeys(t, s)
	if p.onHost {
		p.checkHost(t, s)
	}
	t.finish()
}

func (p *parser) node(t *table) Node {
	n := Node{Name: p.name(t), Priority: DefaultNodePriority}
	t.require("address")
	if v, ok := t.str("address"); ok {
		if a, ok := p.addr(t, "address", v); ok {
			if a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() {
				t.errorf("address", "%s is not a director's unicast address", a)
			}
			n.Address = a
		}
	}
	if v, ok := t.str("link_local"); ok {
		if a, ok := p.addr(t, "link_local", v); ok {
			if !linkLocals.Contains(a) {
				t.errorf("link_local", "%s is not an IPv6 link-local address (fe80::/10)", a)
			} else {
				n.LinkLocal = a
			}
		}
	}
	// 255 is checked per group, where address ownership is known.
	if v, ok := t.intIn("priority", 1, 255); ok {
		n.Priority = uint8(v)
	}
	t.finish()
	return n
}

func (p *parser) group(t *table) (Group, groupAux) {
	g := Group{
		Advert:        time.Second,
		Version:       3,
		Preempt:       true,
		NotifyTimeout: 10 * time.Second,
		GARPCount:     5,
		GARPInterval:  100 * time.Millisecond,
		GARPRefresh:   10 * time.Second,
		VIPLifetime:   5 * time.Second,
	}
	aux := groupAux{t: t}
	g.Name = p.name(t)
	t.require("interface")
	if v, ok := t.str("interface"); ok {
		p.ifname(t, "interface", v)
		g.Interface = v
	}
	t.require("vrid")
	if v, ok := t.intIn("vrid", 1, 255); ok {
		g.VRID = uint8(v)
	}
	versionOK := true
	if v, ok := t.integer("version"); ok {
		if v != 2 && v != 3 {
			t.errorf("version", "%d is not a VRRP version havip speaks (2 or 3)", v)
			versionOK = false
		}
		g.Version = int(v)
	}
	advertOK := true
	if v, ok := t.duration("advert"); ok {
		g.Advert = v
	} else {
		advertOK = !t.has("advert")
	}
	if versionOK && advertOK {
		if err := checkAdvert(g.Version, g.Advert); err != nil {
			t.errorf("advert", "%v", err)
			advertOK = false
		}
	}
	if v, ok := t.boolean("unicast"); ok {
		g.Unicast = v
	}
	if v, ok := t.boolean("accept_unknown_sources"); ok {
		g.AcceptUnknownSources = v
		if v {
			t.warnf("accept_unknown_sources", "adverts from any host on the segment are acted upon: one advert of priority 255 from anyone takes the VIPs from the master")
		}
	}
	if v, ok := t.boolean("preempt"); ok {
		g.Preempt = v
	}
	if v, ok := t.durationUpTo("preempt_delay", time.Hour); ok {
		g.PreemptDelay = v
		if !g.Preempt && v > 0 {
			t.warnf("preempt_delay", "has no effect with preempt = false")
		}
	}
	if v, ok := t.boolean("accept"); ok {
		g.Accept = v
	}

	t.require("vips")
	if vips, ok := t.array("vips"); ok {
		switch {
		case len(vips) == 0:
			t.errorf("vips", "a group needs at least one VIP")
		case len(vips) > maxVIPs:
			// Once for the list, not once for each VIP past the limit.
			t.errorf("vips", "%d VIPs are more than the %d one advert carries; split them across groups", len(vips), maxVIPs)
		}
		p.vips(t, &g, &aux, vips, versionOK)
		if n := g.AdvertSize(); len(vips) <= maxVIPs && n > ethernetMTU {
			t.errorf("vips", "an advert carrying %d %s VIPs is %d bytes, more than the %d-byte Ethernet MTU; split them across groups",
				len(g.VIPs), ipVersion(g.VIPs[0].Addr()), n, ethernetMTU)
		}
	}

	if pt := t.sub("priorities"); pt != nil {
		aux.prio = pt
		g.Priorities = map[string]uint8{}
		for _, k := range pt.keys() {
			if v, ok := pt.intIn(k, 1, 255); ok {
				g.Priorities[k] = uint8(v)
			}
		}
	}
	if v, ok := t.stringList("notify"); ok {
		if len(v) == 0 || v[0] == "" {
			t.errorf("notify", "must name a program: an argv array like [\"/etc/havip/notify\"]")
		} else {
			g.NotifyAs = p.script(t, "notify", v[0])
		}
		g.Notify = v
	}
	if v, ok := t.durationUpTo("notify_timeout", 5*time.Minute); ok {
		if v == 0 {
			t.errorf("notify_timeout", "must be greater than 0")
		}
		g.NotifyTimeout = v
	}
	if v, ok := t.intIn("garp_count", 0, 100); ok {
		g.GARPCount = int(v)
	}
	if v, ok := t.durationIn("garp_interval", 10*time.Millisecond, 10*time.Second); ok {
		g.GARPInterval = v
	}
	if v, ok := t.duration("garp_refresh"); ok {
		if v != 0 && (v < time.Second || v > 24*time.Hour) {
			t.errorf("garp_refresh", "%s is out of range: \"0s\" (off) or 1s..24h", short(v))
		}
		g.GARPRefresh = v
	}
	if v, ok := t.durationUpTo("vip_lifetime", 24*time.Hour); ok {
		g.VIPLifetime = v
		if v < 2*time.Second {
			t.errorf("vip_lifetime", "%s is too short: it must be at least 2s", v)
		} else if advertOK && v <= 2*g.Advert {
			t.errorf("vip_lifetime", "%s must be longer than two advert intervals (%s)", v, 2*g.Advert)
		}
	} else if !t.has("vip_lifetime") && advertOK && g.VIPLifetime <= 2*g.Advert {
		t.errorf("advert", "advert %s needs vip_lifetime longer than %s (the default is %s)", g.Advert, 2*g.Advert, g.VIPLifetime)
	}

	if v, ok := t.str("sync_group"); ok {
		if v == "" {
			t.errorf("sync_group", "must not be empty: name the sync group, or leave the key out")
		}
		g.SyncGroup = v
	}

	for _, tt := range t.tables("track") {
		g.Track = append(g.Track, p.track(tt))
		aux.tracks = append(aux.tracks, tt)
	}
	t.finish()
	return g, aux
}

// vips reads the group's VIPs, checking each and that none is listed twice.
func (p *parser) vips(t *table, g *Group, aux *groupAux, vips []any, versionOK bool) {
	seen := make(map[netip.Addr]int, len(vips)) // address -> index in g.VIPs
	for i, e := range vips {
		v, ok := e.(string)
		if !ok {
			t.elemErrorf("vips", i, "expected a string, got %s", typeName(e))
			continue
		}
		pre, err := parseVIP(v)
		if err != nil {
			t.elemErrorf("vips", i, "%v", err)
			continue
		}
		if j, dup := seen[pre.Addr()]; dup {
			t.elemErrorf("vips", i, "VIP %s is listed twice (also at line %d)", pre.Addr(), aux.vipPos[j].line)
			continue
		}
		seen[pre.Addr()] = len(g.VIPs)
		switch {
		case pre.Addr().Is6() && versionOK && g.Version == 2:
			t.elemErrorf("vips", i, "IPv6 VIP %s needs version = 3 (VRRPv2 is IPv4 only)", pre)
		case len(g.VIPs) > 0 && pre.Addr().Is4() != g.VIPs[0].Addr().Is4():
			t.elemErrorf("vips", i, "VIP %s mixes address families with %s; put IPv4 and IPv6 VIPs in separate groups", pre, g.VIPs[0])
		}
		g.VIPs = append(g.VIPs, pre)
		aux.vipPos = append(aux.vipPos, t.elemPos("vips", i))
	}
}

// checkAdvert reports whether the advert interval fits the version's field:
// v3 carries centiseconds in 12 bits, v2 whole seconds in 8.
func checkAdvert(version int, d time.Duration) error {
	if version == 2 {
		if d%time.Second != 0 || d < time.Second || d > 255*time.Second {
			return fmt.Errorf("%s cannot be carried by VRRPv2: it needs whole seconds in 1s..255s", d)
		}
		return nil
	}
	if d%(10*time.Millisecond) != 0 || d < 10*time.Millisecond || d > 4095*10*time.Millisecond {
		return fmt.Errorf("%s cannot be carried by VRRPv3: it needs a multiple of 10ms in 10ms..40.95s", d)
	}
	return nil
}

func parseVIP(v string) (netip.Prefix, error) {
	pre, err := netip.ParsePrefix(v)
	if err != nil {
		if a, aerr := netip.ParseAddr(v); aerr == nil {
			return netip.Prefix{}, fmt.Errorf("VIP %q is not a prefix: write %s/%d, or the prefix length of the interface's subnet", v, a, a.BitLen())
		}
		return netip.Prefix{}, fmt.Errorf("VIP %q is not an IP prefix like 192.168.0.210/24", v)
	}
	if why := unusableVIP(pre); why != "" {
		return netip.Prefix{}, fmt.Errorf("VIP %s %s", pre, why)
	}
	return pre, nil
}

// unusableVIP says why pre cannot be a VIP a client reaches, or "".
func unusableVIP(pre netip.Prefix) string {
	a := pre.Addr()
	switch {
	case a.Is4In6():
		return fmt.Sprintf("is an IPv4-mapped IPv6 address; write %s in an IPv4 group", a.Unmap())
	case a.IsUnspecified():
		return "is the unspecified address"
	case a.IsLoopback():
		return "is a loopback address"
	case a.IsMulticast():
		return "is a multicast address"
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "is the broadcast address"
	case pre.Bits() == 0:
		return "has prefix length /0, which would put every address on the interface's link; write the subnet's length"
	case a.Is4() && pre.Bits() <= 30: // /31 and /32 have no network or broadcast address (RFC 3021)
		subnet := pre.Masked()
		if a == subnet.Addr() {
			return fmt.Sprintf("is the network address of %s", subnet)
		}
		if a == lastAddr(subnet) {
			return fmt.Sprintf("is the broadcast address of %s", subnet)
		}
	}
	return ""
}

// lastAddr is the highest address of an IPv4 prefix: its broadcast address.
func lastAddr(pre netip.Prefix) netip.Addr {
	b := pre.Addr().As4()
	n := binary.BigEndian.Uint32(b[:]) | (1<<(32-pre.Bits()) - 1)
	binary.BigEndian.PutUint32(b[:], n)
	return netip.AddrFrom4(b)
}

func (p *parser) track(t *table) Track {
	var tr Track
	set := 0
	for _, k := range []string{"interface", "virtual_server", "check"} {
		if t.has(k) {
			set++
		}
	}
	switch {
	case set == 0:
		t.tableErrorf("a track needs one of interface, virtual_server or check")
	case set > 1:
		t.tableErrorf("a track takes only one of interface, virtual_server or check")
	}
	if v, ok := t.str("interface"); ok {
		p.ifname(t, "interface", v)
		tr.Interface = v
	}
	if v, ok := t.str("virtual_server"); ok {
		tr.VirtualServer = v
	}
	if v, ok := t.str("check"); ok {
		tr.Check = v
	}
	if v, ok := t.intIn("weight", -254, 254); ok {
		tr.Weight = int(v)
	}
	t.finish()
	return tr
}

// virtualServers builds the virtual servers of ts, nil for none. Each is
// built on its own (the checks across them come later), so a large site
// is built by a few workers at once (issue 8): each with its own copy of
// the parser, whose problems are merged in order, as one would have
// reported them.
func (p *parser) virtualServers(ts []*table) []VirtualServer {
	if len(ts) == 0 {
		return nil
	}
	out := make([]VirtualServer, len(ts))
	workers := min(runtime.GOMAXPROCS(0), 4, len(ts)/500)
	if workers < 2 || p.tracer != nil {
		for i, t := range ts {
			out[i] = p.virtualServer(t)
		}
		return out
	}
	ws := make([]*parser, workers)
	var wg sync.WaitGroup
	for k := range ws {
		w := *p
		w.probs, w.scripts.refusals = nil, nil
		ws[k] = &w
		lo, hi := k*len(ts)/workers, (k+1)*len(ts)/workers
		wg.Go(func() {
			for i := lo; i < hi; i++ {
				ts[i].p = &w
				out[i] = w.virtualServer(ts[i])
				ts[i].p = p
			}
		})
	}
	wg.Wait()
	for _, w := range ws {
		p.probs = append(p.probs, w.probs...)
		p.scripts.seen = p.scripts.seen || w.scripts.seen
	}
	return out
}

func (p *parser) virtualServer(t *table) VirtualServer {
	vs := VirtualServer{Protocol: "tcp", Scheduler: "wlc", Forward: "dr", OnFailure: "remove"}
	vs.Name = p.name(t)
	switch hasAddr, hasMark := t.has("address"), t.has("fwmark"); {
	case hasAddr && hasMark:
		t.errorf("fwmark", "a virtual server takes either address or fwmark, not both")
	case !hasAddr && !hasMark:
		t.tableErrorf("a virtual server needs address (ip:port) or fwmark")
	}
	if v, ok := t.str("address"); ok {
		vs.Address, _ = p.addrPort(t, "address", v)
	}
	if v, ok := t.intIn("fwmark", 1, math.MaxUint32); ok {
		vs.FWMark = uint32(v)
	}
	if vs.Address.IsValid() {
		vs.Family = family(vs.Address.Addr())
	}
	if v, ok := p.enum(t, "family", families); ok {
		if vs.Family != "" && v != vs.Family {
			t.errorf("family", "%s does not match address %s", v, vs.Address)
		}
		vs.Family = v
	}
	if vs.Family == "" {
		vs.Family = "inet"
	}
	if v, ok := p.enum(t, "protocol", protocols); ok {
		vs.Protocol = v
	}
	if v, ok := p.enum(t, "scheduler", schedulers); ok {
		vs.Scheduler = v
	}
	if v, ok := t.stringList("scheduler_flags"); ok {
		for i, f := range v {
			switch sched, known := schedFlags[f]; {
			case !known:
				t.elemErrorf("scheduler_flags", i, "unknown scheduler flag %q (one of sh-fallback, sh-port, mh-fallback, mh-port)", f)
			case sched != vs.Scheduler:
				t.elemErrorf("scheduler_flags", i, "flag %s needs scheduler = %q", f, sched)
			}
		}
		vs.SchedFlags = v
	}
	if v, ok := p.enum(t, "forward", forwards); ok {
		vs.Forward = v
	}
	if v, ok := t.durationUpTo("persistence", maxPersistence); ok {
		if v%time.Second != 0 {
			t.errorf("persistence", "%s: IPVS persistence is in whole seconds", v)
		}
		vs.Persistence = v
	}
	vs.PersistenceNetmask = netip.PrefixFrom(unspecified(vs.Family), unspecified(vs.Family).BitLen())
	if v, ok := t.str("persistence_netmask"); ok {
		if m, err := parseNetmask(v, vs.Family); err != nil {
			t.errorf("persistence_netmask", "%v", err)
		} else {
			vs.PersistenceNetmask = m
		}
		if vs.Persistence == 0 {
			t.warnf("persistence_netmask", "has no effect without persistence")
		}
	}
	quorum, quorumSet := t.intIn("quorum", 0, math.MaxInt32)
	hysteresis, hysteresisSet := t.intIn("quorum_hysteresis", 0, math.MaxInt32)
	if v, ok := t.str("sorry_server"); ok && v != "" {
		if ap, ok := p.addrPort(t, "sorry_server", v); ok {
			if family(ap.Addr()) != vs.Family {
				t.errorf("sorry_server", "%s is not in the virtual server's family (%s)", ap, vs.Family)
			}
			vs.SorryServer = ap
		}
	}
	if v, ok := p.enum(t, "on_failure", onFailures); ok {
		vs.OnFailure = v
	}
	if ct := t.sub("check"); ct != nil {
		vs.Check = p.check(ct, false)
	} else {
		vs.Check = defaultCheck()
	}

	rsT := t.tables("real_server")
	vs.RealServers = make([]RealServer, 0, len(rsT))
	for _, rt := range rsT {
		vs.RealServers = append(vs.RealServers, p.realServer(rt))
	}
	p.checkRealServers(&vs, rsT)
	if len(vs.RealServers) == 0 && !t.has("real_server") {
		t.p.warnf(t.at, "%s: no real servers", t.name())
	}
	if quorumSet {
		if int(quorum) > len(vs.RealServers) {
			t.errorf("quorum", "%d is more than the %d real servers", quorum, len(vs.RealServers))
		}
		vs.Quorum = int(quorum)
	} else {
		vs.Quorum = min(1, len(vs.RealServers))
	}
	if hysteresisSet {
		vs.QuorumHysteresis = int(hysteresis)
		switch {
		case hysteresis > 0 && vs.Quorum == 0:
			t.warnf("quorum_hysteresis", "has no effect with quorum = 0")
		case vs.Quorum+vs.QuorumHysteresis > len(vs.RealServers) && vs.Quorum <= len(vs.RealServers):
			t.errorf("quorum_hysteresis", "quorum %d + quorum_hysteresis %d is more than the %d real servers: a lost quorum would never come back",
				vs.Quorum, hysteresis, len(vs.RealServers))
		}
	}
	t.finish()
	return vs
}

// checkRealServers checks real servers against their virtual server and
// each other.
func (p *parser) checkRealServers(vs *VirtualServer, rsT []*table) {
	seen := map[netip.AddrPort]int{}
	for i, rs := range vs.RealServers {
		t := rsT[i]
		if !rs.Address.IsValid() {
			continue
		}
		if j, dup := seen[rs.Address]; dup {
			t.errorf("address", "real server %s is listed twice (also at line %d)", rs.Address, rsT[j].pos("address").line)
			continue
		}
		seen[rs.Address] = i
		fwd := cmp.Or(rs.Forward, vs.Forward)
		if family(rs.Address.Addr()) != vs.Family {
			// IPVS can tunnel across families, but moby/ipvs never sends
			// the destination's family: the kernel would read the address
			// as one of the service's family.
			t.errorf("address", "%s is not in the virtual server's family (%s); not even forward = \"tun\" can cross families, because moby/ipvs never sends the destination's family", rs.Address, vs.Family)
		}
		if vs.Address.IsValid() && fwd != "nat" && rs.Address.Port() != vs.Address.Port() {
			t.warnf("address", "forward = %q cannot change the port: packets arrive at port %d, not %d", fwd, vs.Address.Port(), rs.Address.Port())
		}
	}
}

func (p *parser) realServer(t *table) RealServer {
	rs := RealServer{Weight: 1}
	t.require("address")
	if v, ok := t.str("address"); ok {
		rs.Address, _ = p.addrPort(t, "address", v)
	}
	if v, ok := t.intIn("weight", 0, 65535); ok {
		rs.Weight = int(v)
	}
	if v, ok := p.enum(t, "forward", forwards); ok {
		rs.Forward = v
	}
	t.finish()
	return rs
}

func defaultCheck() Check {
	return Check{Type: "tcp", Interval: 2 * time.Second, Timeout: time.Second, Rise: 2, Fall: 3}
}

// checkKeysFor says which check types use the type-specific keys.
var checkKeysFor = []struct {
	key   string
	types []string
}{
	{"path", httpTypes},
	{"host", httpTypes},
	{"expect_status", httpTypes},
	{"method", httpTypes},
	{"headers", httpTypes},
	{"expect_body", httpTypes},
	{"expect_body_regex", httpTypes},
	{"tls_verify", []string{"https"}},
	{"tls_ca", []string{"https"}},
	{"tls_server_name", []string{"https"}},
	{"command", []string{"exec"}},
	{"query", []string{"dns"}},
	{"query_type", []string{"dns"}},
	{"expect_answer", []string{"dns"}},
	{"helo_name", []string{"smtp"}},
	{"send", []string{"udp"}},
	{"expect", []string{"udp"}},
	{"port", []string{"tcp", "http", "https", "udp", "dns", "smtp", "exec"}},
}

var httpTypes = []string{"http", "https"}

// check builds a top-level [[check]] (named, with a target) or a virtual
// server's [virtual_server.check] (probing each real server).
func (p *parser) check(t *table, topLevel bool) Check {
	c := defaultCheck()
	if topLevel {
		c.Name = p.name(t)
	} else {
		p.notHere(t, "name", "only a top-level [[check]] has a name")
		p.notHere(t, "target", "a virtual server's check probes each real server; use port to probe another port")
	}
	if v, ok := p.enum(t, "type", checkTypes); ok {
		c.Type = v
	}
	if v, ok := p.enum(t, "start", []string{"up", "down"}); ok {
		c.StartDown = v == "down"
	}
	if topLevel {
		p.notHere(t, "port", "write the port in target (host:port)")
		if v, ok := t.str("target"); ok {
			if c.Type == "ping" {
				if err := checkPingTarget(v); err != nil {
					t.errorf("target", "%q: %v", v, err)
				}
			} else if err := checkHostPort(v, c.Type == "http" || c.Type == "https"); err != nil {
				t.errorf("target", "%q: %v (write host:port)", v, err)
			}
			c.Target = v
		} else if !t.has("target") && c.Type == "ping" {
			t.tableErrorf("type ping needs target (an address or host name)")
		} else if !t.has("target") && c.Type != "exec" && c.Type != "none" {
			t.tableErrorf("type %s needs target (host:port)", c.Type)
		}
	} else if v, ok := t.intIn("port", 1, 65535); ok {
		c.Port = uint16(v)
	}
	if v, ok := t.str("path"); ok {
		switch {
		case !strings.HasPrefix(v, "/"):
			t.errorf("path", "%q must start with /", v)
		case strings.ContainsFunc(v, isSpaceOrControl):
			t.errorf("path", "%q contains a space or control character; percent-encode it (a space is %%20)", v)
		}
		c.Path = v
	}
	if v, ok := t.str("host"); ok {
		if v == "" || strings.ContainsFunc(v, isSpaceOrControl) {
			t.errorf("host", "%q is not a Host header value", v)
		}
		c.Host = v
	}
	p.httpKeys(t, &c)
	interval, intervalOK := t.durationIn("interval", 100*time.Millisecond, time.Hour)
	if intervalOK {
		c.Interval = interval
	}
	timeout, timeoutOK := t.duration("timeout")
	if timeoutOK {
		c.Timeout = timeout
	}
	timingOK := (intervalOK || !t.has("interval")) && (timeoutOK || !t.has("timeout"))
	switch {
	case !timingOK:
	case c.Timeout <= 0:
		t.errorf("timeout", "must be greater than 0")
	case c.Timeout < 10*time.Millisecond:
		t.errorf("timeout", "%s is too short: it must be at least 10ms", c.Timeout)
	case c.Interval <= c.Timeout:
		key := "interval"
		if !t.has(key) {
			key = "timeout"
		}
		t.errorf(key, "interval (%s) must be longer than timeout (%s)", c.Interval, c.Timeout)
	}
	if v, ok := t.intIn("rise", 1, 1000); ok {
		c.Rise = int(v)
	}
	if v, ok := t.intIn("fall", 1, 1000); ok {
		c.Fall = int(v)
	}
	if v, ok := t.stringList("command"); ok {
		c.Command = v
		switch {
		case c.Type != "exec":
		case len(v) == 0 || v[0] == "":
			t.errorf("command", "must name a program: an argv array like [\"/usr/local/bin/probe\", \"arg\"]")
		default:
			c.RunAs = p.script(t, "command", v[0])
		}
	}
	p.dnsKeys(t, &c)
	if v, ok := t.str("helo_name"); ok {
		if !isDomainName(v) {
			t.errorf("helo_name", "%q is not a host name", v)
		}
		c.HeloName = v
	}
	if v, ok := t.str("send"); ok {
		c.Send = v
	}
	if v, ok := t.str("expect"); ok {
		c.Expect = v
	}

	switch c.Type {
	case "http", "https":
		c.Path = cmp.Or(c.Path, "/")
		c.Method = cmp.Or(c.Method, "GET")
		if c.ExpectStatus == nil {
			c.ExpectStatus = []StatusRange{{200, 200}}
		}
		if c.Method == "HEAD" && (c.ExpectBody != "" || c.ExpectBodyRegex != "") {
			key := "expect_body"
			if !t.has(key) {
				key = "expect_body_regex"
			}
			t.errorf(key, "method HEAD reads no body, so there is none to match")
		}
	case "exec":
		if !t.has("command") {
			t.tableErrorf("type exec needs command (an argv array)")
		}
	case "dns":
		if !t.has("query") {
			t.tableErrorf("type dns needs query (the name to resolve)")
		}
		c.QueryType = cmp.Or(c.QueryType, "A")
		if c.ExpectAnswer != "" {
			if err := checkAnswer(c.QueryType, c.ExpectAnswer); err != nil {
				t.errorf("expect_answer", "%q: %v", c.ExpectAnswer, err)
			}
		}
	case "smtp":
		if c.HeloName == "" {
			c.HeloName = defaultHeloName()
		}
	}
	if c.Type != "none" {
		for _, k := range checkKeysFor {
			if topLevel && k.key == "port" {
				continue // refused above
			}
			if t.has(k.key) && !slices.Contains(k.types, c.Type) {
				t.warnf(k.key, "ignored for type %s", c.Type)
			}
		}
	}
	t.finish()
	return c
}

func (p *parser) sync(t *table) *Sync {
	sy := &Sync{Group: netip.MustParseAddr(DefaultSyncGroup), Port: DefaultSyncPort, TTL: 1,
		MaxLen: DefaultSyncMaxLen, Version: DefaultSyncVersion, Threshold: DefaultSyncThreshold,
		Period: DefaultSyncPeriod, RefreshPeriod: DefaultSyncRefreshPeriod, Flush: DefaultSyncFlush}
	t.require("interface")
	if v, ok := t.str("interface"); ok {
		p.ifname(t, "interface", v)
		sy.Interface = v
	}
	if v, ok := t.intIn("sync_id", 0, 255); ok {
		sy.SyncID = uint8(v)
	}
	if v, ok := t.str("group"); ok {
		if a, ok := p.addr(t, "group", v); ok {
			if !a.IsMulticast() {
				t.errorf("group", "%s is not a multicast address", a)
			}
			sy.Group = a
		}
	}
	if v, ok := t.intIn("port", 1, 65535); ok {
		sy.Port = uint16(v)
	}
	if v, ok := t.intIn("ttl", 1, 255); ok {
		sy.TTL = uint8(v)
	}
	if v, ok := t.intIn("maxlen", 0, 65535); ok {
		sy.MaxLen = int(v)
	}
	if v, ok := t.intIn("sync_version", 0, 1); ok {
		sy.Version = int(v)
	}
	if v, ok := t.ints("sync_threshold"); ok {
		switch {
		case len(v) != 2:
			t.errorf("sync_threshold", "want [threshold, period], two integers, got %d", len(v))
		case v[0] < 0 || v[1] < 0 || v[0] > 1<<20 || v[1] > 1<<20:
			t.errorf("sync_threshold", "%v: both must be 0..%d", v, 1<<20)
		case v[1] != 0 && v[0] >= v[1]:
			t.errorf("sync_threshold", "%v: the threshold must be below the period (the kernel refuses it)", v)
		default:
			sy.Threshold, sy.Period = int(v[0]), int(v[1])
		}
	}
	if v, ok := t.duration("sync_refresh_period"); ok {
		if v%time.Second != 0 {
			t.errorf("sync_refresh_period", "%s: the kernel counts it in whole seconds", short(v))
		} else {
			sy.RefreshPeriod = v
		}
	}
	if v, ok := t.intIn("sync_retries", 0, 3); ok {
		sy.Retries = int(v)
	}
	if v, ok := t.durationUpTo("flush", 10*time.Second); ok {
		if v != 0 && v < time.Millisecond {
			t.errorf("flush", "%s is too short: at least 1ms, or 0 for never", short(v))
		} else {
			sy.Flush = v
		}
	}
	if sy.Period == 0 && sy.RefreshPeriod == 0 {
		t.warnf("sync_threshold", "period 0 and sync_refresh_period 0: the kernel syncs each connection once, at its %d. packet, and never again", sy.Threshold)
	}
	t.finish()
	return sy
}

// name reads the required, non-empty name key.
func (p *parser) name(t *table) string {
	t.require("name")
	v, ok := t.str("name")
	if ok && v == "" {
		t.errorf("name", "must not be empty")
	}
	return v
}

// notHere accepts key only to say it does not belong in this table.
func (p *parser) notHere(t *table, key, why string) {
	t.setKnown(key)
	if t.has(key) {
		t.errorf(key, "%s", why)
	}
}

func (p *parser) enum(t *table, key string, allowed []string) (string, bool) {
	v, ok := t.str(key)
	if ok && !slices.Contains(allowed, v) {
		t.errorf(key, "%q is not one of %s", v, strings.Join(allowed, ", "))
		return "", false
	}
	return v, ok
}

func (p *parser) absPath(t *table, key, v string) {
	if !filepath.IsAbs(v) {
		t.errorf(key, "%q must be an absolute path", v)
	}
}

// ifname checks an interface name the way the kernel would (dev_valid_name).
func (p *parser) ifname(t *table, key, v string) {
	switch {
	case v == "":
		t.errorf(key, "must not be empty")
	case len(v) > 15:
		t.errorf(key, "%q is longer than the kernel's 15-byte limit", v)
	case v == "." || v == ".." || strings.ContainsAny(v, "/: \t\n"):
		t.errorf(key, "%q is not a valid interface name", v)
	}
}

func (p *parser) addr(t *table, key, v string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(v)
	switch {
	case err == nil && a.Zone() != "":
		t.errorf(key, "%q: a zone is not allowed here", v)
	case err == nil && a.Is4In6():
		t.errorf(key, "%q is an IPv4-mapped IPv6 address; write %s", v, a.Unmap())
	case err == nil:
		return a, true
	default:
		if _, perr := netip.ParsePrefix(v); perr == nil {
			t.errorf(key, "%q is a prefix; write the address alone", v)
		} else {
			t.errorf(key, "%q is not an IP address", v)
		}
	}
	return netip.Addr{}, false
}

func (p *parser) addrPort(t *table, key, v string) (netip.AddrPort, bool) {
	ap, err := netip.ParseAddrPort(v)
	if err != nil {
		if a, aerr := netip.ParseAddr(v); aerr == nil {
			t.errorf(key, "%q needs a port: write %s", v, netip.AddrPortFrom(a, 80))
		} else {
			t.errorf(key, "%q is not ip:port (IPv6: [2001:db8::1]:80)", v)
		}
		return netip.AddrPort{}, false
	}
	if ap.Addr().Zone() != "" {
		t.errorf(key, "%q: a zone is not allowed here", v)
		return netip.AddrPort{}, false
	}
	if a := ap.Addr(); a.Is4In6() {
		t.errorf(key, "%q is an IPv4-mapped IPv6 address; write %s", v, netip.AddrPortFrom(a.Unmap(), ap.Port()))
		return netip.AddrPort{}, false
	}
	return ap, true
}

// checkHostPort accepts host:port, and a bare host when portOptional.
func checkHostPort(v string, portOptional bool) error {
	if strings.Contains(v, "://") {
		return fmt.Errorf("a URL is not a host:port")
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		if portOptional && v != "" && !strings.ContainsAny(v, " /") {
			return nil
		}
		return fmt.Errorf("not host:port")
	}
	if strings.ContainsAny(host, " /") {
		return fmt.Errorf("invalid host %q", host)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("invalid port %q", port)
	}
	return nil
}

// parseNetmask accepts "/24" or, for IPv4, "255.255.255.0", and returns
// the mask as a prefix of the family's unspecified address.
func parseNetmask(v, fam string) (netip.Prefix, error) {
	zero := unspecified(fam)
	if bits, ok := strings.CutPrefix(v, "/"); ok {
		n, err := strconv.Atoi(bits)
		if err != nil || n < 1 || n > zero.BitLen() {
			return netip.Prefix{}, fmt.Errorf("%q is not a prefix length /1../%d", v, zero.BitLen())
		}
		return netip.PrefixFrom(zero, n), nil
	}
	a, err := netip.ParseAddr(v)
	if err != nil || !a.Is4() || fam != "inet" {
		return netip.Prefix{}, fmt.Errorf("%q is not a netmask: write /24 style, or 255.255.255.0 style for IPv4", v)
	}
	b := a.As4()
	ones, _ := net.IPMask(b[:]).Size()
	switch {
	case a == zero:
		return netip.Prefix{}, fmt.Errorf("%q is a /0 mask; write one of /1../32", v)
	case ones == 0:
		return netip.Prefix{}, fmt.Errorf("%q is not a contiguous netmask", v)
	}
	return netip.PrefixFrom(zero, ones), nil
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "inet"
	}
	return "inet6"
}

func unspecified(fam string) netip.Addr {
	if fam == "inet6" {
		return netip.IPv6Unspecified()
	}
	return netip.IPv4Unspecified()
}

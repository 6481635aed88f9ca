package importka

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/havip/havip/internal/siteout"
)

// vsConv is one converted virtual server and where it came from.
type vsConv struct {
	st *Stmt
	vs siteout.VirtualServer
}

// vsDefaults are what a virtual_server passes down to its real servers
// and their checkers.
// checkTiming reads delay_loop, connect_timeout and retry (nb_get_retry)
// into def: a virtual server's defaults for its real servers, or a real
// server's own.
func (c *conv) checkTiming(d *Stmt, def *vsDefaults) {
	switch d.Key() {
	case "delay_loop":
		if v, ok := c.timerArg(d, 0); ok {
			def.delayLoop = v
		}
	case "connect_timeout":
		if v, ok := c.timerArg(d, 0); ok {
			def.connectTimeout = v
		}
	case "retry", "nb_get_retry":
		def.retry, def.retrySet = c.intArg(d, 0, 0, 999)
	}
}

type vsDefaults struct {
	delayLoop, connectTimeout time.Duration
	retry                     int
	retrySet                  bool
	virtualhost               string
	alpha                     bool
	inhibit                   bool
}

// member is one service of a virtual_server: an address and port, or a
// fwmark.
type member struct {
	addr   netip.AddrPort
	fwmark uint32
	family string // fwmark only
}

// virtualServer converts a virtual_server block: one [[virtual_server]],
// or one per member of its virtual_server_group.
func (c *conv) virtualServer(f *kaFile, s *Stmt) []vsConv {
	a := s.Args()
	var members []member
	switch {
	case len(a) == 2 && a[0] == "fwmark":
		m, err := strconv.ParseUint(a[1], 10, 32)
		if err != nil || m == 0 {
			c.add(s, false, "virtual_server fwmark %s: not a mark; left out", a[1])
			return nil
		}
		members = []member{{fwmark: uint32(m)}}
	case len(a) == 2 && a[0] == "group":
		gs, ok := f.vsGroups[a[1]]
		if !ok {
			c.add(s, false, "virtual_server group %s: no virtual_server_group %s; left out", a[1], a[1])
			return nil
		}
		members = c.groupMembers(gs)
		c.add(s, false, "virtual_server group %s: havip has no virtual server groups; each of its %d members is a [[virtual_server]] of its own (quorum counts per member)", a[1], len(members))
	case len(a) == 1 || len(a) == 2:
		ip, err := netip.ParseAddr(a[0])
		port := 0
		if len(a) == 2 {
			port, err = portOf(a[1], err)
		}
		if err != nil {
			c.add(s, false, "virtual_server %s: not an address and port; left out", strings.Join(a, " "))
			return nil
		}
		members = []member{{addr: netip.AddrPortFrom(ip, uint16(port))}}
	default:
		c.add(s, false, "virtual_server %s: expected IP PORT, fwmark N or group NAME; left out", strings.Join(a, " "))
		return nil
	}
	base := c.vsBody(s)
	var out []vsConv
	for _, m := range members {
		vs := base
		vs.Comment = []string{fmt.Sprintf("from %s:%d virtual_server %s", s.File, s.Line, strings.Join(a, " "))}
		vs.Comment = append(vs.Comment, base.Comment...)
		if m.fwmark != 0 {
			vs.FWMark = m.fwmark
			vs.Family = cmp.Or(m.family, base.Family)
			if vs.Family == "" && len(vs.RealServers) > 0 && strings.HasPrefix(vs.RealServers[0].Address, "[") {
				vs.Family = "inet6"
			}
			vs.Name = siteout.VSName(netip.AddrPort{}, vs.Protocol, m.fwmark, vs.Family)
			if vs.Family == "inet" {
				vs.Family = "" // havip's default
			}
		} else {
			vs.RealServers = withPort(vs.RealServers, m.addr.Port())
			if ap, err := netip.ParseAddrPort(vs.SorryServer); err == nil && ap.Port() == 0 {
				vs.SorryServer = netip.AddrPortFrom(ap.Addr(), m.addr.Port()).String()
			}
			vs.Address = m.addr.String()
			vs.Family = ""
			vs.Name = siteout.VSName(m.addr, vs.Protocol, 0, "")
		}
		out = append(out, vsConv{st: s, vs: vs})
	}
	return out
}

// withPort gives real servers written without a port (port 0) the
// virtual server's, as keepalived does.
func withPort(rss []siteout.RealServer, port uint16) []siteout.RealServer {
	out := slices.Clone(rss)
	for i, rs := range out {
		if ap, err := netip.ParseAddrPort(rs.Address); err == nil && ap.Port() == 0 {
			out[i].Address = netip.AddrPortFrom(ap.Addr(), port).String()
		}
	}
	return out
}

func portOf(v string, err error) (int, error) {
	if err != nil {
		return 0, err
	}
	p, err := strconv.Atoi(v)
	if err != nil || p < 0 || p > 65535 {
		return 0, fmt.Errorf("port %q", v)
	}
	return p, nil
}

// maxRange bounds an address range of a virtual_server_group.
const maxRange = 256

// groupMembers reads a virtual_server_group: IP [PORT], IP-LAST [PORT],
// IP/LEN [PORT], fwmark N [inet|inet6].
func (c *conv) groupMembers(s *Stmt) []member {
	var out []member
	for _, d := range s.Block {
		w := d.Words
		if w[0] == "fwmark" {
			if len(w) < 2 {
				c.add(d, false, "fwmark needs a mark; left out")
				continue
			}
			m, err := strconv.ParseUint(w[1], 10, 32)
			if err != nil || m == 0 {
				c.add(d, false, "fwmark %s: not a mark; left out", w[1])
				continue
			}
			fam := ""
			if len(w) > 2 {
				fam = w[2]
			}
			out = append(out, member{fwmark: uint32(m), family: fam})
			continue
		}
		port := 0
		var err error
		if len(w) > 1 {
			port, err = portOf(w[1], nil)
		}
		addrs, rerr := addrRange(w[0])
		if err != nil || rerr != nil {
			c.add(d, false, "%s: not an address (or a range of at most %d) and port; left out", strings.Join(w, " "), maxRange)
			continue
		}
		for _, ip := range addrs {
			out = append(out, member{addr: netip.AddrPortFrom(ip, uint16(port))})
		}
	}
	return out
}

// addrRange expands A, A-LAST (LAST the last byte or group, or a whole
// address) and A/LEN.
func addrRange(v string) ([]netip.Addr, error) {
	var first, last netip.Addr
	switch {
	case strings.Contains(v, "/"):
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return nil, err
		}
		p = p.Masked()
		if p.Addr().BitLen()-p.Bits() > 8 {
			return nil, fmt.Errorf("%s holds more than %d addresses", v, maxRange)
		}
		first = p.Addr()
		for n := first; p.Contains(n); n = n.Next() {
			last = n
		}
	case strings.Contains(v, "-"):
		lo, hi, _ := strings.Cut(v, "-")
		var err error
		if first, err = netip.ParseAddr(lo); err != nil {
			return nil, err
		}
		if last, err = netip.ParseAddr(hi); err != nil {
			sep := "."
			if first.Is6() {
				sep = ":"
			}
			i := strings.LastIndex(lo, sep)
			if last, err = netip.ParseAddr(lo[:i+1] + hi); err != nil {
				return nil, err
			}
		}
	default:
		a, err := netip.ParseAddr(v)
		return []netip.Addr{a}, err
	}
	var out []netip.Addr
	for a := first; a.IsValid() && a.Compare(last) <= 0; a = a.Next() {
		if len(out) == maxRange {
			return nil, fmt.Errorf("%s holds more than %d addresses", v, maxRange)
		}
		out = append(out, a)
	}
	if len(out) == 0 || first.Is4() != last.Is4() {
		return nil, fmt.Errorf("%s is not a range", v)
	}
	return out, nil
}

// vsBody converts a virtual_server's block, the parts its members share.
func (c *conv) vsBody(s *Stmt) siteout.VirtualServer {
	vs := siteout.VirtualServer{Scheduler: "wlc", Forward: "nat"}
	def := vsDefaults{delayLoop: 60 * time.Second, connectTimeout: 5 * time.Second}
	var quorum, hysteresis *Stmt
	var sorry *Stmt
	var rsStmts []*Stmt
	for _, d := range s.Block {
		a := d.Args()
		switch k := d.Key(); k {
		case "lb_algo", "lvs_sched":
			if len(a) == 1 && isScheduler(strings.ToLower(a[0])) {
				vs.Scheduler = strings.ToLower(a[0])
			} else {
				c.add(d, false, "%s %s: not a scheduler IPVS has (and havip knows); havip's wlc is used", k, strings.Join(a, " "))
			}
		case "lb_kind", "lvs_method":
			if fwd, ok := c.forward(d); ok {
				vs.Forward = fwd
			}
		case "protocol":
			switch p := strings.ToLower(strings.Join(a, "")); p {
			case "tcp":
			case "udp", "sctp":
				vs.Protocol = p
			default:
				c.add(d, false, "protocol %s: havip balances tcp, udp and sctp; tcp is used", strings.Join(a, " "))
			}
		case "persistence_timeout":
			vs.Persistence = 360 * time.Second
			if len(a) > 0 {
				if v, ok := c.intArg(d, 0, 0, 49*24*3600); ok {
					vs.Persistence = time.Duration(v) * time.Second
				}
			}
		case "persistence_granularity":
			if len(a) == 1 {
				if _, err := strconv.Atoi(a[0]); err == nil {
					vs.PersistenceNetmask = "/" + a[0]
				} else {
					vs.PersistenceNetmask = a[0]
				}
			}
		case "persistence_engine":
			c.skip(d, "havip has no IPVS persistence engines")
		case "sh-port", "sh-fallback", "mh-port", "mh-fallback":
			vs.SchedFlags = append(vs.SchedFlags, k)
		case "flag-1", "flag-2", "flag-3":
			// The scheduler may come after the flag: schedFlags resolves it.
			vs.SchedFlags = append(vs.SchedFlags, k)
		case "ops":
			c.skip(d, "havip has no one-packet scheduling")
		case "ha_suspend":
			c.skip(d, "havip programs IPVS on both directors all the time (the backup's table is ready for a failover)")
		case "virtualhost":
			if len(a) > 0 {
				def.virtualhost = a[0]
			}
		case "alpha":
			def.alpha = true
		case "omega":
			c.skip(d, "havip keeps the IPVS table on stop")
		case "quorum":
			quorum = d
		case "hysteresis":
			hysteresis = d
		case "quorum_up", "quorum_down":
			c.skip(d, "havip has no quorum hooks; a [[vrrp.track]] with virtual_server = NAME follows the quorum, and metrics and events report it")
		case "ip_family":
			if len(a) == 1 && (a[0] == "inet" || a[0] == "inet6") {
				vs.Family = a[0]
			}
		case "sorry_server":
			sorry = d
		case "sorry_server_inhibit", "sorry_server_lvs_method":
			c.skip(d, "havip's sorry server takes the virtual server's forwarding")
		case "delay_loop", "connect_timeout", "retry", "nb_get_retry":
			c.checkTiming(d, &def)
		case "delay_before_retry", "warmup":
			c.skip(d, retryWhy)
		case "inhibit_on_failure":
			def.inhibit = true
		case "real_server":
			rsStmts = append(rsStmts, d)
		case "smtp_alert", "snmp_name":
			c.skip(d, "havip has no mail alerts or SNMP; see its metrics and events")
		default:
			c.unknown(d, "virtual_server")
		}
	}
	vs.SchedFlags = c.schedFlags(s, vs.Scheduler, vs.SchedFlags)
	c.realServers(&vs, rsStmts, def)
	if quorum != nil {
		if q, ok := c.intArg(quorum, 0, 0, 1<<30); ok {
			n := c.countOf(quorum, q, "quorum", vs.RealServers)
			vs.Quorum = &n
		}
	}
	if hysteresis != nil {
		if h, ok := c.intArg(hysteresis, 0, 0, 1<<30); ok {
			n := c.countOf(hysteresis, h, "hysteresis", vs.RealServers)
			q := 1
			if vs.Quorum != nil {
				q = *vs.Quorum
			}
			if q+n > len(vs.RealServers) {
				n = max(len(vs.RealServers)-q, 0)
				c.add(hysteresis, false, "hysteresis: quorum + hysteresis would be more than the %d real servers (a lost quorum would never come back); converted to %d", len(vs.RealServers), n)
			}
			vs.QuorumHysteresis = n
		}
	}
	if sorry != nil {
		vs.SorryServer = c.sorryServer(sorry)
	}
	return vs
}

func isScheduler(v string) bool {
	switch v {
	case "rr", "wrr", "lc", "wlc", "sh", "mh", "sed", "nq", "dh", "lblc", "lblcr", "fo", "ovf":
		return true
	}
	return false
}

// schedFlags resolves keepalived's flag-N (whose meaning is the
// scheduler's) and drops flags of another scheduler.
func (c *conv) schedFlags(s *Stmt, sched string, flags []string) []string {
	var out []string
	for _, f := range flags {
		name := f
		if n, ok := strings.CutPrefix(f, "flag-"); ok {
			switch {
			case (sched == "sh" || sched == "mh") && n == "1":
				name = sched + "-fallback"
			case (sched == "sh" || sched == "mh") && n == "2":
				name = sched + "-port"
			default:
				c.add(s, false, "%s means nothing to scheduler %s in havip; left out", f, sched)
				continue
			}
		}
		if !strings.HasPrefix(name, sched+"-") {
			c.add(s, false, "%s needs scheduler %s, not %s; left out", name, strings.Split(name, "-")[0], sched)
			continue
		}
		out = append(out, name)
	}
	return out
}

// forward reads lb_kind / lvs_method.
func (c *conv) forward(s *Stmt) (string, bool) {
	a := s.Args()
	if len(a) == 0 {
		c.add(s, false, "%s needs NAT, DR or TUN", s.Key())
		return "", false
	}
	switch strings.ToUpper(a[0]) {
	case "NAT":
		return "nat", true
	case "DR":
		return "dr", true
	case "TUN":
		if len(a) > 1 && !(len(a) == 3 && a[1] == "type" && a[2] == "ipip") {
			c.add(s, false, "%s: havip tunnels with IPIP only; %s is not kept", s.Key(), strings.Join(a[1:], " "))
		}
		return "tun", true
	}
	c.add(s, false, "%s %s: not NAT, DR or TUN", s.Key(), a[0])
	return "", false
}

// countOf turns keepalived's weight sum (quorum, hysteresis) into
// havip's count of real servers: with equal weights w exactly ceil(v/w);
// otherwise the fewest real servers whose smallest weights reach v.
func (c *conv) countOf(s *Stmt, v int, what string, rss []siteout.RealServer) int {
	if v == 0 {
		return 0
	}
	ws := make([]int, 0, len(rss))
	equal := true
	for _, rs := range rss {
		if rs.Weight > 0 {
			ws = append(ws, rs.Weight)
			equal = equal && rs.Weight == ws[0]
		}
	}
	if len(ws) == 0 {
		return 0
	}
	n := 0
	if equal {
		n = (v + ws[0] - 1) / ws[0]
	} else {
		slices.Sort(ws)
		sum := 0
		for n < len(ws) && sum < v {
			sum += ws[n]
			n++
		}
		c.add(s, false, "%s %d: keepalived sums the weights of live real servers, havip counts them; with unequal weights this is %d real servers (the smallest weights first)", what, v, n)
	}
	if n > len(rss) {
		c.add(s, false, "%s %d is more than the real servers can reach; converted to %d (all of them)", what, v, len(rss))
		n = len(rss)
	}
	if n != v && equal && ws[0] != 1 {
		c.add(s, false, "%s %d with weight %d each: havip counts real servers, so %d", what, v, ws[0], n)
	}
	return n
}

func (c *conv) sorryServer(s *Stmt) string {
	a := s.Args()
	if len(a) == 0 {
		return ""
	}
	ip, err := netip.ParseAddr(a[0])
	port := 0
	if len(a) > 1 {
		port, err = portOf(a[1], err)
	}
	if err != nil {
		c.add(s, false, "sorry_server %s: not an address and port; left out", strings.Join(a, " "))
		return ""
	}
	return netip.AddrPortFrom(ip, uint16(port)).String()
}

// virtualServers puts the MASTER file's virtual servers in the site,
// named uniquely, and notes where the other file's differ.
func (c *conv) virtualServers(s *siteout.Site) {
	seen := map[string]int{}
	byName := map[string]vsConv{}
	for _, v := range c.files[0].vss {
		vs := v.vs
		if n := seen[vs.Name]; n > 0 {
			c.add(v.st, false, "virtual server %s is defined again (the first is kept as %s)", vs.Name, vs.Name)
			seen[vs.Name]++
			vs.Name = fmt.Sprintf("%s-%d", vs.Name, n+1)
		} else {
			seen[vs.Name] = 1
		}
		byName[vs.Name] = vsConv{st: v.st, vs: vs}
		s.VirtualServers = append(s.VirtualServers, vs)
	}
	for _, f := range c.files[1:] {
		for _, v := range f.vss {
			m, ok := byName[v.vs.Name]
			if !ok {
				c.add(v.st, false, "virtual server %s is only in this file, not in %s; added (havip programs it on both directors)", v.vs.Name, c.files[0].path)
				s.VirtualServers = append(s.VirtualServers, v.vs)
				byName[v.vs.Name] = v
				continue
			}
			a, b := siteout.Render(&siteout.Site{VirtualServers: []siteout.VirtualServer{m.vs}}), siteout.Render(&siteout.Site{VirtualServers: []siteout.VirtualServer{v.vs}})
			if d := diffLines(a, b); d != "" {
				c.add(v.st, false, "virtual server %s differs from %s:%d; havip uses the MASTER's (one site file for both):\n%s", v.vs.Name, m.st.File, m.st.Line, d)
			}
		}
	}
}

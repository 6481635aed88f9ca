package importka

import (
	"cmp"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/havip/havip/internal/siteout"
)

// The VRRP side of a keepalived configuration: global_defs, vrrp_instance,
// vrrp_script and vrrp_sync_group, and the [[vrrp]] groups they become.

func (c *conv) globalDefs(f *kaFile, s *Stmt) {
	for _, d := range s.Block {
		a := d.Args()
		switch k := d.Key(); k {
		case "router_id":
			if len(a) == 1 {
				f.routerID = a[0]
			}
		case "vrrp_version":
			if v, ok := c.intArg(d, 0, 2, 3); ok {
				f.version = v
			}
		case "script_user":
			if len(a) >= 1 {
				f.scriptUser = a[0]
			}
			if len(a) >= 2 {
				f.scriptGroup = a[1]
			}
		case "enable_script_security":
			f.scriptSecurity = true
		case "lvs_sync_daemon":
			c.lvsSync(f, d)
		case "vrrp_strict":
			c.skip(d, "havip speaks RFC 5798 as it stands; strict mode's refusals (no unicast, no authentication, one VIP family) are not applied")
		case "vrrp_skip_check_adv_addr", "vrrp_check_unicast_src":
			c.skip(d, "havip always checks an advert's source against the site's nodes")
		default:
			if !c.garpKey(&f.garp, strings.TrimPrefix(k, "vrrp_"), d) {
				c.unknown(d, "global_defs")
			}
		}
	}
}

// garp is the gratuitous-ARP settings of global_defs or an instance.
type garp struct {
	count    *int
	interval time.Duration
	refresh  *time.Duration
}

// garpKey reads key (the global's vrrp_ prefix taken off); false when it
// is none of them.
func (c *conv) garpKey(g *garp, key string, s *Stmt) bool {
	switch key {
	case "garp_master_repeat":
		if v, ok := c.intArg(s, 0, 0, 100); ok {
			g.count = &v
		}
	case "garp_master_refresh":
		if d, ok := c.timerArg(s, 0); ok {
			switch {
			case d == 0:
			case d < time.Second:
				c.add(s, false, "%s %s: havip refreshes at most every second; converted to 1s", s.Key(), s.Args()[0])
				d = time.Second
			case d > 24*time.Hour:
				c.add(s, false, "%s %s: havip refreshes at least every 24h; converted to 24h", s.Key(), s.Args()[0])
				d = 24 * time.Hour
			}
			g.refresh = &d
		}
	case "garp_interval", "gna_interval":
		if d, ok := c.timerArg(s, 0); ok {
			if d < 10*time.Millisecond || d > 10*time.Second {
				c.add(s, false, "%s %s: havip spaces gratuitous ARPs and NAs 10ms..10s apart; converted to %s", s.Key(), s.Args()[0], siteout.Duration(clampDur(d, 10*time.Millisecond, 10*time.Second)))
				d = clampDur(d, 10*time.Millisecond, 10*time.Second)
			}
			g.interval = d
		}
	case "garp_master_delay", "garp_master_refresh_repeat", "garp_lower_prio_delay", "garp_lower_prio_repeat":
		c.skip(s, "havip sends one burst of garp_count on becoming master and on each garp_refresh")
	default:
		return false
	}
	return true
}

func clampDur(d, lo, hi time.Duration) time.Duration { return min(max(d, lo), hi) }

// lvsSync reads lvs_sync_daemon INTERFACE INSTANCE [id N] [maxlen N]
// [port N] [ttl N] [group IP].
func (c *conv) lvsSync(f *kaFile, s *Stmt) {
	a := s.Args()
	if len(a) < 1 {
		c.add(s, false, "lvs_sync_daemon needs an interface")
		return
	}
	y := &siteout.Sync{Interface: a[0]}
	for i := 2; i+1 < len(a); i += 2 {
		v := a[i+1]
		n, err := strconv.Atoi(v)
		switch a[i] {
		case "id":
			y.SyncID = n
		case "maxlen":
			y.MaxLen = &n
		case "port":
			y.Port = n
		case "ttl":
			y.TTL = n
		case "group":
			y.Group, err = v, nil
		default:
			c.add(s, false, "lvs_sync_daemon option %s: no havip equivalent; left out", a[i])
			continue
		}
		if err != nil {
			c.add(s, false, "lvs_sync_daemon %s %q is not a number; left out", a[i], v)
		}
	}
	if len(a) >= 2 {
		y.Comment = []string{fmt.Sprintf("from %s:%d lvs_sync_daemon: havip runs the master sync daemon on the node that holds the VIPs, not per instance (%s)", s.File, s.Line, a[1])}
	}
	f.sync = y
}

// intArg reads argument i as an integer in lo..hi.
func (c *conv) intArg(s *Stmt, i, lo, hi int) (int, bool) {
	a := s.Args()
	if i >= len(a) {
		c.add(s, false, "%s needs a value", s.Key())
		return 0, false
	}
	v, err := strconv.Atoi(a[i])
	if err != nil || v < lo || v > hi {
		c.add(s, false, "%s %s: not a number in %d..%d; left out", s.Key(), a[i], lo, hi)
		return 0, false
	}
	return v, true
}

// timerArg reads argument i as keepalived's TIMER: seconds, fractions
// allowed.
func (c *conv) timerArg(s *Stmt, i int) (time.Duration, bool) {
	a := s.Args()
	if i >= len(a) {
		c.add(s, false, "%s needs a value", s.Key())
		return 0, false
	}
	d, ok := seconds(a[i])
	if !ok {
		c.add(s, false, "%s %s: not a number of seconds; left out", s.Key(), a[i])
	}
	return d, ok
}

// seconds parses keepalived seconds ("3", "0.5") to the millisecond.
func seconds(v string) (time.Duration, bool) {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 || f > 1e6 || math.IsNaN(f) {
		return 0, false
	}
	return time.Duration(math.Round(f*1000)) * time.Millisecond, true
}

// instance is one vrrp_instance.
type instance struct {
	st           *Stmt
	name, state  string
	iface        string
	vrid         int
	priority     int
	version      int
	advert       time.Duration
	preempt      bool
	preemptDelay time.Duration
	src          string
	srcAt        *Stmt
	peers        []string
	peersAt      *Stmt
	vips         []string
	tracks       []trackRef
	notify       map[string]*Stmt // notify, notify_master, notify_backup, notify_fault
	garp         garp
	accept       bool
	syncGroup    string
}

// trackRef is one track_interface or track_script entry.
type trackRef struct {
	st        *Stmt
	iface     string
	script    string
	weight    int
	weightSet bool
}

func (c *conv) instance(f *kaFile, s *Stmt) *instance {
	if len(s.Args()) != 1 {
		c.add(s, true, "vrrp_instance needs one name; left out")
		return nil
	}
	in := &instance{st: s, name: s.Args()[0], priority: 100, advert: time.Second, preempt: true, notify: map[string]*Stmt{}}
	for _, d := range s.Block {
		a := d.Args()
		switch k := d.Key(); k {
		case "state":
			if len(a) == 1 && (a[0] == "MASTER" || a[0] == "BACKUP") {
				in.state = a[0]
			} else {
				c.add(d, false, "state must be MASTER or BACKUP; left out")
			}
		case "interface":
			if len(a) == 1 {
				in.iface = a[0]
			}
		case "virtual_router_id":
			in.vrid, _ = c.intArg(d, 0, 1, 255)
		case "priority":
			if v, ok := c.intArg(d, 0, 1, 255); ok {
				in.priority = v
			}
		case "advert_int":
			if v, ok := c.timerArg(d, 0); ok {
				in.advert = v
			}
		case "version":
			in.version, _ = c.intArg(d, 0, 2, 3)
		case "nopreempt":
			in.preempt = false
		case "preempt":
			in.preempt = true
		case "preempt_delay":
			if v, ok := c.timerArg(d, 0); ok {
				in.preemptDelay = min(v, time.Hour)
				if v > time.Hour {
					c.add(d, false, "preempt_delay %s: havip waits at most 1h; converted to 1h", a[0])
				}
			}
		case "unicast_src_ip", "mcast_src_ip":
			if len(a) == 1 {
				in.src, in.srcAt = a[0], d
			}
		case "unicast_peer":
			in.peersAt = d
			for _, p := range d.Block {
				in.peers = append(in.peers, p.Key())
				if len(p.Args()) > 0 {
					c.add(p, false, "unicast_peer options %s: no havip equivalent; left out", strings.Join(p.Args(), " "))
				}
			}
		case "authentication":
			c.add(d, false, "authentication: havip sends no VRRP authentication (RFC 5798 has none; RFC 3768's is no protection): "+
				"a keepalived peer with auth_type set drops havip's adverts; remove authentication from keepalived before pairing it with havip, "+
				"and protect the segment and the pair link (pair_key) instead")
		case "virtual_ipaddress":
			for _, v := range d.Block {
				c.vip(in, v)
			}
		case "virtual_ipaddress_excluded":
			c.add(d, true, "virtual_ipaddress_excluded: havip advertises every VIP of a group; these addresses are not placed: put them in a [[vrrp]] group of their own, or in this group's vips if a keepalived peer no longer shares the VRID")
		case "track_interface":
			for _, t := range d.Block {
				c.trackList(in, t, false)
			}
		case "track_script":
			for _, t := range d.Block {
				c.trackList(in, t, true)
			}
		case "notify", "notify_master", "notify_backup", "notify_fault":
			in.notify[k] = d
		case "notify_stop":
			c.skip(d, "havip runs notify on MASTER, BACKUP and FAULT; on stop it releases the VIPs without a hook")
		case "accept":
			in.accept = true
		case "no_accept":
			in.accept = false
		case "use_vmac", "vmac_xmit_base":
			c.skip(d, "havip adds VIPs to the interface itself; it has no VRRP virtual MAC")
		case "dont_track_primary":
			c.skip(d, "havip always goes to FAULT when the group's interface is down")
		default:
			if !c.garpKey(&in.garp, k, d) {
				c.unknown(d, "vrrp_instance "+in.name)
			}
		}
	}
	if in.iface == "" {
		c.add(s, true, "vrrp_instance %s has no interface; left out", in.name)
		return nil
	}
	if in.vrid == 0 {
		c.add(s, true, "vrrp_instance %s has no virtual_router_id; left out", in.name)
		return nil
	}
	if len(in.vips) == 0 {
		c.add(s, true, "vrrp_instance %s has no virtual_ipaddress that havip can place; left out", in.name)
		return nil
	}
	return in
}

// vip reads one virtual_ipaddress line: ADDR[/LEN] [dev IF] [label L]
// [scope S] [brd B] and flags.
func (c *conv) vip(in *instance, s *Stmt) {
	w := s.Words
	pre, ok := parsePrefix(w[0])
	if !ok {
		c.add(s, true, "%s is not an IP address; this VIP is not placed", w[0])
		return
	}
	for i := 1; i < len(w); i++ {
		opt := w[i]
		val := ""
		if i+1 < len(w) {
			val = w[i+1]
		}
		switch opt {
		case "dev":
			if val != in.iface {
				c.add(s, true, "VIP %s is on dev %s, but instance %s advertises on %s: a havip group holds its VIPs on its own interface; this VIP is not placed (give it a [[vrrp]] group on %s)",
					pre, val, in.name, in.iface, val)
				return
			}
			i++
		case "label":
			c.add(s, false, "VIP %s: label %s is not kept (havip adds the address without a label)", pre, val)
			i++
		case "scope":
			if val != "global" {
				c.add(s, false, "VIP %s: scope %s is not kept (havip adds VIPs with global scope)", pre, val)
			}
			i++
		case "brd", "broadcast":
			c.add(s, false, "VIP %s: brd %s is not kept (the kernel derives the broadcast address)", pre, val)
			i++
		case "peer":
			c.add(s, true, "VIP %s: peer %s (a point-to-point address) cannot be placed by havip; this VIP is not placed", pre, val)
			return
		case "home", "-nodad", "nodad", "noprefixroute", "autojoin", "no_track":
			c.add(s, false, "VIP %s: %s is not kept", pre, opt)
		default:
			if more, ok := parsePrefix(opt); ok {
				in.vips = append(in.vips, more.String())
				continue
			}
			c.add(s, false, "VIP %s: option %s is not kept", pre, opt)
		}
	}
	in.vips = append(in.vips, pre.String())
}

// parsePrefix reads a VIP: a prefix, or an address alone, which
// keepalived adds as /32 (/128).
func parsePrefix(v string) (netip.Prefix, bool) {
	if p, err := netip.ParsePrefix(v); err == nil {
		return p, true
	}
	a, err := netip.ParseAddr(v)
	if err != nil {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, a.BitLen()), true
}

// trackList reads one line of track_interface or track_script: names,
// each with an optional weight N.
func (c *conv) trackList(in *instance, s *Stmt, script bool) {
	w := s.Words
	for i := 0; i < len(w); i++ {
		t := trackRef{st: s}
		if script {
			t.script = w[i]
		} else {
			t.iface = w[i]
		}
		if i+1 < len(w) && w[i+1] == "weight" {
			if i+2 >= len(w) {
				c.add(s, false, "weight needs a value")
				return
			}
			v, err := strconv.Atoi(w[i+2])
			if err != nil || v < -254 || v > 254 {
				c.add(s, false, "weight %s is not a number in -254..254; the track is left out", w[i+2])
				return
			}
			t.weight, t.weightSet = v, true
			i += 2
			if i+1 < len(w) && w[i+1] == "reverse" {
				c.add(s, false, "%s: weight ... reverse is not converted (havip tracks fail, they do not succeed into a penalty); the track is left out", w[i-2])
				i++
				continue
			}
		}
		in.tracks = append(in.tracks, t)
	}
}

// vrrpScript is one vrrp_script: a named exec check and its weight.
type vrrpScript struct {
	st      *Stmt
	check   siteout.Check
	weight  int
	reverse bool
}

func (c *conv) vrrpScript(f *kaFile, s *Stmt) {
	if len(s.Args()) != 1 {
		c.add(s, false, "vrrp_script needs one name; left out")
		return
	}
	name := s.Args()[0]
	vs := &vrrpScript{st: s, check: siteout.Check{Name: name, Type: "exec", Rise: 1, Fall: 1}}
	interval, timeout := time.Second, time.Duration(0)
	var timeoutAt *Stmt
	for _, d := range s.Block {
		a := d.Args()
		switch d.Key() {
		case "script":
			if len(a) > 0 {
				vs.check.Command = splitCommand(a[0])
			}
		case "interval":
			if v, ok := c.timerArg(d, 0); ok {
				interval = v
			}
		case "timeout":
			if v, ok := c.timerArg(d, 0); ok {
				timeout, timeoutAt = v, d
			}
		case "weight":
			if v, ok := c.intArg(d, 0, -254, 254); ok {
				vs.weight = v
			}
			if len(a) > 1 && a[1] == "reverse" {
				vs.reverse = true
				c.add(d, false, "weight ... reverse is not converted; the instances' tracks of %s are left out", name)
			}
		case "rise":
			vs.check.Rise, _ = c.intArg(d, 0, 1, 1000)
		case "fall":
			vs.check.Fall, _ = c.intArg(d, 0, 1, 1000)
		case "init_fail":
			vs.check.StartDown = true
		case "user":
			c.skip(d, "havip runs every script as [site] script_user")
		default:
			c.unknown(d, "vrrp_script "+name)
		}
	}
	if len(vs.check.Command) == 0 {
		c.add(s, false, "vrrp_script %s has no script; left out", name)
		return
	}
	vs.check.Interval, vs.check.Timeout = c.timing(interval, timeout, timeoutAt, fmt.Sprintf("from %s:%d vrrp_script %s", s.File, s.Line, name), &vs.check)
	f.scripts[name] = vs
	f.scriptOrder = append(f.scriptOrder, name)
}

// timing fits keepalived's interval and timeout (0: as long as the
// interval, keepalived's default) to havip's: 100ms..1h, and the timeout
// shorter than the interval.
func (c *conv) timing(interval, timeout time.Duration, timeoutAt *Stmt, from string, ck *siteout.Check) (time.Duration, time.Duration) {
	ck.Comment = append(ck.Comment, from)
	iv := clampDur(interval, 100*time.Millisecond, time.Hour)
	if iv != interval {
		ck.Comment = append(ck.Comment, fmt.Sprintf("interval %s: havip's range is 100ms..1h", siteout.Duration(interval)))
	}
	to := timeout
	if to == 0 || to >= iv {
		adj := (iv * 3 / 4).Round(10 * time.Millisecond)
		if timeoutAt != nil && to != 0 {
			c.add(timeoutAt, false, "timeout %s is not shorter than the interval %s, as havip needs: converted to %s", siteout.Duration(to), siteout.Duration(iv), siteout.Duration(adj))
		} else {
			ck.Comment = append(ck.Comment, fmt.Sprintf("timeout: keepalived's default is the interval; havip's must be shorter: %s", siteout.Duration(adj)))
		}
		to = adj
	}
	return iv, max(to, 10*time.Millisecond)
}

// splitCommand splits a keepalived script string into argv as keepalived
// does: on blanks, with '...' and "..." quoting and \ escapes.
func splitCommand(v string) []string {
	var out []string
	var cur strings.Builder
	inWord := false
	var quote byte
	for i := 0; i < len(v); i++ {
		ch := v[i]
		switch {
		case quote != 0 && ch == quote:
			quote = 0
		case quote == 0 && (ch == '\'' || ch == '"'):
			quote, inWord = ch, true
		case quote != '\'' && ch == '\\' && i+1 < len(v):
			i++
			cur.WriteByte(v[i])
			inWord = true
		case quote == 0 && (ch == ' ' || ch == '\t'):
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(ch)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out
}

// shellQuote quotes argv for sh -c.
func shellQuote(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		if a != "" && !strings.ContainsFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-=:,+@%", r))
		}) {
			q[i] = a
			continue
		}
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

func (c *conv) syncGroup(f *kaFile, s *Stmt) {
	if len(s.Args()) != 1 {
		c.add(s, false, "vrrp_sync_group needs one name; left out")
		return
	}
	name := s.Args()[0]
	for _, d := range s.Block {
		switch d.Key() {
		case "group":
			for _, m := range d.Block {
				for _, member := range m.Words {
					in := f.instanceNamed(member)
					if in == nil {
						c.add(m, false, "vrrp_sync_group %s: no vrrp_instance %s converted", name, member)
						continue
					}
					in.syncGroup = name
				}
			}
		case "notify", "notify_master", "notify_backup", "notify_fault", "notify_stop":
			c.skip(d, "havip runs notify hooks per [[vrrp]] group; a sync group has none (give its members notify)")
		case "track_script", "track_interface", "track_file", "track_process":
			c.skip(d, "havip tracks per [[vrrp]] group (the failing weights of a sync group's members add up); move it into the member instances")
		default:
			c.unknown(d, "vrrp_sync_group "+name)
		}
	}
}

func (f *kaFile) instanceNamed(name string) *instance {
	for _, in := range f.instances {
		if in.name == name {
			return in
		}
	}
	return nil
}

// group converts one instance; it returns the group and its tracks.
func (c *conv) group(f *kaFile, in *instance) (siteout.Group, []siteout.Track) {
	g := siteout.Group{
		Comment:   []string{fmt.Sprintf("from %s:%d vrrp_instance %s (state %s, priority %d)", in.st.File, in.st.Line, in.name, cmp.Or(in.state, "unset"), in.priority)},
		Name:      in.name,
		Interface: in.iface,
		VRID:      in.vrid,
		VIPs:      in.vips,
		SyncGroup: in.syncGroup,
		Unicast:   len(in.peers) > 0,
		Accept:    in.accept,
	}
	v6 := false
	if p, err := netip.ParsePrefix(in.vips[0]); err == nil {
		v6 = p.Addr().Is6()
	}
	g.Version = cmp.Or(in.version, f.version, 2)
	if v6 && g.Version == 2 {
		if in.version == 2 {
			c.add(in.st, false, "vrrp_instance %s: IPv6 VIPs need VRRP version 3 (as keepalived uses); converted to version 3", in.name)
		}
		g.Version = 3
	}
	g.Advert = c.advert(in, g.Version)
	if !in.preempt {
		f := false
		g.Preempt = &f
	}
	g.PreemptDelay = in.preemptDelay
	if len(in.peers) > 1 {
		c.add(in.peersAt, true, "unicast_peer lists %d peers: a havip site is a pair, and adverts from the others are dropped; only the pair's peer is kept", len(in.peers))
	}
	gr := in.garp
	if gr.count == nil {
		gr.count = f.garp.count
	}
	g.GARPCount = gr.count
	g.GARPInterval = cmp.Or(gr.interval, f.garp.interval)
	g.GARPRefresh = gr.refresh
	if g.GARPRefresh == nil {
		g.GARPRefresh = f.garp.refresh
	}
	if 2*g.Advert >= 5*time.Second {
		g.VIPLifetime = (3 * g.Advert).Round(time.Second)
		g.Comment = append(g.Comment, "vip_lifetime: longer than two advert intervals, as havip needs (default 5s)")
	}
	g.Notify = c.notify(in)
	for _, t := range in.tracks {
		tr := siteout.Track{Interface: t.iface, Weight: t.weight}
		if t.script != "" {
			sc, ok := f.scripts[t.script]
			switch {
			case !ok:
				c.add(t.st, false, "track_script %s: no vrrp_script %s converted; the track is left out", t.script, t.script)
				continue
			case sc.reverse:
				continue
			}
			tr.Check = t.script
			if !t.weightSet {
				tr.Weight = sc.weight
			}
		}
		g.Track = append(g.Track, tr)
	}
	return g, g.Track
}

// advert fits advert_int to the version's field: whole seconds for v2,
// 10ms steps in 10ms..40.95s for v3.
func (c *conv) advert(in *instance, version int) time.Duration {
	d := in.advert
	step, lo, hi := 10*time.Millisecond, 10*time.Millisecond, 4095*10*time.Millisecond
	if version == 2 {
		step, lo, hi = time.Second, time.Second, 255*time.Second
	}
	out := clampDur(((d+step-1)/step)*step, lo, hi)
	if out != d {
		c.add(in.st, false, "vrrp_instance %s: advert_int %s cannot be carried by VRRPv%d; converted to %s", in.name, siteout.Duration(d), version, siteout.Duration(out))
	}
	return out
}

// notify turns notify and notify_STATE into one havip hook: havip runs
// argv with "group state priority" appended, so a small sh -c calls the
// keepalived scripts as keepalived did (notify gets INSTANCE NAME STATE
// PRIORITY).
func (c *conv) notify(in *instance) []string {
	if len(in.notify) == 0 {
		return nil
	}
	script := func(s *Stmt) string {
		a := s.Args()
		if len(a) == 0 {
			return ""
		}
		if len(a) > 1 {
			c.add(s, false, "%s: user %s is not kept; havip runs hooks as [site] script_user", s.Key(), strings.Join(a[1:], " "))
		}
		return shellQuote(splitCommand(a[0]))
	}
	var b strings.Builder
	cases := ""
	for _, st := range []string{"MASTER", "BACKUP", "FAULT"} {
		if s, ok := in.notify["notify_"+strings.ToLower(st)]; ok {
			if cmd := script(s); cmd != "" {
				cases += fmt.Sprintf(" %s) %s ;;", st, cmd)
			}
		}
	}
	if cases != "" {
		fmt.Fprintf(&b, `case "$2" in%s esac`, cases)
	}
	if s, ok := in.notify["notify"]; ok {
		if cmd := script(s); cmd != "" {
			if b.Len() > 0 {
				b.WriteString("; ")
			}
			fmt.Fprintf(&b, `exec %s INSTANCE "$1" "$2" "$3"`, cmd)
		}
	}
	if b.Len() == 0 {
		return nil
	}
	return []string{"/bin/sh", "-c", b.String(), "havip-notify"}
}

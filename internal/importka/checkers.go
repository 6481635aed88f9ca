package importka

import (
	"cmp"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/havip/havip/internal/siteout"
)

// checkTypes maps keepalived's checkers to havip's check types.
var checkTypes = map[string]string{
	"TCP_CHECK": "tcp", "HTTP_GET": "http", "SSL_GET": "https", "MISC_CHECK": "exec",
	"SMTP_CHECK": "smtp", "DNS_CHECK": "dns", "PING_CHECK": "ping",
}

// retryDefault is keepalived's retry per checker: 1 unless listed.
var retryDefault = map[string]int{"DNS_CHECK": 3, "MISC_CHECK": 0}

// retryWhy is why keepalived's retry timing is not converted.
const retryWhy = "havip probes every interval and counts fall failures in a row (fall is keepalived's retry + 1)"

// converted is one real server's first checker, converted.
type converted struct {
	st    *Stmt
	check siteout.Check
	sig   string // the check as written, without comments: equal checks
}

// realServers converts the real_server blocks; havip has one check per
// virtual server, so the first checker is the check and the others are
// compared with it.
func (c *conv) realServers(vs *siteout.VirtualServer, stmts []*Stmt, def vsDefaults) {
	var first *converted
	var unchecked []*Stmt
	inhibit := 0
	for _, s := range stmts {
		rs, ck, inh, ok := c.realServer(s, def, vs.Forward)
		if !ok {
			continue
		}
		vs.RealServers = append(vs.RealServers, rs)
		if inh {
			inhibit++
		}
		switch {
		case ck == nil:
			unchecked = append(unchecked, s)
		case first == nil:
			first = ck
		case ck.sig != first.sig:
			c.add(ck.st, false, "%s: havip has one check per virtual server; this real server's differs from %s:%d's, and gets that one:\n%s",
				ck.st.Key(), first.st.File, first.st.Line, diffLines(first.sig, ck.sig))
		}
	}
	switch {
	case first == nil:
		vs.Check = &siteout.Check{Type: "none", Comment: []string{"keepalived real servers without a checker are always up"}}
	default:
		vs.Check = &first.check
		for _, s := range unchecked {
			c.add(s, false, "real_server %s has no checker (keepalived keeps it up); havip checks it like the others", strings.Join(s.Args(), " "))
		}
	}
	switch {
	case inhibit == 0:
	case inhibit == len(vs.RealServers):
		vs.OnFailure = "weight0"
	default:
		vs.OnFailure = "weight0"
		c.add(stmts[0], false, "inhibit_on_failure is set on %d of %d real servers; havip's on_failure is per virtual server: weight0 for all", inhibit, len(vs.RealServers))
	}
}

// realServer converts real_server IP [PORT] { ... }: the real server,
// its first checker (nil for none) and whether it is inhibited on
// failure.
func (c *conv) realServer(s *Stmt, def vsDefaults, vsForward string) (siteout.RealServer, *converted, bool, bool) {
	a := s.Args()
	var rs siteout.RealServer
	if len(a) < 1 || len(a) > 2 {
		c.add(s, false, "real_server %s: expected IP [PORT]; left out", strings.Join(a, " "))
		return rs, nil, false, false
	}
	ip, err := netip.ParseAddr(a[0])
	port := 0
	if len(a) == 2 {
		port, err = portOf(a[1], err)
	}
	if err != nil {
		c.add(s, false, "real_server %s: not an address and port; left out", strings.Join(a, " "))
		return rs, nil, false, false
	}
	ap := netip.AddrPortFrom(ip, uint16(port))
	rs = siteout.RealServer{Address: ap.String(), Weight: 1}
	inhibit := def.inhibit
	var checkers []*Stmt
	for _, d := range s.Block {
		switch k := d.Key(); k {
		case "weight":
			if v, ok := c.intArg(d, 0, 0, 65535); ok {
				rs.Weight = v
			}
		case "inhibit_on_failure":
			inhibit = true
		case "lvs_method":
			if fwd, ok := c.forward(d); ok && fwd != vsForward {
				rs.Forward = fwd
			}
		case "virtualhost":
			if len(d.Args()) > 0 {
				def.virtualhost = d.Args()[0]
			}
		case "delay_loop", "connect_timeout", "retry", "nb_get_retry":
			c.checkTiming(d, &def)
		case "alpha":
			def.alpha = boolArg(d)
		case "notify_up", "notify_down":
			c.skip(d, "havip has no per-real-server hooks; its events (havip events) and metrics report each change")
		case "uthreshold", "lthreshold":
			c.skip(d, "havip sets no IPVS connection thresholds")
		case "delay_before_retry", "warmup":
			c.skip(d, retryWhy)
		case "smtp_alert", "snmp_name":
			c.skip(d, "havip has no mail alerts or SNMP; see its metrics and events")
		default:
			if _, ok := checkTypes[k]; ok {
				checkers = append(checkers, d)
				continue
			}
			if strings.HasSuffix(k, "_CHECK") {
				c.skip(d, "havip has no such check")
				continue
			}
			c.unknown(d, "real_server")
		}
	}
	var first *converted
	for i, d := range checkers {
		if i > 0 {
			c.add(d, false, "%s: havip has one check per virtual server; only the first checker of a real server (%s:%d) is converted", d.Key(), checkers[0].File, checkers[0].Line)
			continue
		}
		first = c.checker(d, ap, def)
	}
	return rs, first, inhibit, true
}

func boolArg(s *Stmt) bool {
	a := s.Args()
	if len(a) == 0 {
		return true
	}
	switch strings.ToLower(a[0]) {
	case "off", "false", "no":
		return false
	}
	return true
}

// checker converts one checker block of the real server at rs.
func (c *conv) checker(s *Stmt, rs netip.AddrPort, def vsDefaults) *converted {
	kind := s.Key()
	ck := siteout.Check{Type: checkTypes[kind], Rise: 1}
	retry, hasRetry := retryDefault[kind]
	if !hasRetry {
		retry = 1
	}
	if def.retrySet {
		retry = def.retry
	}
	interval, timeout := def.delayLoop, def.connectTimeout
	var timeoutAt *Stmt
	host := def.virtualhost
	urlHost := ""
	var command []string
	for _, d := range s.Block {
		a := d.Args()
		switch k := d.Key(); k {
		case "connect_port":
			if p, ok := c.intArg(d, 0, 1, 65535); ok && p != int(rs.Port()) {
				ck.Port = p
			}
		case "connect_ip":
			if len(a) == 1 && a[0] != rs.Addr().String() {
				c.add(d, false, "connect_ip %s: a havip check probes the real server's own address", a[0])
			}
		case "connect_timeout":
			if v, ok := c.timerArg(d, 0); ok {
				timeout, timeoutAt = v, d
			}
		case "retry", "nb_get_retry":
			if v, ok := c.intArg(d, 0, 0, 999); ok {
				retry = v
			}
		case "delay_loop":
			if v, ok := c.timerArg(d, 0); ok {
				interval = v
			}
		case "alpha":
			def.alpha = boolArg(d)
		case "virtualhost":
			if len(a) > 0 {
				host = a[0]
			}
		case "url":
			if ck.Path != "" {
				c.add(d, false, "url: havip's http check asks for one path; only the first url (%s) is converted", ck.Path)
				continue
			}
			urlHost = c.url(d, &ck)
		case "helo_name":
			if len(a) > 0 {
				ck.HeloName = a[0]
			}
		case "host":
			c.smtpHost(d, rs, &ck)
		case "type":
			if len(a) == 1 {
				ck.QueryType = strings.ToUpper(a[0])
			}
		case "name":
			if len(a) == 1 {
				ck.Query = a[0]
			}
		case "misc_path":
			if len(a) > 0 {
				command = splitCommand(a[0])
			}
		case "misc_timeout":
			if v, ok := c.timerArg(d, 0); ok {
				timeout, timeoutAt = v, d
			}
		case "misc_dynamic":
			c.skip(d, "havip's exec check passes or fails; the exit status sets no weight")
		case "user":
			c.skip(d, "havip runs every script as [site] script_user")
		case "bindto", "bind_port", "bind_if", "fwmark":
			c.skip(d, "havip's checks connect from the director's own address")
		case "delay_before_retry", "warmup":
			c.skip(d, retryWhy)
		case "log_all_failures", "http_protocol", "fast_recovery", "enable_sni":
			c.skip(d, "no havip equivalent")
		default:
			c.unknown(d, kind)
		}
	}
	ck.Host = cmp.Or(urlHost, host)
	ck.Fall = retry + 1
	ck.StartDown = def.alpha
	switch kind {
	case "HTTP_GET", "SSL_GET":
		if ck.Path == "" {
			c.add(s, false, "%s has no url; havip checks path /", kind)
		}
		if len(ck.ExpectStatus) == 0 {
			ck.ExpectStatus = []string{"200-299"} // keepalived's default
		}
	case "MISC_CHECK":
		ck.Command = execCommand(command, rs)
		if len(ck.Command) == 0 {
			c.add(s, false, "MISC_CHECK has no misc_path; left out")
			return nil
		}
	case "DNS_CHECK":
		ck.QueryType = cmp.Or(ck.QueryType, "SOA")
		if strings.TrimSuffix(ck.Query, ".") == "" {
			c.add(s, false, "DNS_CHECK asks for the root (name ., keepalived's default), which havip's dns check cannot ask: the real servers get no check (type none); add a name")
			ck = siteout.Check{Type: "none"}
		}
	}
	ck.Comment = nil
	if ck.Type != "none" {
		ck.Interval, ck.Timeout = c.timing(interval, timeout, timeoutAt, fmt.Sprintf("from %s:%d %s", s.File, s.Line, kind), &ck)
	}
	sig := ck
	sig.Comment = nil
	return &converted{st: s, check: ck, sig: siteout.Render(&siteout.Site{Checks: []siteout.Check{sig}})}
}

// url reads an HTTP_GET/SSL_GET url block; it returns its virtualhost.
func (c *conv) url(s *Stmt, ck *siteout.Check) string {
	host := ""
	for _, d := range s.Block {
		a := d.Args()
		switch d.Key() {
		case "path":
			if len(a) > 0 {
				ck.Path = a[0]
			}
		case "status_code":
			ck.ExpectStatus = append(ck.ExpectStatus, a...)
		case "virtualhost":
			if len(a) > 0 {
				host = a[0]
			}
		case "digest":
			c.skip(d, "havip's http check compares the status (and, with expect_body, the body), not an MD5 digest of the page")
		case "regex", "regex_no_match", "regex_options", "regex_stack", "regex_min_offset", "regex_max_offset":
			c.skip(d, "not converted: keepalived's PCRE is not Go's regexp; write expect_body or expect_body_regex by hand")
		default:
			c.unknown(d, "url")
		}
	}
	if ck.Path == "" {
		ck.Path = "/"
	}
	return host
}

// smtpHost reads an SMTP_CHECK host block (keepalived's older form).
func (c *conv) smtpHost(s *Stmt, rs netip.AddrPort, ck *siteout.Check) {
	for _, d := range s.Block {
		a := d.Args()
		switch d.Key() {
		case "connect_port":
			if p, ok := c.intArg(d, 0, 1, 65535); ok && p != int(rs.Port()) {
				if ck.Port != 0 && ck.Port != p {
					c.add(d, false, "SMTP_CHECK host: havip probes one port; %d is kept", ck.Port)
					continue
				}
				ck.Port = p
			}
		case "connect_ip":
			if len(a) == 1 && a[0] != rs.Addr().String() {
				c.add(d, false, "connect_ip %s: a havip check probes the real server's own address", a[0])
			}
		default:
			c.unknown(d, "SMTP_CHECK host")
		}
	}
}

// execCommand makes a MISC_CHECK's misc_path the exec check's argv. A
// path naming its real server's address (and port) gets them from the
// check's environment through sh -c, so every real server shares one
// check, as havip has.
func execCommand(argv []string, rs netip.AddrPort) []string {
	if len(argv) == 0 {
		return nil
	}
	ip, port := rs.Addr().String(), strconv.Itoa(int(rs.Port()))
	named := false
	words := make([]string, len(argv))
	for i, w := range argv {
		q := shellQuote([]string{w})
		if strings.Contains(w, ip) {
			// Quoted whole, so the address can be cut out of the quotes.
			q = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
		}
		switch {
		case w == port && i > 0 && argv[i-1] == ip:
			q, named = `"$HAVIP_CHECK_PORT"`, true
		case strings.Contains(w, ip+":"+port):
			q, named = strings.ReplaceAll(q, ip+":"+port, `'"$HAVIP_CHECK_ADDR:$HAVIP_CHECK_PORT"'`), true
		case strings.Contains(w, ip):
			q, named = strings.ReplaceAll(q, ip, `'"$HAVIP_CHECK_ADDR"'`), true
		}
		words[i] = strings.TrimSuffix(strings.TrimPrefix(q, "''"), "''")
	}
	if !named {
		return argv
	}
	return []string{"/bin/sh", "-c", "exec " + strings.Join(words, " "), "havip-check"}
}

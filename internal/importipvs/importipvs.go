// Package importipvs converts ipvsadm-save -n output (ipvsadm -S -n) into
// havip [[virtual_server]] tables: a fragment to paste into a site file,
// which holds the nodes and VRRP groups ipvsadm knows nothing of. It is
// pure logic; every option it cannot carry over is a Note at its line.
package importipvs

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/havip/havip/internal/siteout"
)

// defaultPersistence is ipvsadm's -p without a timeout.
const defaultPersistence = 300 * time.Second

// service is one -A line and the -a lines of its real servers.
type service struct {
	line     int
	vs       siteout.VirtualServer
	forwards []string // each real server's forwarding, parallel to vs.RealServers
	port     uint16
}

// Convert reads ipvsadm-save -n output from r (name is for notes) and
// returns the virtual servers as a fragment (a Site without a name) and
// every note.
func Convert(name string, r io.Reader) (*siteout.Site, []siteout.Note, error) {
	c := &conv{file: name, byKey: map[string]*service{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		c.line(n, sc.Text())
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("importipvs: %s: %w", name, err)
	}
	s := &siteout.Site{Header: []string{
		"Converted from ipvsadm-save -n output (" + name + ") by havip import ipvsadm.",
		"A fragment: paste these [[virtual_server]] tables into a site file, which has the [site], [[node]] and [[vrrp]] tables.",
		"ipvsadm has no health checks: each check below is type none (real servers always up); choose one.",
	}}
	for _, sv := range c.order {
		c.finish(sv)
		s.VirtualServers = append(s.VirtualServers, sv.vs)
	}
	if len(s.VirtualServers) == 0 {
		c.note(0, true, "no virtual service (-A line) found")
	}
	c.notes = append(c.notes, validate(s)...)
	return s, c.notes, nil
}

type conv struct {
	file  string
	order []*service
	byKey map[string]*service
	notes []siteout.Note
}

func (c *conv) note(line int, unsafe bool, format string, args ...any) {
	c.notes = append(c.notes, siteout.Note{File: c.file, Line: line, Msg: fmt.Sprintf(format, args...), Unsafe: unsafe})
}

// opts is one line's options, in the order given.
type opts struct {
	add, addServer      bool
	protocol            string
	service             string // address:port or mark
	fwmark              bool
	scheduler           string
	flags               []string
	persistent          *time.Duration
	netmask             string
	inet6               bool
	real                string
	forward             string
	weight              int
	weightSet           bool
	unknown             []string
	thresholds, engines []string
}

// long maps long options to short ones.
var long = map[string]string{
	"--add-service": "-A", "--add-server": "-a", "--tcp-service": "-t", "--udp-service": "-u",
	"--sctp-service": "--sctp-service", "--fwmark-service": "-f", "--scheduler": "-s", "--sched-flags": "-b",
	"--persistent": "-p", "--netmask": "-M", "--real-server": "-r", "--gatewaying": "-g", "--ipip": "-i",
	"--masquerading": "-m", "--weight": "-w", "--u-threshold": "-x", "--l-threshold": "-y", "--ops": "-o",
}

func (c *conv) line(n int, text string) {
	f := strings.Fields(text)
	if len(f) == 0 || strings.HasPrefix(f[0], "#") {
		return
	}
	var o opts
	for i := 0; i < len(f); i++ {
		flag := f[i]
		if s, ok := long[flag]; ok {
			flag = s
		}
		val := func() string {
			if i+1 < len(f) {
				i++
				return f[i]
			}
			c.note(n, false, "%s needs a value", f[i])
			return ""
		}
		switch flag {
		case "-A":
			o.add = true
		case "-a":
			o.addServer = true
		case "-t", "-u", "--sctp-service":
			o.protocol = map[string]string{"-t": "tcp", "-u": "udp", "--sctp-service": "sctp"}[flag]
			o.service = val()
		case "-f":
			o.fwmark = true
			o.service = val()
		case "-s":
			o.scheduler = val()
		case "-b":
			o.flags = strings.Split(val(), ",")
		case "-p":
			d := defaultPersistence
			if i+1 < len(f) && !strings.HasPrefix(f[i+1], "-") {
				v, err := strconv.Atoi(f[i+1])
				if err != nil {
					c.note(n, false, "-p %s is not a number of seconds; ipvsadm's default %s is used", f[i+1], siteout.Duration(d))
				} else {
					d = time.Duration(v) * time.Second
				}
				i++
			}
			o.persistent = &d
		case "-M":
			o.netmask = val()
		case "-6":
			o.inet6 = true
		case "-r":
			o.real = val()
		case "-g":
			o.forward = "dr"
		case "-i":
			o.forward = "tun"
		case "-m":
			o.forward = "nat"
		case "-w":
			v, err := strconv.Atoi(val())
			if err != nil || v < 0 || v > 65535 {
				c.note(n, false, "-w %s is not a weight 0..65535; weight 1 is used", f[i])
				v = 1
			}
			o.weight, o.weightSet = v, true
		case "-x", "-y":
			o.thresholds = append(o.thresholds, flag+" "+val())
		case "--pe":
			o.engines = append(o.engines, val())
		case "-o":
			o.unknown = append(o.unknown, "-o (one-packet scheduling)")
		case "--tun-type", "--tun-port", "--tun-nocsum", "--tun-csum", "--tun-remcsum":
			o.unknown = append(o.unknown, flag)
		default:
			o.unknown = append(o.unknown, f[i])
		}
	}
	switch {
	case o.add && o.addServer, !o.add && !o.addServer:
		c.note(n, false, "neither an -A (service) nor an -a (server) line: left out")
		return
	case o.service == "":
		c.note(n, false, "no -t, -u, --sctp-service or -f service: left out")
		return
	}
	for _, u := range o.unknown {
		c.note(n, false, "%s: no havip equivalent; left out", u)
	}
	for _, e := range o.engines {
		c.note(n, false, "--pe %s: havip has no IPVS persistence engines; left out", e)
	}
	for _, t := range o.thresholds {
		c.note(n, false, "%s: havip sets no IPVS connection thresholds; left out", t)
	}
	if o.add {
		c.addService(n, o)
	} else {
		c.addServer(n, o)
	}
}

func key(o opts) string {
	fam := ""
	if o.fwmark && o.inet6 {
		fam = "6"
	}
	return o.protocol + fam + " " + o.service
}

func (c *conv) addService(n int, o opts) {
	k := key(o)
	if _, dup := c.byKey[k]; dup {
		c.note(n, false, "service %s is added twice; the first is kept", o.service)
		return
	}
	sv := &service{line: n}
	vs := &sv.vs
	vs.Comment = []string{fmt.Sprintf("from %s:%d", c.file, n)}
	if o.fwmark {
		m, err := strconv.ParseUint(o.service, 10, 32)
		if err != nil || m == 0 {
			c.note(n, false, "-f %s is not a mark; left out", o.service)
			return
		}
		vs.FWMark = uint32(m)
		if o.inet6 {
			vs.Family = "inet6"
		}
		vs.Name = siteout.VSName(netip.AddrPort{}, "", vs.FWMark, vs.Family)
	} else {
		ap, err := netip.ParseAddrPort(o.service)
		if err != nil {
			c.note(n, false, "%s is not address:port (run ipvsadm-save with -n); left out", o.service)
			return
		}
		vs.Address = ap.String()
		sv.port = ap.Port()
		if o.protocol != "tcp" {
			vs.Protocol = o.protocol
		}
		vs.Name = siteout.VSName(ap, o.protocol, 0, "")
	}
	vs.Scheduler = o.scheduler
	vs.SchedFlags = o.flags
	if o.persistent != nil {
		vs.Persistence = *o.persistent
		if o.netmask != "" && o.netmask != "255.255.255.255" && o.netmask != "128" {
			if _, err := strconv.Atoi(o.netmask); err == nil {
				vs.PersistenceNetmask = "/" + o.netmask
			} else {
				vs.PersistenceNetmask = o.netmask
			}
		}
	}
	vs.Check = &siteout.Check{Type: "none"}
	c.byKey[k] = sv
	c.order = append(c.order, sv)
}

func (c *conv) addServer(n int, o opts) {
	sv, ok := c.byKey[key(o)]
	if !ok {
		c.note(n, false, "server for service %s, which no -A line added before; left out", o.service)
		return
	}
	if o.real == "" {
		c.note(n, false, "an -a line needs -r ADDRESS[:PORT]; left out")
		return
	}
	ap, err := netip.ParseAddrPort(o.real)
	if err != nil {
		// ipvsadm takes a server without a port: the service's.
		a, aerr := netip.ParseAddr(strings.Trim(o.real, "[]"))
		if aerr != nil {
			c.note(n, false, "-r %s is not an address[:port]; left out", o.real)
			return
		}
		ap = netip.AddrPortFrom(a, sv.port)
	}
	w := 1
	if o.weightSet {
		w = o.weight
	}
	sv.vs.RealServers = append(sv.vs.RealServers, siteout.RealServer{Address: ap.String(), Weight: w})
	sv.forwards = append(sv.forwards, o.forward)
}

// finish chooses the virtual server's forwarding: the one most of its
// real servers use (ipvsadm sets it per server; -g is its default), the
// others as overrides.
func (c *conv) finish(sv *service) {
	count := map[string]int{}
	best := ""
	for i, f := range sv.forwards {
		if f == "" {
			f = "dr"
			sv.forwards[i] = f
		}
		count[f]++
		if best == "" || count[f] > count[best] {
			best = f
		}
	}
	sv.vs.Forward = best
	if best == "" {
		sv.vs.Forward = "dr"
	}
	for i, f := range sv.forwards {
		if f != sv.vs.Forward {
			sv.vs.RealServers[i].Forward = f
		}
	}
}

// validate checks the fragment in a minimal site around it: the same
// rules as havip check, for the virtual servers.
func validate(s *siteout.Site) []siteout.Note {
	wrapped := *s
	wrapped.Name = "fragment"
	wrapped.Nodes = []siteout.Node{{Name: "a", Address: "192.0.2.1"}, {Name: "b", Address: "192.0.2.2"}}
	return siteout.Validate(&wrapped)
}

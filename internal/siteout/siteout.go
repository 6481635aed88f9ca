// Package siteout writes a havip site file (or a fragment of one) from a
// plain model that the importers fill in, in the layout of
// examples/havip.toml, with the comments the importers attach to each
// table. It also carries how an importer reports what it could not
// convert, and checks what it writes with conf.Parse (the one
// validator; it has no rules of its own).
package siteout

import (
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/havip/havip/internal/conf"
)

// Site is a whole site file; a zero Name writes no [site] table (a
// fragment).
type Site struct {
	Header         []string // comment lines at the top of the file
	Name           string
	ScriptUser     string
	ScriptGroup    string
	ScriptSecurity *bool
	Nodes          []Node
	Groups         []Group
	Checks         []Check // top-level [[check]]
	VirtualServers []VirtualServer
	Sync           *Sync
}

// Node is one [[node]].
type Node struct {
	Comment  []string
	Name     string
	Address  string
	Priority int
}

// Group is one [[vrrp]]; zero fields are left out (havip's default).
type Group struct {
	Comment      []string
	Name         string
	Interface    string
	VRID         int
	Version      int
	Advert       time.Duration
	Unicast      bool
	Accept       bool
	Preempt      *bool
	PreemptDelay time.Duration
	VIPs         []string
	Priorities   []Priority
	Notify       []string
	SyncGroup    string
	GARPCount    *int
	GARPInterval time.Duration
	GARPRefresh  *time.Duration
	VIPLifetime  time.Duration
	Track        []Track
}

// Priority is one entry of a group's priorities table.
type Priority struct {
	Node     string
	Priority int
}

// Track is one [[vrrp.track]]: one of Interface, VirtualServer, Check.
type Track struct {
	Comment       []string
	Interface     string
	VirtualServer string
	Check         string
	Weight        int
}

// VirtualServer is one [[virtual_server]]; zero fields are left out.
type VirtualServer struct {
	Comment            []string
	Name               string
	Address            string
	FWMark             uint32
	Family             string
	Protocol           string
	Scheduler          string
	SchedFlags         []string
	Forward            string
	Persistence        time.Duration
	PersistenceNetmask string
	Quorum             *int
	QuorumHysteresis   int
	SorryServer        string
	OnFailure          string
	Check              *Check // nil: havip's default check
	RealServers        []RealServer
}

// RealServer is one [[virtual_server.real_server]]; its weight is always
// written.
type RealServer struct {
	Comment []string
	Address string
	Weight  int
	Forward string
}

// Check is a [virtual_server.check] or, with a Name, a top-level
// [[check]]; zero fields are left out.
type Check struct {
	Comment      []string
	Name         string
	Type         string
	Target       string
	Port         int
	Path         string
	Host         string
	ExpectStatus []string // codes and "lo-hi" ranges
	Interval     time.Duration
	Timeout      time.Duration
	Rise         int
	Fall         int
	StartDown    bool
	Command      []string
	Query        string
	QueryType    string
	HeloName     string
}

// Sync is the [sync] table; zero fields are left out.
type Sync struct {
	Comment   []string
	Interface string
	SyncID    int
	Group     string
	Port      int
	TTL       int
	MaxLen    *int
}

// Render is s as Write writes it.
func Render(s *Site) string {
	var b strings.Builder
	_ = Write(&b, s) // a strings.Builder does not fail
	return b.String()
}

// Validate checks the file s renders to as conf.Parse does (so without
// this host's users and scripts): each error is an unsafe Note.
func Validate(s *Site) []Note {
	_, problems := conf.Parse("(converted site)", []byte(Render(s)))
	var out []Note
	for _, p := range problems {
		if !p.Warning {
			out = append(out, Note{Msg: "the converted site does not validate: " + p.String(), Unsafe: true})
		}
	}
	return out
}

// Write writes s as TOML.
func Write(w io.Writer, s *Site) error {
	b := &builder{}
	b.comment(s.Header)
	if s.Name != "" {
		b.table("[site]", nil)
		b.str("name", s.Name)
		b.str("script_user", s.ScriptUser)
		b.str("script_group", s.ScriptGroup)
		if s.ScriptSecurity != nil {
			b.boolean("script_security", *s.ScriptSecurity)
		}
	}
	for _, n := range s.Nodes {
		b.table("[[node]]", n.Comment)
		b.str("name", n.Name)
		b.str("address", n.Address)
		b.integer("priority", n.Priority)
	}
	for _, g := range s.Groups {
		b.group(&g)
	}
	for i := range s.Checks {
		b.check("[[check]]", &s.Checks[i])
	}
	for i := range s.VirtualServers {
		b.virtualServer(&s.VirtualServers[i])
	}
	if y := s.Sync; y != nil {
		b.table("[sync]", y.Comment)
		b.str("interface", y.Interface)
		b.integer("sync_id", y.SyncID)
		b.str("group", y.Group)
		b.integer("port", y.Port)
		b.integer("ttl", y.TTL)
		if y.MaxLen != nil {
			b.line("maxlen = %d", *y.MaxLen)
		}
	}
	_, err := io.WriteString(w, b.String())
	if err != nil {
		return fmt.Errorf("siteout: %w", err)
	}
	return nil
}

type builder struct{ strings.Builder }

func (b *builder) line(format string, args ...any) {
	fmt.Fprintf(b, format, args...)
	b.WriteByte('\n')
}

func (b *builder) comment(lines []string) {
	for _, l := range lines {
		b.line("# %s", l)
	}
}

func (b *builder) table(head string, comment []string) {
	if b.Len() > 0 {
		b.WriteByte('\n')
	}
	b.comment(comment)
	b.line("%s", head)
}

func (b *builder) str(key, v string) {
	if v != "" {
		b.line("%s = %s", key, Quote(v))
	}
}

func (b *builder) integer(key string, v int) {
	if v != 0 {
		b.line("%s = %d", key, v)
	}
}

func (b *builder) boolean(key string, v bool) { b.line("%s = %t", key, v) }

func (b *builder) duration(key string, d time.Duration) {
	if d != 0 {
		b.str(key, Duration(d))
	}
}

func (b *builder) list(key string, vs []string) {
	if len(vs) == 0 {
		return
	}
	q := make([]string, len(vs))
	for i, v := range vs {
		q[i] = Quote(v)
	}
	b.line("%s = [%s]", key, strings.Join(q, ", "))
}

func (b *builder) group(g *Group) {
	b.table("[[vrrp]]", g.Comment)
	b.str("name", g.Name)
	b.str("interface", g.Interface)
	b.integer("vrid", g.VRID)
	b.integer("version", g.Version)
	b.duration("advert", g.Advert)
	if g.Unicast {
		b.boolean("unicast", true)
	}
	if g.Preempt != nil {
		b.boolean("preempt", *g.Preempt)
	}
	if g.Accept {
		b.boolean("accept", true)
	}
	b.duration("preempt_delay", g.PreemptDelay)
	b.list("vips", g.VIPs)
	if len(g.Priorities) > 0 {
		kv := make([]string, len(g.Priorities))
		for i, p := range g.Priorities {
			kv[i] = fmt.Sprintf("%s = %d", key(p.Node), p.Priority)
		}
		b.line("priorities = { %s }", strings.Join(kv, ", "))
	}
	b.list("notify", g.Notify)
	b.str("sync_group", g.SyncGroup)
	if g.GARPCount != nil {
		b.line("garp_count = %d", *g.GARPCount)
	}
	b.duration("garp_interval", g.GARPInterval)
	if g.GARPRefresh != nil {
		b.str("garp_refresh", Duration(*g.GARPRefresh))
	}
	b.duration("vip_lifetime", g.VIPLifetime)
	for _, t := range g.Track {
		b.table("[[vrrp.track]]", t.Comment)
		b.str("interface", t.Interface)
		b.str("virtual_server", t.VirtualServer)
		b.str("check", t.Check)
		b.line("weight = %d", t.Weight)
	}
}

func (b *builder) virtualServer(vs *VirtualServer) {
	b.table("[[virtual_server]]", vs.Comment)
	b.str("name", vs.Name)
	b.str("address", vs.Address)
	if vs.FWMark != 0 {
		b.line("fwmark = %d", vs.FWMark)
	}
	b.str("family", vs.Family)
	b.str("protocol", vs.Protocol)
	b.str("scheduler", vs.Scheduler)
	b.list("scheduler_flags", vs.SchedFlags)
	b.str("forward", vs.Forward)
	b.duration("persistence", vs.Persistence)
	b.str("persistence_netmask", vs.PersistenceNetmask)
	if vs.Quorum != nil {
		b.line("quorum = %d", *vs.Quorum)
	}
	b.integer("quorum_hysteresis", vs.QuorumHysteresis)
	b.str("sorry_server", vs.SorryServer)
	b.str("on_failure", vs.OnFailure)
	if vs.Check != nil {
		b.check("[virtual_server.check]", vs.Check)
	}
	for _, rs := range vs.RealServers {
		b.table("[[virtual_server.real_server]]", rs.Comment)
		b.str("address", rs.Address)
		b.line("weight = %d", rs.Weight)
		b.str("forward", rs.Forward)
	}
}

func (b *builder) check(head string, c *Check) {
	b.table(head, c.Comment)
	b.str("name", c.Name)
	b.str("type", c.Type)
	b.str("target", c.Target)
	b.integer("port", c.Port)
	b.str("path", c.Path)
	b.str("host", c.Host)
	if len(c.ExpectStatus) > 0 {
		vs := make([]string, len(c.ExpectStatus))
		for i, s := range c.ExpectStatus {
			if _, err := strconv.Atoi(s); err == nil {
				vs[i] = s
			} else {
				vs[i] = Quote(s)
			}
		}
		b.line("expect_status = [%s]", strings.Join(vs, ", "))
	}
	b.duration("interval", c.Interval)
	b.duration("timeout", c.Timeout)
	b.integer("rise", c.Rise)
	b.integer("fall", c.Fall)
	if c.StartDown {
		b.str("start", "down")
	}
	b.list("command", c.Command)
	b.str("query", c.Query)
	b.str("query_type", c.QueryType)
	b.str("helo_name", c.HeloName)
}

// key writes a TOML key: bare when it can be.
func key(k string) string {
	if k != "" && !strings.ContainsFunc(k, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	}) {
		return k
	}
	return Quote(k)
}

// Quote writes v as a TOML basic string.
func Quote(v string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range v {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// Duration spells d as a Go duration without trailing zero units
// ("5m", not "5m0s").
func Duration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// VSName names a virtual server the way both importers do: its
// address and port (with the protocol unless tcp), or its fwmark (with
// the family unless inet). Operators type it in havip drain.
func VSName(addr netip.AddrPort, protocol string, fwmark uint32, family string) string {
	if fwmark != 0 {
		if family == "inet6" {
			return fmt.Sprintf("fwmark-%d-inet6", fwmark)
		}
		return fmt.Sprintf("fwmark-%d", fwmark)
	}
	if protocol != "" && protocol != "tcp" {
		return addr.String() + "/" + protocol
	}
	return addr.String()
}

// Note is one thing an importer could not convert as it stood, at its
// place in the input.
type Note struct {
	File string
	Line int
	Msg  string
	// Unsafe: the site would not do what the input did in a way that
	// matters at once (no VRRP instance, a VIP left out): the importer
	// exits 1.
	Unsafe bool
}

func (n Note) String() string {
	kind := "not converted"
	if n.Unsafe {
		kind = "unsafe"
	}
	if n.Line == 0 {
		return fmt.Sprintf("%s: %s: %s", n.File, kind, n.Msg)
	}
	return fmt.Sprintf("%s:%d: %s: %s", n.File, n.Line, kind, n.Msg)
}

// Unsafe reports whether any note is unsafe.
func Unsafe(ns []Note) bool {
	for _, n := range ns {
		if n.Unsafe {
			return true
		}
	}
	return false
}

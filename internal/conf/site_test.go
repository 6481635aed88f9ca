package conf

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestProblemString(t *testing.T) {
	tests := []struct {
		p    Problem
		want string
	}{
		{Problem{File: "a.toml", Line: 3, Col: 7, Msg: "bad"}, "a.toml:3:7: bad"},
		{Problem{File: "a.toml", Line: 3, Msg: "bad"}, "a.toml:3: bad"},
		{Problem{File: "a.toml", Line: 1, Col: 2, Msg: "odd", Warning: true}, "a.toml:1:2: warning: odd"},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
	if HasErrors([]Problem{{Warning: true}}) || !HasErrors([]Problem{{Warning: true}, {}}) || HasErrors(nil) {
		t.Error("HasErrors does not tell warnings from errors")
	}
}

func TestLoadIOError(t *testing.T) {
	_, _, err := loadT(filepath.Join(t.TempDir(), "missing.toml"))
	if !errors.Is(err, os.ErrNotExist) || !strings.HasPrefix(err.Error(), "conf: ") {
		t.Errorf("loadT(missing) error = %v, want a wrapped ErrNotExist prefixed conf:", err)
	}
}

func TestWarningsKeepTheSite(t *testing.T) {
	s, ps := parseT("w.toml", []byte(head+group+"priorities = { lb2 = 150 }\n"))
	if s == nil || len(ps) != 1 || !ps[0].Warning {
		t.Fatalf("Parse = %v, %v; want a site and one warning", s, ps)
	}
	if s.File != "w.toml" {
		t.Errorf("File = %q", s.File)
	}
}

func TestSiteLookups(t *testing.T) {
	s := mustLoad(t, filepath.Join("..", "..", "examples", "havip.toml"))

	lb1, err := s.SelectNode("lb1")
	if err != nil || lb1.Name != "lb1" {
		t.Fatalf("SelectNode(lb1) = %v, %v", lb1, err)
	}
	_, err = s.SelectNode("lb9")
	if !errors.Is(err, ErrNoNode) || !strings.Contains(err.Error(), "lb1, lb2") {
		t.Errorf("SelectNode(lb9) error = %v, want ErrNoNode listing lb1, lb2", err)
	}
	if diff := cmp.Diff([]Node{s.Nodes[1]}, s.Peers("lb1"), netipCmp); diff != "" {
		t.Errorf("Peers(lb1) (-want +got):\n%s", diff)
	}

	front, front6 := s.Group("front"), s.Group("front6")
	if front == nil || front6 == nil || s.Group("nope") != nil {
		t.Fatal("Group lookup broken")
	}
	lb2, _ := s.SelectNode("lb2")
	prios := [][2]uint8{{front.PriorityOf(lb1), front.PriorityOf(lb2)}, {front6.PriorityOf(lb1), front6.PriorityOf(lb2)}}
	if diff := cmp.Diff([][2]uint8{{150, 100}, {150, 200}}, prios); diff != "" {
		t.Errorf("priorities (-want +got):\n%s", diff)
	}
	if vs := s.VirtualServer("shop"); vs == nil || vs.FWMark != 10 || s.VirtualServer("nope") != nil {
		t.Errorf("VirtualServer lookup broken: %v", vs)
	}
	if c := s.Check("statsd"); c == nil || c.Type != "udp" || s.Check("nope") != nil {
		t.Errorf("Check lookup broken: %v", c)
	}
}

func TestSelectNodeByHostname(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	short, _, _ := strings.Cut(host, ".")
	for _, name := range []string{host, short} {
		text := strings.Replace(head, `name = "lb2"`, `name = "`+name+`"`, 1)
		s, ps := parseT("h.toml", []byte(text))
		if s == nil {
			t.Fatalf("Parse: %v", ps)
		}
		n, err := s.SelectNode("")
		if err != nil || n.Name != name {
			t.Errorf("SelectNode(\"\") with a node named %q = %v, %v", name, n, err)
		}
	}
	s, _ := parseT("h.toml", []byte(head))
	if _, err := s.SelectNode(""); !errors.Is(err, ErrNoNode) || !strings.Contains(err.Error(), "--node") {
		t.Errorf("SelectNode(\"\") without a matching node: %v", err)
	}
}

// TestPositions checks the key index on the TOML forms that move keys
// around: headers with arrays of tables, dotted and quoted keys, inline
// tables, multi-line arrays and strings holding brackets and quotes.
func TestPositions(t *testing.T) {
	src := `# [not] = "a header"
top = "a [b] = c" # comment [x]
[[vrrp]]
  name = 'x'
  priorities = { lb1 = 1, "lb.2" = 2 }
[[vrrp]]
vips = [
  "10.0.0.1/24", # one
  "10.0.0.2/24",
]
notify = """
[fake]
key = 1"""
  [[vrrp.track]]
  interface = "eth0"
  [[vrrp.track]]
  check.name = "c"
[vrrp.priorities]
lb1 = 3
[a . "b c" . d]
e = [{ f = 1, g = [2, { h = 3 }] }, { f = 4 }]
`
	got := indexPositions([]byte(src)).paths()
	want := map[string]pos{
		"top":                         {2, 1},
		"vrrp":                        {3, 1},
		"vrrp[0]":                     {3, 1},
		"vrrp[0].name":                {4, 3},
		"vrrp[0].priorities":          {5, 3},
		"vrrp[0].priorities.lb1":      {5, 18},
		`vrrp[0].priorities."lb.2"`:   {5, 27},
		"vrrp[1]":                     {6, 1},
		"vrrp[1].vips":                {7, 1},
		"vrrp[1].vips[0]":             {8, 3},
		"vrrp[1].vips[1]":             {9, 3},
		"vrrp[1].notify":              {11, 1},
		"vrrp[1].track":               {14, 3},
		"vrrp[1].track[0]":            {14, 3},
		"vrrp[1].track[0].interface":  {15, 3},
		"vrrp[1].track[1]":            {16, 3},
		"vrrp[1].track[1].check":      {17, 3},
		"vrrp[1].track[1].check.name": {17, 3},
		"vrrp[1].priorities":          {18, 1},
		"vrrp[1].priorities.lb1":      {19, 1},
		"a":                           {20, 1},
		`a."b c"`:                     {20, 1},
		`a."b c".d`:                   {20, 1},
		`a."b c".d.e`:                 {21, 1},
		`a."b c".d.e[0]`:              {21, 6},
		`a."b c".d.e[0].f`:            {21, 8},
		`a."b c".d.e[0].g`:            {21, 15},
		`a."b c".d.e[0].g[0]`:         {21, 20},
		`a."b c".d.e[0].g[1]`:         {21, 23},
		`a."b c".d.e[0].g[1].h`:       {21, 25},
		`a."b c".d.e[1]`:              {21, 37},
		`a."b c".d.e[1].f`:            {21, 39},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(pos{})); diff != "" {
		t.Errorf("indexPositions (-want +got):\n%s", diff)
	}
}

// paths spells out every path of ix, for comparing with a table of them.
func (ix *positions) paths() map[string]pos {
	out := map[string]pos{}
	var walk func(n int, path string)
	walk = func(n int, path string) {
		if n > 0 {
			out[path] = ix.at(n)
		}
		for c := ix.nodes[n].first; c != noNode; c = ix.nodes[c].next {
			walk(int(c), join(path, ix.names[ix.nodes[c].label-1]))
		}
		for i := range ix.elems(ix.nodes[n]) {
			walk(int(ix.lists[ix.nodes[n].elems-1][i]), index(path, i))
		}
	}
	walk(0, "")
	return out
}

func TestRevision(t *testing.T) {
	// sha256sum of head, first 12 hex digits.
	s, _ := parseT("a.toml", []byte(head))
	if s.Revision != "72d4b26e0c73" {
		t.Errorf("Revision = %q", s.Revision)
	}
	if s, _ := parseT("a.toml", []byte(head+"# same\n")); s.Revision != "b6d81165ea53" {
		t.Errorf("Revision after a comment = %q; any byte changes it", s.Revision)
	}
}

func TestAdvertSize(t *testing.T) {
	vips := func(format string, n int) []netip.Prefix {
		out := make([]netip.Prefix, n)
		for i := range out {
			out[i] = netip.MustParsePrefix(fmt.Sprintf(format, i+1))
		}
		return out
	}
	tests := []struct {
		g    Group
		want int
	}{
		{Group{Version: 3, VIPs: vips("10.0.0.%d/24", 1)}, 20 + 8 + 4},
		{Group{Version: 2, VIPs: vips("10.0.0.%d/24", 1)}, 20 + 8 + 4 + 8},
		{Group{Version: 2, VIPs: vips("10.0.%d.1/16", 255)}, 1056},
		{Group{Version: 3, VIPs: vips("2001:db8::%x/64", 90)}, 1488},
		{Group{Version: 3, VIPs: vips("2001:db8::%x/64", 100)}, 1648},
	}
	for _, tt := range tests {
		if got := tt.g.AdvertSize(); got != tt.want {
			t.Errorf("v%d with %d VIPs like %s: AdvertSize() = %d, want %d", tt.g.Version, len(tt.g.VIPs), tt.g.VIPs[0], got, tt.want)
		}
	}
}

func TestSyncGroupMembers(t *testing.T) {
	s := mustLoad(t, filepath.Join("..", "..", "examples", "havip.toml"))
	if diff := cmp.Diff([]string{"front6", "gateway6"}, s.SyncGroupMembers("nat6")); diff != "" {
		t.Errorf("SyncGroupMembers(nat6) (-want +got):\n%s", diff)
	}
	if got := s.SyncGroupMembers(""); got != nil {
		t.Errorf("SyncGroupMembers(\"\") = %v, want none: \"\" is no sync group", got)
	}
}

func TestAdvertSources(t *testing.T) {
	pre := netip.MustParsePrefix
	site := func(ll1, ll2 string) *Site {
		s := &Site{Nodes: []Node{{Name: "lb1", Address: netip.MustParseAddr("10.0.0.1")}, {Name: "lb2", Address: netip.MustParseAddr("10.0.0.2")}}}
		for i, ll := range []string{ll1, ll2} {
			if ll != "" {
				s.Nodes[i].LinkLocal = netip.MustParseAddr(ll)
			}
		}
		return s
	}
	v4 := &Group{VIPs: []netip.Prefix{pre("10.0.0.100/24")}}
	v6 := &Group{VIPs: []netip.Prefix{pre("2001:db8::100/64")}}
	anyone := &Group{VIPs: []netip.Prefix{pre("10.0.0.100/24")}, AcceptUnknownSources: true}
	tests := []struct {
		name string
		s    *Site
		g    *Group
		self string
		want []netip.Prefix // nil: every source
	}{
		{"IPv4: the node addresses", site("fe80::1", ""), v4, "lb1", []netip.Prefix{pre("10.0.0.1/32"), pre("10.0.0.2/32")}},
		{"IPv6: the link-locals", site("fe80::1", "fe80::2"), v6, "lb1", []netip.Prefix{pre("fe80::1/128"), pre("fe80::2/128")}},
		{"IPv6: the peer has none", site("fe80::1", ""), v6, "lb1", []netip.Prefix{pre("fe80::1/128"), pre("fe80::/10")}},
		{"IPv6: only we have none", site("", "fe80::2"), v6, "lb1", []netip.Prefix{pre("fe80::2/128")}},
		{"accept_unknown_sources", site("fe80::1", "fe80::2"), anyone, "lb1", nil},
	}
	for _, tt := range tests {
		got := tt.s.AdvertSources(tt.g, tt.self)
		if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
			t.Errorf("%s: (-want +got):\n%s", tt.name, diff)
		}
	}
}

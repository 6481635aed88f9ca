package conf

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// netipCmp compares the netip value types, whose fields are unexported.
var netipCmp = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
	cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b }),
}

// ignoreRevision leaves Site.Revision to TestRevision, so that editing an
// example's comments does not break the tests of its contents.
var ignoreRevision = cmpopts.IgnoreFields(Site{}, "Revision")

func mustLoad(t *testing.T, path string) *Site {
	t.Helper()
	// Parse, not Load: the examples name files (the pair key) of a
	// director, not of this machine.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, ps := parseT(path, data)
	for _, p := range ps {
		t.Errorf("unexpected problem: %s", p)
	}
	if s == nil {
		t.Fatalf("loadT(%s) returned no site", path)
	}
	return s
}

func TestMinimalExample(t *testing.T) {
	path := filepath.Join("..", "..", "examples", "minimal.toml")
	got := mustLoad(t, path)
	tcp := Check{Type: "tcp", Interval: 2 * time.Second, Timeout: time.Second, Rise: 2, Fall: 3}
	want := &Site{
		File:           path,
		Name:           "small",
		ScriptSecurity: true,
		ControlSocket:  "/run/havip/havip.sock",
		Metrics:        "127.0.0.1:9110",
		StateDir:       "/var/lib/havip",
		PairPort:       7519,
		Nodes: []Node{
			{Name: "lb1", Address: netip.MustParseAddr("192.168.0.11"), Priority: 150},
			{Name: "lb2", Address: netip.MustParseAddr("192.168.0.12"), Priority: 100},
		},
		Groups: []Group{{
			Name: "front", Interface: "eth0", VRID: 51, Advert: time.Second, Version: 3,
			Preempt: true, VIPs: []netip.Prefix{netip.MustParsePrefix("192.168.0.210/24")},
			NotifyTimeout: 10 * time.Second, GARPCount: 5, GARPInterval: 100 * time.Millisecond,
			GARPRefresh: 10 * time.Second, VIPLifetime: 5 * time.Second,
		}},
		VirtualServers: []VirtualServer{{
			Name: "web", Address: netip.MustParseAddrPort("192.168.0.210:80"), Family: "inet",
			Protocol: "tcp", Scheduler: "wlc", Forward: "dr",
			PersistenceNetmask: netip.MustParsePrefix("0.0.0.0/32"),
			Quorum:             1, OnFailure: "remove", Check: tcp,
			RealServers: []RealServer{
				{Address: netip.MustParseAddrPort("192.168.0.175:80"), Weight: 1},
				{Address: netip.MustParseAddrPort("192.168.0.145:80"), Weight: 1},
			},
		}},
	}
	if diff := cmp.Diff(want, got, netipCmp, ignoreRevision); diff != "" {
		t.Errorf("minimal.toml (-want +got):\n%s", diff)
	}
}

func TestReferenceExample(t *testing.T) {
	path := filepath.Join("..", "..", "examples", "havip.toml")
	got := mustLoad(t, path)
	addr := netip.MustParseAddr
	ap := netip.MustParseAddrPort
	pre := netip.MustParsePrefix
	groupDefaults := func(g Group) Group {
		g.NotifyTimeout, g.GARPCount, g.GARPInterval = 10*time.Second, 5, 100*time.Millisecond
		g.GARPRefresh, g.VIPLifetime = 10*time.Second, 5*time.Second
		return g
	}
	want := &Site{
		File:           path,
		Name:           "web-dc1",
		ScriptSecurity: true,
		ControlSocket:  "/run/havip/havip.sock",
		Metrics:        "127.0.0.1:9110",
		StateDir:       "/var/lib/havip",
		PairPort:       7519,
		PairKey:        "/etc/havip/pair.key",
		Nodes: []Node{
			{Name: "lb1", Address: addr("192.168.0.11"), Priority: 150, LinkLocal: addr("fe80::11")},
			{Name: "lb2", Address: addr("192.168.0.12"), Priority: 100, LinkLocal: addr("fe80::12")},
		},
		Groups: []Group{
			groupDefaults(Group{
				Name: "front", Interface: "eth0", VRID: 51, Advert: time.Second, Version: 3,
				Unicast: true, Preempt: true, PreemptDelay: 30 * time.Second,
				VIPs:   []netip.Prefix{pre("192.168.0.210/24"), pre("192.168.0.211/24")},
				Notify: []string{"/etc/havip/notify", "front"},
				Track: []Track{
					{Interface: "eth1"},
					{VirtualServer: "web", Weight: -60},
					{Check: "upstream-dns", Weight: -20},
				},
			}),
			groupDefaults(Group{
				Name: "front6", Interface: "eth0", VRID: 52, Advert: 500 * time.Millisecond, Version: 3,
				Preempt: true, VIPs: []netip.Prefix{pre("2001:db8:0:1::210/64")},
				Priorities: map[string]uint8{"lb2": 200}, SyncGroup: "nat6",
				Track: []Track{{Interface: "eth0", Weight: -50}},
			}),
			groupDefaults(Group{
				Name: "gateway6", Interface: "eth1", VRID: 53, Advert: time.Second, Version: 3,
				Preempt: true, VIPs: []netip.Prefix{pre("2001:db8:0:2::1/64")},
				Priorities: map[string]uint8{"lb2": 200}, SyncGroup: "nat6",
			}),
		},
		VirtualServers: []VirtualServer{
			{
				Name: "web", Address: ap("192.168.0.210:80"), Family: "inet", Protocol: "tcp",
				Scheduler: "wrr", Forward: "dr", PersistenceNetmask: pre("0.0.0.0/32"),
				Quorum: 1, OnFailure: "remove",
				Check: Check{Type: "http", Path: "/healthz", Host: "www.example.com", ExpectStatus: []StatusRange{{200, 200}, {202, 204}},
					Method: "GET", Headers: []Header{{"X-Health-Check", "havip"}}, ExpectBody: "ok",
					Interval: 2 * time.Second, Timeout: time.Second, Rise: 2, Fall: 3},
				RealServers: []RealServer{
					{Address: ap("192.168.0.175:80"), Weight: 1},
					{Address: ap("192.168.0.145:80"), Weight: 2},
					{Address: ap("10.20.0.10:80"), Weight: 1, Forward: "tun"},
				},
			},
			{
				Name: "dns", Address: ap("192.168.0.211:53"), Family: "inet", Protocol: "udp",
				Scheduler: "sh", SchedFlags: []string{"sh-fallback", "sh-port"}, Forward: "tun",
				PersistenceNetmask: pre("0.0.0.0/32"), Quorum: 1, OnFailure: "remove",
				Check: Check{Type: "dns", Port: 53, Query: "health.example.com.", QueryType: "A",
					Interval: 2 * time.Second, Timeout: time.Second, Rise: 2, Fall: 3},
				RealServers: []RealServer{
					{Address: ap("192.168.0.175:53"), Weight: 1},
					{Address: ap("192.168.0.145:53"), Weight: 1},
				},
			},
			{
				Name: "api", Address: ap("[2001:db8:0:1::210]:443"), Family: "inet6", Protocol: "tcp",
				Scheduler: "lc", Forward: "nat", Persistence: 300 * time.Second,
				PersistenceNetmask: pre("::/64"), Quorum: 2, SorryServer: ap("[2001:db8:0:2::50]:8443"),
				OnFailure: "weight0",
				Check: Check{Type: "https", Path: "/ready", ExpectStatus: []StatusRange{{200, 200}}, Method: "GET",
					ExpectBodyRegex: `"status":\s*"ready"`, TLSVerify: true, TLSCA: "/etc/havip/api-ca.pem", TLSServerName: "api.example.com",
					Interval: 2 * time.Second, Timeout: time.Second, Rise: 2, Fall: 3},
				RealServers: []RealServer{
					{Address: ap("[2001:db8:0:2::11]:8443"), Weight: 1},
					{Address: ap("[2001:db8:0:2::12]:8443"), Weight: 1},
				},
			},
			{
				Name: "shop", FWMark: 10, Family: "inet", Protocol: "tcp",
				Scheduler: "mh", SchedFlags: []string{"mh-port"}, Forward: "dr",
				PersistenceNetmask: pre("0.0.0.0/32"), Quorum: 1, OnFailure: "remove",
				Check: Check{Type: "exec", Command: []string{"/usr/local/lib/havip/probe-shop", "--quick"},
					Interval: 5 * time.Second, Timeout: 3 * time.Second, Rise: 2, Fall: 3},
				RealServers: []RealServer{
					{Address: ap("192.168.0.175:443"), Weight: 1},
					{Address: ap("192.168.0.145:443"), Weight: 1},
				},
			},
		},
		Checks: []Check{
			{Name: "upstream-dns", Type: "dns", Target: "192.168.0.53:53", Query: "example.com.",
				QueryType: "MX", ExpectAnswer: "mail.example.com.",
				Interval: 2 * time.Second, Timeout: time.Second, Rise: 2, Fall: 3},
			{Name: "mail", Type: "smtp", Target: "192.168.0.25:25", HeloName: "lb.example.com",
				Interval: 2 * time.Second, Timeout: time.Second, Rise: 2, Fall: 3},
			{Name: "gateway", Type: "ping", Target: "192.168.0.1",
				Interval: 2 * time.Second, Timeout: time.Second, Rise: 2, Fall: 3},
			{Name: "statsd", Type: "udp", Target: "192.168.0.60:8125", Send: "ping", Expect: "pong",
				Interval: 2 * time.Second, Timeout: time.Second, Rise: 2, Fall: 3},
		},
		Sync: &Sync{Interface: "eth1", SyncID: 10, Group: addr("224.0.0.81"), Port: 8848, TTL: 1, MaxLen: 100,
			Version: 1, Threshold: 3, Period: 0, RefreshPeriod: 10 * time.Second, Retries: 0, Flush: 20 * time.Millisecond},
	}
	if diff := cmp.Diff(want, got, netipCmp, ignoreRevision); diff != "" {
		t.Errorf("havip.toml (-want +got):\n%s", diff)
	}
}

// TestReferenceUsesEveryKey keeps the reference example complete: every
// key the decoder asks for appears in it.
func TestReferenceUsesEveryKey(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "examples", "havip.toml"))
	if err != nil {
		t.Fatal(err)
	}
	written := map[string]bool{}
	for path := range indexPositions(data).paths() {
		written[generic(path)] = true
	}
	for k := range askedKeys(t) {
		if !written[k] {
			t.Errorf("examples/havip.toml does not show key %s", k)
		}
	}
}

// askedKeys decodes a file that sets nothing and returns the generic path
// of every key the decoder asked for.
func askedKeys(t *testing.T) map[string]bool {
	t.Helper()
	p := &parser{file: "x", ix: newPositions(0)}
	asked := map[string]bool{}
	root := p.newTable("", 0, pos{}, map[string]any{
		"site":           map[string]any{},
		"node":           []map[string]any{{}},
		"vrrp":           []map[string]any{{"track": []map[string]any{{}}, "priorities": map[string]any{}}},
		"virtual_server": []map[string]any{{"check": map[string]any{}, "real_server": []map[string]any{{}}}},
		"check":          []map[string]any{{}},
		"sync":           map[string]any{},
	})
	p.tracer = func(path string) { asked[generic(path)] = true }
	p.site(root)
	if len(asked) < 50 {
		t.Fatalf("only %d keys recorded; the tracer is not wired", len(asked))
	}
	return asked
}

// generic turns vrrp[1].track[0].weight into vrrp[].track[].weight, and
// names the keys both kinds of check share alike.
func generic(path string) string {
	var b strings.Builder
	skip := false
	for _, r := range path {
		switch {
		case r == '[':
			skip = true
			b.WriteString("[]")
		case r == ']':
			skip = false
		case !skip:
			b.WriteRune(r)
		}
	}
	g := strings.Replace(b.String(), "virtual_server[].check.", "check:", 1)
	if rest, ok := strings.CutPrefix(g, "check[]."); ok && rest != "name" && rest != "target" {
		g = "check:" + rest
	}
	return g
}

// TestEveryProblemReported loads a file with many problems of every kind
// and wants all of them, not just the first.
func TestEveryProblemReported(t *testing.T) {
	s, ps, err := loadT(filepath.Join("testdata", "broken.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if s != nil {
		t.Error("Load returned a site for an invalid file")
	}
	got := make([]string, len(ps))
	for i, p := range ps {
		got[i] = p.String()
	}
	want := []string{
		`testdata/broken.toml:4:1: site.control_socket: "run/x" must be an absolute path`,
		`testdata/broken.toml:5:1: site.metrics: "localhost": not host:port (write host:port, or "" to disable)`,
		`testdata/broken.toml:6:1: unknown key site.colour (site takes control_socket, metrics, name, pair_key, pair_port, script_group, script_security, script_user, state_dir)`,
		`testdata/broken.toml:8:1: warning: node[0]: no link_local on node a and a, so IPv6 groups g and g accept adverts from any link-local address (a stranger's too)`,
		`testdata/broken.toml:11:1: node[0].priority: priority 255 is only for an address owner, and 10.0.0.1 is not a VIP of vrrp group "g"; override it in that group's priorities`,
		`testdata/broken.toml:14:1: node[1].name: duplicate node name "a" (first at line 9)`,
		`testdata/broken.toml:15:1: node[1].address: "10.0.0.1/24" is a prefix; write the address alone`,
		`testdata/broken.toml:16:1: node[1].priority: 0 is out of range 1..255`,
		`testdata/broken.toml:21:1: vrrp[0].vrid: 300 is out of range 1..255`,
		`testdata/broken.toml:22:1: vrrp[0].advert: 15ms cannot be carried by VRRPv3: it needs a multiple of 10ms in 10ms..40.95s`,
		`testdata/broken.toml:23:9: vrrp[0].vips[0]: VIP "10.0.0.100" is not a prefix: write 10.0.0.100/32, or the prefix length of the interface's subnet`,
		`testdata/broken.toml:23:41: vrrp[0].vips[2]: expected a string, got an integer`,
		`testdata/broken.toml:24:16: vrrp[0].priorities.a: priority 255 is only for an address owner, and node a's address 10.0.0.1 is not a VIP of this group`,
		`testdata/broken.toml:24:25: vrrp[0].priorities.zz: no [[node]] named "zz"`,
		`testdata/broken.toml:25:1: unknown key vrrp[0].prioritty (vrrp[0] takes accept, accept_unknown_sources, advert, garp_count, garp_interval, garp_refresh, interface, name, notify, notify_timeout, preempt, preempt_delay, priorities, sync_group, track, unicast, version, vip_lifetime, vips, vrid)`,
		`testdata/broken.toml:26:11: vrrp[0].track[0]: a track takes only one of interface, virtual_server or check`,
		`testdata/broken.toml:26:33: vrrp[0].track[0].check: no top-level [[check]] named "nope"`,
		`testdata/broken.toml:26:51: vrrp[0].track[1]: a track needs one of interface, virtual_server or check`,
		`testdata/broken.toml:26:53: vrrp[0].track[1].weight: 300 is out of range -254..254`,
		`testdata/broken.toml:30:1: vrrp[1].name: duplicate vrrp group name "g" (first at line 19)`,
		`testdata/broken.toml:34:1: vrrp[1].advert: 1.5s cannot be carried by VRRPv2: it needs whole seconds in 1s..255s`,
		`testdata/broken.toml:35:9: vrrp[1].vips[0]: IPv6 VIP 2001:db8::2/64 needs version = 3 (VRRPv2 is IPv4 only)`,
		`testdata/broken.toml:36:4: vrrp[1].vips[1]: VIP 10.0.0.100/24 mixes address families with 2001:db8::2/64; put IPv4 and IPv6 VIPs in separate groups`,
		`testdata/broken.toml:37:4: vrrp[1].vips[2]: VIP "bogus" is not an IP prefix like 192.168.0.210/24`,
		`testdata/broken.toml:39:1: vrrp[1].priorities.b: no [[node]] named "b"`,
		`testdata/broken.toml:43:1: virtual_server[0].address: "10.0.0.100" needs a port: write 10.0.0.100:80`,
		`testdata/broken.toml:44:1: virtual_server[0].fwmark: a virtual server takes either address or fwmark, not both`,
		`testdata/broken.toml:45:1: virtual_server[0].protocol: "icmp" is not one of tcp, udp, sctp`,
		`testdata/broken.toml:46:1: virtual_server[0].check: type exec needs command (an argv array)`,
		`testdata/broken.toml:47:1: virtual_server[0].check.interval: interval (1s) must be longer than timeout (1s)`,
		`testdata/broken.toml:48:1: unknown key virtual_server[0].check.tmeout (did you mean timeout?)`,
		`testdata/broken.toml:49:1: virtual_server[0].quorum: 3 is more than the 2 real servers`,
		`testdata/broken.toml:50:43: unknown key virtual_server[0].real_server[0].wieght (did you mean weight?)`,
		`testdata/broken.toml:50:59: virtual_server[0].real_server[1].address: real server 10.0.0.5:80 is listed twice (also at line 50)`,
		`testdata/broken.toml:50:84: virtual_server[0].real_server[1].weight: 70000 is out of range 0..65535`,
		`testdata/broken.toml:52:1: check[0]: type http needs target (host:port)`,
		`testdata/broken.toml:56:1: sync: interface is required`,
		`testdata/broken.toml:57:1: sync.sync_id: 256 is out of range 0..255`,
		`testdata/broken.toml:58:1: sync.group: 10.0.0.1 is not a multicast address`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
}

// TestProbeDefaults: the defaults of the probe keys live here, and the
// probes take them as given.
func TestProbeDefaults(t *testing.T) {
	text := head + group + `[[check]]
name = "h"
type = "http"
target = "10.0.0.80"
[[check]]
name = "d"
type = "dns"
target = "10.0.0.53:53"
query = "example.com."
[[check]]
name = "s"
type = "smtp"
target = "10.0.0.25:25"
[[check]]
name = "p"
type = "ping"
target = "10.0.0.1"
`
	s, ps := parseT("t.toml", []byte(text))
	if len(ps) != 0 || s == nil {
		t.Fatalf("problems: %v", ps)
	}
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	timing := func(c Check) Check {
		c.Interval, c.Timeout, c.Rise, c.Fall = 2*time.Second, time.Second, 2, 3
		return c
	}
	want := []Check{
		timing(Check{Name: "h", Type: "http", Target: "10.0.0.80", Path: "/", Method: "GET", ExpectStatus: []StatusRange{{200, 200}}}),
		timing(Check{Name: "d", Type: "dns", Target: "10.0.0.53:53", Query: "example.com.", QueryType: "A"}),
		timing(Check{Name: "s", Type: "smtp", Target: "10.0.0.25:25", HeloName: host}),
		timing(Check{Name: "p", Type: "ping", Target: "10.0.0.1"}),
	}
	if diff := cmp.Diff(want, s.Checks); diff != "" {
		t.Errorf("checks (-want +got):\n%s", diff)
	}
}

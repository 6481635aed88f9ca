package lvs

import (
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/havip/havip/examples"
	"github.com/havip/havip/internal/conf"
	h "github.com/havip/havip/test/e2e/harness"
)

// The lab's addresses (benchmarking range, only inside test namespaces):
// the front segment is the harness's (directors h.Addr1 and h.Addr2, the
// client, the VIP); NAT's real servers sit on a back segment behind the
// directors.
var (
	frontNet = netip.MustParseAddr("198.18.0.0")
	labVIP   = netip.MustParsePrefix(h.DefaultVIP).Addr()
	frontRS1 = netip.MustParseAddr("198.18.0.21")
	frontRS2 = netip.MustParseAddr("198.18.0.22")
	backNet  = netip.MustParseAddr("198.19.0.0")
	backGW   = netip.MustParseAddr("198.19.0.1")
	back1    = netip.MustParseAddr("198.19.0.11") // lb1's eth1
	back2    = netip.MustParseAddr("198.19.0.12")
	backRS1  = netip.MustParseAddr("198.19.0.21")
	backRS2  = netip.MustParseAddr("198.19.0.22")
)

// labAddrs is, for each examples/MODE.toml, every IPv4 address it writes
// (the seed's, in keys and comments) and the lab's in its place. The
// interface names (eth0, eth1) are the lab's already.
var labAddrs = map[string]map[string]netip.Addr{
	"dr": {
		"192.168.0.0": frontNet, "192.168.0.11": h.Addr1, "192.168.0.12": h.Addr2,
		"192.168.0.210": labVIP, "192.168.0.175": frontRS1, "192.168.0.145": frontRS2,
	},
	"tun": {
		"192.168.25.42": h.Addr1, "192.168.25.40": h.Addr2,
		"192.168.25.41": labVIP, "192.168.25.44": frontRS1, "192.168.25.45": frontRS2,
	},
	"nat": {
		"202.99.59.0": frontNet, "202.99.59.111": h.Addr1, "202.99.59.112": h.Addr2, "202.99.59.110": labVIP,
		"10.1.1.0": backNet, "10.1.1.1": backGW, "10.1.1.11": back1, "10.1.1.12": back2,
		"10.1.1.2": backRS1, "10.1.1.3": backRS2,
	},
}

// labTiming is the lab's check timing in place of the examples' 2s/1s:
// under software emulation the test would otherwise wait 6s and more for a
// real server's loss and return (fall 3, rise 2 stay as written).
var labTiming = [][2]string{
	{`interval = "2s"`, `interval = "300ms"`},
	{`timeout = "1s"`, `timeout = "250ms"`},
}

// examplePairKey is the pair key the examples name, a director's file.
const examplePairKey = `pair_key = "/etc/havip/pair.key"`

var ipv4Literal = regexp.MustCompile(`\b\d{1,3}(\.\d{1,3}){3}\b`)

// labSite is examples/MODE.toml with the lab's addresses (labAddrs),
// check timing and pair key (pairKey) in place of the example's.
func labSite(mode, pairKey string) (string, error) {
	b, err := examples.Files.ReadFile(mode + ".toml")
	if err != nil {
		return "", fmt.Errorf("lab site: %w", err)
	}
	return mapSite(mode, b, labAddrs[mode], pairKey)
}

// mapSite replaces the addresses, the check timing and the pair key of the
// example named mode. It fails if the example writes an address addrs
// does not map, no longer writes one it maps, or lacks a text labTiming
// or the pair key replaces.
func mapSite(mode string, example []byte, addrs map[string]netip.Addr, pairKey string) (string, error) {
	used := map[string]bool{}
	unknown := map[string]bool{}
	site := ipv4Literal.ReplaceAllStringFunc(string(example), func(a string) string {
		to, ok := addrs[a]
		if !ok {
			unknown[a] = true
			return a
		}
		used[a] = true
		return to.String()
	})
	if len(unknown) > 0 {
		return "", fmt.Errorf("lab site: examples/%s.toml writes %v, which labAddrs does not map", mode, slices.Sorted(maps.Keys(unknown)))
	}
	for _, a := range slices.Sorted(maps.Keys(addrs)) {
		if !used[a] {
			return "", fmt.Errorf("lab site: examples/%s.toml no longer writes %s (labAddrs maps it)", mode, a)
		}
	}
	for _, r := range append(labTiming, [2]string{examplePairKey, fmt.Sprintf("pair_key = %q", pairKey)}) {
		if !strings.Contains(site, r[0]) {
			return "", fmt.Errorf("lab site: examples/%s.toml has no %s to replace", mode, r[0])
		}
		site = strings.ReplaceAll(site, r[0], r[1])
	}
	return site, nil
}

// step is one command of an example's comments, on every director (lb) or
// every real server (rs): the lines written `#   lb# COMMAND` and
// `#   rs# COMMAND`.
type step struct {
	on   string
	argv []string
}

var stepLine = regexp.MustCompile(`(?m)^#\s+(lb|rs)# (.+)$`)

func steps(site string) []step {
	var out []step
	for _, m := range stepLine.FindAllStringSubmatch(site, -1) {
		out = append(out, step{on: m[1], argv: strings.Fields(m[2])})
	}
	return out
}

// Each example maps onto the lab completely, the result is a valid site
// file, and its real servers have steps to run; an address the table does
// not know fails loudly.
func TestLabSites(t *testing.T) {
	for _, mode := range []string{"dr", "tun", "nat"} {
		site, err := labSite(mode, "/run/lab/pair.key")
		if err != nil {
			t.Fatal(err)
		}
		s, ps := conf.Parse(mode+".toml", []byte(site))
		if len(ps) > 0 || s == nil {
			t.Fatalf("%s: the lab's site file: %v", mode, ps)
		}
		if vs := s.VirtualServers; len(vs) != 1 || vs[0].Forward != mode || vs[0].Address.Addr() != labVIP || len(vs[0].RealServers) != 2 {
			t.Errorf("%s: virtual servers %+v", mode, vs)
		}
		if !slices.ContainsFunc(steps(site), func(s step) bool { return s.on == "rs" }) {
			t.Errorf("%s: no real-server step in the comments", mode)
		}
	}
	dr, err := examples.Files.ReadFile("dr.toml")
	if err != nil {
		t.Fatal(err)
	}
	short := maps.Clone(labAddrs["dr"])
	delete(short, "192.168.0.145")
	long := maps.Clone(labAddrs["dr"])
	long["192.0.2.1"] = labVIP
	for _, tc := range []struct {
		name    string
		example []byte
		addrs   map[string]netip.Addr
		want    string
	}{
		{"unmapped address", dr, short, "writes [192.168.0.145], which labAddrs does not map"},
		{"address gone", dr, long, "no longer writes 192.0.2.1"},
		{"timing gone", []byte(strings.ReplaceAll(string(dr), `interval = "2s"`, `interval = "3s"`)), labAddrs["dr"], `has no interval = "2s"`},
	} {
		if _, err := mapSite("dr", tc.example, tc.addrs, ""); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
}

package ipvsync

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/havip/havip/internal/conf"
	"golang.org/x/sys/unix"
)

// cmpNetip compares netip values by ==.
var cmpNetip = cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{}, netip.Prefix{})

// downSet is a Health with the listed real servers down.
type downSet map[netip.AddrPort]bool

func (d downSet) Up(_ string, rs netip.AddrPort) bool { return !d[rs] }

var (
	vip  = netip.MustParseAddrPort("192.168.0.210:80")
	rs1  = netip.MustParseAddrPort("192.168.0.175:80")
	rs2  = netip.MustParseAddrPort("192.168.0.145:80")
	vip6 = netip.MustParseAddrPort("[2001:db8::210]:443")
	rs61 = netip.MustParseAddrPort("[2001:db8::175]:443")
)

// siteHead is a valid site without virtual servers, its groups holding
// the VIPs of the tests.
const siteHead = `[site]
name = "t"
[[node]]
name = "lb1"
address = "192.168.0.11"
[[node]]
name = "lb2"
address = "192.168.0.12"
priority = 90
[[vrrp]]
name = "v4"
interface = "eth0"
vrid = 1
vips = ["192.168.0.210/24"]
[[vrrp]]
name = "v6"
interface = "eth0"
vrid = 2
vips = ["2001:db8::210/64"]
`

// virtualServers parses [[virtual_server]] tables into what conf hands
// Desired: complete, defaults filled in, validated. An invalid text is a
// bug in the test.
func virtualServers(text string) []conf.VirtualServer {
	s, ps := conf.Parse("test.toml", []byte(siteHead+text))
	if s == nil {
		panic(fmt.Sprintf("invalid test site: %v", ps))
	}
	return s.VirtualServers
}

// webWith is the web virtual server (wrr, rs1 weight 1, rs2 weight 3)
// with more keys for itself and for rs2.
func webWith(keys, rs2Keys string) conf.VirtualServer {
	return virtualServers(`[[virtual_server]]
name = "web"
address = "192.168.0.210:80"
scheduler = "wrr"
` + keys + `
[[virtual_server.real_server]]
address = "192.168.0.175:80"
[[virtual_server.real_server]]
address = "192.168.0.145:80"
weight = 3
` + rs2Keys)[0]
}

func web() conf.VirtualServer { return webWith("", "") }

// desired is Desired for a list written out.
func desired(h Health, vss ...conf.VirtualServer) Table { return Desired(vss, h) }

// web2 is a second service of ours, on another port of the same VIP.
func web2() conf.VirtualServer {
	v := web()
	v.Name = "web2"
	v.Address = netip.AddrPortFrom(vip.Addr(), 8080)
	return v
}

func TestDesired(t *testing.T) {
	webKey := ServiceKey{Family: unix.AF_INET, Protocol: unix.IPPROTO_TCP, Address: vip}
	sorry := netip.MustParseAddrPort("192.168.0.9:8080")
	mark6 := netip.MustParseAddrPort("[2001:db8::1]:0")
	tests := []struct {
		name   string
		vs     conf.VirtualServer
		health Health
		want   Service // Backends not compared
	}{
		{
			name: "dr all up",
			vs:   web(),
			want: Service{Key: webKey, Name: "web", Address: vip, Family: "inet", Protocol: "tcp", Scheduler: "wrr", Netmask: 32,
				Dests: []Dest{{rs1, 1, "dr"}, {rs2, 3, "dr"}}},
		},
		{
			name:   "remove a down real server",
			vs:     web(),
			health: downSet{rs1: true},
			want: Service{Key: webKey, Name: "web", Address: vip, Family: "inet", Protocol: "tcp", Scheduler: "wrr", Netmask: 32,
				Dests: []Dest{{rs2, 3, "dr"}}},
		},
		{
			name:   "weight0 keeps a down real server",
			vs:     webWith(`on_failure = "weight0"`, ""),
			health: downSet{rs1: true},
			want: Service{Key: webKey, Name: "web", Address: vip, Family: "inet", Protocol: "tcp", Scheduler: "wrr", Netmask: 32,
				Dests: []Dest{{rs1, 0, "dr"}, {rs2, 3, "dr"}}},
		},
		{
			name:   "quorum lost goes to the sorry server",
			vs:     webWith("quorum = 2\nsorry_server = \"192.168.0.9:8080\"", ""),
			health: downSet{rs2: true},
			want: Service{Key: webKey, Name: "web", Address: vip, Family: "inet", Protocol: "tcp", Scheduler: "wrr", Netmask: 32,
				Down: true, Sorry: sorry, Dests: []Dest{{sorry, 1, "dr"}}},
		},
		{
			name:   "quorum lost without sorry server keeps what is left",
			vs:     webWith("quorum = 2", ""),
			health: downSet{rs2: true},
			want: Service{Key: webKey, Name: "web", Address: vip, Family: "inet", Protocol: "tcp", Scheduler: "wrr", Netmask: 32,
				Down: true, Dests: []Dest{{rs1, 1, "dr"}}},
		},
		{
			name: "persistence with netmask, tun, per-server nat override",
			vs:   webWith("forward = \"tun\"\npersistence = \"300s\"\npersistence_netmask = \"/24\"", `forward = "nat"`),
			want: Service{Key: webKey, Name: "web", Address: vip, Family: "inet", Protocol: "tcp", Scheduler: "wrr",
				Flags: FlagPersistent, Timeout: 300, Netmask: 24,
				Dests: []Dest{{rs1, 1, "tun"}, {rs2, 3, "nat"}}},
		},
		{
			name: "sh flags",
			vs: virtualServers(`[[virtual_server]]
name = "web"
address = "192.168.0.210:80"
scheduler = "sh"
scheduler_flags = ["sh-fallback", "sh-port"]
real_server = [{ address = "192.168.0.175:80" }, { address = "192.168.0.145:80", weight = 3 }]
`)[0],
			want: Service{Key: webKey, Name: "web", Address: vip, Family: "inet", Protocol: "tcp", Scheduler: "sh",
				Flags: FlagSched1 | FlagSched2, Netmask: 32,
				Dests: []Dest{{rs1, 1, "dr"}, {rs2, 3, "dr"}}},
		},
		{
			name: "ipv6 udp mh persistence default netmask",
			vs: virtualServers(`[[virtual_server]]
name = "dns6"
address = "[2001:db8::210]:443"
protocol = "udp"
scheduler = "mh"
scheduler_flags = ["mh-port"]
persistence = "2s"
real_server = [{ address = "[2001:db8::175]:443", weight = 5 }]
`)[0],
			want: Service{Key: ServiceKey{Family: unix.AF_INET6, Protocol: unix.IPPROTO_UDP, Address: vip6},
				Name: "dns6", Address: vip6, Family: "inet6", Protocol: "udp", Scheduler: "mh",
				Flags: FlagSched2 | FlagPersistent, Timeout: 2, Netmask: 128,
				Dests: []Dest{{rs61, 5, "dr"}}},
		},
		{
			name: "fwmark inet6, default scheduler",
			vs: virtualServers(`[[virtual_server]]
name = "mark"
fwmark = 7
family = "inet6"
real_server = [{ address = "[2001:db8::1]:0" }]
`)[0],
			want: Service{Key: ServiceKey{FWMark: 7, Family: unix.AF_INET6}, Name: "mark", FWMark: 7, Family: "inet6",
				Protocol: "tcp", Scheduler: "wlc", Netmask: 128,
				Dests: []Dest{{mark6, 1, "dr"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := desired(tt.health, tt.vs)
			if len(tab.Services) != 1 {
				t.Fatalf("got %d services, want 1", len(tab.Services))
			}
			got := tab.Services[0]
			got.Backends = nil
			if diff := cmp.Diff(tt.want, got, cmpNetip); diff != "" {
				t.Errorf("service (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDesiredBackendsCarryHealth(t *testing.T) {
	tab := desired(downSet{rs2: true}, web())
	want := []Backend{{rs1, 1, "dr", true}, {rs2, 3, "dr", false}}
	if diff := cmp.Diff(want, tab.Services[0].Backends, cmpNetip); diff != "" {
		t.Errorf("backends (-want +got):\n%s", diff)
	}
}

func TestServiceKeyText(t *testing.T) {
	for _, k := range []ServiceKey{
		{Family: unix.AF_INET, Protocol: unix.IPPROTO_TCP, Address: vip},
		{Family: unix.AF_INET6, Protocol: unix.IPPROTO_SCTP, Address: vip6},
		{FWMark: 9, Family: unix.AF_INET6},
	} {
		b, _ := k.MarshalText()
		var got ServiceKey
		if err := got.UnmarshalText(b); err != nil {
			t.Fatalf("UnmarshalText(%q): %v", b, err)
		}
		if got != k {
			t.Errorf("round trip %q: got %+v, want %+v", b, got, k)
		}
	}
}

func TestFlagNames(t *testing.T) {
	if diff := cmp.Diff([]string{"persistent", "sh-fallback", "sh-port"}, FlagNames("sh", FlagPersistent|FlagSched1|FlagSched2)); diff != "" {
		t.Error(diff)
	}
	if diff := cmp.Diff([]string{"flag-1"}, FlagNames("rr", FlagSched1)); diff != "" {
		t.Error(diff)
	}
}

func TestKernelNetmask(t *testing.T) {
	// The kernel reads the IPv4 mask in network byte order from the
	// attribute moby/ipvs writes in host order.
	var b [4]byte
	nm := kernelNetmask(unix.AF_INET, 24)
	binary.NativeEndian.PutUint32(b[:], nm)
	if b != [4]byte{255, 255, 255, 0} {
		t.Errorf("IPv4 /24 encodes as %v", b)
	}
	if got := kernelNetmask(unix.AF_INET, 32); got != 0xffffffff {
		t.Errorf("IPv4 /32 = %#x", got)
	}
	if got := kernelNetmask(unix.AF_INET6, 64); got != 64 {
		t.Errorf("IPv6 /64 = %d", got)
	}
}

package ipvsync

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
	"time"

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

func web() conf.VirtualServer {
	return conf.VirtualServer{
		Name: "web", Address: vip, Protocol: "tcp", Scheduler: "wrr", Forward: "dr",
		Quorum: 1, OnFailure: "remove",
		RealServers: []conf.RealServer{{Address: rs1, Weight: 1}, {Address: rs2, Weight: 3}},
	}
}

// web2 is a second service of ours, on another port of the same VIP.
func web2() conf.VirtualServer {
	v := web()
	v.Name = "web2"
	v.Address = netip.AddrPortFrom(vip.Addr(), 8080)
	return v
}

func TestDesired(t *testing.T) {
	webKey := ServiceKey{Family: unix.AF_INET, Protocol: unix.IPPROTO_TCP, Address: vip}
	tests := []struct {
		name   string
		vs     func() conf.VirtualServer
		health Health
		want   Service // Backends not compared
	}{
		{
			name: "dr all up",
			vs:   web,
			want: Service{Key: webKey, Name: "web", Address: vip, Family: "inet", Protocol: "tcp", Scheduler: "wrr", Netmask: 32,
				Dests: []Dest{{rs1, 1, "dr"}, {rs2, 3, "dr"}}},
		},
		{
			name:   "remove a down real server",
			vs:     web,
			health: downSet{rs1: true},
			want: Service{Key: webKey, Name: "web", Address: vip, Family: "inet", Protocol: "tcp", Scheduler: "wrr", Netmask: 32,
				Dests: []Dest{{rs2, 3, "dr"}}},
		},
		{
			name: "weight0 keeps a down real server",
			vs: func() conf.VirtualServer {
				v := web()
				v.OnFailure = "weight0"
				return v
			},
			health: downSet{rs1: true},
			want: Service{Key: webKey, Name: "web", Address: vip, Family: "inet", Protocol: "tcp", Scheduler: "wrr", Netmask: 32,
				Dests: []Dest{{rs1, 0, "dr"}, {rs2, 3, "dr"}}},
		},
		{
			name: "quorum lost goes to the sorry server",
			vs: func() conf.VirtualServer {
				v := web()
				v.Quorum = 2
				v.SorryServer = netip.MustParseAddrPort("192.168.0.9:8080")
				return v
			},
			health: downSet{rs2: true},
			want: Service{Key: webKey, Name: "web", Address: vip, Family: "inet", Protocol: "tcp", Scheduler: "wrr", Netmask: 32,
				Down: true, Sorry: netip.MustParseAddrPort("192.168.0.9:8080"),
				Dests: []Dest{{netip.MustParseAddrPort("192.168.0.9:8080"), 1, "dr"}}},
		},
		{
			name: "quorum lost without sorry server keeps what is left",
			vs: func() conf.VirtualServer {
				v := web()
				v.Quorum = 2
				return v
			},
			health: downSet{rs2: true},
			want: Service{Key: webKey, Name: "web", Address: vip, Family: "inet", Protocol: "tcp", Scheduler: "wrr", Netmask: 32,
				Down: true, Dests: []Dest{{rs1, 1, "dr"}}},
		},
		{
			name: "persistence with netmask, tun, per-server nat override",
			vs: func() conf.VirtualServer {
				v := web()
				v.Forward = "tun"
				v.Persistence = 300 * time.Second
				v.PersistenceNetmask = netip.MustParsePrefix("0.0.0.0/24")
				v.RealServers[1].Forward = "nat"
				return v
			},
			want: Service{Key: webKey, Name: "web", Address: vip, Family: "inet", Protocol: "tcp", Scheduler: "wrr",
				Flags: FlagPersistent, Timeout: 300, Netmask: 24,
				Dests: []Dest{{rs1, 1, "tun"}, {rs2, 3, "nat"}}},
		},
		{
			name: "sh flags",
			vs: func() conf.VirtualServer {
				v := web()
				v.Scheduler = "sh"
				v.SchedFlags = []string{"sh-fallback", "sh-port"}
				return v
			},
			want: Service{Key: webKey, Name: "web", Address: vip, Family: "inet", Protocol: "tcp", Scheduler: "sh",
				Flags: FlagSched1 | FlagSched2, Netmask: 32,
				Dests: []Dest{{rs1, 1, "dr"}, {rs2, 3, "dr"}}},
		},
		{
			name: "ipv6 udp mh persistence default netmask",
			vs: func() conf.VirtualServer {
				return conf.VirtualServer{Name: "dns6", Address: vip6, Protocol: "udp", Scheduler: "mh",
					SchedFlags: []string{"mh-port"}, Persistence: 1500 * time.Millisecond, Forward: "dr",
					RealServers: []conf.RealServer{{Address: rs61, Weight: 5}}}
			},
			want: Service{Key: ServiceKey{Family: unix.AF_INET6, Protocol: unix.IPPROTO_UDP, Address: vip6},
				Name: "dns6", Address: vip6, Family: "inet6", Protocol: "udp", Scheduler: "mh",
				Flags: FlagSched2 | FlagPersistent, Timeout: 2, Netmask: 128,
				Dests: []Dest{{rs61, 5, "dr"}}},
		},
		{
			name: "fwmark inet6, default scheduler",
			vs: func() conf.VirtualServer {
				return conf.VirtualServer{Name: "mark", FWMark: 7, Family: "inet6", Protocol: "tcp",
					RealServers: []conf.RealServer{{Address: netip.MustParseAddrPort("[2001:db8::1]:0"), Weight: 1}}}
			},
			want: Service{Key: ServiceKey{FWMark: 7, Family: unix.AF_INET6}, Name: "mark", FWMark: 7, Family: "inet6",
				Protocol: "tcp", Scheduler: "wlc", Netmask: 128,
				Dests: []Dest{{netip.MustParseAddrPort("[2001:db8::1]:0"), 1, "dr"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, err := Desired([]conf.VirtualServer{tt.vs()}, tt.health)
			if err != nil {
				t.Fatalf("Desired: %v", err)
			}
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
	tab, err := Desired([]conf.VirtualServer{web()}, downSet{rs2: true})
	if err != nil {
		t.Fatal(err)
	}
	want := []Backend{{rs1, 1, "dr", true}, {rs2, 3, "dr", false}}
	if diff := cmp.Diff(want, tab.Services[0].Backends, cmpNetip); diff != "" {
		t.Errorf("backends (-want +got):\n%s", diff)
	}
}

func TestDesiredRejects(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*conf.VirtualServer)
	}{
		{"unknown protocol", func(v *conf.VirtualServer) { v.Protocol = "icmp" }},
		{"sh flag on wrr", func(v *conf.VirtualServer) { v.SchedFlags = []string{"sh-port"} }},
		{"unknown flag", func(v *conf.VirtualServer) { v.SchedFlags = []string{"bogus"} }},
		{"unknown forward", func(v *conf.VirtualServer) { v.Forward = "gre" }},
		{"duplicate real server", func(v *conf.VirtualServer) { v.RealServers[1].Address = rs1 }},
		{"mixed family", func(v *conf.VirtualServer) { v.RealServers[1].Address = rs61 }},
		{"negative weight", func(v *conf.VirtualServer) { v.RealServers[0].Weight = -1 }},
		{"netmask too long", func(v *conf.VirtualServer) {
			v.Persistence = time.Minute
			v.PersistenceNetmask = netip.PrefixFrom(netip.IPv6Unspecified(), 33)
		}},
		{"no address", func(v *conf.VirtualServer) { v.Address = netip.AddrPort{} }},
		{"unknown on_failure", func(v *conf.VirtualServer) { v.OnFailure = "panic" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := web()
			tt.mod(&v)
			var h Health
			if tt.name == "unknown on_failure" {
				h = downSet{rs1: true}
			}
			if _, err := Desired([]conf.VirtualServer{v}, h); !errors.Is(err, ErrConfig) {
				t.Fatalf("Desired error = %v, want ErrConfig", err)
			}
		})
	}
}

func TestDesiredDuplicateService(t *testing.T) {
	a, b := web(), web()
	b.Name = "web2"
	_, err := Desired([]conf.VirtualServer{a, b}, nil)
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("Desired error = %v, want ErrConfig", err)
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

package checks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/havip/havip/internal/conf"
)

func TestTopLevelTarget(t *testing.T) {
	// Names come from /etc/hosts only: this resolver cannot send a query.
	res := &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("test resolver: no DNS")
	}}
	tests := []struct {
		name     string
		check    conf.Check
		wantAddr string // "" = none; "loopback:PORT" = any loopback address
		wantHost string
		wantErr  bool
	}{
		{"ip:port", conf.Check{Name: "a", Type: "tcp", Target: "192.0.2.1:8080"}, "192.0.2.1:8080", "", false},
		{"ipv6", conf.Check{Name: "a", Type: "dns", Target: "[2001:db8::1]:53"}, "[2001:db8::1]:53", "", false},
		{"http default port", conf.Check{Name: "a", Type: "http", Target: "192.0.2.1"}, "192.0.2.1:80", "", false},
		{"https default port", conf.Check{Name: "a", Type: "https", Target: "192.0.2.1"}, "192.0.2.1:443", "", false},
		{"host name becomes Host", conf.Check{Name: "a", Type: "http", Target: "localhost:8080"}, "loopback:8080", "localhost", false},
		{"explicit Host kept", conf.Check{Name: "a", Type: "https", Target: "localhost", Host: "www.example.test"}, "loopback:443", "www.example.test", false},
		{"ping address", conf.Check{Name: "a", Type: "ping", Target: "192.0.2.1"}, "192.0.2.1:0", "", false},
		{"ping ipv6 in brackets", conf.Check{Name: "a", Type: "ping", Target: "[2001:db8::1]"}, "[2001:db8::1]:0", "", false},
		{"ping ipv6", conf.Check{Name: "a", Type: "ping", Target: "2001:db8::1"}, "[2001:db8::1]:0", "", false},
		{"ping host name", conf.Check{Name: "a", Type: "ping", Target: "localhost"}, "loopback:0", "", false},
		{"ping with a port", conf.Check{Name: "a", Type: "ping", Target: "192.0.2.1:80"}, "", "", true},
		{"exec without target", conf.Check{Name: "a", Type: "exec", Command: []string{"/bin/true"}}, "", "", false},
		{"tcp without target", conf.Check{Name: "a", Type: "tcp"}, "", "", true},
		{"tcp without port", conf.Check{Name: "a", Type: "tcp", Target: "192.0.2.1"}, "", "", true},
		{"port 0", conf.Check{Name: "a", Type: "tcp", Target: "192.0.2.1:0"}, "", "", true},
		{"unresolvable", conf.Check{Name: "a", Type: "tcp", Target: "no-such-host.invalid:80"}, "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := TopLevelTarget(t.Context(), res, tt.check)
			if (err != nil) != tt.wantErr {
				t.Fatalf("TopLevelTarget() error = %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				if !errors.Is(err, ErrTarget) {
					t.Errorf("error %v does not wrap ErrTarget", err)
				}
				return
			}
			if got.Key != "check/a" {
				t.Errorf("Key = %q", got.Key)
			}
			var addr string
			switch {
			case !got.Addr.IsValid():
			case got.Addr.Addr().IsLoopback():
				addr = fmt.Sprintf("loopback:%d", got.Addr.Port())
			default:
				addr = got.Addr.String()
			}
			if addr != tt.wantAddr {
				t.Errorf("Addr = %s (%q), want %q", got.Addr, addr, tt.wantAddr)
			}
			if got.Check.Host != tt.wantHost {
				t.Errorf("Check.Host = %q, want %q", got.Check.Host, tt.wantHost)
			}
		})
	}
}

func TestKeys(t *testing.T) {
	if got := RealServerKey("web", netip.MustParseAddrPort("192.168.0.175:80")); got != "web/192.168.0.175:80" {
		t.Errorf("RealServerKey = %q", got)
	}
	if got := CheckKey("dns1"); got != "check/dns1" {
		t.Errorf("CheckKey = %q", got)
	}
}

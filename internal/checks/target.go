package checks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/havip/havip/internal/conf"
)

// ErrTarget is wrapped by errors about a top-level check's target.
var ErrTarget = errors.New("checks: bad target")

// RealServerKey is the conventional Target key of real server rs of the
// virtual server named vs.
func RealServerKey(vs string, rs netip.AddrPort) string { return vs + "/" + rs.String() }

// CheckKey is the conventional Target key of the top-level [[check]] name.
func CheckKey(name string) string { return "check/" + name }

// TopLevelTarget builds the Target of a top-level [[check]] c: key
// CheckKey(c.Name) and the address of c.Target. A host name is resolved
// now, with res (nil: net.DefaultResolver), to its first address; for
// http and https it also becomes the Host header unless c.Host is set.
// A missing port defaults to 80 for http and 443 for https; a ping
// target is a host alone (port 0). exec and none checks may have no
// target (the zero address).
func TopLevelTarget(ctx context.Context, res *net.Resolver, c conf.Check) (Target, error) {
	t := Target{Key: CheckKey(c.Name), Check: c}
	if c.Target == "" {
		if c.Type == "exec" || c.Type == "none" {
			return t, nil
		}
		return t, fmt.Errorf("%w: check %s: type %s needs a target", ErrTarget, c.Name, c.Type)
	}
	host, portS, err := net.SplitHostPort(c.Target)
	if c.Type == "ping" {
		if err == nil {
			return t, fmt.Errorf("%w: check %s: ping takes a host, not host:port (%q)", ErrTarget, c.Name, c.Target)
		}
		host, portS, err = strings.TrimSuffix(strings.TrimPrefix(c.Target, "["), "]"), "0", nil
	}
	if err != nil {
		host, portS = c.Target, ""
		switch c.Type {
		case "http":
			portS = "80"
		case "https":
			portS = "443"
		default:
			return t, fmt.Errorf("%w: check %s: %q is not host:port", ErrTarget, c.Name, c.Target)
		}
	}
	port, err := strconv.ParseUint(portS, 10, 16)
	if err != nil || port == 0 && c.Type != "ping" {
		return t, fmt.Errorf("%w: check %s: bad port in %q", ErrTarget, c.Name, c.Target)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		if res == nil {
			res = net.DefaultResolver
		}
		ips, lerr := res.LookupNetIP(ctx, "ip", host)
		if lerr != nil || len(ips) == 0 {
			return t, fmt.Errorf("%w: check %s: resolve %s: %w", ErrTarget, c.Name, host, cmpErr(lerr))
		}
		ip = ips[0]
		if (c.Type == "http" || c.Type == "https") && t.Check.Host == "" {
			t.Check.Host = host
		}
	}
	t.Addr = netip.AddrPortFrom(ip.Unmap(), uint16(port))
	return t, nil
}

func cmpErr(err error) error {
	if err == nil {
		return errors.New("no addresses")
	}
	return err
}

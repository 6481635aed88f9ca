// Package ipvsync owns the IPVS table of a director: it computes the wanted
// table from the site's virtual servers and real-server health (Desired),
// writes only the difference to the kernel (Reconciler), runs the kernel's
// connection sync daemons (SyncDaemons) and publishes status rows from
// what each reconcile read and wrote (Published).
//
// It touches only the IPVS services the site declares, or that havip itself
// created earlier; it never flushes the table and never edits services other
// programs (kube-proxy, ipvsadm scripts) own. It does not load kernel modules:
// Probe reports a kernel without IPVS and says how to fix it.
package ipvsync

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"

	"github.com/havip/havip/internal/conf"
	"github.com/moby/ipvs"
	"golang.org/x/sys/unix"
)

// Kernel service flags (include/uapi/linux/ip_vs.h, IP_VS_SVC_F_*).
const (
	FlagPersistent uint32 = 0x0001
	flagHashed     uint32 = 0x0002 // set by the kernel itself, never by us
	FlagOnePacket  uint32 = 0x0004
	FlagSched1     uint32 = 0x0008 // sh-fallback, mh-fallback
	FlagSched2     uint32 = 0x0010 // sh-port, mh-port
	FlagSched3     uint32 = 0x0020

	// userFlags are the flags a service can be configured with; the rest
	// (HASHED) is kernel bookkeeping and is ignored when comparing.
	userFlags = FlagPersistent | FlagOnePacket | FlagSched1 | FlagSched2 | FlagSched3
)

// ErrConfig marks a virtual server that cannot be turned into an IPVS service.
var ErrConfig = errors.New("ipvsync: invalid virtual server")

// Health answers whether a real server of a virtual server is up. A nil
// Health means every real server is up.
type Health interface {
	Up(vs string, rs netip.AddrPort) bool
}

// ServiceKey identifies an IPVS service the way the kernel does: by
// address, port and protocol, or by firewall mark and address family.
type ServiceKey struct {
	FWMark   uint32
	Family   uint16 // unix.AF_INET or unix.AF_INET6
	Protocol uint16 // IPPROTO_*; 0 for fwmark services
	Address  netip.AddrPort
}

func (k ServiceKey) String() string {
	if k.FWMark != 0 {
		return fmt.Sprintf("fwmark %d %s", k.FWMark, familyName(k.Family))
	}
	return protocolName(k.Protocol) + " " + k.Address.String()
}

// MarshalText makes the key readable in JSON status output.
func (k ServiceKey) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// Table is the wanted IPVS state of the services havip owns.
type Table struct {
	Services []Service `json:"services"`
}

// Service is one wanted IPVS virtual service.
type Service struct {
	Key       ServiceKey     `json:"key"`
	Name      string         `json:"name"`
	Address   netip.AddrPort `json:"address,omitzero"` // zero for fwmark services
	FWMark    uint32         `json:"fwmark,omitempty"`
	Family    string         `json:"family"`   // inet | inet6
	Protocol  string         `json:"protocol"` // tcp | udp | sctp
	Scheduler string         `json:"scheduler"`
	Flags     uint32         `json:"flags"`   // IP_VS_SVC_F_* without HASHED
	Timeout   uint32         `json:"timeout"` // persistence, seconds; 0 = off
	Netmask   int            `json:"netmask"` // persistence granularity as a prefix length
	Dests     []Dest         `json:"dests"`   // what the kernel should hold

	// Down is true when fewer real servers than the quorum are up.
	Down bool `json:"down"`
	// Backends are all configured real servers with their health, for
	// status output; Dests is what follows from them.
	Backends []Backend `json:"backends"`
	// Sorry is the sorry server, zero when none is configured.
	Sorry netip.AddrPort `json:"sorry,omitzero"`
}

// Dest is one wanted IPVS destination (real server).
type Dest struct {
	Address netip.AddrPort `json:"address"`
	Weight  int            `json:"weight"`
	Forward string         `json:"forward"` // dr | tun | nat
}

// Backend is a configured real server and its health.
type Backend struct {
	Address netip.AddrPort `json:"address"`
	Weight  int            `json:"weight"` // configured weight
	Forward string         `json:"forward"`
	Up      bool           `json:"up"`
}

// Desired computes the IPVS table for the given virtual servers under the
// given health. Real servers that are down are dropped (on_failure =
// "remove") or kept with weight 0 (on_failure = "weight0"); a service with
// fewer live real servers than its quorum is down and then points at its
// sorry server alone, if it has one.
func Desired(vss []conf.VirtualServer, health Health) (Table, error) {
	var t Table
	seen := make(map[ServiceKey]string)
	var errs []error
	for _, vs := range vss {
		s, err := desiredService(vs, health)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if other, dup := seen[s.Key]; dup {
			errs = append(errs, fmt.Errorf("%w %q: same IPVS service %s as %q", ErrConfig, vs.Name, s.Key, other))
			continue
		}
		seen[s.Key] = vs.Name
		t.Services = append(t.Services, s)
	}
	if len(errs) > 0 {
		return Table{}, errors.Join(errs...)
	}
	return t, nil
}

func desiredService(vs conf.VirtualServer, health Health) (Service, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w %q: %s", ErrConfig, vs.Name, fmt.Sprintf(format, a...))
	}
	s := Service{
		Name:      vs.Name,
		FWMark:    vs.FWMark,
		Protocol:  strings.ToLower(vs.Protocol),
		Scheduler: vs.Scheduler,
	}
	if s.Protocol == "" {
		s.Protocol = "tcp"
	}
	proto, ok := protocolNumber(s.Protocol)
	if !ok {
		return Service{}, bad("unknown protocol %q (want tcp, udp or sctp)", vs.Protocol)
	}
	if s.Scheduler == "" {
		s.Scheduler = "wlc" // the kernel's and ipvsadm's default
	}

	var fam uint16
	switch {
	case vs.FWMark != 0:
		switch vs.Family {
		case "", "inet":
			fam, s.Family = unix.AF_INET, "inet"
		case "inet6":
			fam, s.Family = unix.AF_INET6, "inet6"
		default:
			return Service{}, bad("unknown family %q (want inet or inet6)", vs.Family)
		}
		s.Key = ServiceKey{FWMark: vs.FWMark, Family: fam}
	case vs.Address.IsValid():
		s.Address = unmapAP(vs.Address)
		fam, s.Family = addrFamily(s.Address.Addr())
		s.Key = ServiceKey{Family: fam, Protocol: proto, Address: s.Address}
	default:
		return Service{}, bad("neither an address nor a fwmark")
	}

	for _, f := range vs.SchedFlags {
		bit, err := schedFlag(s.Scheduler, f)
		if err != nil {
			return Service{}, bad("%v", err)
		}
		s.Flags |= bit
	}

	s.Netmask = maxBits(fam)
	if vs.Persistence > 0 {
		s.Flags |= FlagPersistent
		secs := math.Ceil(vs.Persistence.Seconds())
		if secs > math.MaxUint32 {
			return Service{}, bad("persistence %s too long", vs.Persistence)
		}
		s.Timeout = uint32(secs)
		if vs.PersistenceNetmask.IsValid() {
			bits := vs.PersistenceNetmask.Bits()
			if bits < 1 || bits > maxBits(fam) {
				return Service{}, bad("persistence_netmask /%d does not fit %s", bits, s.Family)
			}
			s.Netmask = bits
		}
	}

	fwd := vs.Forward
	if fwd == "" {
		fwd = "dr"
	}
	seenRS := make(map[netip.AddrPort]bool)
	var live int
	var dests []Dest
	for _, rs := range vs.RealServers {
		addr := unmapAP(rs.Address)
		b := Backend{Address: addr, Weight: rs.Weight, Forward: rs.Forward}
		if b.Forward == "" {
			b.Forward = fwd
		}
		if _, ok := forwardFlag(b.Forward); !ok {
			return Service{}, bad("real server %s: unknown forward %q (want dr, tun or nat)", addr, b.Forward)
		}
		if seenRS[addr] {
			return Service{}, bad("real server %s listed twice", addr)
		}
		seenRS[addr] = true
		if rs.Weight < 0 || rs.Weight > math.MaxUint16 {
			return Service{}, bad("real server %s: weight %d out of 0..65535", addr, rs.Weight)
		}
		if f, _ := addrFamily(addr.Addr()); f != fam {
			// The kernel could tunnel across families, but moby/ipvs never
			// sends the destination's family, so the kernel would read the
			// address as the service's family.
			return Service{}, bad("real server %s: address family differs from the service", addr)
		}
		b.Up = health == nil || health.Up(vs.Name, rs.Address)
		s.Backends = append(s.Backends, b)
		switch {
		case b.Up:
			live++
			dests = append(dests, Dest{Address: addr, Weight: rs.Weight, Forward: b.Forward})
		case vs.OnFailure == "weight0":
			dests = append(dests, Dest{Address: addr, Weight: 0, Forward: b.Forward})
		case vs.OnFailure == "" || vs.OnFailure == "remove":
		default:
			return Service{}, bad("unknown on_failure %q (want remove or weight0)", vs.OnFailure)
		}
	}
	if vs.SorryServer.IsValid() {
		s.Sorry = unmapAP(vs.SorryServer)
		if f, _ := addrFamily(s.Sorry.Addr()); f != fam {
			return Service{}, bad("sorry_server %s: address family differs from the service", s.Sorry)
		}
	}
	s.Dests = dests
	if live < vs.Quorum {
		s.Down = true
		if s.Sorry.IsValid() {
			s.Dests = []Dest{{Address: s.Sorry, Weight: 1, Forward: fwd}}
		}
	}
	return s, nil
}

// schedFlag maps a scheduler_flags entry to its kernel bit.
func schedFlag(sched, name string) (uint32, error) {
	switch name {
	case "sh-fallback", "sh-port":
		if sched != "sh" {
			return 0, fmt.Errorf("scheduler flag %q needs scheduler sh, not %q", name, sched)
		}
	case "mh-fallback", "mh-port":
		if sched != "mh" {
			return 0, fmt.Errorf("scheduler flag %q needs scheduler mh, not %q", name, sched)
		}
	}
	switch name {
	case "sh-fallback", "mh-fallback", "flag-1":
		return FlagSched1, nil
	case "sh-port", "mh-port", "flag-2":
		return FlagSched2, nil
	case "flag-3":
		return FlagSched3, nil
	case "ops":
		return FlagOnePacket, nil
	}
	return 0, fmt.Errorf("unknown scheduler flag %q (want sh-fallback, sh-port, mh-fallback, mh-port, flag-1..3 or ops)", name)
}

// FlagNames names the configurable bits of flags, in ipvsadm's words.
func FlagNames(sched string, flags uint32) []string {
	var out []string
	if flags&FlagPersistent != 0 {
		out = append(out, "persistent")
	}
	if flags&FlagOnePacket != 0 {
		out = append(out, "ops")
	}
	prefix := ""
	if sched == "sh" || sched == "mh" {
		prefix = sched + "-"
	}
	for _, f := range []struct {
		bit        uint32
		named, raw string
	}{{FlagSched1, "fallback", "flag-1"}, {FlagSched2, "port", "flag-2"}, {FlagSched3, "", "flag-3"}} {
		if flags&f.bit == 0 {
			continue
		}
		if prefix != "" && f.named != "" {
			out = append(out, prefix+f.named)
		} else {
			out = append(out, f.raw)
		}
	}
	return out
}

func forwardFlag(fwd string) (uint32, bool) {
	switch fwd {
	case "dr":
		return ipvs.ConnectionFlagDirectRoute, true
	case "tun":
		return ipvs.ConnectionFlagTunnel, true
	case "nat":
		return ipvs.ConnectionFlagMasq, true
	}
	return 0, false
}

func forwardName(flags uint32) string {
	switch flags & ipvs.ConnectionFlagFwdMask {
	case ipvs.ConnectionFlagDirectRoute:
		return "dr"
	case ipvs.ConnectionFlagTunnel:
		return "tun"
	case ipvs.ConnectionFlagMasq:
		return "nat"
	case ipvs.ConnectionFlagLocalNode:
		return "local"
	}
	return strconv.Itoa(int(flags & ipvs.ConnectionFlagFwdMask))
}

func protocolNumber(p string) (uint16, bool) {
	switch p {
	case "tcp":
		return unix.IPPROTO_TCP, true
	case "udp":
		return unix.IPPROTO_UDP, true
	case "sctp":
		return unix.IPPROTO_SCTP, true
	}
	return 0, false
}

func protocolName(p uint16) string {
	switch p {
	case unix.IPPROTO_TCP:
		return "tcp"
	case unix.IPPROTO_UDP:
		return "udp"
	case unix.IPPROTO_SCTP:
		return "sctp"
	}
	return "proto" + strconv.Itoa(int(p))
}

func familyName(f uint16) string {
	if f == unix.AF_INET6 {
		return "inet6"
	}
	return "inet"
}

func addrFamily(a netip.Addr) (uint16, string) {
	if a.Unmap().Is4() {
		return unix.AF_INET, "inet"
	}
	return unix.AF_INET6, "inet6"
}

func maxBits(fam uint16) int {
	if fam == unix.AF_INET6 {
		return 128
	}
	return 32
}

func unmapAP(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

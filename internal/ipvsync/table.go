// Package ipvsync owns the IPVS table of a director: it computes the wanted
// table from the site's virtual servers and real-server health (Desired),
// writes only the difference to the kernel (Reconciler), runs the kernel's
// connection sync daemons (SyncDaemons) and publishes status rows from
// what each reconcile read and wrote (Published).
//
// How it reads the kernel, and why (measured in the VM lab at 10,000
// services x 10 real servers, BenchmarkVMIPVSScale): IPVS has no change
// notifications, and listing a service's destinations costs one netlink
// request per service, which is what made a full read as slow as
// `ipvsadm -Ln`. So:
//
//   - Writes are pipelined (netlink.go): a batch of requests in one
//     sendmsg, acknowledged once, instead of a round trip per object.
//   - A health change reaches the kernel through ReconcileUpdate with the
//     services it changed: one read of each (service, destinations), the
//     writes, and no look at the rest of the table.
//   - The periodic repair (a full Reconcile) lists every service each
//     pass, which finds a missing, foreign or edited service at once: a
//     table cleared behind havip's back is rebuilt within one pass. It
//     reads destinations only for the services that differ from the table
//     last applied, those with a destination at weight 0 (drains, whose
//     connection counts `drain --wait` watches), and a rotating slice of
//     1/auditSlices of the rest (all of a table up to auditAll services),
//     so a destination removed, added or re-weighted behind havip's back
//     is repaired within auditSlices passes. The old sockopt interface
//     (IP_VS_SO_GET_SERVICES, with num_dests) was not used: it lists IPv4
//     services only and cannot see a re-weight.
//
// It touches only the IPVS services the site declares, or that havip itself
// created earlier; it never flushes the table and never edits services other
// programs (kube-proxy, ipvsadm scripts) own. It does not load kernel modules:
// Probe reports a kernel without IPVS and says how to fix it.
package ipvsync

import (
	"cmp"
	"fmt"
	"net/netip"
	"strconv"
	"time"

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

// Health answers whether a real server of a virtual server is up. A nil
// Health means every real server is up.
type Health interface {
	Up(vs string, rs netip.AddrPort) bool
}

// QuorumHistory is what quorum_hysteresis needs: whether a virtual
// server was down at the previous judgement (known false: none yet). A
// Health that also implements it gets hysteresis; without it every
// judgement is the first, made against the quorum alone.
type QuorumHistory interface {
	WasDown(vs string) (down, known bool)
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
//
// vss must come from a conf.Site: conf has filled in every default and
// refused what IPVS cannot hold (unknown protocols, schedulers, flags and
// forwarding methods, real servers of another address family, repeated
// real servers or services), so Desired takes every field as it is.
func Desired(vss []conf.VirtualServer, health Health) Table {
	var t Table
	for _, vs := range vss {
		t.Services = append(t.Services, DesiredService(vs, health))
	}
	return t
}

// quorumDown says whether a virtual server with live real servers up is
// down: at the first judgement (known false) when live < quorum; after
// that, with the hysteresis h, one that was up goes down only when live <
// quorum-h or live is 0 (keepalived's rule), and one that was down comes
// back only when live >= quorum+h.
func quorumDown(quorum, h, live int, wasDown, known bool) bool {
	switch {
	case quorum == 0:
		return false
	case !known:
		return live < quorum
	case wasDown:
		return live < quorum+h
	}
	return live == 0 || live < quorum-h
}

// DesiredService is Desired for one virtual server: a health change of
// one real server needs only its service recomputed.
func DesiredService(vs conf.VirtualServer, health Health) Service {
	hist, _ := health.(QuorumHistory)
	s := Service{
		Name:      vs.Name,
		FWMark:    vs.FWMark,
		Family:    vs.Family,
		Protocol:  vs.Protocol,
		Scheduler: vs.Scheduler,
	}
	fam := familyNumber(vs.Family)
	if vs.FWMark != 0 {
		s.Key = ServiceKey{FWMark: vs.FWMark, Family: fam}
	} else {
		proto, _ := protocolNumber(vs.Protocol)
		s.Address = vs.Address
		s.Key = ServiceKey{Family: fam, Protocol: proto, Address: vs.Address}
	}
	for _, f := range vs.SchedFlags {
		s.Flags |= schedFlags[f]
	}
	s.Netmask = maxBits(fam)
	if vs.Persistence > 0 {
		s.Flags |= FlagPersistent
		s.Timeout = uint32(vs.Persistence / time.Second)
		s.Netmask = vs.PersistenceNetmask.Bits()
	}

	var live int
	for _, rs := range vs.RealServers {
		b := Backend{Address: rs.Address, Weight: rs.Weight, Forward: cmp.Or(rs.Forward, vs.Forward)}
		b.Up = health == nil || health.Up(vs.Name, rs.Address)
		s.Backends = append(s.Backends, b)
		switch {
		case b.Up:
			live++
			s.Dests = append(s.Dests, Dest{Address: rs.Address, Weight: rs.Weight, Forward: b.Forward})
		case vs.OnFailure == "weight0":
			s.Dests = append(s.Dests, Dest{Address: rs.Address, Weight: 0, Forward: b.Forward})
		}
	}
	s.Sorry = vs.SorryServer
	var wasDown, known bool
	if hist != nil {
		wasDown, known = hist.WasDown(vs.Name)
	}
	if quorumDown(vs.Quorum, vs.QuorumHysteresis, live, wasDown, known) {
		s.Down = true
		if s.Sorry.IsValid() {
			s.Dests = []Dest{{Address: s.Sorry, Weight: 1, Forward: vs.Forward}}
		}
	}
	return s
}

// schedFlags maps the scheduler_flags conf accepts to their kernel bits.
var schedFlags = map[string]uint32{
	"sh-fallback": FlagSched1, "mh-fallback": FlagSched1,
	"sh-port": FlagSched2, "mh-port": FlagSched2,
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

func familyNumber(name string) uint16 {
	if name == "inet6" {
		return unix.AF_INET6
	}
	return unix.AF_INET
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

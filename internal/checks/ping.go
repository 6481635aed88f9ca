package checks

import (
	"cmp"
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/havip/havip/internal/conf"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// The ping probe sends one ICMP echo request per probe over a raw socket
// and waits for the echo reply with its identifier and sequence number.
//
// Raw rather than the unprivileged "ping" sockets (SOCK_DGRAM,
// IPPROTO_ICMP): those need net.ipv4.ping_group_range to include havip's
// group, which by the kernel's default ("1 0") includes nobody, root
// neither (no capability overrides it); changing it would be a
// system-wide change havip has no business making. havip runs as root
// with CAP_NET_RAW, so raw sockets work everywhere, the VM lab included.
// The cost of raw sockets, every ICMP packet the host receives offered to
// every open one, is kept down twice: each socket is connected to its
// target (the kernel then hands it only packets from that address) and
// carries a classic BPF filter that passes only echo replies with its
// identifier, so others are dropped before they are queued. A socket is
// open only while its probe runs.
type pingProber struct {
	network string // ip4:icmp or ip6:ipv6-icmp
	addr    string
	v6      bool
	id      uint16
	seq     atomic.Uint32
	timeout time.Duration
	dialer  net.Dialer
}

// pingIDs hands out echo identifiers, so no two probers (up to 65,536
// of them) share one.
var pingIDs atomic.Uint32

func init() { pingIDs.Store(rand.Uint32()) }

const (
	icmpEchoRequest   = 8
	icmpEchoReply     = 0
	icmp6EchoRequest  = 128
	icmp6EchoReply    = 129
	pingPayload       = "havip-ping"
	pingPacketLen     = 8 + len(pingPayload)
	maxPingReplyBytes = 60 + pingPacketLen + 64 // IPv4 header with options, and slack
)

// newPingProber builds the prober of a ping check of addr (its port, if
// any, is not used).
func newPingProber(c conf.Check, addr netip.Addr) prober {
	p := &pingProber{
		network: "ip4:icmp",
		addr:    addr.Unmap().String(),
		v6:      addr.Is6() && !addr.Is4In6(),
		id:      uint16(pingIDs.Add(1)),
		timeout: c.Timeout,
	}
	if p.v6 {
		p.network = "ip6:ipv6-icmp"
	}
	filter, err := pingFilter(p.v6, p.id)
	if err != nil {
		return failing(fail(FailConfig, "ping: filter: %v", err))
	}
	p.dialer.Control = func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, filter)
		})
		return cmp.Or(err, serr)
	}
	return p.probe
}

// pingFilter passes the echo replies carrying id. A raw IPv4 socket's
// filter sees the IP header first; a raw ICMPv6 socket's sees the ICMPv6
// header.
func pingFilter(v6 bool, id uint16) (*unix.SockFprog, error) {
	var prog []bpf.Instruction
	if v6 {
		prog = []bpf.Instruction{
			bpf.LoadAbsolute{Off: 0, Size: 1},
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: icmp6EchoReply, SkipTrue: 3},
			bpf.LoadAbsolute{Off: 4, Size: 2},
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(id), SkipTrue: 1},
			bpf.RetConstant{Val: 0xffff},
			bpf.RetConstant{Val: 0},
		}
	} else {
		prog = []bpf.Instruction{
			bpf.LoadMemShift{Off: 0}, // X = IP header length
			bpf.LoadIndirect{Off: 0, Size: 1},
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: icmpEchoReply, SkipTrue: 3},
			bpf.LoadIndirect{Off: 4, Size: 2},
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(id), SkipTrue: 1},
			bpf.RetConstant{Val: 0xffff},
			bpf.RetConstant{Val: 0},
		}
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, err
	}
	f := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		f[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return &unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]}, nil
}

func (p *pingProber) probe(ctx context.Context) (string, error) {
	c, err := p.dialer.DialContext(ctx, p.network, p.addr)
	if err != nil {
		if errors.Is(err, syscall.EPERM) {
			return "", fail(FailConfig, "ping: raw ICMP socket: %v (needs CAP_NET_RAW)", syscall.EPERM)
		}
		return "", netError(ctx, "connect", err, p.timeout)
	}
	defer c.Close()
	defer deadlineOf(ctx, c)()
	seq := uint16(p.seq.Add(1))
	var pkt [pingPacketLen]byte
	pkt[0] = icmpEchoRequest
	if p.v6 {
		pkt[0] = icmp6EchoRequest // the kernel fills in an ICMPv6 checksum
	}
	pkt[4], pkt[5] = byte(p.id>>8), byte(p.id)
	pkt[6], pkt[7] = byte(seq>>8), byte(seq)
	copy(pkt[8:], pingPayload)
	if !p.v6 {
		s := checksum(pkt[:])
		pkt[2], pkt[3] = byte(s>>8), byte(s)
	}
	if _, err := c.Write(pkt[:]); err != nil {
		return "", netError(ctx, "send", err, p.timeout)
	}
	var buf [maxPingReplyBytes]byte
	for {
		n, err := c.Read(buf[:])
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
				return "", fail(FailTimeout, "ping: no echo reply within %s", p.timeout)
			}
			return "", netError(ctx, "receive", err, p.timeout)
		}
		b := buf[:n]
		if !p.v6 {
			if n < 20 {
				continue
			}
			b = b[int(b[0]&0x0f)*4:]
		}
		want := byte(icmpEchoReply)
		if p.v6 {
			want = icmp6EchoReply
		}
		// The filter passed only replies with our identifier; a reply to
		// an earlier probe of this prober has another sequence number.
		if len(b) >= 8 && b[0] == want && b[1] == 0 && b[4] == byte(p.id>>8) && b[5] == byte(p.id) &&
			b[6] == byte(seq>>8) && b[7] == byte(seq) {
			return "echo reply", nil
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// checksum is the Internet checksum (RFC 1071).
func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

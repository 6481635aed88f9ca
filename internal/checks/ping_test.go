package checks

import (
	"maps"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/havip/havip/test/lab"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// pingIn probes addr from a fresh network namespace with lo up, after
// writing the given /proc/sys/net values there (needs root: raw sockets
// and namespaces; fails without).
func pingIn(t *testing.T, addr string, sysctls map[string]string, void bool) outcome {
	t.Helper()
	lab.RequireRoot(t)
	lab.EnterNewNetns(t)
	if void {
		nowhere(t)
	}
	for path, v := range sysctls {
		if err := os.WriteFile(path, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := check("ping", 300*time.Millisecond)
	return probeOnce(t, Target{Check: c, Addr: netip.AddrPortFrom(netip.MustParseAddr(addr), 0)})
}

const (
	ignoreEcho4 = "/proc/sys/net/ipv4/icmp_echo_ignore_all"
	ignoreEcho6 = "/proc/sys/net/ipv6/icmp/echo_ignore_all"
)

func TestProbePing(t *testing.T) {
	reply := outcome{OK: true, Reason: "echo reply"}
	silence := outcome{Kind: FailTimeout, Reason: "ping: no echo reply within 300ms"}
	tests := []struct {
		name    string
		addr    string
		sysctls map[string]string
		void    bool // route the test prefixes to a dummy link, where no host answers
		want    outcome
	}{
		{"IPv4 answers", "127.0.0.1", nil, false, reply},
		{"IPv4 on another loopback address", "127.0.0.53", nil, false, reply},
		{"IPv4 host ignores echo", "127.0.0.1", map[string]string{ignoreEcho4: "1"}, false, silence},
		{"IPv6 answers", "::1", nil, false, reply},
		{"IPv6 host ignores echo", "::1", map[string]string{ignoreEcho6: "1"}, false, silence},
		{"IPv4 no host", "192.0.2.9", nil, true, silence},
		{"IPv6 no host", "2001:db8::9", nil, true, silence},
		// Only lo in the namespace: no route, so nothing is sent at all.
		{"IPv4 no route", "192.0.2.1", nil, false, outcome{Kind: FailUnreachable, Reason: "connect: network is unreachable"}},
		{"IPv6 no route", "2001:db8::1", nil, false, outcome{Kind: FailUnreachable, Reason: "connect: network is unreachable"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pingIn(t, tt.addr, tt.sysctls, tt.void); got != tt.want {
				t.Errorf("probe = %+v, want %+v", got, tt.want)
			}
		})
	}

}

func TestPingChecksum(t *testing.T) {
	// An echo request id 0x1234 seq 1 without payload: 0xffff - (0x0800
	// + 0x1234 + 0x0001) = 0xe5ca.
	pkt := []byte{8, 0, 0, 0, 0x12, 0x34, 0, 1}
	if got := checksum(pkt); got != 0xe5ca {
		t.Errorf("checksum = %#04x, want 0xe5ca", got)
	}
	pkt[2], pkt[3] = 0xe5, 0xca
	if got := checksum(pkt); got != 0 {
		t.Errorf("checksum over a packet with its checksum = %#04x, want 0", got)
	}
}

// nowhere gives the current namespace a veth pair, one end holding
// 192.0.2.1/24 and 2001:db8::1/64, the other nothing: the rest of those
// prefixes is on the link, but no host there answers ARP or neighbour
// solicitations, so nothing sent to them is ever delivered.
func nowhere(t *testing.T) {
	t.Helper()
	d := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "void0"}, PeerName: "void1"}
	if err := netlink.LinkAdd(d); err != nil {
		t.Fatal(err)
	}
	peer, err := netlink.LinkByName("void1")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(peer); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"192.0.2.1/24", "2001:db8::1/64"} {
		addr, err := netlink.ParseAddr(a)
		if err != nil {
			t.Fatal(err)
		}
		addr.Flags = unix.IFA_F_NODAD
		if err := netlink.AddrAdd(d, addr); err != nil {
			t.Fatal(err)
		}
	}
	if err := netlink.LinkSetUp(d); err != nil {
		t.Fatal(err)
	}
}

// The socket filter lets through echo replies with the socket's own
// identifier only: the reply to a request with another one is dropped
// before it is queued.
func TestPingFilter(t *testing.T) {
	lab.RequireRoot(t)
	for _, v6 := range []bool{false, true} {
		network, addr, reqType := "ip4:icmp", "127.0.0.1", byte(icmpEchoRequest)
		if v6 {
			network, addr, reqType = "ip6:ipv6-icmp", "::1", icmp6EchoRequest
		}
		filter, err := pingFilter(v6, 0x1111)
		if err != nil {
			t.Fatal(err)
		}
		d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, filter)
			}); err != nil {
				return err
			}
			return serr
		}}
		c, err := d.Dial(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		got := map[uint16]bool{}
		for _, id := range []uint16{0x2222, 0x1111} {
			pkt := []byte{reqType, 0, 0, 0, byte(id >> 8), byte(id), 0, 1}
			if !v6 {
				s := checksum(pkt)
				pkt[2], pkt[3] = byte(s>>8), byte(s)
			}
			if _, err := c.Write(pkt); err != nil {
				t.Fatal(err)
			}
		}
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		buf := make([]byte, 1500)
		for {
			n, err := c.Read(buf)
			if err != nil {
				break
			}
			b := buf[:n]
			if !v6 {
				b = b[int(b[0]&0x0f)*4:]
			}
			got[uint16(b[4])<<8|uint16(b[5])] = true
		}
		if want := map[uint16]bool{0x1111: true}; !maps.Equal(got, want) {
			t.Errorf("IPv6 %v: replies received for identifiers %v, want only 0x1111", v6, got)
		}
	}
}

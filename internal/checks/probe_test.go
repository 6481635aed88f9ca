package checks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/havip/havip/internal/conf"
)

// outcome is what a test asserts about one probe.
type outcome struct {
	OK     bool
	Kind   Failure // "" when OK
	Reason string
}

// probeOnce runs one probe of tg the way the Runner does: on a loop
// when tg is for the fast path (tcp, plain http), else its blocking
// prober, here on the test's goroutine (and so in the test's network
// namespace, see pingIn).
func probeOnce(t *testing.T, tg Target) outcome {
	t.Helper()
	if newTCPProbe(tg) != nil {
		return probeOnLoop(t, tg)
	}
	ctx, cancel := context.WithTimeout(t.Context(), tg.Check.Timeout)
	defer cancel()
	start := time.Now()
	detail, err := newProber(tg)(ctx)
	checkElapsed(t, start, tg.Check.Timeout)
	if err != nil {
		return outcome{Kind: failureOf(err), Reason: err.Error()}
	}
	return outcome{OK: true, Reason: detail}
}

// checkElapsed fails t if a probe started at start overran timeout. The
// slack allows for a loaded machine; a probe that ignored its timeout
// would still be caught (the silent servers wait 2 s or more).
func checkElapsed(t *testing.T, start time.Time, timeout time.Duration) {
	t.Helper()
	if el := time.Since(start); el > timeout+time.Second {
		t.Errorf("probe took %s, timeout %s", el, timeout)
	}
}

// probeOnLoop runs the first probe of tg in a Runner and returns its
// outcome.
func probeOnLoop(t *testing.T, tg Target) outcome {
	t.Helper()
	tg.Key, tg.StartUp, tg.Check.Rise, tg.Check.Fall = "k", false, 1, 1
	r := NewRunner(discard, WithoutJitter())
	defer r.Stop()
	start := time.Now()
	r.Set(t.Context(), []Target{tg})
	var res Result
	for res.Reason == "" || res.Reason == "not probed yet" {
		if time.Since(start) > tg.Check.Timeout+2*time.Second {
			t.Fatalf("no outcome after %s, timeout %s", time.Since(start), tg.Check.Timeout)
		}
		time.Sleep(time.Millisecond)
		res, _ = r.State("k")
	}
	checkElapsed(t, start, tg.Check.Timeout)
	if res.Up {
		return outcome{OK: true, Reason: res.Reason}
	}
	var kind Failure
	for k := range r.Failures() { // one probe failed: one key
		kind = k.Reason
	}
	return outcome{Kind: kind, Reason: res.Reason}
}

func addrOf(t testing.TB, a net.Addr) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

// closedTCPPort returns a loopback address nobody listens on.
func closedTCPPort(t *testing.T) netip.AddrPort {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ap := addrOf(t, l.Addr())
	l.Close()
	return ap
}

func closedUDPPort(t *testing.T) netip.AddrPort {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ap := addrOf(t, c.LocalAddr())
	c.Close()
	return ap
}

func check(typ string, timeout time.Duration) conf.Check {
	return conf.Check{Type: typ, Interval: 10 * timeout, Timeout: timeout, Rise: 1, Fall: 1}
}

func TestProbeTCP(t *testing.T) {
	open := listenTCP(t, "127.0.0.1:0")
	portOverride := check("tcp", time.Second)
	portOverride.Port = open.Port()
	tests := []struct {
		name string
		tg   Target
		want outcome
	}{
		{"open", Target{Check: check("tcp", time.Second), Addr: open}, outcome{OK: true, Reason: "connected"}},
		{"refused", Target{Check: check("tcp", time.Second), Addr: closedTCPPort(t)},
			outcome{Kind: FailRefused, Reason: "connect: connection refused"}},
		{"port overrides address port", Target{Check: portOverride, Addr: closedTCPPort(t)}, outcome{OK: true, Reason: "connected"}},
		{"no address", Target{Check: check("tcp", time.Second)},
			outcome{Kind: FailConfig, Reason: "no address to probe (invalid AddrPort)"}},
		{"unknown type", Target{Check: check("icmp", time.Second), Addr: open},
			outcome{Kind: FailConfig, Reason: `unknown check type "icmp"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, probeOnce(t, tt.tg)); diff != "" {
				t.Errorf("probe (-want +got):\n%s", diff)
			}
		})
	}
}

// udpServer answers each datagram with reply(payload); nil reply means
// stay silent.
func udpServer(t *testing.T, reply func([]byte) []byte) netip.AddrPort {
	return udpServerFunc(t, func(c net.PacketConn, p []byte, from net.Addr) {
		if r := reply(p); r != nil {
			c.WriteTo(r, from)
		}
	})
}

// udpServerFunc calls handle with each datagram a loopback UDP socket
// receives.
func udpServerFunc(t *testing.T, handle func(c net.PacketConn, p []byte, from net.Addr)) netip.AddrPort {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			handle(c, buf[:n], from)
		}
	}()
	return addrOf(t, c.LocalAddr())
}

func TestProbeUDP(t *testing.T) {
	echo := udpServer(t, func(p []byte) []byte { return append([]byte("pong "), p...) })
	silent := udpServer(t, func([]byte) []byte { return nil })
	const timeout = 150 * time.Millisecond
	uc := func(send, expect string) conf.Check {
		c := check("udp", timeout)
		c.Send, c.Expect = send, expect
		return c
	}
	tests := []struct {
		name string
		tg   Target
		want outcome
	}{
		{"reply contains expect", Target{Check: uc("ping", "pong ping"), Addr: echo}, outcome{OK: true, Reason: "reply received"}},
		{"reply lacks expect", Target{Check: uc("ping", "PONG"), Addr: echo},
			outcome{Kind: FailReply, Reason: `no reply containing "PONG" within 150ms`}},
		{"any reply without expect", Target{Check: uc("ping", ""), Addr: echo}, outcome{OK: true, Reason: "reply received"}},
		{"silence without expect", Target{Check: uc("ping", ""), Addr: silent}, outcome{OK: true, Reason: "no reply, no port unreachable"}},
		{"silence with expect", Target{Check: uc("ping", "pong"), Addr: silent}, outcome{Kind: FailTimeout, Reason: "no reply within 150ms"}},
		{"port unreachable without expect", Target{Check: uc("ping", ""), Addr: closedUDPPort(t)}, outcome{Kind: FailRefused, Reason: "port unreachable"}},
		{"port unreachable with expect", Target{Check: uc("ping", "pong"), Addr: closedUDPPort(t)}, outcome{Kind: FailRefused, Reason: "port unreachable"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.want, probeOnce(t, tt.tg)); diff != "" {
				t.Errorf("probe (-want +got):\n%s", diff)
			}
		})
	}
}

func TestProbeExec(t *testing.T) {
	const timeout = 200 * time.Millisecond
	ec := func(argv ...string) conf.Check {
		c := check("exec", timeout)
		c.Command = argv
		return c
	}
	addr := netip.MustParseAddrPort("127.0.0.1:8080")
	envCheck := ec("/bin/sh", "-c", `test "$HAVIP_CHECK_ADDR" = 127.0.0.1 && test "$HAVIP_CHECK_PORT" = 8080`)
	portOverride := ec("/bin/sh", "-c", `test "$HAVIP_CHECK_PORT" = 9090`)
	portOverride.Port = 9090
	tests := []struct {
		name string
		tg   Target
		want outcome
	}{
		{"true", Target{Check: ec("/bin/true")}, outcome{OK: true, Reason: "exit 0"}},
		{"false", Target{Check: ec("/bin/false")}, outcome{Kind: FailExit, Reason: "exit 1"}},
		{"stderr in reason", Target{Check: ec("/bin/sh", "-c", "echo 'backend gone' >&2; echo more >&2; exit 3")},
			outcome{Kind: FailExit, Reason: "exit 3: backend gone"}},
		{"environment", Target{Check: envCheck, Addr: addr}, outcome{OK: true, Reason: "exit 0"}},
		{"environment, port override", Target{Check: portOverride, Addr: addr}, outcome{OK: true, Reason: "exit 0"}},
		{"killed at timeout", Target{Check: ec("/bin/sleep", "10")}, outcome{Kind: FailExit, Reason: "killed: timeout after 200ms"}},
		{"children killed too", Target{Check: ec("/bin/sh", "-c", "sleep 10 & sleep 10; wait")},
			outcome{Kind: FailExit, Reason: "killed: timeout after 200ms"}},
		{"no such program", Target{Check: ec("/nonexistent/probe")},
			outcome{Kind: FailConfig, Reason: "exec: fork/exec /nonexistent/probe: no such file or directory"}},
		{"empty command", Target{Check: ec()}, outcome{Kind: FailConfig, Reason: "exec: no command"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.want, probeOnce(t, tt.tg)); diff != "" {
				t.Errorf("probe (-want +got):\n%s", diff)
			}
		})
	}
}

func TestProbeNone(t *testing.T) {
	want := outcome{OK: true, Reason: "no check"}
	if diff := cmp.Diff(want, probeOnce(t, Target{Check: check("none", time.Second)})); diff != "" {
		t.Errorf("probe (-want +got):\n%s", diff)
	}
}

func TestFailureOf(t *testing.T) {
	if got := failureOf(fmt.Errorf("wrapped: %w", fail(FailStatus, "status 500"))); got != FailStatus {
		t.Errorf("failureOf(wrapped) = %q, want %q", got, FailStatus)
	}
	if got := failureOf(errors.New("other")); got != FailConnect {
		t.Errorf("failureOf(plain) = %q, want %q", got, FailConnect)
	}
}

// A TCP check closes with a reset, so the director keeps no TIME_WAIT
// socket per check (issue 8). Counted in /proc/net/tcp for the
// listener's port, after 200 checks, next to 200 plain dial-and-close
// connections to a second listener.
func TestTCPCheckLeavesNoTimeWait(t *testing.T) {
	listen := func() uint16 {
		return listenOn(t, "127.0.0.1:0", closeAfterPeer).Addr().(*net.TCPAddr).AddrPort().Port()
	}
	checkPort, plainPort := listen(), listen()
	for range 200 {
		if _, err := probeTCP(context.Background(), netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), checkPort), time.Second); err != nil {
			t.Fatal(err)
		}
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", plainPort))
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	time.Sleep(200 * time.Millisecond) // the servers' side closes too
	checks, plain := timeWaitSockets(t, checkPort), timeWaitSockets(t, plainPort)
	t.Logf("TIME_WAIT sockets after 200 connections: %d for the TCP check, %d for dial-and-close", checks, plain)
	if checks != 0 {
		t.Errorf("%d TIME_WAIT sockets left by 200 TCP checks, want 0", checks)
	}
	if plain < 150 {
		t.Errorf("only %d TIME_WAIT sockets after 200 plain dial-and-close: the count does not see them, so it proves nothing", plain)
	}
}

// timeWaitSockets counts the IPv4 TCP sockets in TIME_WAIT with port at
// either end, from /proc/net/tcp.
func timeWaitSockets(t *testing.T, port uint16) int {
	t.Helper()
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	suffix := fmt.Sprintf(":%04X", port)
	n := 0
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		// local address f[1], remote f[2] (hex addr:port), state f[3]; 06 = TIME_WAIT
		if len(f) > 3 && f[3] == "06" && (strings.HasSuffix(f[1], suffix) || strings.HasSuffix(f[2], suffix)) {
			n++
		}
	}
	return n
}

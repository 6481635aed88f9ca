package checks

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/havip/havip/internal/conf"
	"golang.org/x/sys/unix"
)

// acceptAndClose serves ln until it is closed.
func acceptAndClose(ln net.Listener) { serveConns(ln, func(c net.Conn) { c.Close() }) }

// serveConns accepts on ln until it is closed, each connection handed to
// handle on a goroutine of its own.
func serveConns(ln net.Listener, handle func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go handle(c)
	}
}

// closeAfterPeer waits for the other end to close first (only then would
// a FIN leave the prober's side in TIME_WAIT), then closes c.
func closeAfterPeer(c net.Conn) { _, _ = c.Read(make([]byte, 1)); c.Close() }

// listenOn listens on addr for the test, serving each connection with
// handle.
func listenOn(t *testing.T, addr string, handle func(net.Conn)) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go serveConns(ln, handle)
	return ln
}

func listenTCP(t *testing.T, addr string) netip.AddrPort {
	t.Helper()
	return addrOf(t, listenOn(t, addr, func(c net.Conn) { c.Close() }).Addr())
}

// rawListener listens on 127.0.0.1 with backlog and never accepts.
func rawListener(t *testing.T, backlog int) netip.AddrPort {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, backlog); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(sa.(*unix.SockaddrInet4).Port))
}

// fullBacklog returns a listener that never accepts, with its queue
// filled, so that a new connect gets no answer.
func fullBacklog(t *testing.T) netip.AddrPort {
	t.Helper()
	addr := rawListener(t, 0)
	for range 4 { // backlog 0 holds one; the rest wait in SYN_SENT
		c, err := net.DialTimeout("tcp", addr.String(), 50*time.Millisecond)
		if err == nil {
			t.Cleanup(func() { c.Close() })
		}
	}
	return addr
}

// The fast path says what the blocking probe says, for IPv4 and IPv6.
func TestTCPFastPath(t *testing.T) {
	open4 := listenTCP(t, "127.0.0.1:0")
	open6 := listenTCP(t, "[::1]:0")
	closed6 := func() netip.AddrPort {
		ln, err := net.Listen("tcp", "[::1]:0")
		if err != nil {
			t.Fatal(err)
		}
		a := addrOf(t, ln.Addr())
		ln.Close()
		return a
	}()
	c := conf.Check{Type: "tcp", Interval: time.Second, Timeout: 100 * time.Millisecond, Rise: 1, Fall: 1}
	portOnly := c
	portOnly.Port = open4.Port()
	tests := []struct {
		name string
		tg   Target
		want state
	}{
		{"ipv4 open", Target{Check: c, Addr: open4}, state{"k", true, "connected"}},
		{"ipv6 open", Target{Check: c, Addr: open6}, state{"k", true, "connected"}},
		{"ipv4 refused", Target{Check: c, Addr: closedTCPPort(t), StartUp: true}, state{"k", false, "connect: connection refused"}},
		{"ipv6 refused", Target{Check: c, Addr: closed6, StartUp: true}, state{"k", false, "connect: connection refused"}},
		{"port override", Target{Check: portOnly, Addr: closedTCPPort(t)}, state{"k", true, "connected"}},
		{"timeout", Target{Check: c, Addr: fullBacklog(t), StartUp: true}, state{"k", false, "connect: timeout after 100ms"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRunner(discard, WithoutJitter())
			defer r.Stop()
			tt.tg.Key = "k"
			if p := newTCPProbe(tt.tg); p == nil {
				t.Fatal("target not on the fast path")
			}
			start := time.Now()
			r.Set(t.Context(), []Target{tt.tg})
			next(t, r) // initial
			got := next(t, r)
			if diff := cmp.Diff(tt.want, stateOf(got)); diff != "" {
				t.Errorf("result (-want +got):\n%s", diff)
			}
			if el := time.Since(start); strings.Contains(tt.name, "timeout") && el < 100*time.Millisecond {
				t.Errorf("timed out after %s, before the 100ms timeout", el)
			}
		})
	}
	if newTCPProbe(Target{Check: c}) != nil {
		t.Error("no address: want the blocking probe, which reports the config error")
	}
}

// timeWaitTo counts TIME_WAIT sockets (state 06) whose remote port is
// port, IPv4 and IPv6.
func timeWaitTo(t *testing.T, port uint16) int {
	t.Helper()
	n := 0
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) > 3 && fs[3] == "06" && strings.HasSuffix(fs[2], fmt.Sprintf(":%04X", port)) {
				n++
			}
		}
	}
	return n
}

// The fast path closes with a reset too (issue 8): many probes of 50
// targets leave no TIME_WAIT socket.
func TestTCPFastPathLeavesNoTimeWait(t *testing.T) {
	open := addrOf(t, listenOn(t, "0.0.0.0:0", closeAfterPeer).Addr())
	r := NewRunner(discard, WithoutJitter())
	defer r.Stop()
	var ts []Target
	for i := range 50 {
		a := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 1, byte(i + 1)}), open.Port())
		ts = append(ts, Target{Key: a.String(), Addr: a, Check: conf.Check{Type: "tcp", Interval: 10 * time.Millisecond, Timeout: 10 * time.Millisecond, Rise: 1, Fall: 1}})
	}
	r.Set(t.Context(), ts)
	for range 100 { // initial and up of each
		if res := next(t, r); res.Reason != "not probed yet" && !res.Up {
			t.Fatalf("%+v", res)
		}
	}
	time.Sleep(300 * time.Millisecond) // about 30 probes each
	r.Stop()
	time.Sleep(100 * time.Millisecond)
	if n := timeWaitTo(t, open.Port()); n != 0 {
		t.Errorf("%d TIME_WAIT sockets left by the fast path, want 0", n)
	}
	if n := r.Failures(); len(n) != 0 {
		t.Errorf("failures %v, want none", n)
	}
}

// bareLoop is a loop that is not running, for tests that drive it
// probe by probe with runOn.
func bareLoop(t testing.TB) *loop {
	t.Helper()
	l, err := newLoop(&Runner{log: discard, failures: map[FailureKey]uint64{}, in: make(chan message)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.close)
	return l
}

// fastProbe is the fast-path probe of tg (rise and fall 1), for runOn.
func fastProbe(t testing.TB, tg Target) *probe {
	t.Helper()
	tp := newTCPProbe(tg)
	if tp == nil {
		t.Fatalf("%+v: not on the fast path", tg)
	}
	p := &probe{tcp: tp, interval: tg.Check.Interval, timeout: tg.Check.Timeout, index: -1, fd: -1, h: hysteresis{rise: 1, fall: 1, up: tg.StartUp}}
	p.ctx, p.cancel = context.WithCancel(t.Context())
	t.Cleanup(p.cancel)
	return p
}

// runOn runs one probe of p on l, as l.run would but for its deadline,
// and returns the socket it used (its inode: fd numbers recur).
func runOn(t testing.TB, l *loop, p *probe) uint64 {
	l.tcpStart(p, l.now())
	ino := inode(t, p.fd)
	for p.fd >= 0 {
		n, err := unix.EpollWait(l.epfd, l.events, 1000)
		if err != nil && err != unix.EINTR {
			t.Fatal(err)
		}
		for _, ev := range l.events[:max(n, 0)] {
			if int(ev.Fd) == p.fd {
				l.ready(p, ev.Events)
			}
		}
	}
	return ino
}

// inode is the inode of socket fd, 0 for none.
func inode(t testing.TB, fd int) uint64 {
	t.Helper()
	if fd < 0 {
		return 0
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// A steady TCP probe cycle (connect, completion, reset, record,
// schedule) allocates nothing.
func TestTCPFastPathAllocs(t *testing.T) {
	// A listener that never accepts: the kernel completes the handshakes
	// into its queue, and a Go accept loop's allocations (AllocsPerRun
	// counts the whole process) stay out of the count.
	open := rawListener(t, 1024)
	l := bareLoop(t)
	p := fastProbe(t, Target{Key: "k", Addr: open, Check: conf.Check{Type: "tcp", Interval: time.Second, Timeout: time.Second, Rise: 1, Fall: 1}, StartUp: true})
	var ok atomic.Int64
	cycle := func() {
		runOn(t, l, p)
		if p.last.Up && p.last.Reason == "connected" {
			ok.Add(1)
		}
	}
	cycle() // grows the fd table and the heap
	allocs := testing.AllocsPerRun(200, cycle)
	if ok.Load() != 202 { // AllocsPerRun runs it once more to warm up
		t.Fatalf("%d of 202 probes connected", ok.Load())
	}
	t.Logf("%.2f allocations per TCP probe cycle", allocs)
	if allocs != 0 {
		t.Errorf("%.2f allocations per TCP probe cycle, want 0", allocs)
	}
}

// A socket that connected is reset and serves the loop's next probe, of
// any target and type, which reads its own outcome from it; one that did
// not connect is closed.
func TestFastPathReusesSockets(t *testing.T) {
	open := listenTCP(t, "127.0.0.1:0")
	open6 := listenTCP(t, "[::1]:0")
	refused := closedTCPPort(t)
	streams := listenOn(t, "127.0.0.1:0", func(c net.Conn) { // answers, then sends more than the probe reads
		defer c.Close()
		c.Read(make([]byte, 4096))
		io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\n")
		chunk := []byte(strings.Repeat("x", 64<<10))
		for range 100 {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	})
	silent := rawServer(t, "")
	l := bareLoop(t)
	c := conf.Check{Type: "tcp", Interval: time.Second, Timeout: time.Second, Rise: 1, Fall: 1}
	h := hc("http", "/", func(c *conf.Check) { c.Timeout, c.Interval = 300*time.Millisecond, time.Second })
	type step struct {
		name string
		tg   Target
		want string
		same bool // the socket the last probe that connected left
	}
	steps := []step{
		{"tcp connects", Target{Check: c, Addr: open}, "connected", false},
		{"tcp again", Target{Check: c, Addr: open}, "connected", true},
		{"refused after reuse", Target{Check: c, Addr: refused}, "connect: connection refused", true},
		{"refused socket closed", Target{Check: c, Addr: open}, "connected", false},
		{"http, body still coming at the verdict", Target{Check: h, Addr: addrOf(t, streams.Addr())}, "status 200", true},
		{"tcp after http", Target{Check: c, Addr: open}, "connected", true},
		{"http timeout after the connect", Target{Check: h, Addr: silent}, "http: timeout after 300ms", true},
		{"tcp after the timeout", Target{Check: c, Addr: open}, "connected", true},
		{"ipv6 has its own", Target{Check: c, Addr: open6}, "connected", false},
		{"ipv4 still reused", Target{Check: c, Addr: open}, "connected", true},
	}
	var last uint64
	for _, st := range steps {
		p := fastProbe(t, st.tg)
		var fd uint64
		if strings.Contains(st.name, "timeout") {
			fd = runTimedOut(t, l, p)
		} else {
			fd = runOn(t, l, p)
		}
		if p.last.Reason != st.want {
			t.Errorf("%s: %q, want %q", st.name, p.last.Reason, st.want)
		}
		if got := fd == last; got != st.same && st.tg.Addr.Addr().Is4() {
			t.Errorf("%s: socket %d, the last one %d: reused %v, want %v", st.name, fd, last, got, st.same)
		}
		if st.tg.Addr.Addr().Is4() && p.last.Reason == st.want && !strings.Contains(st.want, "refused") {
			last = fd
		}
	}
}

// runTimedOut runs one probe of p on l that is to time out: it waits out
// p's timeout for the events, then fires p at its deadline as l.run
// would.
func runTimedOut(t *testing.T, l *loop, p *probe) uint64 {
	l.tcpStart(p, l.now())
	ino := inode(t, p.fd)
	deadline := time.Now().Add(p.timeout)
	for p.fd >= 0 && time.Now().Before(deadline) {
		n, _ := unix.EpollWait(l.epfd, l.events, 10)
		for _, ev := range l.events[:max(n, 0)] {
			if int(ev.Fd) == p.fd {
				l.ready(p, ev.Events)
			}
		}
	}
	if p.fd >= 0 {
		l.fire(p, l.now())
	}
	return ino
}

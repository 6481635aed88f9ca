package checks

import (
	"context"
	"net/netip"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// tcpProbe is the fast path of tcp and plain http checks: a non-blocking
// connect whose completion the loop's epoll reports, so that no
// goroutine waits per probe, then for http the exchange of httpfast.go.
// It says what probeTCP and the http prober say, with the same reasons.
type tcpProbe struct {
	family   int
	sa       unix.Sockaddr // built once: Connect reuses its buffer
	timedOut error         // built once: the same every time

	http                       *httpProber // the request and the judge of an http check; nil for tcp
	sendTimedOut, readTimedOut error       // http's timeouts after the connect
}

// newTCPProbe builds the fast path for t, or returns nil when t is for
// the blocking probe (another type, no usable address, a zoned IPv6
// address, an http check whose config is refused).
func newTCPProbe(t Target) *tcpProbe {
	addr := t.Addr
	if t.Check.Port != 0 {
		addr = netip.AddrPortFrom(addr.Addr(), t.Check.Port)
	}
	ip := addr.Addr()
	if !ip.IsValid() || addr.Port() == 0 || ip.Zone() != "" {
		return nil
	}
	tp := &tcpProbe{timedOut: fail(FailTimeout, "connect: timeout after %s", t.Check.Timeout)}
	switch t.Check.Type {
	case "tcp":
	case "http":
		hp, err := newHTTP(t.Check, addr)
		if err != nil {
			return nil
		}
		tp.http = hp
		tp.sendTimedOut = fail(FailTimeout, "send: timeout after %s", t.Check.Timeout)
		tp.readTimedOut = fail(FailTimeout, "http: timeout after %s", t.Check.Timeout)
	default:
		return nil
	}
	if ip.Is4() || ip.Is4In6() {
		tp.family = unix.AF_INET
		tp.sa = &unix.SockaddrInet4{Port: int(addr.Port()), Addr: ip.Unmap().As4()}
	} else {
		tp.family = unix.AF_INET6
		tp.sa = &unix.SockaddrInet6{Port: int(addr.Port()), Addr: ip.As16()}
	}
	return tp
}

// linger0 makes close send a reset: no TIME_WAIT socket per check (see
// probeTCP).
var linger0 = unix.Linger{Onoff: 1, Linger: 0}

// maxIdle is how many unconnected sockets a loop keeps per address
// family for its next probes. Enough for the swings of a steady load:
// 2,500 http probes a second per loop against a loaded server needed
// about a thousand sockets at the peak (BenchmarkChecks, 5,000 tcp +
// 5,000 http), and a cap of 256 closed 40% of them again. A burst past it (servers that accept and never
// answer) costs new sockets, and leaves no more than this held.
const maxIdle = 1024

// tcpStart connects p's socket; the loop learns the outcome from epoll,
// or from p's deadline.
func (l *loop) tcpStart(p *probe, now time.Duration) {
	fd, err := l.socket(p.tcp.family)
	if err != nil {
		l.finish(p, "", err)
		return
	}
	p.fd = fd
	for fd >= len(l.byFD) {
		l.byFD = append(l.byFD, nil)
	}
	l.byFD[fd] = p
	switch err := unix.Connect(fd, p.tcp.sa); {
	case err == nil && p.tcp.http == nil:
		l.finish(p, "connected", nil)
		return
	case err == nil:
		l.schedule(p, now+p.timeout)
		l.httpConnected(p, 0)
	case err == unix.EINPROGRESS:
		l.schedule(p, now+p.timeout)
	default:
		l.finish(p, "", connectError(err, p.timeout))
	}
}

// socket returns an unconnected non-blocking TCP socket of family that
// closes with a reset, in the loop's epoll set: one an earlier probe
// left (see release), else a new one. Its events are edge-triggered,
// readable and writable: a connect completes with one event, and http's
// exchange reads and writes until EAGAIN, with no epoll_ctl per probe.
func (l *loop) socket(family int) (int, error) {
	idle := &l.idle[familyIndex(family)]
	if n := len(*idle); n > 0 {
		fd := (*idle)[n-1]
		*idle = (*idle)[:n-1]
		return fd, nil
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fail(FailConnect, "connect: socket: %v", err)
	}
	if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &linger0); err != nil {
		unix.Close(fd)
		return -1, fail(FailConnect, "connect: SO_LINGER: %v", err)
	}
	l.ev = unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLET, Fd: int32(fd)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &l.ev); err != nil {
		unix.Close(fd)
		return -1, fail(FailConnect, "connect: epoll: %v", err)
	}
	return fd, nil
}

// release takes p's socket back. One that connected is reset by a
// connect to AF_UNSPEC (a reset, as close with SO_LINGER 0 sends: no
// TIME_WAIT) and kept, unconnected, for the next probe, up to maxIdle:
// a probe then costs a connect and this, not also a socket, a
// setsockopt, an epoll_ctl and a close. Any other (refused, timed out
// while connecting) is closed: its state is not worth reasoning about.
// An event still queued for the socket reports its state when it is
// delivered, so a later probe of the same socket reads it correctly.
func (l *loop) release(p *probe, connected bool) {
	fd := p.fd
	p.fd = -1
	if fd < len(l.byFD) {
		l.byFD[fd] = nil
	}
	idle := &l.idle[familyIndex(p.tcp.family)]
	if connected && len(*idle) < maxIdle && disconnect(fd) == nil {
		*idle = append(*idle, fd)
		return
	}
	unix.Close(fd) // also leaves the epoll set
}

func familyIndex(family int) int {
	if family == unix.AF_INET6 {
		return 1
	}
	return 0
}

// disconnect resets fd's connection and leaves the socket unconnected
// (connect with AF_UNSPEC; x/sys/unix has no Sockaddr for it). The
// kernel keeps ECONNRESET as the socket's error until the next connect
// clears it.
func disconnect(fd int) error {
	var sa unix.RawSockaddr // Family 0: AF_UNSPEC
	_, _, errno := unix.Syscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
	if errno != 0 {
		return errno
	}
	return nil
}

// ready handles the events epoll reported on p's socket.
func (l *loop) ready(p *probe, events uint32) {
	switch {
	case p.flight != nil:
		l.httpExchange(p, events)
	default:
		err := l.tcpResult(p, events)
		if err != nil || p.tcp.http == nil {
			l.finish(p, "connected", err)
			return
		}
		l.httpConnected(p, events)
	}
}

// tcpResult is the outcome of p's connect once epoll reported events on
// its socket: writable without error or hang-up is connected (no
// getsockopt needed, one system call less per probe); otherwise SO_ERROR
// says why.
func (l *loop) tcpResult(p *probe, events uint32) error {
	if events&(unix.EPOLLERR|unix.EPOLLHUP) == 0 && events&unix.EPOLLOUT != 0 {
		return nil
	}
	soerr, err := unix.GetsockoptInt(p.fd, unix.SOL_SOCKET, unix.SO_ERROR)
	switch {
	case err != nil:
		return connectError(err, p.timeout)
	case soerr != 0:
		return connectError(unix.Errno(soerr), p.timeout)
	}
	return nil
}

func connectError(err error, timeout time.Duration) error {
	return netError(context.Background(), "connect", err, timeout)
}

// finish ends p's probe: its socket goes back (see release), the outcome
// is recorded (detail when err is nil) and the next probe scheduled.
func (l *loop) finish(p *probe, detail string, err error) {
	if p.fd >= 0 {
		l.release(p, p.flight != nil || p.tcp.http == nil && err == nil)
	}
	p.endFlight()
	l.r.complete(p, detail, err)
	l.next(p)
}

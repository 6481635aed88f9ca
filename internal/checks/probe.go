package checks

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/havip/havip/internal/runas"
)

// Failure says why a probe failed; probe failures are counted by check
// type and Failure (see Runner.Failures).
type Failure string

// Probe failure reasons.
const (
	FailTimeout     Failure = "timeout"     // no answer within the check's timeout
	FailRefused     Failure = "refused"     // TCP RST, or ICMP port unreachable for udp/dns
	FailUnreachable Failure = "unreachable" // no route, host or network unreachable (ping: an ICMP error came back)
	FailConnect     Failure = "connect"     // any other error while connecting, reading or writing
	FailTLS         Failure = "tls"         // https: TLS handshake failed, or (tls_verify) the certificate was refused
	FailStatus      Failure = "status"      // http: status not in expect_status; smtp: greeting not 220 or EHLO not 250
	FailBody        Failure = "body"        // http: the first 64 KiB of body do not match expect_body or expect_body_regex
	FailProtocol    Failure = "protocol"    // the answer does not follow the protocol: http, smtp or dns garbage
	FailReply       Failure = "reply"       // udp: no reply containing expect
	FailRcode       Failure = "rcode"       // dns: the server answered with an error rcode
	FailNoAnswer    Failure = "no_answer"   // dns: no record of the query type in the answer
	FailAnswer      Failure = "answer"      // dns: no record of the query type with the value expect_answer
	FailExit        Failure = "exit"        // exec: non-zero exit status or killed
	FailConfig      Failure = "config"      // the target cannot be probed as configured
)

// probeError is a failed probe: its reason enum and a short message for
// Result.Reason.
type probeError struct {
	kind Failure
	msg  string
}

func (e *probeError) Error() string { return e.msg }

func fail(kind Failure, format string, args ...any) error {
	return &probeError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// failureOf is the reason enum of a probe error.
func failureOf(err error) Failure {
	if pe, ok := errors.AsType[*probeError](err); ok {
		return pe.kind
	}
	return FailConnect
}

// prober runs one probe, bounded by ctx, and says what it saw: a short
// description of success, or an error whose message is the reason.
type prober func(ctx context.Context) (string, error)

// Limits on what a probe reads.
const (
	maxHTTPBody   = 64 << 10
	maxUDPReply   = 64 << 10
	maxExecStderr = 256
)

// Buffers for reading replies come from pools shared by every prober, not
// one per prober: memory then follows the probes in flight, not the
// number of targets (10,000 http targets would otherwise hold 800 MB).
var (
	replyBufs = sync.Pool{New: func() any { return new([maxUDPReply]byte) }}
	readers   = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, maxLine) }}
)

// maxLine is the longest status, header or SMTP reply line a probe reads.
const maxLine = 16 << 10

// getReader returns a pooled reader over r; give it back with putReader.
func getReader(r io.Reader) *bufio.Reader {
	br := readers.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

func putReader(br *bufio.Reader) {
	br.Reset(nil)
	readers.Put(br)
}

// deadlineOf bounds c by ctx: its deadline, and its cancellation; the
// returned stop undoes the latter.
func deadlineOf(ctx context.Context, c net.Conn) (stop func() bool) {
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	return context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
}

// closeReset closes a TCP connection with a reset (SO_LINGER 0), as
// probeTCP does: a probe leaves no TIME_WAIT socket on the director.
func closeReset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

// newProber builds the probe for t, once per target. A target that cannot
// be probed gets a prober that always fails with FailConfig, so the
// problem shows in status instead of vanishing.
func newProber(t Target) prober {
	c := t.Check
	addr := t.Addr
	if c.Port != 0 {
		addr = netip.AddrPortFrom(addr.Addr(), c.Port)
	}
	needAddr := c.Type != "exec" && c.Type != "none"
	needPort := needAddr && c.Type != "ping"
	if needAddr && (!addr.Addr().IsValid() || needPort && addr.Port() == 0) {
		return failing(fail(FailConfig, "no address to probe (%s)", addr))
	}
	timeout := c.Timeout
	switch c.Type {
	case "tcp":
		return func(ctx context.Context) (string, error) { return probeTCP(ctx, addr, timeout) }
	case "http", "https":
		return newHTTPProber(c, addr)
	case "udp":
		return func(ctx context.Context) (string, error) { return probeUDP(ctx, addr, c.Send, c.Expect, timeout) }
	case "dns":
		return newDNSProber(c, addr)
	case "smtp":
		return newSMTPProber(c, addr)
	case "ping":
		return newPingProber(c, addr.Addr())
	case "exec":
		if len(c.Command) == 0 || c.Command[0] == "" {
			return failing(fail(FailConfig, "exec: no command"))
		}
		return func(ctx context.Context) (string, error) { return probeExec(ctx, c.RunAs, c.Command, addr, timeout) }
	case "none":
		return func(context.Context) (string, error) { return "no check", nil }
	}
	return failing(fail(FailConfig, "unknown check type %q", c.Type))
}

func failing(err error) prober {
	return func(context.Context) (string, error) { return "", err }
}

// netError turns a socket error into a probe error. op names the step
// ("connect", "read", ...) for the message.
func netError(ctx context.Context, op string, err error, timeout time.Duration) error {
	if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return fail(FailTimeout, "%s: timeout after %s", op, timeout)
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch errno {
		case syscall.ECONNREFUSED:
			return fail(FailRefused, "%s: %v", op, errno)
		case syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.EHOSTDOWN, syscall.ENETDOWN:
			return fail(FailUnreachable, "%s: %v", op, errno)
		}
		return fail(FailConnect, "%s: %v", op, errno)
	}
	if oe, ok := errors.AsType[*net.OpError](err); ok {
		err = oe.Err
	}
	return fail(FailConnect, "%s: %v", op, err)
}

func probeTCP(ctx context.Context, addr netip.AddrPort, timeout time.Duration) (string, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return "", netError(ctx, "connect", err, timeout)
	}
	// Closed with a reset (SO_LINGER 0), not a FIN: a check every
	// second per real server would otherwise leave the director a
	// TIME_WAIT socket for each, 60 s apiece (131,072 at the kernel's cap
	// with 10,000 checks; issue 8).
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
	return "connected", nil
}

// probeUDP sends payload and waits for a reply. With expect set, success
// is a reply containing expect. With expect empty, any reply is success
// and so is silence: only an ICMP port unreachable within the timeout
// (seen as ECONNREFUSED on the connected socket) fails the probe, so a
// silent service costs a full timeout per probe and a filtered port
// (no ICMP) always looks up.
func probeUDP(ctx context.Context, addr netip.AddrPort, payload, expect string, timeout time.Duration) (string, error) {
	c, done, err := dialUDP(ctx, addr, timeout)
	if err != nil {
		return "", err
	}
	defer done()
	if _, err := c.Write([]byte(payload)); err != nil {
		return "", netError(ctx, "send", err, timeout)
	}
	bp := replyBufs.Get().(*[maxUDPReply]byte)
	defer replyBufs.Put(bp)
	buf := bp[:]
	sawOther := false
	for {
		n, err := c.Read(buf)
		if err != nil {
			timedOut := errors.Is(err, os.ErrDeadlineExceeded) || ctx.Err() != nil
			switch {
			case errors.Is(err, syscall.ECONNREFUSED):
				return "", fail(FailRefused, "port unreachable")
			case timedOut && expect == "":
				return "no reply, no port unreachable", nil
			case timedOut && sawOther:
				return "", fail(FailReply, "no reply containing %q within %s", expect, timeout)
			case timedOut:
				return "", fail(FailTimeout, "no reply within %s", timeout)
			}
			return "", netError(ctx, "receive", err, timeout)
		}
		if expect == "" || bytes.Contains(buf[:n], []byte(expect)) {
			return "reply received", nil
		}
		sawOther = true
	}
}

// dialUDP connects a UDP socket to addr whose reads and writes end with
// ctx (its deadline, or its cancellation); done closes it.
func dialUDP(ctx context.Context, addr netip.AddrPort, timeout time.Duration) (net.Conn, func(), error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", addr.String())
	if err != nil {
		return nil, nil, netError(ctx, "connect", err, timeout)
	}
	stop := deadlineOf(ctx, c)
	return c, func() { stop(); c.Close() }, nil
}

// probeExec runs argv without a shell as user as (runas.Command: nil is
// this process's user; conf sets the site's script user), with the clean
// environment plus HAVIP_CHECK_ADDR and HAVIP_CHECK_PORT set to the target
// (empty when the check has none). Exit status 0 is success. At the
// timeout the whole process group is killed, so a script's children do
// not outlive its check.
func probeExec(ctx context.Context, as *runas.User, argv []string, addr netip.AddrPort, timeout time.Duration) (string, error) {
	ip, port := "", ""
	if addr.Addr().IsValid() {
		ip = addr.Addr().String()
		if addr.Port() != 0 {
			port = strconv.Itoa(int(addr.Port()))
		}
	}
	cmd := runas.Command(ctx, as, argv, "HAVIP_CHECK_ADDR="+ip, "HAVIP_CHECK_PORT="+port)
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A grandchild that escaped the group may hold stderr open: stop
	// waiting for it shortly after the command is gone.
	cmd.WaitDelay = 100 * time.Millisecond
	stderr := &capped{max: maxExecStderr}
	cmd.Stderr = stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		return "", fail(FailExit, "killed: timeout after %s", timeout)
	}
	msg := stderr.firstLine()
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		s := ee.ProcessState.String() // "exit status 1", "signal: killed"
		s = strings.Replace(s, "exit status", "exit", 1)
		if msg != "" {
			s += ": " + msg
		}
		return "", fail(FailExit, "%s", s)
	}
	if err != nil && !errors.Is(err, exec.ErrWaitDelay) {
		return "", fail(FailConfig, "exec: %v", err)
	}
	return "exit 0", nil
}

// capped keeps the first max bytes written to it.
type capped struct {
	max int
	buf []byte
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - len(c.buf); room > 0 {
		c.buf = append(c.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (c *capped) firstLine() string {
	line, _, _ := strings.Cut(strings.TrimSpace(string(c.buf)), "\n")
	return strings.TrimSpace(line)
}

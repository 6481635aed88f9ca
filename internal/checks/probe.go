package checks

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/havip/havip/internal/conf"
	"golang.org/x/net/dns/dnsmessage"
)

// Failure says why a probe failed; probe failures are counted by check
// type and Failure (see Runner.Failures).
type Failure string

// Probe failure reasons.
const (
	FailTimeout     Failure = "timeout"     // no answer within the check's timeout
	FailRefused     Failure = "refused"     // TCP RST, or ICMP port unreachable for udp/dns
	FailUnreachable Failure = "unreachable" // no route, host or network unreachable
	FailConnect     Failure = "connect"     // any other error while connecting, reading or writing
	FailTLS         Failure = "tls"         // TLS handshake failed (certificates are not verified)
	FailStatus      Failure = "status"      // http: status not in expect_status
	FailReply       Failure = "reply"       // udp: no reply containing expect
	FailRcode       Failure = "rcode"       // dns: the server answered with an error rcode
	FailNoAnswer    Failure = "no_answer"   // dns: no answer records
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
	if needAddr && (!addr.Addr().IsValid() || addr.Port() == 0) {
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
		name := c.Query
		if !strings.HasSuffix(name, ".") {
			name += "."
		}
		q, err := dnsmessage.NewName(name)
		if err == nil {
			m := dnsQuery(0, q)
			_, err = m.Pack() // checks label lengths
		}
		if err != nil || c.Query == "" {
			return failing(fail(FailConfig, "dns query %q is not a domain name", c.Query))
		}
		return func(ctx context.Context) (string, error) { return probeDNS(ctx, addr, q, timeout) }
	case "exec":
		if len(c.Command) == 0 || c.Command[0] == "" {
			return failing(fail(FailConfig, "exec: no command"))
		}
		return func(ctx context.Context) (string, error) { return probeExec(ctx, c.Command, addr, timeout) }
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

// newHTTPProber GETs c.Path from addr over a fresh connection each time
// (keep-alive would let a dead listener hide behind an open connection).
// Redirects are not followed: a 301 is judged against expect_status like
// any other status. https does not verify the certificate: the check asks
// whether this real server serves, not whether its certificate is valid
// for a name; Host, when set, is also sent as the TLS server name.
func newHTTPProber(c conf.Check, addr netip.AddrPort) prober {
	path := c.Path
	if path == "" {
		path = "/"
	}
	u, err := url.Parse(c.Type + "://" + addr.String() + path)
	if err != nil || !strings.HasPrefix(path, "/") {
		return failing(fail(FailConfig, "http path %q: not a valid absolute path", path))
	}
	expect := c.ExpectStatus
	if len(expect) == 0 {
		expect = []int{http.StatusOK}
	}
	timeout := c.Timeout
	dialer := &net.Dialer{}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, "tcp", addr.String())
		},
		TLSClientConfig:    &tls.Config{InsecureSkipVerify: true, ServerName: hostOnly(c.Host)}, //nolint:gosec // see above
		DisableKeepAlives:  true,
		DisableCompression: true,
		Proxy:              nil,
	}
	client := &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return func(ctx context.Context) (string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return "", fail(FailConfig, "http request: %v", err)
		}
		if c.Host != "" {
			req.Host = c.Host
		}
		req.Header.Set("User-Agent", "havip-check")
		resp, err := client.Do(req)
		if err != nil {
			return "", httpError(ctx, err, timeout)
		}
		// Read (a bounded part of) the body so a server that dies mid-reply
		// fails the check; the content itself is not judged.
		_, rerr := io.Copy(io.Discard, io.LimitReader(resp.Body, maxHTTPBody))
		resp.Body.Close()
		if !slices.Contains(expect, resp.StatusCode) {
			return "", fail(FailStatus, "status %d", resp.StatusCode)
		}
		if rerr != nil {
			return "", netError(ctx, "read body", rerr, timeout)
		}
		return fmt.Sprintf("status %d", resp.StatusCode), nil
	}
}

// hostOnly strips a port from a Host header value, for the TLS server name.
func hostOnly(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		return host
	}
	return h
}

func httpError(ctx context.Context, err error, timeout time.Duration) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		err = ue.Err
	}
	if ctx.Err() != nil {
		return fail(FailTimeout, "http: timeout after %s", timeout)
	}
	oe, isOp := errors.AsType[*net.OpError](err)
	if isOp && oe.Op == "dial" {
		return netError(ctx, "connect", err, timeout)
	}
	if isOp && oe.Op == "remote error" { // crypto/tls: the server sent an alert
		return fail(FailTLS, "%v", oe)
	}
	var (
		alert  tls.AlertError
		header tls.RecordHeaderError
	)
	if errors.As(err, &alert) || errors.As(err, &header) {
		return fail(FailTLS, "%v", err)
	}
	if isOp {
		return netError(ctx, "http", err, timeout)
	}
	if msg := err.Error(); strings.HasPrefix(msg, "http: ") {
		return fail(FailConnect, "%s", msg) // net/http's own, already prefixed
	}
	return fail(FailConnect, "http: %v", err)
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
	buf := make([]byte, maxUDPReply)
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
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	return c, func() { stop(); c.Close() }, nil
}

// probeDNS asks addr for the A records of name over UDP and succeeds when
// the answer section is not empty. It builds the query itself rather than
// using net.Resolver: the resolver reads /etc/hosts before asking (a
// check on "localhost." would never reach the server), appends search
// domains from resolv.conf and retries by its own options.
func probeDNS(ctx context.Context, addr netip.AddrPort, name dnsmessage.Name, timeout time.Duration) (string, error) {
	id := uint16(rand.Uint32())
	msg := dnsQuery(id, name)
	q := msg.Questions[0]
	query, err := msg.Pack()
	if err != nil {
		return "", fail(FailConfig, "dns: build query: %v", err)
	}
	c, done, err := dialUDP(ctx, addr, timeout)
	if err != nil {
		return "", err
	}
	defer done()
	if _, err := c.Write(query); err != nil {
		return "", netError(ctx, "send", err, timeout)
	}
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if err != nil {
			if errors.Is(err, syscall.ECONNREFUSED) {
				return "", fail(FailRefused, "port unreachable")
			}
			return "", netError(ctx, "receive", err, timeout)
		}
		var p dnsmessage.Parser
		h, err := p.Start(buf[:n])
		if err != nil || h.ID != id || !h.Response {
			continue // not the answer to this query: keep waiting
		}
		got, err := p.Question()
		if err != nil || got != q {
			continue
		}
		if err := p.SkipAllQuestions(); err != nil {
			return "", fail(FailReply, "dns: malformed reply: %v", err)
		}
		if h.RCode != dnsmessage.RCodeSuccess {
			return "", fail(FailRcode, "dns: rcode %s", rcodeName(h.RCode))
		}
		answers, err := p.AllAnswers()
		if err != nil {
			return "", fail(FailReply, "dns: malformed reply: %v", err)
		}
		if len(answers) == 0 {
			return "", fail(FailNoAnswer, "dns: no answer for %s A", name)
		}
		return fmt.Sprintf("%d answers", len(answers)), nil
	}
}

func dnsQuery(id uint16, name dnsmessage.Name) dnsmessage.Message {
	return dnsmessage.Message{
		Header:    dnsmessage.Header{ID: id, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}},
	}
}

func rcodeName(rc dnsmessage.RCode) string {
	switch rc {
	case dnsmessage.RCodeFormatError:
		return "FORMERR"
	case dnsmessage.RCodeServerFailure:
		return "SERVFAIL"
	case dnsmessage.RCodeNameError:
		return "NXDOMAIN"
	case dnsmessage.RCodeNotImplemented:
		return "NOTIMP"
	case dnsmessage.RCodeRefused:
		return "REFUSED"
	}
	return strconv.Itoa(int(rc))
}

// probeExec runs argv without a shell, with HAVIP_CHECK_ADDR and
// HAVIP_CHECK_PORT set to the target (empty when the check has none).
// Exit status 0 is success. At the timeout the whole process group is
// killed, so a script's children do not outlive its check.
func probeExec(ctx context.Context, argv []string, addr netip.AddrPort, timeout time.Duration) (string, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	ip, port := "", ""
	if addr.Addr().IsValid() {
		ip = addr.Addr().String()
		if addr.Port() != 0 {
			port = strconv.Itoa(int(addr.Port()))
		}
	}
	cmd.Env = append(os.Environ(), "HAVIP_CHECK_ADDR="+ip, "HAVIP_CHECK_PORT="+port)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
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

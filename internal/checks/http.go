package checks

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/havip/havip/internal/conf"
)

// httpProber speaks HTTP/1.1 itself rather than through net/http's
// client: one request written from bytes built once, one response parsed
// from a pooled buffer, over a fresh connection each time (keep-alive
// would let a dead listener hide behind an open connection), closed with
// a reset. Redirects are not followed: a 301 is judged against
// expect_status like any other status.
type httpProber struct {
	addr    string // dial address
	req     []byte // the whole request
	head    bool   // HEAD: the response has no body
	expect  []conf.StatusRange
	body    []byte         // expect_body, or nil
	re      *regexp.Regexp // expect_body_regex, or nil
	tls     *tls.Config    // nil for http
	timeout time.Duration
	dialer  net.Dialer
}

// newHTTPProber builds the prober of an http or https check of addr.
// Zero values mean: Path "/", Method GET, ExpectStatus 200, Host the
// address. https verifies the certificate only with TLSVerify (the check
// asks whether this real server serves, not whether its certificate is
// valid for a name); its server name (SNI and, with TLSVerify, the name
// verified) is TLSServerName, else the host of Host, else the address.
func newHTTPProber(c conf.Check, addr netip.AddrPort) prober {
	p, err := newHTTP(c, addr)
	if err != nil {
		return failing(err)
	}
	return p.probe
}

// newHTTP builds what newHTTPProber and the loop's http fast path (see
// httpfast.go) probe with; an error is the check's FailConfig reason.
func newHTTP(c conf.Check, addr netip.AddrPort) (*httpProber, error) {
	path := c.Path
	if path == "" {
		path = "/"
	}
	if !strings.HasPrefix(path, "/") || strings.ContainsFunc(path, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return nil, fail(FailConfig, "http path %q: not a valid absolute path", path)
	}
	method := c.Method
	if method == "" {
		method = "GET"
	}
	host := c.Host
	if host == "" {
		host = addr.String()
	}
	if strings.ContainsAny(method+host, " \r\n") {
		return nil, fail(FailConfig, "http: bad method %q or host %q", method, host)
	}
	var req bytes.Buffer
	fmt.Fprintf(&req, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, path, host)
	agent := true
	for _, h := range c.Headers {
		if strings.ContainsAny(h.Name+h.Value, "\r\n") || strings.ContainsAny(h.Name, " :") {
			return nil, fail(FailConfig, "http: bad header %q", h.Name)
		}
		if strings.EqualFold(h.Name, "User-Agent") {
			agent = false
		}
		fmt.Fprintf(&req, "%s: %s\r\n", h.Name, h.Value)
	}
	if agent {
		req.WriteString("User-Agent: havip\r\n")
	}
	req.WriteString("Connection: close\r\n\r\n")
	p := &httpProber{
		addr:    addr.String(),
		req:     req.Bytes(),
		head:    method == "HEAD",
		expect:  c.ExpectStatus,
		timeout: c.Timeout,
	}
	if len(p.expect) == 0 {
		p.expect = []conf.StatusRange{{Lo: 200, Hi: 200}}
	}
	if c.ExpectBody != "" {
		p.body = []byte(c.ExpectBody)
	}
	if c.ExpectBodyRegex != "" {
		re, err := regexp.Compile(c.ExpectBodyRegex)
		if err != nil {
			return nil, fail(FailConfig, "http: expect_body_regex: %v", err)
		}
		p.re = re
	}
	if c.Type == "https" {
		cfg, err := clientTLS(c, addr)
		if err != nil {
			return nil, err
		}
		p.tls = cfg
	}
	return p, nil
}

func clientTLS(c conf.Check, addr netip.AddrPort) (*tls.Config, error) {
	name := c.TLSServerName
	if name == "" && c.Host != "" {
		name = hostOnly(c.Host)
	}
	cfg := &tls.Config{ServerName: name, InsecureSkipVerify: !c.TLSVerify} //nolint:gosec // see newHTTPProber
	if c.TLSVerify && name == "" {
		cfg.ServerName = addr.Addr().String() // verified against the certificate's IP addresses
	}
	if c.TLSCA != "" {
		pem, err := os.ReadFile(c.TLSCA)
		if err != nil {
			return nil, fail(FailConfig, "https: tls_ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fail(FailConfig, "https: tls_ca %s: no certificate", c.TLSCA)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// hostOnly strips a port from a Host header value, for the TLS server name.
func hostOnly(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		return host
	}
	return h
}

func (p *httpProber) probe(ctx context.Context) (string, error) {
	raw, err := p.dialer.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return "", netError(ctx, "connect", err, p.timeout)
	}
	defer closeReset(raw) // no close_notify for TLS either: the reset ends it
	defer deadlineOf(ctx, raw)()
	var c net.Conn = raw
	if p.tls != nil {
		tc := tls.Client(raw, p.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			return "", tlsError(ctx, err, p.timeout)
		}
		c = tc
	}
	if _, err := c.Write(p.req); err != nil {
		return "", netError(ctx, "send", err, p.timeout)
	}
	br := getReader(c)
	defer putReader(br)
	return p.judge(ctx, br)
}

// judge reads the response from br and says whether it passes. The
// loop's fast path judges what has arrived so far, again as more does:
// errPartial (from its reader, passed through) says that was not enough.
func (p *httpProber) judge(ctx context.Context, br *bufio.Reader) (string, error) {
	status, framing, err := readHead(br)
	if err != nil {
		return "", p.readError(ctx, "read response", err)
	}
	if !p.expected(status) {
		return "", fail(FailStatus, "%s", statusText(status))
	}
	if p.head || status == 204 || status == 304 {
		framing = 0
	}
	var (
		body []byte
		bp   *[maxUDPReply]byte
	)
	if p.body != nil || p.re != nil {
		bp = replyBufs.Get().(*[maxUDPReply]byte)
		defer replyBufs.Put(bp)
		body = bp[:0]
	}
	body, err = readBody(br, framing, body)
	if err != nil {
		return "", p.readError(ctx, "read body", err)
	}
	switch {
	case p.body != nil && !bytes.Contains(body, p.body):
		return "", fail(FailBody, "%s, body lacks %q", statusText(status), p.body)
	case p.re != nil && !p.re.Match(body):
		return "", fail(FailBody, "%s, body does not match %q", statusText(status), p.re.String())
	}
	return statusText(status), nil
}

func (p *httpProber) expected(status int) bool {
	for _, r := range p.expect {
		if r.Contains(status) {
			return true
		}
	}
	return false
}

// errMalformed is wrapped by what readHead and readBody find wrong with
// the response itself.
var errMalformed = errors.New("malformed")

func (p *httpProber) readError(ctx context.Context, op string, err error) error {
	switch {
	case errors.Is(err, errPartial):
		return err
	case errors.Is(err, errMalformed):
		return fail(FailProtocol, "http: %v", err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		if ctx.Err() == nil {
			return fail(FailConnect, "%s: connection closed early", op)
		}
	}
	if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
		return fail(FailTimeout, "http: timeout after %s", p.timeout)
	}
	if oe, ok := errors.AsType[*net.OpError](err); ok && oe.Op == "remote error" {
		return tlsError(ctx, err, p.timeout) // an alert after the handshake
	}
	return netError(ctx, op, err, p.timeout)
}

// statusTexts holds the success and failure text of every status, so
// a probe does not format one each time.
var statusTexts = func() (t [600]string) {
	for i := range t {
		t[i] = "status " + strconv.Itoa(i)
	}
	return t
}()

func statusText(status int) string { return statusTexts[status] }

// framing says how a response body ends: its length, chunked, or at the
// close of the connection.
type framing int64

const (
	chunked    framing = -1
	untilClose framing = -2
)

const maxHeadSize = 64 << 10 // all header lines together

// readHead reads the status line and headers of the final response,
// skipping interim 1xx ones, and returns the status and how the body is
// framed.
func readHead(br *bufio.Reader) (int, framing, error) {
	for {
		line, err := readLine(br)
		if err != nil {
			return 0, 0, err
		}
		status, err := parseStatusLine(line)
		if err != nil {
			return 0, 0, err
		}
		fr := untilClose
		size := 0
		for {
			h, err := readLine(br)
			if err != nil {
				return 0, 0, err
			}
			if size += len(h); size > maxHeadSize {
				return 0, 0, fmt.Errorf("%w: headers longer than %d bytes", errMalformed, maxHeadSize)
			}
			if len(h) == 0 {
				break
			}
			name, value, ok := bytes.Cut(h, []byte(":"))
			if !ok {
				return 0, 0, fmt.Errorf("%w: header line %q", errMalformed, clip(h))
			}
			value = bytes.TrimSpace(value)
			switch {
			case bytes.EqualFold(name, []byte("Transfer-Encoding")):
				if bytes.HasSuffix(bytes.ToLower(value), []byte("chunked")) {
					fr = chunked
				}
			case bytes.EqualFold(name, []byte("Content-Length")) && fr != chunked:
				n, err := strconv.ParseInt(string(value), 10, 64)
				if err != nil || n < 0 {
					return 0, 0, fmt.Errorf("%w: Content-Length %q", errMalformed, clip(value))
				}
				fr = framing(n)
			}
		}
		if status >= 200 || status == 101 {
			return status, fr, nil
		}
	}
}

// readLine reads one line without its CRLF (or bare LF).
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return nil, fmt.Errorf("%w: a line longer than %d bytes", errMalformed, maxLine)
	}
	if err != nil {
		if len(line) > 0 && errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// parseStatusLine reads "HTTP/1.x NNN reason".
func parseStatusLine(line []byte) (int, error) {
	rest, ok := bytes.CutPrefix(line, []byte("HTTP/1."))
	if !ok || len(rest) < 5 || rest[1] != ' ' || len(rest) > 5 && rest[5] != ' ' {
		return 0, fmt.Errorf("%w: status line %q", errMalformed, clip(line))
	}
	code := rest[2:5]
	status := 0
	for _, d := range code {
		if d < '0' || d > '9' {
			return 0, fmt.Errorf("%w: status line %q", errMalformed, clip(line))
		}
		status = status*10 + int(d-'0')
	}
	if status < 100 || status > 599 {
		return 0, fmt.Errorf("%w: status %d", errMalformed, status)
	}
	return status, nil
}

// readBody reads the body as framed, at most maxHTTPBody bytes of it,
// appending what it reads to keep when keep is not nil.
func readBody(br *bufio.Reader, fr framing, keep []byte) ([]byte, error) {
	budget := int64(maxHTTPBody)
	take := func(n int64) error {
		n = min(n, budget)
		budget -= n
		for n > 0 {
			b, err := br.Peek(int(min(n, int64(br.Size()))))
			if len(b) == 0 && err != nil {
				return err
			}
			if keep != nil {
				keep = append(keep, b...)
			}
			br.Discard(len(b))
			n -= int64(len(b))
		}
		return nil
	}
	switch fr {
	case untilClose:
		err := take(budget)
		if errors.Is(err, io.EOF) {
			err = nil
		}
		return keep, err
	case chunked:
		for budget > 0 {
			line, err := readLine(br)
			if err != nil {
				return keep, err
			}
			hex, _, _ := bytes.Cut(line, []byte(";"))
			n, err := strconv.ParseInt(string(bytes.TrimSpace(hex)), 16, 64)
			if err != nil || n < 0 {
				return keep, fmt.Errorf("%w: chunk size %q", errMalformed, clip(line))
			}
			if n == 0 {
				return keep, nil // trailers are not read
			}
			if err := take(n); err != nil {
				return keep, noEOF(err)
			}
			if budget == 0 {
				break
			}
			if crlf, err := readLine(br); err != nil || len(crlf) != 0 {
				return keep, cmp.Or(noEOF(err), fmt.Errorf("%w: no CRLF after a chunk", errMalformed))
			}
		}
		return keep, nil
	}
	return keep, noEOF(take(int64(fr)))
}

// noEOF turns an EOF before the body's end into io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// clip shortens what a server sent for a message.
func clip(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "..."
	}
	return string(b)
}

// tlsError classifies a failed handshake: a timeout or a socket error is
// what it would be without TLS; anything else is the TLS layer's (an
// alert, a refused certificate, a server that does not speak TLS).
func tlsError(ctx context.Context, err error, timeout time.Duration) error {
	if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
		return fail(FailTimeout, "tls: timeout after %s", timeout)
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return netError(ctx, "tls", err, timeout)
	}
	if errors.Is(err, io.EOF) {
		return fail(FailTLS, "tls: connection closed during the handshake")
	}
	msg := err.Error()
	if oe, ok := errors.AsType[*net.OpError](err); ok {
		msg = oe.Op + ": " + oe.Err.Error() // "remote error: tls: ..."
	}
	if !strings.HasPrefix(msg, "tls: ") {
		msg = "tls: " + msg
	}
	return fail(FailTLS, "%s", msg)
}

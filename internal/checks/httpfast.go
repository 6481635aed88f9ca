package checks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"golang.org/x/sys/unix"
)

// The http check's fast path rides on the TCP one (tcpfast.go): once
// the loop's non-blocking connect completes, the loop writes the
// request, reads what arrives into the probe's flight buffer and judges
// it with the blocking prober's parser (httpProber.judge) each time more
// arrives, until the response is complete, the server closes or the
// deadline in the heap passes. No goroutine and no net.Conn per probe;
// the buffer is the probe's only while it is in flight.

// httpFlight is an http probe's exchange on the loop, from the connect
// to the verdict. Its Read serves what has arrived to the parser.
type httpFlight struct {
	sent int    // bytes of the request written
	resp []byte // the response so far
	end  error  // how the response ended: io.EOF, a socket error; nil while open
	off  int    // Read's position in resp
}

// errPartial is what a flight's Read returns past the bytes that have
// arrived while the connection is open: judge again when more arrive.
var errPartial = errors.New("checks: response incomplete")

func (f *httpFlight) Read(b []byte) (int, error) {
	if f.off == len(f.resp) {
		if f.end != nil {
			return 0, f.end
		}
		return 0, errPartial
	}
	n := copy(b, f.resp[f.off:])
	f.off += n
	return n, nil
}

// Bounds of a flight's buffer: it starts small, as most health
// responses are, and grows up to what judge can need for a verdict:
// the headers, the body it reads and room for a chunked body's framing.
const (
	flightBuf   = 4 << 10
	maxResponse = maxHeadSize + maxHTTPBody + maxLine
)

var flights = sync.Pool{New: func() any { return &httpFlight{resp: make([]byte, 0, flightBuf)} }}

// errTooLong is the verdict on a response that fills maxResponse before
// judge can decide (a chunked body of tiny chunks, endless interim
// responses).
var errTooLong = fail(FailProtocol, "http: %v", fmt.Errorf("%w: more than %d bytes without a complete response", errMalformed, maxResponse))

// httpConnected starts p's exchange on its connected socket; events are
// those epoll reported with the connect (a response may already be
// there), 0 when the connect completed at once.
func (l *loop) httpConnected(p *probe, events uint32) {
	f := flights.Get().(*httpFlight)
	p.flight = f
	l.httpExchange(p, events)
}

// httpExchange moves p's exchange on as far as its socket allows: the
// rest of the request, then what has arrived of the response. The socket
// is edge-triggered: each step goes on until the kernel says EAGAIN.
func (l *loop) httpExchange(p *probe, events uint32) {
	f, hp := p.flight, p.tcp.http
	for f.sent < len(hp.req) {
		n, err := unix.Write(p.fd, hp.req[f.sent:])
		switch {
		case err == unix.EAGAIN:
			return // EPOLLOUT when the socket has room
		case err == unix.EINTR:
		case err != nil:
			l.finish(p, "", netError(context.Background(), "send", err, p.timeout))
			return
		default:
			f.sent += n
		}
	}
	if events&(unix.EPOLLIN|unix.EPOLLERR|unix.EPOLLHUP) == 0 {
		return
	}
	for {
		if len(f.resp) == cap(f.resp) {
			if cap(f.resp) >= maxResponse {
				l.finish(p, "", errTooLong)
				return
			}
			f.resp = slices.Grow(f.resp, min(cap(f.resp), maxResponse-cap(f.resp)))
		}
		n, err := unix.Read(p.fd, f.resp[len(f.resp):cap(f.resp)])
		switch {
		case err == unix.EAGAIN:
			return // the next bytes bring the next event
		case err == unix.EINTR:
			continue
		case err != nil:
			f.end = err
		case n == 0:
			f.end = io.EOF
		default:
			f.resp = f.resp[:len(f.resp)+n]
		}
		f.off = 0
		br := getReader(f)
		detail, err := hp.judge(context.Background(), br)
		putReader(br)
		if !errors.Is(err, errPartial) {
			l.finish(p, detail, err)
			return
		}
	}
}

// deadlineError is the failure of p in flight at its deadline, named for
// the step it was in.
func (p *probe) deadlineError() error {
	switch {
	case p.flight == nil:
		return p.tcp.timedOut
	case p.flight.sent < len(p.tcp.http.req):
		return p.tcp.sendTimedOut
	}
	return p.tcp.readTimedOut
}

// endFlight gives p's flight buffer back.
func (p *probe) endFlight() {
	if f := p.flight; f != nil {
		p.flight = nil
		if cap(f.resp) > flightBuf {
			return // a large response does not pin its buffer in the pool
		}
		*f = httpFlight{resp: f.resp[:0]}
		flights.Put(f)
	}
}

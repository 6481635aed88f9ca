package daemon

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The metrics listener's HTTP: one request per connection (the answer
// says Connection: close), GET or HEAD of /metrics (any query ignored),
// the request head within 8 KiB and the whole exchange within 10 s, at
// most 8 connections at once (more are closed unanswered). Anything else
// gets its status code: 400, 404, 405, 431 or 505.

const (
	metricsMaxHead  = 8 << 10
	metricsDeadline = 10 * time.Second
	metricsMaxConns = 8
)

func (m *metricsTask) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-done:
		}
		m.l.Close()
		m.mu.Lock()
		m.stopped = true
		for c := range m.conns {
			c.Close()
		}
		m.mu.Unlock()
	}()
	defer func() {
		close(done)
		wg.Wait()
	}()
	for {
		c, err := m.l.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("metrics: %w", err)
		}
		m.mu.Lock()
		if len(m.conns) >= metricsMaxConns || m.stopped {
			m.mu.Unlock()
			c.Close()
			continue
		}
		if m.conns == nil {
			m.conns = map[net.Conn]bool{}
		}
		m.conns[c] = true
		m.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.serveConn(c)
			m.mu.Lock()
			delete(m.conns, c)
			m.mu.Unlock()
			c.Close()
		}()
	}
}

// active is how many connections are being served.
func (m *metricsTask) active() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.conns)
}

// serveConn answers the one request on c.
func (m *metricsTask) serveConn(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(metricsDeadline))
	method, path, proto, status := readMetricsRequest(bufio.NewReaderSize(c, 1024))
	if status == 0 {
		switch {
		case method != "GET" && method != "HEAD":
			status = 405
		case path != "/metrics":
			status = 404
		}
	}
	if status != 0 {
		msg := metricsStatusText(status) + "\n"
		head := fmt.Sprintf("%s %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n", proto, status, metricsStatusText(status), len(msg))
		if status == 405 {
			head += "Allow: GET, HEAD\r\n"
		}
		_, _ = c.Write([]byte(head + "\r\n" + msg))
		return
	}
	var body bytes.Buffer
	m.scrape(&body)
	head := proto + " 200 OK\r\nContent-Type: " + promContentType + "\r\nContent-Length: " + strconv.Itoa(body.Len()) + "\r\nConnection: close\r\n\r\n"
	if method == "HEAD" {
		_, _ = c.Write([]byte(head))
		return
	}
	_, _ = (&net.Buffers{[]byte(head), body.Bytes()}).WriteTo(c)
}

// readMetricsRequest reads a request head: its method, path and the
// version to answer in (the request's, as net/http does; HTTP/1.1 when
// it has none), or the status that refuses it (0: read whole and well
// formed).
func readMetricsRequest(r *bufio.Reader) (method, path, proto string, status int) {
	proto = "HTTP/1.1"
	total := 0
	line := func() (string, bool) {
		var b []byte
		for {
			chunk, isPrefix, err := r.ReadLine()
			if err != nil {
				return "", false
			}
			total += len(chunk) + 2
			if total > metricsMaxHead {
				return "", false
			}
			b = append(b, chunk...)
			if !isPrefix {
				return string(b), true
			}
		}
	}
	first, ok := line()
	if !ok {
		if total > metricsMaxHead {
			return "", "", proto, 431
		}
		return "", "", proto, 400
	}
	parts := strings.Split(first, " ")
	if len(parts) != 3 || parts[0] == "" || !strings.HasPrefix(parts[1], "/") {
		return "", "", proto, 400
	}
	if parts[2] != "HTTP/1.1" && parts[2] != "HTTP/1.0" {
		return "", "", proto, 505
	}
	method, path, proto = parts[0], parts[1], parts[2]
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	for {
		h, ok := line()
		switch {
		case !ok && total > metricsMaxHead:
			return "", "", proto, 431
		case !ok:
			return "", "", proto, 400
		case h == "":
			return method, path, proto, 0
		case !strings.Contains(h, ":"):
			return "", "", proto, 400
		}
	}
}

func metricsStatusText(code int) string {
	switch code {
	case 400:
		return "Bad Request"
	case 404:
		return "Not Found"
	case 405:
		return "Method Not Allowed"
	case 431:
		return "Request Header Fields Too Large"
	case 505:
		return "HTTP Version Not Supported"
	}
	return "Error"
}

package daemon

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/havip/havip/internal/ctl"
)

// The metrics listener answers a scraper's GET (and HEAD) of /metrics,
// refuses everything else with the right status, bounds the request head
// and the connections, and stops with its context.
func TestMetricsHTTP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	snap := &metricsSnap{st: &ctl.Status{Groups: []ctl.GroupStatus{{Name: "front", State: "MASTER", Priority: 150}}}}
	m := &metricsTask{addr: l.Addr().String(), l: l, snap: func() *metricsSnap { return snap }, log: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	url := "http://" + m.addr

	// A real client, as Prometheus is.
	resp, err := http.Get(url + "/metrics?x=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != promContentType ||
		!strings.Contains(string(body), `havip_vrrp_priority{group="front"} 150`) || !strings.Contains(string(body), "go_goroutines ") {
		t.Errorf("GET /metrics: %d %q\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	resp, err = http.Head(url + "/metrics")
	if err != nil || resp.StatusCode != 200 || resp.ContentLength <= 0 {
		t.Errorf("HEAD /metrics: %v %v", resp, err)
	}

	raw := func(req string) string {
		c, err := net.Dial("tcp", m.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, req); err != nil {
			return "write: " + err.Error()
		}
		line, _ := bufio.NewReader(c).ReadString('\n')
		return strings.TrimSpace(line)
	}
	for req, want := range map[string]string{
		"GET /other HTTP/1.1\r\nHost: x\r\n\r\n":                                "HTTP/1.1 404 Not Found",
		"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n":                             "HTTP/1.1 405 Method Not Allowed",
		"GET /metrics HTTP/2.0\r\n\r\n":                                         "HTTP/1.1 505 HTTP Version Not Supported",
		"GARBAGE\r\n\r\n":                                                       "HTTP/1.1 400 Bad Request",
		"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n":                        "HTTP/1.1 400 Bad Request",
		"GET /metrics HTTP/1.0\r\n\r\n":                                         "HTTP/1.0 200 OK",
		"GET /metrics HTTP/1.1\r\nX: " + strings.Repeat("a", 9000) + "\r\n\r\n": "HTTP/1.1 431 Request Header Fields Too Large",
	} {
		if got := raw(req); got != want {
			t.Errorf("%.40q: %q, want %q", req, got, want)
		}
	}

	// Connections past the limit are closed unanswered; the held ones
	// still get their answer. (The connections above may still be
	// closing on the server's side: wait until none is counted.)
	waitActive := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); m.active() != n; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d connections served, want %d", m.active(), n)
			}
		}
	}
	waitActive(0)
	var held []net.Conn
	for range metricsMaxConns {
		c, err := net.Dial("tcp", m.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	waitActive(metricsMaxConns) // the server has taken them all
	extra, err := net.Dial("tcp", m.addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = extra.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := extra.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("a connection past the limit: read %d, %v; want it closed", n, err)
	}
	extra.Close()
	if _, err := io.WriteString(held[0], "GET /metrics HTTP/1.1\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = held[0].SetReadDeadline(time.Now().Add(2 * time.Second))
	if line, _ := bufio.NewReader(held[0]).ReadString('\n'); !strings.HasPrefix(line, "HTTP/1.1 200") {
		t.Errorf("a held connection got %q", line)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended (a held connection kept it?)")
	}
}

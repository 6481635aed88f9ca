package checks

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/havip/havip/internal/conf"
	"golang.org/x/net/dns/dnsmessage"
)

// outcome is what a test asserts about one probe.
type outcome struct {
	OK     bool
	Kind   Failure // "" when OK
	Reason string
}

// probeOnce runs one probe of t the way the Runner does.
func probeOnce(t *testing.T, tg Target) outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), tg.Check.Timeout)
	defer cancel()
	start := time.Now()
	detail, err := newProber(tg)(ctx)
	if el := time.Since(start); el > tg.Check.Timeout+200*time.Millisecond {
		t.Errorf("probe took %s, timeout %s", el, tg.Check.Timeout)
	}
	if err != nil {
		return outcome{Kind: failureOf(err), Reason: err.Error()}
	}
	return outcome{OK: true, Reason: detail}
}

func addrOf(t *testing.T, a net.Addr) netip.AddrPort {
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
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	open := addrOf(t, l.Addr())
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

func TestProbeHTTP(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ok", http.StatusFound) })
	mux.HandleFunc("/vhost", func(w http.ResponseWriter, r *http.Request) {
		if r.Host != "www.example.test" {
			w.WriteHeader(http.StatusMisdirectedRequest)
		}
	})
	mux.HandleFunc("/query", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.RawQuery != "deep=1" {
			w.WriteHeader(http.StatusBadRequest)
		}
	})
	mux.HandleFunc("/sni", func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || r.TLS.ServerName != "www.example.test" {
			w.WriteHeader(http.StatusMisdirectedRequest)
		}
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/huge", func(w http.ResponseWriter, r *http.Request) {
		chunk := []byte(strings.Repeat("x", 64<<10))
		for range 1000 { // 64 MB unless the client hangs up
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	plain := httptest.NewServer(mux)
	t.Cleanup(plain.Close) // after the parallel subtests
	secure := httptest.NewUnstartedServer(mux)
	secure.Config.ErrorLog = log.New(io.Discard, "", 0) // the http-to-TLS case logs a handshake error
	secure.StartTLS()
	t.Cleanup(secure.Close)
	plainAddr := addrOf(t, plain.Listener.Addr())
	secureAddr := addrOf(t, secure.Listener.Addr())

	hc := func(typ, path string, mod ...func(*conf.Check)) conf.Check {
		c := check(typ, 300*time.Millisecond)
		c.Path = path
		for _, m := range mod {
			m(&c)
		}
		return c
	}
	expect := func(s ...int) func(*conf.Check) { return func(c *conf.Check) { c.ExpectStatus = s } }
	host := func(c *conf.Check) { c.Host = "www.example.test" }
	tests := []struct {
		name string
		tg   Target
		want outcome
	}{
		{"200", Target{Check: hc("http", "/ok"), Addr: plainAddr}, outcome{OK: true, Reason: "status 200"}},
		{"default path is /", Target{Check: hc("http", ""), Addr: plainAddr}, outcome{Kind: FailStatus, Reason: "status 404"}},
		{"503", Target{Check: hc("http", "/fail"), Addr: plainAddr}, outcome{Kind: FailStatus, Reason: "status 503"}},
		{"503 expected", Target{Check: hc("http", "/fail", expect(200, 503)), Addr: plainAddr}, outcome{OK: true, Reason: "status 503"}},
		{"redirect not followed", Target{Check: hc("http", "/redirect"), Addr: plainAddr}, outcome{Kind: FailStatus, Reason: "status 302"}},
		{"redirect expected", Target{Check: hc("http", "/redirect", expect(302)), Addr: plainAddr}, outcome{OK: true, Reason: "status 302"}},
		{"host header", Target{Check: hc("http", "/vhost", host), Addr: plainAddr}, outcome{OK: true, Reason: "status 200"}},
		{"no host header", Target{Check: hc("http", "/vhost"), Addr: plainAddr}, outcome{Kind: FailStatus, Reason: "status 421"}},
		{"query string kept", Target{Check: hc("http", "/query?deep=1"), Addr: plainAddr}, outcome{OK: true, Reason: "status 200"}},
		{"body capped", Target{Check: hc("http", "/huge"), Addr: plainAddr}, outcome{OK: true, Reason: "status 200"}},
		{"timeout", Target{Check: hc("http", "/slow"), Addr: plainAddr}, outcome{Kind: FailTimeout, Reason: "http: timeout after 300ms"}},
		{"refused", Target{Check: hc("http", "/ok"), Addr: closedTCPPort(t)}, outcome{Kind: FailRefused, Reason: "connect: connection refused"}},
		{"https, self-signed certificate accepted", Target{Check: hc("https", "/ok"), Addr: secureAddr}, outcome{OK: true, Reason: "status 200"}},
		{"https sends host as SNI", Target{Check: hc("https", "/sni", host), Addr: secureAddr}, outcome{OK: true, Reason: "status 200"}},
		{"https 404", Target{Check: hc("https", "/nope"), Addr: secureAddr}, outcome{Kind: FailStatus, Reason: "status 404"}},
		{"http to a TLS server", Target{Check: hc("http", "/ok"), Addr: secureAddr}, outcome{Kind: FailStatus, Reason: "status 400"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.want, probeOnce(t, tt.tg)); diff != "" {
				t.Errorf("probe (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("https to a plain server", func(t *testing.T) {
		want := outcome{Kind: FailConnect, Reason: "http: server gave HTTP response to HTTPS client"}
		if diff := cmp.Diff(want, probeOnce(t, Target{Check: hc("https", "/ok"), Addr: plainAddr})); diff != "" {
			t.Errorf("probe (-want +got):\n%s", diff)
		}
	})
	t.Run("tls handshake refused", func(t *testing.T) {
		srv := httptest.NewUnstartedServer(mux)
		srv.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
		srv.Config.ErrorLog = log.New(io.Discard, "", 0)
		srv.StartTLS()
		defer srv.Close()
		got := probeOnce(t, Target{Check: hc("https", "/ok"), Addr: addrOf(t, srv.Listener.Addr())})
		if got.OK || got.Kind != FailTLS || !strings.Contains(got.Reason, "certificate required") {
			t.Errorf("probe = %+v, want a %s failure: certificate required", got, FailTLS)
		}
	})
}

// udpServer answers each datagram with reply(payload); nil reply means
// stay silent.
func udpServer(t *testing.T, reply func([]byte) []byte) netip.AddrPort {
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
			if r := reply(buf[:n]); r != nil {
				c.WriteTo(r, from)
			}
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

// dnsAnswer is how the test responder answers: by name, an rcode and a
// number of A records.
type dnsAnswer struct {
	rcode   dnsmessage.RCode
	records int
}

// dnsServer is a tiny responder. Before each real answer it sends a
// reply with the wrong ID, which the probe must ignore. Names it does not
// know get no reply at all.
func dnsServer(t *testing.T, zone map[string]dnsAnswer) netip.AddrPort {
	return udpServer(t, func(p []byte) []byte {
		var m dnsmessage.Message
		if err := m.Unpack(p); err != nil || len(m.Questions) != 1 {
			return nil
		}
		q := m.Questions[0]
		a, ok := zone[q.Name.String()]
		if !ok || q.Type != dnsmessage.TypeA {
			return nil
		}
		reply := dnsmessage.Message{
			Header:    dnsmessage.Header{ID: m.ID, Response: true, Authoritative: true, RCode: a.rcode},
			Questions: m.Questions,
		}
		for i := range a.records {
			reply.Answers = append(reply.Answers, dnsmessage.Resource{
				Header: dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 60},
				Body:   &dnsmessage.AResource{A: [4]byte{192, 0, 2, byte(i + 1)}},
			})
		}
		out, err := reply.Pack()
		if err != nil {
			t.Errorf("pack reply: %v", err)
			return nil
		}
		return out
	})
}

func TestProbeDNS(t *testing.T) {
	srv := dnsServer(t, map[string]dnsAnswer{
		"ok.test.":    {dnsmessage.RCodeSuccess, 2},
		"nx.test.":    {dnsmessage.RCodeNameError, 0},
		"empty.test.": {dnsmessage.RCodeSuccess, 0},
		// In /etc/hosts, but the server does not know it: the probe must ask the server.
		"localhost.": {dnsmessage.RCodeNameError, 0},
	})
	// A responder that first sends a reply with the wrong ID.
	var liar netip.AddrPort
	{
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		liar = addrOf(t, c.LocalAddr())
		go func() {
			buf := make([]byte, 512)
			for {
				n, from, err := c.ReadFrom(buf)
				if err != nil {
					return
				}
				var m dnsmessage.Message
				if m.Unpack(buf[:n]) != nil {
					continue
				}
				wrong := dnsmessage.Message{Header: dnsmessage.Header{ID: m.ID + 1, Response: true}, Questions: m.Questions,
					Answers: []dnsmessage.Resource{{
						Header: dnsmessage.ResourceHeader{Name: m.Questions[0].Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET},
						Body:   &dnsmessage.AResource{A: [4]byte{192, 0, 2, 9}},
					}}}
				right := dnsmessage.Message{Header: dnsmessage.Header{ID: m.ID, Response: true, RCode: dnsmessage.RCodeServerFailure}, Questions: m.Questions}
				for _, msg := range []dnsmessage.Message{wrong, right} {
					b, _ := msg.Pack()
					c.WriteTo(b, from)
				}
			}
		}()
	}
	const timeout = 200 * time.Millisecond
	dc := func(q string) conf.Check {
		c := check("dns", timeout)
		c.Query = q
		return c
	}
	tests := []struct {
		name string
		tg   Target
		want outcome
	}{
		{"answers", Target{Check: dc("ok.test"), Addr: srv}, outcome{OK: true, Reason: "2 answers"}},
		{"absolute name", Target{Check: dc("ok.test."), Addr: srv}, outcome{OK: true, Reason: "2 answers"}},
		{"nxdomain", Target{Check: dc("nx.test"), Addr: srv}, outcome{Kind: FailRcode, Reason: "dns: rcode NXDOMAIN"}},
		{"no answers", Target{Check: dc("empty.test"), Addr: srv}, outcome{Kind: FailNoAnswer, Reason: "dns: no answer for empty.test. A"}},
		{"hosts file not consulted", Target{Check: dc("localhost"), Addr: srv}, outcome{Kind: FailRcode, Reason: "dns: rcode NXDOMAIN"}},
		{"no reply", Target{Check: dc("unknown.test"), Addr: srv}, outcome{Kind: FailTimeout, Reason: "receive: timeout after 200ms"}},
		{"reply with the wrong id ignored", Target{Check: dc("ok.test"), Addr: liar}, outcome{Kind: FailRcode, Reason: "dns: rcode SERVFAIL"}},
		{"port unreachable", Target{Check: dc("ok.test"), Addr: closedUDPPort(t)}, outcome{Kind: FailRefused, Reason: "port unreachable"}},
		{"bad name", Target{Check: dc(strings.Repeat("a", 70) + ".test"), Addr: srv},
			outcome{Kind: FailConfig, Reason: fmt.Sprintf("dns query %q is not a domain name", strings.Repeat("a", 70)+".test")}},
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
	listen := func() (net.Listener, uint16) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() { _, _ = c.Read(make([]byte, 1)); c.Close() }()
			}
		}()
		return ln, uint16(ln.Addr().(*net.TCPAddr).Port)
	}
	_, checkPort := listen()
	_, plainPort := listen()
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
	timeWait := func(port uint16) int {
		b, err := os.ReadFile("/proc/net/tcp")
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			// remote address is f[2] (hex addr:port), state f[3]; 06 = TIME_WAIT
			if len(f) > 3 && f[3] == "06" && strings.HasSuffix(f[2], fmt.Sprintf(":%04X", port)) {
				n++
			}
		}
		return n
	}
	checks, plain := timeWait(checkPort), timeWait(plainPort)
	t.Logf("TIME_WAIT sockets after 200 connections: %d for the TCP check, %d for dial-and-close", checks, plain)
	if checks != 0 {
		t.Errorf("%d TIME_WAIT sockets left by 200 TCP checks, want 0", checks)
	}
	if plain < 150 {
		t.Errorf("only %d TIME_WAIT sockets after 200 plain dial-and-close: the count does not see them, so it proves nothing", plain)
	}
}

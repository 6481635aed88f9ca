package checks

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/havip/havip/internal/conf"
)

// hc is an http(s) check of path with a short timeout, changed by mods.
func hc(typ, path string, mods ...func(*conf.Check)) conf.Check {
	c := check(typ, 300*time.Millisecond)
	c.Path = path
	for _, m := range mods {
		m(&c)
	}
	return c
}

func expect(rs ...conf.StatusRange) func(*conf.Check) {
	return func(c *conf.Check) { c.ExpectStatus = rs }
}

func code(n int) conf.StatusRange { return conf.StatusRange{Lo: n, Hi: n} }

// runProbes runs each case in parallel and compares its outcome.
func runProbes(t *testing.T, tests []probeCase) {
	t.Helper()
	for _, tt := range tests {
		// A case that is not about the timeout gets a long one: on a loaded
		// machine (CI ran a TLS handshake in 776 ms) a short one would turn
		// the outcome under test into a timeout.
		if c := &tt.tg.Check; tt.want.Kind != FailTimeout && !strings.Contains(tt.want.Reason, c.Timeout.String()) {
			c.Timeout, c.Interval = 10*time.Second, 100*time.Second
		}
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.want, probeOnce(t, tt.tg)); diff != "" {
				t.Errorf("probe (-want +got):\n%s", diff)
			}
		})
	}
}

type probeCase struct {
	name string
	tg   Target
	want outcome
}

// rawServer answers every connection with response, written as is once
// the request's head has arrived, then closes; "" means never answer.
func rawServer(t *testing.T, response string) netip.AddrPort {
	t.Helper()
	return piecesServer(t, response, len(response), false)
}

// piecesServer is rawServer writing response in pieces of size bytes, a
// millisecond apart (each its own segment: Go's conns set TCP_NODELAY),
// and with hold, keeping the connection open after the last piece until
// the probe hangs up.
func piecesServer(t *testing.T, response string, size int, hold bool) netip.AddrPort {
	t.Helper()
	ln := listenOn(t, "127.0.0.1:0", func(c net.Conn) {
		defer c.Close()
		buf := make([]byte, 4096)
		var got []byte
		for !strings.Contains(string(got), "\r\n\r\n") {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			got = append(got, buf[:n]...)
		}
		for i := 0; i < len(response); i += size {
			if i > 0 {
				time.Sleep(time.Millisecond)
			}
			if _, err := io.WriteString(c, response[i:min(i+size, len(response))]); err != nil {
				return
			}
		}
		if response == "" || hold {
			_, _ = c.Read(buf) // until the probe hangs up
		}
	})
	return addrOf(t, ln.Addr())
}

func TestProbeHTTP(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "all systems go\n") })
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
	// The server sees the method and headers the check sends.
	mux.HandleFunc("/seen", func(w http.ResponseWriter, r *http.Request) {
		want := map[string]string{"method": "POST", "X-Check": "deep", "Accept": "text/plain",
			"User-Agent": "havip", "Connection": "close", "Content-Length": ""}
		got := map[string]string{"method": r.Method, "X-Check": r.Header.Get("X-Check"), "Accept": r.Header.Get("Accept"),
			"User-Agent": r.UserAgent(), "Connection": r.Header.Get("Connection"), "Content-Length": r.Header.Get("Content-Length")}
		if !r.Close {
			got["Connection"] = "keep-alive"
		}
		if diff := cmp.Diff(want, got); diff != "" {
			w.WriteHeader(http.StatusTeapot)
			fmt.Fprintf(w, "%s", diff)
		}
	})
	mux.HandleFunc("/agent", func(w http.ResponseWriter, r *http.Request) {
		if r.UserAgent() != "probe/2" || len(r.Header.Values("User-Agent")) != 1 {
			w.WriteHeader(http.StatusTeapot)
		}
	})
	mux.HandleFunc("/head", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000") // and, for HEAD, no body follows
		if r.Method == "HEAD" {
			return
		}
		io.WriteString(w, strings.Repeat("x", 1000))
	})
	mux.HandleFunc("/chunked", func(w http.ResponseWriter, r *http.Request) {
		for _, part := range []string{"status: ", "green", strings.Repeat(".", 5000), " end"} {
			io.WriteString(w, part)
			w.(http.Flusher).Flush() // a chunk each
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

	host := func(c *conf.Check) { c.Host = "www.example.test" }
	body := func(s string) func(*conf.Check) { return func(c *conf.Check) { c.ExpectBody = s } }
	bodyRE := func(s string) func(*conf.Check) { return func(c *conf.Check) { c.ExpectBodyRegex = s } }
	method := func(m string) func(*conf.Check) { return func(c *conf.Check) { c.Method = m } }
	headers := func(kv ...string) func(*conf.Check) {
		return func(c *conf.Check) {
			for i := 0; i < len(kv); i += 2 {
				c.Headers = append(c.Headers, conf.Header{Name: kv[i], Value: kv[i+1]})
			}
		}
	}
	ok200 := outcome{OK: true, Reason: "status 200"}
	runProbes(t, []probeCase{
		{"200", Target{Check: hc("http", "/ok"), Addr: plainAddr}, ok200},
		{"default path is /", Target{Check: hc("http", ""), Addr: plainAddr}, outcome{Kind: FailStatus, Reason: "status 404"}},
		{"wrong status", Target{Check: hc("http", "/fail"), Addr: plainAddr}, outcome{Kind: FailStatus, Reason: "status 503"}},
		{"503 expected", Target{Check: hc("http", "/fail", expect(code(200), code(503))), Addr: plainAddr}, outcome{OK: true, Reason: "status 503"}},
		{"status range", Target{Check: hc("http", "/fail", expect(conf.StatusRange{Lo: 500, Hi: 599})), Addr: plainAddr}, outcome{OK: true, Reason: "status 503"}},
		{"status outside the range", Target{Check: hc("http", "/ok", expect(conf.StatusRange{Lo: 300, Hi: 399})), Addr: plainAddr},
			outcome{Kind: FailStatus, Reason: "status 200"}},
		{"redirect not followed", Target{Check: hc("http", "/redirect"), Addr: plainAddr}, outcome{Kind: FailStatus, Reason: "status 302"}},
		{"redirect expected", Target{Check: hc("http", "/redirect", expect(conf.StatusRange{Lo: 300, Hi: 399})), Addr: plainAddr}, outcome{OK: true, Reason: "status 302"}},
		{"host header", Target{Check: hc("http", "/vhost", host), Addr: plainAddr}, ok200},
		{"no host header", Target{Check: hc("http", "/vhost"), Addr: plainAddr}, outcome{Kind: FailStatus, Reason: "status 421"}},
		{"query string kept", Target{Check: hc("http", "/query?deep=1"), Addr: plainAddr}, ok200},
		{"method and headers seen", Target{Check: hc("http", "/seen", method("POST"), headers("X-Check", "deep", "Accept", "text/plain")), Addr: plainAddr}, ok200},
		{"default method is GET", Target{Check: hc("http", "/seen", headers("X-Check", "deep", "Accept", "text/plain")), Addr: plainAddr},
			outcome{Kind: FailStatus, Reason: "status 418"}},
		{"user agent replaced", Target{Check: hc("http", "/agent", headers("User-Agent", "probe/2")), Addr: plainAddr}, ok200},
		{"HEAD reads no body", Target{Check: hc("http", "/head", method("HEAD")), Addr: plainAddr}, ok200},
		{"body contains", Target{Check: hc("http", "/ok", body("systems go")), Addr: plainAddr}, ok200},
		{"wrong body", Target{Check: hc("http", "/ok", body("systems down")), Addr: plainAddr},
			outcome{Kind: FailBody, Reason: `status 200, body lacks "systems down"`}},
		{"body regex", Target{Check: hc("http", "/ok", bodyRE(`^all \w+ go$`)), Addr: plainAddr}, outcome{Kind: FailBody, Reason: `status 200, body does not match "^all \\w+ go$"`}},
		{"body regex, multi-line", Target{Check: hc("http", "/ok", bodyRE(`(?m)^all \w+ go$`)), Addr: plainAddr}, ok200},
		{"chunked body", Target{Check: hc("http", "/chunked", body("green")), Addr: plainAddr}, ok200},
		{"chunked body, across chunks", Target{Check: hc("http", "/chunked", bodyRE(`status: green\.+ end$`)), Addr: plainAddr}, ok200},
		{"body capped", Target{Check: hc("http", "/huge"), Addr: plainAddr}, ok200},
		{"body match sees 64 KiB", Target{Check: hc("http", "/huge", body(strings.Repeat("x", 64<<10))), Addr: plainAddr}, ok200},
		{"body match sees no more", Target{Check: hc("http", "/huge", body(strings.Repeat("x", 64<<10+1))), Addr: plainAddr},
			outcome{Kind: FailBody, Reason: fmt.Sprintf("status 200, body lacks %q", strings.Repeat("x", 64<<10+1))}},
		{"timeout", Target{Check: hc("http", "/slow"), Addr: plainAddr}, outcome{Kind: FailTimeout, Reason: "http: timeout after 300ms"}},
		{"refused", Target{Check: hc("http", "/ok"), Addr: closedTCPPort(t)}, outcome{Kind: FailRefused, Reason: "connect: connection refused"}},
		{"https, self-signed certificate accepted", Target{Check: hc("https", "/ok"), Addr: secureAddr}, ok200},
		{"https sends host as SNI", Target{Check: hc("https", "/sni", host), Addr: secureAddr}, ok200},
		{"https 404", Target{Check: hc("https", "/nope"), Addr: secureAddr}, outcome{Kind: FailStatus, Reason: "status 404"}},
		{"http to a TLS server", Target{Check: hc("http", "/ok"), Addr: secureAddr}, outcome{Kind: FailStatus, Reason: "status 400"}},
		{"https to a plain server", Target{Check: hc("https", "/ok"), Addr: plainAddr},
			outcome{Kind: FailTLS, Reason: "tls: first record does not look like a TLS handshake"}},
	})

	t.Run("tls handshake refused", func(t *testing.T) {
		srv := httptest.NewUnstartedServer(mux)
		srv.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
		srv.Config.ErrorLog = log.New(io.Discard, "", 0)
		srv.StartTLS()
		defer srv.Close()
		got := probeOnce(t, Target{Check: hc("https", "/ok"), Addr: addrOf(t, srv.Listener.Addr())})
		// TLS 1.3: the client's handshake is done before the server
		// refuses it, so the alert comes with the response.
		if got.OK || got.Kind != FailTLS || got.Reason != "tls: remote error: tls: certificate required" {
			t.Errorf("probe = %+v, want a %s failure: certificate required", got, FailTLS)
		}
	})
}

// TestProbeHTTPWire covers what only a hand-written server sends.
func TestProbeHTTPWire(t *testing.T) {
	srv := func(resp string) netip.AddrPort { return rawServer(t, resp) }
	run := func(c conf.Check, resp string) Target { return Target{Check: c, Addr: srv(resp)} }
	body := func(s string) func(*conf.Check) { return func(c *conf.Check) { c.ExpectBody = s } }
	ok200 := outcome{OK: true, Reason: "status 200"}
	runProbes(t, []probeCase{
		{"listener that never answers", run(hc("http", "/"), ""), outcome{Kind: FailTimeout, Reason: "http: timeout after 300ms"}},
		{"body until close", run(hc("http", "/", body("tail")), "HTTP/1.0 200 OK\r\n\r\nhead and tail"), ok200},
		{"chunked with extensions", run(hc("http", "/", body("abcdef")),
			"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n"), ok200},
		{"interim 103 skipped", run(hc("http", "/"), "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), ok200},
		{"bare LF", run(hc("http", "/"), "HTTP/1.1 200 OK\nContent-Length: 2\n\nok"), ok200},
		{"short body", run(hc("http", "/"), "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"),
			outcome{Kind: FailConnect, Reason: "read body: connection closed early"}},
		{"closed before the status", run(hc("http", "/"), "HTT"), outcome{Kind: FailConnect, Reason: "read response: connection closed early"}},
		{"garbage", run(hc("http", "/"), "SSH-2.0-OpenSSH_9.2\r\n"),
			outcome{Kind: FailProtocol, Reason: `http: malformed: status line "SSH-2.0-OpenSSH_9.2"`}},
		{"bad chunk size", run(hc("http", "/"), "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
			outcome{Kind: FailProtocol, Reason: `http: malformed: chunk size "zz"`}},
		{"bad content length", run(hc("http", "/"), "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
			outcome{Kind: FailProtocol, Reason: `http: malformed: Content-Length "-1"`}},
	})
}

// TestProbeHTTPLoop covers what the loop's exchange adds to the blocking
// prober: responses that arrive in pieces, servers that close early or
// keep the connection open, requests that do not fit the socket buffer,
// and the bound on what a probe holds.
func TestProbeHTTPLoop(t *testing.T) {
	body := func(s string) func(*conf.Check) { return func(c *conf.Check) { c.ExpectBody = s } }
	pieces := func(c conf.Check, resp string, size int, hold bool) Target {
		return Target{Check: c, Addr: piecesServer(t, resp, size, hold)}
	}
	ok200 := outcome{OK: true, Reason: "status 200"}
	long := strings.Repeat("0123456789", 1000) // 10 KB: past the first buffer
	full := "HTTP/1.1 200 OK\r\nContent-Length: 21\r\nX-Pad: " + long + "\r\n\r\nall systems go, " + "green"
	chunkedResp := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\nstatus:\r\n6\r\n green\r\n0\r\n\r\n"
	var tiny strings.Builder
	tiny.WriteString("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
	for range maxResponse / 6 {
		tiny.WriteString("1\r\nx\r\n")
	}
	tiny.WriteString("0\r\n\r\n")
	runProbes(t, []probeCase{
		{"in 3-byte pieces", pieces(hc("http", "/", body("green")), full[:200]+full[len(full)-40:], 3, false), ok200},
		{"long head in 1000-byte pieces", pieces(hc("http", "/", body("systems go, green")), full, 1000, false), ok200},
		{"chunked in 2-byte pieces", pieces(hc("http", "/", body("status: green")), chunkedResp, 2, false), ok200},
		{"until close in pieces", pieces(hc("http", "/", body("tail")), "HTTP/1.0 200 OK\r\n\r\nhead and tail", 4, false), ok200},
		{"wrong status decided from the head", pieces(hc("http", "/"), "HTTP/1.1 503 Busy\r\nContent-Length: 100\r\n\r\n", 5, true),
			outcome{Kind: FailStatus, Reason: "status 503"}},
		{"closes in the head", pieces(hc("http", "/"), "HTTP/1.1 200 OK\r\nContent-Le", 3, false),
			outcome{Kind: FailConnect, Reason: "read response: connection closed early"}},
		{"closes in the body", pieces(hc("http", "/"), "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 3, false),
			outcome{Kind: FailConnect, Reason: "read body: connection closed early"}},
		{"closes in a chunk", pieces(hc("http", "/"), chunkedResp[:60], 7, false),
			outcome{Kind: FailConnect, Reason: "read body: connection closed early"}},
		// Complete by its length: judged without waiting for the close
		// (a wait would end at the timeout).
		{"never closes after Content-Length", pieces(hc("http", "/", body("green")), full, 4096, true), ok200},
		{"never closes after the last chunk", pieces(hc("http", "/"), chunkedResp, 16, true), ok200},
		{"never closes, body until close", pieces(hc("http", "/", func(c *conf.Check) { c.Timeout = 300 * time.Millisecond }),
			"HTTP/1.0 200 OK\r\n\r\nmore to come", 100, true), outcome{Kind: FailTimeout, Reason: "http: timeout after 300ms"}},
		{"chunk framing past the buffer", pieces(hc("http", "/"), tiny.String(), 64<<10, false),
			outcome{Kind: FailProtocol, Reason: fmt.Sprintf("http: malformed: more than %d bytes without a complete response", maxResponse)}},
	})

	t.Run("request larger than the socket buffers", func(t *testing.T) {
		// The server reads nothing for a while, so the loop's writes hit
		// EAGAIN and the rest goes out as the socket drains.
		big := strings.Repeat("x", 32<<20)
		ln := listenOn(t, "127.0.0.1:0", func(c net.Conn) {
			defer c.Close()
			time.Sleep(200 * time.Millisecond)
			br := bufio.NewReaderSize(c, 64<<10)
			for {
				line, err := br.ReadSlice('\n')
				if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
					return
				}
				if string(line) == "\r\n" {
					break
				}
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
			closeAfterPeer(c)
		})
		tg := Target{Check: hc("http", "/", func(c *conf.Check) { c.Headers = []conf.Header{{Name: "X-Big", Value: big}} }), Addr: addrOf(t, ln.Addr())}
		tg.Check.Timeout, tg.Check.Interval = 10*time.Second, 100*time.Second
		if got := probeOnce(t, tg); got != ok200 {
			t.Errorf("probe = %+v, want %+v", got, ok200)
		}
	})

	t.Run("on the loop", func(t *testing.T) {
		a := netip.MustParseAddrPort("127.0.0.1:80")
		if newTCPProbe(Target{Check: hc("http", "/"), Addr: a}) == nil {
			t.Error("http: want the loop's fast path")
		}
		for _, c := range []conf.Check{hc("https", "/"), hc("http", "no slash")} {
			if newTCPProbe(Target{Check: c, Addr: a}) != nil {
				t.Errorf("%s %q: want the blocking prober", c.Type, c.Path)
			}
		}
	})
}

// testCert makes a self-signed certificate for rs.example.test and
// 127.0.0.1, and writes it as PEM into a file.
func testCert(t *testing.T) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "havip test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		DNSNames:              []string{"rs.example.test"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, path
}

func TestProbeHTTPSVerify(t *testing.T) {
	cert, caFile := testCert(t)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes
	srv.StartTLS()
	t.Cleanup(srv.Close)
	addr := addrOf(t, srv.Listener.Addr())
	v := func(verify bool, ca, name string) Target {
		return Target{Check: hc("https", "/", func(c *conf.Check) { c.TLSVerify, c.TLSCA, c.TLSServerName = verify, ca, name }), Addr: addr}
	}
	gone := filepath.Join(t.TempDir(), "gone.pem")
	ok200 := outcome{OK: true, Reason: "status 200"}
	runProbes(t, []probeCase{
		{"verify without the CA", v(true, "", ""),
			outcome{Kind: FailTLS, Reason: "tls: failed to verify certificate: x509: certificate signed by unknown authority"}},
		{"verify with tls_ca, by address", v(true, caFile, ""), ok200},
		{"verify with tls_ca, by name", v(true, caFile, "rs.example.test"), ok200},
		{"verify, wrong name", v(true, caFile, "other.example.test"),
			outcome{Kind: FailTLS, Reason: "tls: failed to verify certificate: x509: certificate is valid for rs.example.test, not other.example.test"}},
		{"no verification", v(false, "", "other.example.test"), ok200},
		{"tls_ca unreadable", v(true, gone, ""),
			outcome{Kind: FailConfig, Reason: "https: tls_ca: open " + gone + ": no such file or directory"}},
	})
}

// An http check closes with a reset too: after 200 checks on the loop no
// TIME_WAIT socket is left on either end, next to 200 GETs of net/http's
// client (keep-alive off) that leave one each.
func TestHTTPCheckLeavesNoTimeWait(t *testing.T) {
	var served atomic.Int64
	checked := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		io.WriteString(w, "ok")
	}))
	t.Cleanup(checked.Close)
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	t.Cleanup(plain.Close)
	r := NewRunner(discard, WithoutJitter())
	defer r.Stop()
	var ts []Target
	for i := range 10 { // ten probes (paths differ) of 50 ms: about 200 a second
		c := hc("http", fmt.Sprintf("/%d", i))
		c.Interval, c.Timeout = 50*time.Millisecond, 50*time.Millisecond
		ts = append(ts, Target{Key: c.Path, Check: c, Addr: addrOf(t, checked.Listener.Addr())})
	}
	r.Set(t.Context(), ts)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for range 200 {
		resp, err := client.Get(plain.URL)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	for served.Load() < 200 {
		time.Sleep(10 * time.Millisecond)
	}
	r.Stop()
	if f := r.Failures(); len(f) != 0 {
		t.Errorf("failures %v, want none", f)
	}
	time.Sleep(200 * time.Millisecond) // the servers' side closes too
	checks := timeWaitSockets(t, addrOf(t, checked.Listener.Addr()).Port())
	base := timeWaitSockets(t, addrOf(t, plain.Listener.Addr()).Port())
	t.Logf("TIME_WAIT sockets after %d checks and 200 net/http GETs: %d for the http check, %d for net/http", served.Load(), checks, base)
	if checks != 0 {
		t.Errorf("%d TIME_WAIT sockets left by %d http checks, want 0", checks, served.Load())
	}
	if base < 150 {
		t.Errorf("only %d TIME_WAIT sockets after 200 net/http GETs: the count does not see them, so it proves nothing", base)
	}
}

// An IPv6 real server: dialled by address, with the bracketed address
// and port as the default Host.
func TestProbeHTTPIPv6(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := addrOf(t, ln.Addr())
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host != addr.String() {
			w.WriteHeader(http.StatusMisdirectedRequest)
		}
	}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	if got, want := probeOnce(t, Target{Check: hc("http", "/"), Addr: addr}), (outcome{OK: true, Reason: "status 200"}); got != want {
		t.Errorf("probe = %+v, want %+v", got, want)
	}
}

package checks

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/havip/havip/internal/conf"
)

// benchServerEnv makes the test binary a loopback HTTP server instead
// (see TestMain), so that the benchmark counts only the probe's
// allocations.
const benchServerEnv = "HAVIP_CHECKS_BENCH_SERVER"

func TestMain(m *testing.M) {
	if os.Getenv(benchServerEnv) == "1" {
		serveBench()
		return
	}
	os.Exit(m.Run())
}

// serveBench answers GETs on two loopback ports, plain and TLS (a
// self-signed certificate), which it prints, until its standard input
// closes.
func serveBench() {
	body := strings.Repeat("ok\n", 100)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) })
	plain := httptest.NewServer(h)
	secure := httptest.NewUnstartedServer(h)
	secure.Config.ErrorLog = log.New(io.Discard, "", 0)
	secure.StartTLS()
	fmt.Println(plain.Listener.Addr(), secure.Listener.Addr())
	io.Copy(io.Discard, os.Stdin)
}

// BenchmarkHTTPProbe prints what one http (and https) probe costs (wall
// time, heap allocations and bytes) next to a GET of net/http's client
// with keep-alive off (and no certificate verification), the probe's
// former engine, measured in the same run against the same loopback
// server (another process, so that only the client's allocations
// count). The target: fewer allocations and bytes per probe than
// net/http, at no more time. Run with -benchtime 1x; each side makes
// probes requests, one at a time.
func BenchmarkHTTPProbe(b *testing.B) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), benchServerEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatal(err)
	}
	var addrs []netip.AddrPort
	for _, f := range strings.Fields(line) {
		ap, err := netip.ParseAddrPort(f)
		if err != nil {
			b.Fatalf("bench server: %q", line)
		}
		addrs = append(addrs, ap)
	}
	if len(addrs) != 2 {
		b.Fatalf("bench server: %q", line)
	}
	b.Run("http", func(b *testing.B) { benchProbe(b, "http", addrs[0], 2000) })
	b.Run("https", func(b *testing.B) { benchProbe(b, "https", addrs[1], 500) })
}

func benchProbe(b *testing.B, scheme string, addr netip.AddrPort, probes int) {
	tg := Target{Check: hc(scheme, "/", func(c *conf.Check) { c.ExpectBody = "ok" }), Addr: addr}
	probe := newProber(tg)
	if newTCPProbe(tg) != nil {
		probe = onLoop(b, tg)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, DisableCompression: true,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // as the probe
	url := scheme + "://" + addr.String() + "/"
	get := func(ctx context.Context) (string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return "", err
		}
		req.Header.Set("User-Agent", "havip")
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxHTTPBody))
		if err != nil || !strings.Contains(string(b), "ok") {
			return "", err
		}
		return resp.Status, nil
	}
	type cost struct {
		per           time.Duration
		allocs, bytes float64
	}
	measure := func(p prober) cost {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		for range probes {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err := p(ctx)
			cancel()
			if err != nil {
				b.Fatal(err)
			}
		}
		el := time.Since(start)
		runtime.ReadMemStats(&after)
		n := time.Duration(probes)
		return cost{el / n, float64(after.Mallocs-before.Mallocs) / float64(probes), float64(after.TotalAlloc-before.TotalAlloc) / float64(probes)}
	}
	for range b.N {
		measure(probe) // warm both up: pools, the server's goroutines
		measure(get)
		mine, base := measure(probe), measure(get)
		b.Logf("%s probe: %v, %.0f allocs, %.0f B per probe; net/http GET: %v, %.0f allocs, %.0f B; "+
			"ratios probe/net-http: time %.2f, allocs %.2f, bytes %.2f (target: all < 1)",
			scheme, mine.per, mine.allocs, mine.bytes, base.per, base.allocs, base.bytes,
			float64(mine.per)/float64(base.per), mine.allocs/base.allocs, mine.bytes/base.bytes)
	}
}

// onLoop runs each probe of tg on a loop, as the engine runs a tcp or
// plain http probe.
func onLoop(tb testing.TB, tg Target) prober {
	l := bareLoop(tb)
	p := fastProbe(tb, tg)
	return func(context.Context) (string, error) {
		runOn(tb, l, p)
		if !p.last.Up {
			return "", errors.New(p.last.Reason)
		}
		return p.last.Reason, nil
	}
}

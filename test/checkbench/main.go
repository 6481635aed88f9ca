// Command checkbench measures health-check engines for BenchmarkChecks
// (test/e2e/checks_bench_test.go), each in its own process so that
// getrusage counts one prober only.
//
//	checkbench listen
//	    listens on 0.0.0.0, one TCP port (accept, close) and one HTTP
//	    port (200, small body), prints "ports TCP HTTP", and records per
//	    target address the gap between consecutive SYNs, by the kernel's
//	    timestamps on a packet socket on lo (root), so the listener's own
//	    scheduling does not count. "report" on stdin prints the
//	    drift figures as JSON; EOF ends it.
//	checkbench run -engine havip|naive -tcp N -http M -tcp-port P -http-port Q
//	    probes N TCP and M HTTP targets 127.1.x.y (every 127/8 address
//	    reaches the listeners, so no two targets are alike) every
//	    -interval for -duration (env CHECKBENCH_DURATION), then prints
//	    its figures as JSON.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/havip/havip/internal/checks"
	"github.com/havip/havip/internal/conf"
	"golang.org/x/sys/unix"
)

func main() {
	log.SetFlags(0)
	raiseNoFile()
	if len(os.Args) < 2 {
		log.Fatal("usage: checkbench listen | run [flags]")
	}
	switch os.Args[1] {
	case "listen":
		listen()
	case "run":
		run(os.Args[2:])
	default:
		log.Fatalf("checkbench: unknown mode %q", os.Args[1])
	}
}

func raiseNoFile() {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		log.Fatalf("checkbench: getrlimit: %v", err)
	}
	rl.Cur = rl.Max
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		log.Fatalf("checkbench: setrlimit: %v", err)
	}
}

// Drift is what the listener saw: the gaps between consecutive
// connections to each target, minus the interval.
type Drift struct {
	Samples int `json:"samples"`
	// Missed counts gaps of 1.5 intervals or more: a probe that never
	// reached the listener (a SYN dropped on a full accept queue, or a
	// timeout), left out of the percentiles.
	Missed int     `json:"missed"`
	P50ms  float64 `json:"p50_ms"`
	P99ms  float64 `json:"p99_ms"`
}

// gaps records per target address the gap since its previous connection.
type gaps struct {
	mu   sync.Mutex
	last map[netip.Addr]time.Time
	gaps []time.Duration
}

func (g *gaps) saw(a netip.Addr, at time.Time) {
	g.mu.Lock()
	if prev, ok := g.last[a]; ok {
		g.gaps = append(g.gaps, at.Sub(prev))
	}
	g.last[a] = at
	g.mu.Unlock()
}

// watchSYNs records, for each SYN to one of ports on the loopback
// interface, its destination and the kernel's receive timestamp: when
// the prober sent it, whatever the listener's own scheduling delay.
func watchSYNs(g *gaps, ports ...int) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		log.Fatalf("checkbench: %v", err)
	}
	const ethPIP = 0x0800
	proto := int(ethPIP>>8 | (ethPIP&0xff)<<8) // network byte order
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		log.Fatalf("checkbench: packet socket (needs root): %v", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: lo.Index}); err != nil {
		log.Fatalf("checkbench: bind packet socket: %v", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20)
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		log.Fatalf("checkbench: SO_TIMESTAMPNS: %v", err)
	}
	buf, oob := make([]byte, 128), make([]byte, 128)
	for {
		n, oobn, _, from, err := unix.Recvmsg(fd, buf, oob, unix.MSG_TRUNC)
		if err != nil {
			continue
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue // lo shows each packet twice
		}
		pkt := buf[:min(n, len(buf))]
		if len(pkt) < 20 || pkt[0]>>4 != 4 || pkt[9] != unix.IPPROTO_TCP {
			continue
		}
		ihl := int(pkt[0]&0x0f) * 4
		if len(pkt) < ihl+14 {
			continue
		}
		tcp := pkt[ihl:]
		if flags := tcp[13]; flags&0x12 != 0x02 { // SYN without ACK
			continue
		}
		if dport := int(tcp[2])<<8 | int(tcp[3]); !slices.Contains(ports, dport) {
			continue
		}
		at := time.Now()
		if cms, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, cm := range cms {
				if cm.Header.Level == unix.SOL_SOCKET && cm.Header.Type == unix.SO_TIMESTAMPNS && len(cm.Data) >= 16 {
					ts := (*unix.Timespec)(unsafe.Pointer(&cm.Data[0]))
					at = time.Unix(ts.Sec, ts.Nsec)
				}
			}
		}
		g.saw(netip.AddrFrom4([4]byte(pkt[16:20])), at)
	}
}

func (g *gaps) drift(interval time.Duration) Drift {
	g.mu.Lock()
	ds := slices.Clone(g.gaps)
	g.mu.Unlock()
	if len(ds) == 0 {
		return Drift{}
	}
	missed := 0
	for i := range ds {
		ds[i] -= interval
		if ds[i] >= interval/2 {
			missed++
		}
	}
	slices.Sort(ds)
	ds = ds[:len(ds)-missed]
	if len(ds) == 0 {
		return Drift{Missed: missed}
	}
	pct := func(p float64) float64 {
		return float64(ds[min(len(ds)-1, int(p*float64(len(ds))))]) / float64(time.Millisecond)
	}
	return Drift{Samples: len(ds) + missed, Missed: missed, P50ms: pct(0.50), P99ms: pct(0.99)}
}

func listen() {
	interval := time.Second
	if v := os.Getenv("CHECKBENCH_INTERVAL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			log.Fatalf("checkbench: CHECKBENCH_INTERVAL: %v", err)
		}
		interval = d
	}
	g := &gaps{last: map[netip.Addr]time.Time{}}
	tl, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		log.Fatal(err)
	}
	hl, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		log.Fatal(err)
	}
	for range 4 {
		go func() {
			for {
				c, err := tl.Accept()
				if err != nil {
					return
				}
				// Close after the prober does, as a server that waits for
				// a request would: who closes first keeps the TIME_WAIT.
				go func() { _, _ = c.Read(make([]byte, 1)); c.Close() }()
			}
		}()
	}
	srv := &http.Server{
		Handler:  http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") }),
		ErrorLog: log.New(io.Discard, "", 0),
	}
	go srv.Serve(hl)
	go watchSYNs(g, tl.Addr().(*net.TCPAddr).Port, hl.Addr().(*net.TCPAddr).Port)
	fmt.Printf("ports %d %d\n", tl.Addr().(*net.TCPAddr).Port, hl.Addr().(*net.TCPAddr).Port)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == "report" {
			b, _ := json.Marshal(g.drift(interval))
			fmt.Println(string(b))
		}
	}
}

// Figures is what a run prints.
type Figures struct {
	Engine     string            `json:"engine"`
	Targets    int               `json:"targets"`
	Seconds    float64           `json:"seconds"`
	CPUSeconds float64           `json:"cpu_s"` // user + sys during the measurement
	CPUPercent float64           `json:"cpu_pct"`
	UserS      float64           `json:"user_s"`
	SysS       float64           `json:"sys_s"`
	PeakRSSMB  float64           `json:"peak_rss_mb"`
	RSSMB      float64           `json:"rss_mb"`
	Downs      int64             `json:"downs"`  // UP -> DOWN transitions (every target is healthy)
	Probes     int64             `json:"probes"` // naive only: probes run
	Late       uint64            `json:"late"`   // havip only: probes the pool started late
	TimeWait   int               `json:"time_wait"`
	Failures   map[string]uint64 `json:"failures,omitempty"` // havip only: failed probes by type/reason
}

func run(args []string) {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	engine := fs.String("engine", "havip", "havip or naive")
	nTCP := fs.Int("tcp", 0, "TCP targets")
	nHTTP := fs.Int("http", 0, "HTTP targets")
	tcpPort := fs.Int("tcp-port", 0, "listener TCP port")
	httpPort := fs.Int("http-port", 0, "listener HTTP port")
	interval := fs.Duration("interval", time.Second, "check interval")
	duration := fs.Duration("duration", 30*time.Second, "how long to measure (env CHECKBENCH_DURATION overrides)")
	fs.Parse(args)
	if v := os.Getenv("CHECKBENCH_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			log.Fatalf("checkbench: CHECKBENCH_DURATION: %v", err)
		}
		*duration = d
	}
	check := func(typ string) conf.Check {
		return conf.Check{Type: typ, Interval: *interval, Timeout: *interval, Rise: 2, Fall: 3}
	}
	var ts []checks.Target
	for i := range *nTCP + *nHTTP {
		typ, port := "tcp", *tcpPort
		if i >= *nTCP {
			typ, port = "http", *httpPort
		}
		a := netip.AddrFrom4([4]byte{127, 1, byte(i / 250), byte(i%250 + 1)})
		ts = append(ts, checks.Target{Key: strconv.Itoa(i), Check: check(typ), Addr: netip.AddrPortFrom(a, uint16(port)), StartUp: true})
	}
	var (
		downs, probes atomic.Int64
		late          func() uint64
		failures      func() map[string]uint64
		stop          func()
	)
	start := time.Now()
	before := rusage()
	switch *engine {
	case "havip":
		r := checks.NewRunner(nil)
		go func() {
			for res := range r.Results() {
				if !res.Up {
					downs.Add(1)
				}
			}
		}()
		r.Set(context.Background(), ts)
		late, stop = r.Late, r.Stop
		failures = func() map[string]uint64 {
			m := map[string]uint64{}
			for _, res := range r.Snapshot() {
				if !res.Up {
					m["down: "+res.Reason]++
				}
			}
			for k, n := range r.Failures() {
				m[k.Type+"/"+string(k.Reason)] = n
			}
			return m
		}
	case "naive":
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for _, t := range ts {
			wg.Go(func() { naive(ctx, t, &downs, &probes) })
		}
		late, stop = func() uint64 { return 0 }, func() { cancel(); wg.Wait() }
		failures = func() map[string]uint64 { return nil }
	default:
		log.Fatalf("checkbench: unknown engine %q", *engine)
	}
	time.Sleep(*duration)
	after := rusage()
	elapsed := time.Since(start)
	f := Figures{
		Engine: *engine, Targets: len(ts), Seconds: elapsed.Seconds(),
		CPUSeconds: after.cpu - before.cpu, PeakRSSMB: float64(after.maxRSSKB) / 1024, RSSMB: rssMB(),
		Downs: downs.Load(), Probes: probes.Load(), Late: late(), Failures: failures(),
	}
	f.CPUPercent = 100 * f.CPUSeconds / f.Seconds
	f.UserS = after.user - before.user
	f.SysS = f.CPUSeconds - f.UserS
	stop()
	f.TimeWait = timeWait(uint16(*tcpPort), uint16(*httpPort))
	b, _ := json.Marshal(f)
	fmt.Println(string(b))
}

// naive is the baseline prober: a goroutine per target that dials (or
// GETs with net/http, keep-alives off), closes and sleeps to the next
// interval, with the same rise/fall.
func naive(ctx context.Context, t checks.Target, downs, probes *atomic.Int64) {
	c := t.Check
	client := &http.Client{Timeout: c.Timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	url := "http://" + t.Addr.String() + "/"
	up, streak := true, 0
	next := time.Now().Add(rand.N(c.Interval))
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(next)):
		}
		next = next.Add(c.Interval)
		var err error
		if c.Type == "tcp" {
			var conn net.Conn
			if conn, err = net.DialTimeout("tcp", t.Addr.String(), c.Timeout); err == nil {
				conn.Close()
			}
		} else {
			var resp *http.Response
			if resp, err = client.Get(url); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
		}
		probes.Add(1)
		if (err == nil) == up {
			streak = 0
			continue
		}
		if streak++; (up && streak >= c.Fall) || (!up && streak >= c.Rise) {
			up, streak = !up, 0
			if !up {
				downs.Add(1)
			}
		}
	}
}

type usage struct {
	cpu      float64
	user     float64
	maxRSSKB int64
}

func rusage() usage {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		log.Fatalf("checkbench: getrusage: %v", err)
	}
	tv := func(t unix.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return usage{cpu: tv(ru.Utime) + tv(ru.Stime), user: tv(ru.Utime), maxRSSKB: ru.Maxrss}
}

func rssMB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return -1
}

// timeWait counts the prober's TIME_WAIT sockets (state 06) to the
// listener's ports, IPv4 and IPv6.
func timeWait(ports ...uint16) int {
	n := 0
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			log.Fatalf("checkbench: %v", err)
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) < 4 || fs[3] != "06" {
				continue
			}
			for _, p := range ports {
				if strings.HasSuffix(fs[2], fmt.Sprintf(":%04X", p)) {
					n++
				}
			}
		}
	}
	return n
}

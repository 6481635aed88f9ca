//go:build vmtest

package lvs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	h "github.com/havip/havip/test/e2e/harness"
	"github.com/havip/havip/test/lab"
)

// Error classes of a new connection through the VIP.
const (
	failConnReset   = "reset at connect"
	failConnRefused = "refused at connect"
	failConnTimeout = "timeout at connect"
	failConnOther   = "other connect error"
	failReadReset   = "reset reading the greeting"
	failReadEOF     = "EOF reading the greeting"
	failReadTimeout = "timeout reading the greeting"
	failReadOther   = "other read error"
)

func classify(connect bool, err error) string {
	reset := errors.Is(err, syscall.ECONNRESET)
	timeout := errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, syscall.ETIMEDOUT)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		timeout = true
	}
	switch {
	case connect && reset:
		return failConnReset
	case connect && errors.Is(err, syscall.ECONNREFUSED):
		return failConnRefused
	case connect && timeout:
		return failConnTimeout
	case connect:
		return failConnOther
	case reset:
		return failReadReset
	case errors.Is(err, io.EOF):
		return failReadEOF
	case timeout:
		return failReadTimeout
	}
	return failReadOther
}

// try is one new connection through the VIP: when, from which client
// port (so it can be found in the directors' IPVS connection tables), how
// long its handshake took, and how it failed ("" class: it did not).
type try struct {
	at      time.Time
	port    int
	connect time.Duration
	rs      string
	class   string
	err     error
}

// newConns opens new TCP connections through the VIP from the client: each
// of workers threads in the client's namespace one every workers*every,
// staggered, so one stalled attempt (under TCG) does not stop the others.
// Each attempt binds its own client port (from a counter: no two attempts
// share one, and each can be looked up in /proc/net/ip_vs_conn), reads the
// greeting within timeout and closes with a reset (no TIME_WAIT).
type newConns struct {
	mu       sync.Mutex
	tries    []try
	nextPort int
	stop     chan struct{}
	wg       sync.WaitGroup
}

func (tp *topo) startNewConns(t *testing.T, workers int, every, timeout time.Duration) *newConns {
	nc := &newConns{nextPort: 20000, stop: make(chan struct{})}
	to := netip.AddrPortFrom(tp.pair.VIP, port).String()
	for w := range workers {
		nc.wg.Add(1)
		go func() {
			defer nc.wg.Done()
			time.Sleep(time.Duration(w) * every)
			err := tp.pair.Client.Do(func() error {
				tick := time.NewTicker(time.Duration(workers) * every)
				defer tick.Stop()
				for {
					select {
					case <-nc.stop:
						return nil
					case <-tick.C:
					}
					nc.mu.Lock()
					tr := try{port: nc.nextPort, at: time.Now()}
					nc.nextPort++
					nc.mu.Unlock()
					attempt(&tr, to, timeout)
					nc.mu.Lock()
					nc.tries = append(nc.tries, tr)
					nc.mu.Unlock()
				}
			})
			if err != nil {
				t.Errorf("client worker: %v", err)
			}
		}()
	}
	return nc
}

func attempt(tr *try, to string, timeout time.Duration) {
	d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: h.ClientAddr.AsSlice(), Port: tr.port}}
	c, err := d.Dial("tcp4", to)
	tr.connect = time.Since(tr.at)
	if err != nil {
		tr.class, tr.err = classify(true, err), err
		return
	}
	defer c.Close()
	c.(*net.TCPConn).SetLinger(0)
	c.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		tr.class, tr.err = classify(false, err), err
		return
	}
	tr.rs = strings.TrimSpace(line)
}

func (nc *newConns) halt() {
	close(nc.stop)
	nc.wg.Wait()
}

// TestDrillSyncedUnderTraffic runs `havip failover` on the master of a DR
// pair with [sync], then `havip failover --back`, while a client opens a
// new connection through the VIP every 10 ms and holds 20 long-lived ones.
// The long-lived connections, established before the drills and synced to
// the backup, must all survive both. New connections may fail only when
// their handshake straddles the move of the client's neighbour entry
// (the SYN reached the old director, the bare ACK the new one).
//
// Variants: rr, the default kernel (sloppy_tcp=0); sh with
// net.ipv4.vs.sloppy_tcp=1 on both directors, where the new director
// schedules the bare ACK itself, to the same real server (source hash).
func TestDrillSyncedUnderTraffic(t *testing.T) {
	for _, v := range []struct {
		name   string
		sched  string
		sloppy bool
	}{
		{"rr", "rr", false},
		{"sh-sloppy_tcp", "sh", true},
	} {
		t.Run(v.name, func(t *testing.T) { testDrillSynced(t, v.sched, v.sloppy) })
	}
}

func testDrillSynced(t *testing.T, sched string, sloppy bool) {
	tp := buildTopo(t, "dr")
	p := tp.pair
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	if sched != "rr" {
		cfg := lb1.ReadConfig()
		if !strings.Contains(cfg, `scheduler = "rr"`) {
			t.Fatalf("site file has no rr scheduler to replace:\n%s", cfg)
		}
		p.WriteConfig(strings.Replace(cfg, `scheduler = "rr"`, fmt.Sprintf("scheduler = %q", sched), 1))
	}
	if sloppy {
		for _, n := range p.Nodes {
			n.Host.Sysctl(t, "net.ipv4.vs.sloppy_tcp", "1")
		}
	}
	tp.start(t)
	for _, n := range p.Nodes {
		h.WaitUntil(t, 10*time.Second, n.Name+" has the IPVS service and its sync daemons", func() bool {
			out, _ := runIn(t, n.Host, "ipvsadm", "-Ln")
			st, err := n.Status()
			want := 1
			if n == lb1 {
				want = 2
			}
			return strings.Contains(out, strings.ToLower(sched)) && strings.Count(out, "->") >= 3 && err == nil && st.IPVS != nil && len(st.IPVS.Sync) == want
		})
	}
	for _, n := range p.Nodes {
		out, _ := runIn(t, n.Host, "sh", "-c", "ipvsadm -Ln; echo sloppy_tcp=$(cat /proc/sys/net/ipv4/vs/sloppy_tcp)")
		t.Logf("%s:\n%s", n.Name, out)
	}

	conns := tp.openSynced(t, lb2)
	for i := range conns {
		conns[i].c.SetDeadline(time.Time{})
	}

	const (
		workers = 4
		every   = 5 * time.Millisecond
		timeout = 1500 * time.Millisecond // above the SYN's first retransmission (1 s)
	)
	rounds := 1
	if r := os.Getenv("HAVIP_DRILL_ROUNDS"); r != "" {
		if _, err := fmt.Sscan(r, &rounds); err != nil || rounds < 1 {
			t.Fatalf("HAVIP_DRILL_ROUNDS=%q: want a positive number", r)
		}
	}
	// HAVIP_DRILL_PCAP (vmrun -bin /usr/bin/tcpdump -env
	// HAVIP_DRILL_PCAP=/usr/local/bin/tcpdump): capture the client's side,
	// to show each failed or straddled connection's packets.
	pcap := ""
	if bin := os.Getenv("HAVIP_DRILL_PCAP"); bin != "" {
		pcap = fmt.Sprintf("/tmp/drill-%s.pcap", sched)
		cmd := exec.Command(bin, "-Z", "root", "-i", "eth0", "-n", "-U", "-s", "128", "-w", pcap, "tcp port 80 or arp")
		if err := p.Client.Start(cmd); err != nil {
			t.Fatalf("tcpdump: %v", err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		for _, hst := range append([]*lab.Host{p.Client, lb1.Host, lb2.Host}, tp.rss[0].host, tp.rss[1].host) {
			t.Logf("MAC of %s: %s", hst.Name, hst.MAC)
		}
		time.Sleep(500 * time.Millisecond)
	}
	nc := tp.startNewConns(t, workers, every, timeout)
	began := time.Now()
	time.Sleep(2 * time.Second)

	// A drill: the command on lb1, then, once every attempt started
	// during it has ended, both directors' connection tables.
	type drillRun struct {
		what         string
		from, to     string
		t0, t1       time.Time
		tables       map[string]string
		between, all int // long-lived connections that echoed after it
	}
	var drills []*drillRun
	drill := func(from, to string, args ...string) {
		d := &drillRun{what: strings.Join(args, " "), from: from, to: to, tables: map[string]string{}}
		d.t0 = time.Now()
		out, code := lb1.Run(args...)
		d.t1 = time.Now()
		t.Logf("havip %s on lb1 (exit %d, %s):\n%s", d.what, code, d.t1.Sub(d.t0).Round(time.Millisecond), out)
		if code != 0 || !strings.Contains(out, "make-before-break") {
			t.Fatalf("havip %s: exit %d, want 0 and a make-before-break handover", d.what, code)
		}
		p.Nodes[map[string]int{"lb1": 0, "lb2": 1}[to]].WaitState("front", "MASTER", 2*time.Second)
		p.Nodes[map[string]int{"lb1": 0, "lb2": 1}[from]].WaitState("front", "BACKUP", 2*time.Second)
		time.Sleep(timeout + 300*time.Millisecond)
		for _, n := range p.Nodes {
			d.tables[n.Name], _ = runIn(t, n.Host, "cat", "/proc/net/ip_vs_conn")
		}
		for _, cn := range conns {
			if cn.echo(d.what) == nil {
				d.between++
			}
		}
		drills = append(drills, d)
		time.Sleep(time.Second)
	}
	for range rounds {
		drill("lb1", "lb2", "failover")
		drill("lb2", "lb1", "failover", "--back")
	}
	nc.halt()
	ran := time.Since(began)

	survived := 0
	for _, cn := range conns {
		if err := cn.echo("after"); err == nil {
			survived++
		} else {
			t.Logf("long-lived connection to %s lost: %v", cn.name, err)
		}
	}

	// Each attempt started during a drill (from 200 ms before the command
	// until it returned), looked up in the tables read after it:
	// /proc/net/ip_vs_conn: Pro FromIP FPrt ToIP TPrt DestIP DPrt State
	// Expires PEName PEData. A straddled handshake leaves the old director
	// with SYN_RECV: it saw the SYN, never the ACK.
	entry := func(table string, lport int) string {
		for _, l := range strings.Split(table, "\n") {
			f := strings.Fields(l)
			if len(f) >= 9 && f[2] == fmt.Sprintf("%04X", lport) {
				return f[7] + " dest " + f[5] + ":" + f[6]
			}
		}
		return "-"
	}
	nc.mu.Lock()
	tries := slices.Clone(nc.tries)
	nc.mu.Unlock()
	byClass, by := map[string]int{}, map[string]int{}
	var connects []time.Duration
	failed, inDrill, straddled, straddledOK, failedOutside := 0, 0, 0, 0, 0
	var lines []string
	for _, tr := range tries {
		if tr.class == "" {
			by[tr.rs]++
			connects = append(connects, tr.connect)
		} else {
			failed++
			byClass[tr.class]++
		}
		var d *drillRun
		for _, dr := range drills {
			if !tr.at.Before(dr.t0.Add(-200*time.Millisecond)) && tr.at.Before(dr.t1) {
				d = dr
			}
		}
		if d == nil {
			if tr.class != "" {
				failedOutside++
				lines = append(lines, fmt.Sprintf("  port %d at %s, outside any drill: %s (%v)", tr.port, tr.at.Format("15:04:05.000"), tr.class, tr.err))
			}
			continue
		}
		inDrill++
		old, nu := entry(d.tables[d.from], tr.port), entry(d.tables[d.to], tr.port)
		s := strings.HasPrefix(old, "SYN_RECV")
		if s {
			straddled++
			if tr.class == "" {
				straddledOK++
			}
		}
		if s || tr.class != "" {
			res := "ok via " + tr.rs
			if tr.class != "" {
				res = fmt.Sprintf("%s (%v)", tr.class, tr.err)
			}
			lines = append(lines, fmt.Sprintf("  port %d, %s after %q started, ended %s later: %s; ipvs %s: %s, %s: %s",
				tr.port, tr.at.Sub(d.t0).Round(time.Millisecond), d.what, tr.connect.Round(time.Millisecond), res, d.from, old, d.to, nu))
			if pcap != "" {
				out, _ := runIn(t, p.Client, os.Getenv("HAVIP_DRILL_PCAP"), "-Z", "root", "-r", pcap, "-n", "-e", "-tt", fmt.Sprintf("tcp port %d", tr.port))
				lines = append(lines, out)
			}
		}
	}
	classes := make([]string, 0, len(byClass))
	for c, n := range byClass {
		classes = append(classes, fmt.Sprintf("%s %d", c, n))
	}
	slices.Sort(classes)
	slices.Sort(connects)
	median, p99 := time.Duration(0), time.Duration(0)
	if len(connects) > 0 {
		median, p99 = connects[len(connects)/2], connects[len(connects)*99/100]
	}
	var mids []string
	for _, d := range drills {
		mids = append(mids, fmt.Sprintf("%d", d.between))
	}
	fmt.Printf("\ndrill under traffic, DR with [sync], scheduler %s, sloppy_tcp %t, %d x (failover, failover --back): "+
		"new connections %d in %s (%.0f/s; handshake median %s, p99 %s), %d during the drills; failed %d [%s], %d of them outside the drills; "+
		"straddled handshakes (SYN_RECV left on the old director) %d, %d of them succeeded; answers %v; "+
		"long-lived %s/%d after each drill, %d/%d at the end\n",
		sched, sloppy, rounds, len(tries), ran.Round(time.Millisecond), float64(len(tries))/ran.Seconds(), median.Round(10*time.Microsecond), p99.Round(10*time.Microsecond),
		inDrill, failed, strings.Join(classes, ", "), failedOutside, straddled, straddledOK, by, strings.Join(mids, ","), len(conns), survived, len(conns))
	if len(lines) > 0 {
		fmt.Println(strings.Join(lines, "\n"))
	}
	if pcap != "" {
		out, _ := runIn(t, p.Client, os.Getenv("HAVIP_DRILL_PCAP"), "-Z", "root", "-r", pcap, "-n", "-e", "-tt", "arp")
		t.Logf("ARP seen by the client:\n%s", out)
	}
	for _, n := range p.Nodes {
		out, _ := runIn(t, n.Host, "ipvsadm", "-Ln", "--stats")
		t.Logf("%s stats:\n%s", n.Name, out)
	}

	if survived != len(conns) {
		t.Errorf("%d of %d long-lived connections survived the drills, want all (connection sync)", survived, len(conns))
	}
	for _, d := range drills {
		if d.between != len(conns) {
			t.Errorf("%d of %d long-lived connections answered after %q", d.between, len(conns), d.what)
		}
	}
	if inDrill < 50*rounds {
		t.Errorf("only %d new connections were tried during %d drills, want at least %d", inDrill, 2*rounds, 50*rounds)
	}
	if failedOutside > 0 {
		t.Errorf("%d new connections failed outside any drill", failedOutside)
	}
	// What may fail, and how many, per drill. Without sloppy_tcp the new
	// director has no entry for a connection it has not heard of: a
	// handshake that straddles the client's neighbour move (its ACK) and a
	// connection made through the old director whose sync entry had not
	// reached the new one before its next packet (ESTABLISHED is synced,
	// then sent within flush 20 ms + IPVS_SYNC_SEND_DELAY 20 ms, slower
	// under TCG; entries still queued when the old master's sync daemon
	// stops are dropped by the kernel). The new director's own stack
	// resets both: "reset reading the greeting", or "reset at connect"
	// when the reset lands before the dialer looks (both seen in client
	// captures: the RST comes from the new director's MAC). Measured with
	// rr (5 runs, 38 drills, about 100 new connections in each drill's
	// window): 0 to 2 per drill, 11 in all, every one such a reset; the
	// bound is 4, the window (about 40 ms) at the rate tried. With
	// sloppy_tcp and sh the new director schedules such a packet itself,
	// to the same real server: 0 failed in 26 drills (4 runs; 2,613
	// attempts in the windows of 24 of them).
	for _, d := range drills {
		n := 0
		for _, tr := range tries {
			if tr.class != "" && !tr.at.Before(d.t0.Add(-200*time.Millisecond)) && tr.at.Before(d.t1) {
				n++
				if tr.class != failConnReset && tr.class != failReadReset {
					t.Errorf("new connection from port %d during %q: %s (%v), want only resets by the new director", tr.port, d.what, tr.class, tr.err)
				}
			}
		}
		limit := 4
		if sloppy {
			limit = 0
		}
		if n > limit {
			t.Errorf("%d new connections failed during %q, want at most %d", n, d.what, limit)
		}
	}
}

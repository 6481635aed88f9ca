//go:build vmtest

package lvs

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/havip/havip/internal/conf"
	h "github.com/havip/havip/test/e2e/harness"
	"github.com/havip/havip/test/lab"
)

const (
	port   = 80
	nConns = 20
	// Software emulation (TCG) can stall a process for a few hundred
	// milliseconds, which 100ms adverts would read as a dead master. For
	// the tests that write their own site file; buildTopo's take the
	// example's advert (tp.advert).
	advert = 500 * time.Millisecond
)

// realServer is a TCP server in a real-server namespace: it greets each
// connection with its name and then echoes lines.
type realServer struct {
	name string
	host *lab.Host
	addr netip.Addr
	l    net.Listener
}

func (rs *realServer) serve(t *testing.T) {
	rs.l = h.Listen(t, rs.host, port, func(c net.Conn) {
		defer c.Close()
		fmt.Fprintf(c, "%s\n", rs.name)
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			fmt.Fprintf(c, "%s %s\n", rs.name, sc.Text())
		}
	})
}

type topo struct {
	mode  string
	pair  *h.Pair
	rss   []*realServer
	site  *conf.Site // examples/MODE.toml on the lab (labSite)
	extra string     // the site file from [sync] on: its IPVS part
}

// newTopo builds client, two directors and two real servers for mode, and
// starts havip on both directors.
func newTopo(t *testing.T, mode string) *topo {
	tp := buildTopo(t, mode)
	tp.start(t)
	return tp
}

// buildTopo is newTopo without starting havip. The site file is
// examples/MODE.toml on the lab's addresses (labSite), and the directors
// and real servers are set up by the steps its comments give them.
func buildTopo(t *testing.T, mode string) *topo {
	lab.RequireRoot(t)
	p := h.NewPair(t, h.Site{})
	cfg, err := labSite(mode, p.PairKey)
	if err != nil {
		t.Fatal(err)
	}
	p.WriteConfig(cfg)
	site, problems, err := conf.Load(p.Nodes[0].Config)
	if err != nil || conf.HasErrors(problems) || len(site.VirtualServers) != 1 {
		t.Fatalf("the lab's examples/%s.toml: %v %v\n%s", mode, err, problems, cfg)
	}
	i := strings.Index(cfg, "\n[sync]\n")
	if i < 0 {
		t.Fatalf("examples/%s.toml has no [sync] table", mode)
	}
	tp := &topo{mode: mode, pair: p, site: site, extra: cfg[i:]}
	segment := p.Switch
	if mode == "nat" {
		segment = lab.NewSwitch(t)
		for i, n := range p.Nodes {
			segment.Attach(t, n.Host, "eth1", netip.PrefixFrom([]netip.Addr{back1, back2}[i], 24))
		}
	}
	todo := steps(cfg)
	for _, n := range p.Nodes {
		runSteps(t, todo, "lb", n.Host)
	}
	for i, real := range site.VirtualServers[0].RealServers {
		name := fmt.Sprintf("rs%d", i+1)
		host := segment.AddHost(t, name, netip.PrefixFrom(real.Address.Addr(), 24))
		runSteps(t, todo, "rs", host)
		r := &realServer{name: name, host: host, addr: real.Address.Addr()}
		r.serve(t)
		tp.rss = append(tp.rss, r)
	}
	return tp
}

// runSteps runs the example's steps for on (lb or rs) in host, as written
// but for havip itself: the binary under test, and for `havip realserver`
// a state directory of host's own (the lab's hosts share one file system).
func runSteps(t *testing.T, todo []step, on string, host *lab.Host) {
	t.Helper()
	for _, s := range todo {
		if s.on != on {
			continue
		}
		argv := slices.Clone(s.argv)
		if argv[0] == "havip" {
			argv[0] = h.Binary(t)
			if len(argv) > 1 && argv[1] == "realserver" {
				argv = append(argv, "--state-dir", t.TempDir())
			}
		}
		if out, code := runIn(t, host, argv[0], argv[1:]...); code != 0 {
			t.Fatalf("%s: %s: exit %d\n%s", host.Name, strings.Join(s.argv, " "), code, out)
		}
	}
}

// advert is the advert interval of the example's front group.
func (tp *topo) advert() time.Duration { return tp.site.Groups[0].Advert }

// masterDown is how long the backup (the second [[node]]) waits for a
// silent master.
func (tp *topo) masterDown() time.Duration {
	return h.MasterDown(tp.advert(), int(tp.site.Nodes[1].Priority))
}

// start starts havip on both directors and waits for lb1 to be master.
func (tp *topo) start(t *testing.T) {
	p := tp.pair
	p.Nodes[0].Start()
	p.Nodes[1].Start()
	p.Nodes[0].WaitState("front", "MASTER", 10*time.Second)
	p.Nodes[1].WaitState("front", "BACKUP", 2*time.Second)
	if tp.mode == "nat" {
		p.Nodes[0].WaitState("back", "MASTER", 5*time.Second)
	}
}

func runIn(t *testing.T, host *lab.Host, bin string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var b strings.Builder
	cmd.Stdout, cmd.Stderr = &b, &b
	if err := host.Start(cmd); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok {
		return b.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return b.String(), 0
}

// dial opens a TCP connection from the client namespace to the VIP and
// returns it with the greeting (the real server's name).
func (tp *topo) dial(t *testing.T) (net.Conn, *bufio.Reader, string, error) {
	var c net.Conn
	err := tp.pair.Client.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp4", netip.AddrPortFrom(tp.pair.VIP, port).String(), 3*time.Second)
		return err
	})
	if err != nil {
		return nil, nil, "", err
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	name, err := r.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, nil, "", err
	}
	return c, r, strings.TrimSpace(name), nil
}

// requests makes n requests through the VIP and counts the real servers
// that answered.
func (tp *topo) requests(t *testing.T, n int) map[string]int {
	got := map[string]int{}
	for range n {
		c, _, name, err := tp.dial(t)
		if err != nil {
			t.Fatalf("request through the VIP: %v\n%s", err, tp.pair.Nodes[0].Log())
		}
		c.Close()
		got[name]++
	}
	return got
}

type result struct {
	topo             *topo
	mode             string
	spread           map[string]int
	survived, total  int
	takeover, repair time.Duration
	healthOut        time.Duration // rs1 stops listening -> out of the table
	healthIn         time.Duration // rs1 listens again -> back in
	// NAT: the master's back link goes down; its sync group moves.
	syncMove     time.Duration // -> both VIPs on the peer
	syncSplit    time.Duration // the longest a node held one VIP without the other
	syncSurvived int
}

var (
	resultsMu sync.Mutex
	results   []result
)

func TestLVS(t *testing.T) {
	for _, mode := range []string{"dr", "tun", "nat"} {
		t.Run(mode, func(t *testing.T) { testMode(t, mode) })
	}
	resultsMu.Lock()
	defer resultsMu.Unlock()
	fmt.Printf("\nLVS through a havip pair (real IPVS in the VM lab, scheduler rr, %d long-lived connections, kill -9 of the master):\n", nConns)
	fmt.Printf("%-5s %-22s %-22s %-16s %-16s %-14s %-14s\n", "mode", "spread (20 requests)", "connections survived", "takeover", "table repaired", "rs down->out", "rs up->in")
	if len(results) > 0 {
		tp := results[0].topo
		adv, c := tp.advert(), tp.site.VirtualServers[0].Check
		defer fmt.Printf("(takeover bound: Master_Down_Interval %s at advert %s; repair: resync every 2s; %s check every %s, fall %d, rise %d)\n",
			tp.masterDown(), adv, c.Type, c.Interval, c.Fall, c.Rise)
	}
	for _, r := range results {
		fmt.Printf("%-5s %-22s %-22s %-16s %-16s %-14s %-14s\n", r.mode, fmt.Sprintf("rs1=%d rs2=%d", r.spread["rs1"], r.spread["rs2"]),
			fmt.Sprintf("%d/%d", r.survived, r.total), r.takeover.Round(time.Millisecond), r.repair.Round(time.Millisecond),
			r.healthOut.Round(time.Millisecond), r.healthIn.Round(time.Millisecond))
	}
	for _, r := range results {
		if r.mode == "nat" {
			fmt.Printf("nat sync group (front + back): the master's back link down -> both VIPs on the peer after %s, %d/%d connections survived, worst split %s\n",
				r.syncMove.Round(time.Millisecond), r.syncSurvived, nConns, r.syncSplit.Round(10*time.Microsecond))
		}
	}
}

func testMode(t *testing.T, mode string) {
	tp := newTopo(t, mode)
	p := tp.pair
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	res := result{topo: tp, mode: mode, spread: map[string]int{}, total: nConns}
	defer func() {
		resultsMu.Lock()
		results = append(results, res)
		resultsMu.Unlock()
	}()

	// Both directors carry the same table, whatever their VRRP state.
	for _, n := range p.Nodes {
		h.WaitUntil(t, 5*time.Second, n.Name+" has the IPVS service", func() bool {
			out, _ := runIn(t, n.Host, "ipvsadm", "-Ln")
			return strings.Contains(out, "198.18.0.100:80") && strings.Count(out, "->") >= 3
		})
	}

	// (a) requests are spread over both real servers, round robin.
	res.spread = tp.requests(t, 20)
	if res.spread["rs1"] != 10 || res.spread["rs2"] != 10 {
		t.Errorf("rr spread = %v, want 10 each", res.spread)
	}

	// (b) long-lived connections survive a kill -9 of the master.
	conns := tp.openSynced(t, lb2)
	added := h.WaitAddr(t, lb2.Host, p.VIP, true)
	t0 := time.Now()
	lb1.Signal(syscall.SIGKILL)
	res.takeover = h.Within(t, added, 5*time.Second, "VIP on the backup").Sub(t0)
	lb2.WaitState("front", "MASTER", 2*time.Second)
	if mode == "nat" {
		lb2.WaitState("back", "MASTER", 2*time.Second)
	}
	res.survived = tp.survivors(t, conns, "the failover")

	// (c) the table cleared behind havip's back is repaired.
	runIn(t, lb2.Host, "ipvsadm", "-C")
	t1 := time.Now()
	h.WaitUntil(t, 10*time.Second, "IPVS table repaired on lb2", func() bool {
		out, _ := runIn(t, lb2.Host, "ipvsadm", "-Ln")
		return strings.Count(out, "->") >= 3
	})
	res.repair = time.Since(t1)
	if !strings.Contains(lb2.Log(), "ipvs: applied") {
		t.Errorf("lb2 did not log the repair")
	}
	// (d) a real server that stops listening leaves the table (health
	// check), and comes back when it listens again.
	rs1 := tp.rss[0]
	rs1.l.Close()
	t2 := time.Now()
	h.WaitUntil(t, 10*time.Second, "rs1 removed from lb2's table", func() bool {
		out, _ := runIn(t, lb2.Host, "ipvsadm", "-Ln")
		return !strings.Contains(out, rs1.addr.String()+":80")
	})
	res.healthOut = time.Since(t2)
	for range 6 {
		c, _, name, err := tp.dial(t)
		if err != nil {
			t.Fatalf("request with rs1 down: %v", err)
		}
		c.Close()
		if name != "rs2" {
			t.Errorf("request served by %s while rs1 is down", name)
		}
	}
	rs1.serve(t)
	h.WaitUntil(t, 10*time.Second, "rs1 back in lb2's table", func() bool {
		out, _ := runIn(t, lb2.Host, "ipvsadm", "-Ln")
		return strings.Contains(out, rs1.addr.String()+":80")
	})
	res.healthIn = time.Since(t2) - res.healthOut

	if mode == "nat" {
		tp.backLinkDown(t, &res)
	}

	st, err := lb2.Status()
	if err != nil || st.IPVS == nil || !strings.Contains(st.IPVS.Table, "198.18.0.100:80") {
		t.Errorf("havip status lacks the IPVS table: %v %+v", err, st)
	}
	// (e) reload: dropping [sync] stops the kernel's sync daemons, putting
	// it back starts them for the current role (lb2 is master: both).
	if mode == "dr" {
		cfg := lb2.ReadConfig()
		syncBlock := tableText(t, cfg, "[sync]")
		syncRoles := func() []string {
			st, err := lb2.Status()
			if err != nil || st.IPVS == nil {
				return nil
			}
			var roles []string
			for _, d := range st.IPVS.Sync {
				roles = append(roles, d.Role)
			}
			return roles
		}
		lb2.WriteConfig(strings.Replace(cfg, syncBlock, "\n", 1))
		lb2.Signal(syscall.SIGHUP)
		h.WaitUntil(t, 5*time.Second, "sync daemons stopped by reload", func() bool { return len(syncRoles()) == 0 })
		lb2.WriteConfig(cfg)
		lb2.Signal(syscall.SIGHUP)
		h.WaitUntil(t, 5*time.Second, "sync daemons back after reload", func() bool { return len(syncRoles()) == 2 })
		if st, _ := lb2.Status(); st == nil || st.ReloadError != "" {
			t.Errorf("reload error: %+v", st)
		}
	}

	stOut, _ := lb2.Run("status")
	t.Logf("havip status on the new master:\n%s", stOut)
	for _, n := range p.Nodes {
		t.Logf("--- log of %s ---\n%s", n.Name, n.Log())
	}
}

// backLinkDown is the NAT director's sync group at work: the killed lb1
// returns and takes front and back back (preempt); then its back
// interface loses its link. back goes to FAULT and front, whose own link
// is fine, follows it to lb2 at once, so the client's connections keep
// flowing: through lb2 both ways.
func (tp *topo) backLinkDown(t *testing.T, res *result) {
	p := tp.pair
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	lb1.Start()
	for _, g := range []string{"front", "back"} {
		lb1.WaitState(g, "MASTER", 10*time.Second)
		lb2.WaitState(g, "BACKUP", 2*time.Second)
	}
	holds := func(n *h.Node) (bool, bool) { return n.HasVIP(p.VIP), n.Host.HasAddr(t, "eth1", backGW) }
	h.WaitUntil(t, 10*time.Second, "both VIPs on lb1 only", func() bool {
		f1, b1 := holds(lb1)
		f2, b2 := holds(lb2)
		return f1 && b1 && !f2 && !b2
	})
	watch := h.WatchVIPs(t, []netip.Addr{p.VIP, backGW}, lb1.Host, lb2.Host)
	conns := tp.openSynced(t, lb2)
	front, back := h.WaitAddr(t, lb2.Host, p.VIP, true), h.WaitAddr(t, lb2.Host, backGW, true)
	t0 := time.Now()
	lb1.Host.SetLinkDown(t, "eth1")
	f := h.Within(t, front, 10*time.Second, "front VIP on lb2").Sub(t0)
	b := h.Within(t, back, 10*time.Second, "back VIP on lb2").Sub(t0)
	res.syncMove = max(f, b)
	t.Logf("lb1's back link down: front VIP on lb2 after %s, back VIP after %s", f, b)
	// front's priority-0 advert and the sync group: no waiting for
	// Master_Down_Interval, which a silent back alone would take.
	if bound := tp.masterDown(); res.syncMove >= bound {
		t.Errorf("both VIPs on lb2 after %s, want well under Master_Down_Interval %s", res.syncMove, bound)
	}
	for _, g := range []string{"front", "back"} {
		lb2.WaitState(g, "MASTER", 2*time.Second)
		lb1.WaitState(g, "FAULT", 2*time.Second)
	}
	res.syncSurvived = tp.survivors(t, conns, "the back link loss")
	if f1, b1 := holds(lb1); f1 || b1 {
		t.Errorf("lb1 still holds front %v back %v", f1, b1)
	}
	if errs := watch.Errors(); len(errs) > 0 {
		t.Errorf("address watch: %v", errs)
	}
	var where string
	res.syncSplit, where = watch.Split(t0, time.Now())
	t.Logf("worst split: %s %s\n%s", res.syncSplit, where, strings.Join(watch.Events(), "\n"))
	if res.syncSplit > 2*tp.advert() {
		t.Errorf("a node held one VIP without the other for %s (%s), want at most 2 adverts", res.syncSplit, where)
	}
}

// tableText is the text of cfg's table named by header (its header line
// to the next table's), with the newline before it.
func tableText(t *testing.T, cfg, header string) string {
	t.Helper()
	i := strings.Index(cfg, "\n"+header+"\n")
	if i < 0 {
		t.Fatalf("site file has no %s table:\n%s", header, cfg)
	}
	n := strings.Index(cfg[i+1:], "\n[")
	if n < 0 {
		return cfg[i:]
	}
	return cfg[i : i+1+n+1]
}

// conn is a long-lived connection through the VIP to the real server
// named name.
type conn struct {
	c    net.Conn
	r    *bufio.Reader
	name string
}

func (cn conn) echo(msg string) error {
	cn.c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := fmt.Fprintf(cn.c, "%s\n", msg); err != nil {
		return err
	}
	line, err := cn.r.ReadString('\n')
	if err != nil {
		return err
	}
	if want := cn.name + " " + msg + "\n"; line != want {
		return fmt.Errorf("got %q, want %q", line, want)
	}
	return nil
}

// openSynced opens nConns connections through the master and waits until
// its sync daemon has had time to tell backup about them.
func (tp *topo) openSynced(t *testing.T, backup *h.Node) []conn {
	t.Helper()
	var conns []conn
	for range nConns {
		c, r, name, err := tp.dial(t)
		if err != nil {
			t.Fatalf("long-lived connection: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		conns = append(conns, conn{c, r, name})
	}
	// A few packets each, so the master's sync daemon sends them over.
	for i := range 4 {
		for _, cn := range conns {
			if err := cn.echo(fmt.Sprintf("before-%d", i)); err != nil {
				t.Fatalf("echo before failover: %v", err)
			}
		}
	}
	// The master sync daemon sends a partly filled buffer after 2s
	// (IPVS_SYNC_FLUSH_TIME); give it that and a check period.
	time.Sleep(3500 * time.Millisecond)
	out, _ := runIn(t, backup.Host, "ipvsadm", "-Lnc")
	t.Logf("backup's synced connections:\n%s", out)
	return conns
}

// survivors counts the connections that still echo after what, and checks
// that all do and that a new connection works.
func (tp *topo) survivors(t *testing.T, conns []conn, what string) int {
	t.Helper()
	n := 0
	for _, cn := range conns {
		if err := cn.echo("after"); err == nil {
			n++
		} else {
			t.Logf("connection to %s lost: %v", cn.name, err)
		}
	}
	if n != len(conns) {
		t.Errorf("%d of %d connections survived %s", n, len(conns), what)
	}
	if c, _, _, err := tp.dial(t); err != nil {
		t.Errorf("new connection after %s: %v", what, err)
	} else {
		c.Close()
	}
	return n
}

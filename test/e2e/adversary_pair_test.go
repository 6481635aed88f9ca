package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/havip/havip/internal/pairwire"
	h "github.com/havip/havip/test/e2e/harness"
	"github.com/havip/havip/test/lab"
)

// The adversary against the authenticated pair link (issue 7): kernel
// resets of the link, floods and slow handshakes on the pair port, a
// peer that holds the key and sends what is valid but hostile, and
// signal timing games. Each test says what it found.

// killPairSockets runs `ss -K` on the pair connection inside host's
// namespace: the kernel destroys the socket (a reset to the other end)
// while the process that owns it stays alive.
func killPairSockets(t *testing.T, host *lab.Host) string {
	t.Helper()
	cmd := exec.Command("ss", "-K", "-t", "-n", fmt.Sprintf("( sport = :%d or dport = :%d )", pairPort, pairPort))
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	if err := host.Start(cmd); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("ss -K: %v: %s", err, b.String())
	}
	if !strings.Contains(b.String(), "ESTAB") {
		t.Fatalf("ss -K killed no established pair connection:\n%s", b.String())
	}
	return b.String()
}

// The master's kernel resets the pair link while its daemon lives (ss -K
// in its namespace; what a forged reset reaching the backup does). The
// backup reads a reset without a bye and takes over at once; the
// master's adverts must win the group back: one master afterwards, the
// VIP and the client's neighbour entry on the master, and the dual
// master short (about one advert interval).
func TestAdvPairResetByMasterKernel(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	waitLinkUp(t, lb1, true)
	waitLinkUp(t, lb2, true)
	time.Sleep(300 * time.Millisecond)
	w := h.WatchVIPs(t, []netip.Addr{p.VIP}, lb1.Host, lb2.Host)
	time.Sleep(100 * time.Millisecond)
	killPairSockets(t, lb1.Host)
	time.Sleep(2 * time.Second)
	both := w.Both(p.VIP)
	t.Logf("dual master (VIP on both) for %s; events %v; fast takeovers on lb2: %d", both, w.Events(), pairStatus(t, lb2).FastTakeovers)
	if both > 3*p.Site.Advert {
		t.Errorf("the VIP was on both nodes for %s (advert interval %s)", both, p.Site.Advert)
	}
	if m := p.Masters(group); len(m) != 1 || m[0] != lb1 {
		t.Fatalf("masters afterwards: %v, want lb1 alone", names(m))
	}
	if !lb1.HasVIP(p.VIP) || lb2.HasVIP(p.VIP) {
		t.Errorf("VIP on lb1 %t, on lb2 %t; want lb1 only", lb1.HasVIP(p.VIP), lb2.HasVIP(p.VIP))
	}
	if got := p.Client.Neigh(t, p.VIP); got.String() != lb1.Host.MAC.String() {
		t.Errorf("client's neighbour entry for the VIP is %s, want lb1's %s", got, lb1.Host.MAC)
	}
	waitLinkUp(t, lb1, true)
	waitLinkUp(t, lb2, true)
}

// The backup's kernel resets the link (ss -K in its namespace): the
// master reads a reset from a peer that was master of nothing; nothing
// may change on either node, and the link comes back.
func TestAdvPairResetByBackupKernel(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	waitLinkUp(t, lb1, true)
	waitLinkUp(t, lb2, true)
	time.Sleep(300 * time.Millisecond)
	w := h.WatchVIPs(t, []netip.Addr{p.VIP}, lb1.Host, lb2.Host)
	time.Sleep(100 * time.Millisecond)
	listed := len(w.Events())
	b1, b2 := lb1.Group(group), lb2.Group(group)
	killPairSockets(t, lb2.Host)
	time.Sleep(1500 * time.Millisecond)
	waitLinkUp(t, lb1, true)
	waitLinkUp(t, lb2, true)
	a1, a2 := lb1.Group(group), lb2.Group(group)
	if a1.Transitions != b1.Transitions || a2.Transitions != b2.Transitions || a1.Announced != b1.Announced {
		t.Errorf("a reset by the backup's kernel changed state: lb1 transitions %d -> %d, announced %d -> %d; lb2 transitions %d -> %d",
			b1.Transitions, a1.Transitions, b1.Announced, a1.Announced, b2.Transitions, a2.Transitions)
	}
	if ev := w.Events(); len(ev) != listed {
		t.Errorf("the VIP moved: %v", ev)
	}
	if n := pairStatus(t, lb1).FastTakeovers + pairStatus(t, lb2).FastTakeovers; n != 0 {
		t.Errorf("fast takeovers = %d, want 0", n)
	}
}

// Slow handshakes from the peer's address: while lb1 (the dialer: the
// lower address) is dead, something holding its address opens the pair
// port of lb2 and sends nothing, keeping every handshake slot busy. The
// real lb1 restarts: how long until its link is up?
func TestAdvPairSlowloris(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	waitLinkUp(t, lb2, true)
	lb1.Signal(syscall.SIGKILL)
	lb2.WaitState(group, "MASTER", time.Second)
	lb2Port := netip.AddrPortFrom(h.Addr2, pairPort)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	opened := 0
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				var c net.Conn
				_ = lb1.Host.Do(func() error {
					d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(h.Addr1, 0)), Timeout: time.Second}
					var err error
					c, err = d.Dial("tcp", lb2Port.String())
					return err
				})
				if c == nil {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				mu.Lock()
				opened++
				mu.Unlock()
				// Send the magic one byte at a time, slowly, until closed.
				done := make(chan struct{})
				go func() { _, _ = io.Copy(io.Discard, c); close(done) }()
				for j := 0; ; j++ {
					select {
					case <-stop:
						c.Close()
						return
					case <-done:
					case <-time.After(300 * time.Millisecond):
						if _, err := c.Write([]byte{"HVPL\x01"[j%5]}); err == nil {
							continue
						}
					}
					break
				}
				c.Close()
			}
		}()
	}
	t.Cleanup(func() { close(stop); wg.Wait() })
	time.Sleep(time.Second)
	t0 := time.Now()
	lb1.Start()
	up := false
	for time.Since(t0) < 15*time.Second {
		st, err := lb1.Status()
		if err == nil && len(st.Peers) == 1 && st.Peers[0].LinkUp && st.Peers[0].Trusted {
			up = true
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(t0)
	mu.Lock()
	n := opened
	mu.Unlock()
	drops := pairStatus(t, lb2).Drops
	t.Logf("slow handshakes from lb1's address (%d opened): lb1's link up %t after %s; lb2's drops %v", n, up, took, drops)
	if !up || took > 5*time.Second {
		t.Errorf("the restarted lb1 got its pair link up: %t, after %s, while slow handshakes hold lb2's slots", up, took)
	}
	if drops["busy"] == 0 {
		t.Errorf("no busy drops counted: %v", drops)
	}
	lb1.WaitState(group, "MASTER", 3*time.Second)
}

// hostileGroup is a group entry of a pair message, as the wire carries it.
type hostileGroup struct {
	State string `json:"state"`
	Prio  int    `json:"prio"`
	Key   string `json:"key"`
}

// kill -9 of the backup changes nothing on the master. Then something
// that holds the key answers lb1's dial at lb2's address and sends what
// is valid but hostile: group names with terminal controls, a message
// with 4096 groups, a frame of the full 64 KiB, and an unannounced close
// after claiming MASTER of a group lb1 does not have. lb1 stays master
// of everything, changes nothing, and no raw control reaches a terminal
// through `havip status` or `havip events`.
func TestAdvPairHostilePeer(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	waitLinkUp(t, lb1, true)
	time.Sleep(300 * time.Millisecond)
	w := h.WatchVIPs(t, []netip.Addr{p.VIP}, lb1.Host, lb2.Host)
	time.Sleep(100 * time.Millisecond)
	listed := len(w.Events())
	before := lb1.Group(group)
	lb2.Signal(syscall.SIGKILL)
	h.WaitUntil(t, 3*time.Second, "lb1 sees lb2 gone", func() bool {
		st, err := lb1.Status()
		return err == nil && !st.Peers[0].Alive
	})
	time.Sleep(500 * time.Millisecond)
	if g := lb1.Group(group); g.Transitions != before.Transitions || g.Announced != before.Announced || g.State != "MASTER" {
		t.Errorf("kill -9 of the backup changed the master: %s, transitions %d -> %d, announced %d -> %d",
			g.State, before.Transitions, g.Transitions, before.Announced, g.Announced)
	}

	key, err := pairwire.LoadKey(p.PairKey)
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	if err := lb2.Host.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(h.Addr2, pairPort).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	s, err := pairwire.Accept(c, key, pairwire.Identity{Site: "lab", Node: "lb2"}, func(n string) bool { return n == "lb1" }, nil)
	if err != nil {
		t.Fatalf("handshake with the real key: %v", err)
	}
	go func() { _, _ = io.Copy(io.Discard, c) }() // not quite: Recv is not used; keep lb1's writes flowing
	seq := 0
	send := func(groups any, pad int) {
		t.Helper()
		seq++
		m := map[string]any{"site": "lab", "node": "lb2", "seq": seq, "rev": "r\x1b[2J\u009b31m\x7f", "groups": groups}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if pad > len(b) {
			b = append(b[:len(b)-1], append(bytes.Repeat([]byte(" "), pad-len(b)), '}')...)
		}
		if err := s.Send(b); err != nil {
			t.Fatalf("send: %v", err)
		}
	}
	evil := "\x1b]0;owned\x07\x1b[31mEVIL\r\n\u009b2J\x7f"
	send(map[string]hostileGroup{group: {State: "BACKUP", Prio: 100}, evil: {State: "MASTER", Prio: 255}}, 0)
	many := map[string]struct{}{} // 4096 groups, each the zero group, to fit a frame
	for i := 0; i < 4096; i++ {
		many[fmt.Sprintf("%x", i)] = struct{}{}
	}
	send(many, 0)
	for i := 0; i < 50; i++ {
		send(map[string]hostileGroup{group: {State: "BACKUP", Prio: 100}, evil: {State: "MASTER", Prio: 255}}, pairwire.MaxFrame)
	}
	h.WaitUntil(t, 3*time.Second, "lb1 hears the hostile peer", func() bool {
		st, err := lb1.Status()
		return err == nil && st.Peers[0].Alive && st.Peers[0].LinkUp
	})
	out, code := lb1.Run("status")
	ev, code2 := lb1.Run("events")
	for what, o := range map[string]string{"status": out, "events": ev} {
		for _, r := range o {
			if r == 0x1b || r == 0x07 || r == 0x7f || r == '\r' || (r >= 0x80 && r < 0xa0) {
				t.Errorf("havip %s prints a raw control %U:\n%q", what, r, o)
				break
			}
		}
	}
	t.Logf("status (exit %d):\n%s", code, out)
	if code2 != 0 {
		t.Errorf("havip events: exit %d: %s", code2, ev)
	}
	// An unannounced close (the fast path's evidence) after claiming
	// MASTER of groups lb1 does not have, and BACKUP of ours.
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
	time.Sleep(time.Second)
	after := lb1.Group(group)
	if after.State != "MASTER" || after.Transitions != before.Transitions || after.Announced != before.Announced {
		t.Errorf("the hostile peer changed something: %s, transitions %d -> %d, announced %d -> %d",
			after.State, before.Transitions, after.Transitions, before.Announced, after.Announced)
	}
	if ev := w.Events(); len(ev) != listed {
		t.Errorf("the VIP moved: %v", ev)
	}
	if lb1.Exited() {
		t.Fatal("lb1 exited")
	}
	ps := pairStatus(t, lb1)
	t.Logf("lb1 drops %v, fast takeovers %d", ps.Drops, ps.FastTakeovers)
	if ps.FastTakeovers != 0 {
		t.Errorf("lb1 counts %d fast takeovers, but took over nothing (it was master already; the other groups are not its own)", ps.FastTakeovers)
	}
}

// Keys that differ between the nodes (one has none, or another key): the
// link never comes up, both count forged handshakes, nothing acts on the
// link, and a kill -9 of the master is failed over by VRRP's timer.
func TestAdvPairKeyMismatch(t *testing.T) {
	for _, tc := range []struct {
		name string
		lb2  func(p *h.Pair) string // lb2's pair_key line
	}{
		{"lb2 has no key", func(p *h.Pair) string { return "" }},
		{"lb2 has another key", func(p *h.Pair) string {
			other := filepath.Join(t.TempDir(), "other.key")
			if err := pairwire.WriteNewKey(other); err != nil {
				t.Fatal(err)
			}
			return fmt.Sprintf("pair_key = %q", other)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := h.NewPair(t, h.Site{})
			lb1, lb2 := p.Nodes[0], p.Nodes[1]
			line := fmt.Sprintf("pair_key = %q", p.PairKey)
			lb2.WriteConfig(strings.Replace(lb2.ReadConfig(), line, tc.lb2(p), 1))
			startNodes(t, p)
			deadline := time.Now().Add(5 * time.Second)
			for !(pairStatus(t, lb1).Drops["forged"] > 0 && pairStatus(t, lb2).Drops["forged"] > 0) {
				if time.Now().After(deadline) {
					t.Fatalf("after 5 s, not counted as forged on both: lb1 drops %v, lb2 drops %v", pairStatus(t, lb1).Drops, pairStatus(t, lb2).Drops)
				}
				time.Sleep(50 * time.Millisecond)
			}
			for _, n := range p.Nodes {
				st, err := n.Status()
				if err != nil {
					t.Fatal(err)
				}
				if st.Peers[0].LinkUp || st.Peers[0].Alive {
					t.Errorf("%s: the link is up with keys that differ: %+v", n.Name, st.Peers[0])
				}
				t.Logf("%s drops %v", n.Name, st.Pair.Drops)
			}
			timerTakeover(t, p, syscall.SIGKILL, "kill -9 with keys that differ")
			if n := pairStatus(t, lb2).FastTakeovers; n != 0 {
				t.Errorf("fast takeovers %d", n)
			}
		})
	}
}

// The master hangs (SIGSTOP) for 1.5 Master_Down_Interval and resumes:
// the backup takes over by the timer, the master preempts back; exactly
// one master at the end, the VIP on lb1 only, no fast takeover.
func TestAdvPairStopContinue(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	waitLinkUp(t, lb2, true)
	bound := h.MasterDown(p.Site.Advert, 100)
	lb1.Signal(syscall.SIGSTOP)
	time.Sleep(bound * 3 / 2)
	lb1.Signal(syscall.SIGCONT)
	time.Sleep(2 * time.Second)
	if m := p.Masters(group); len(m) != 1 || m[0] != lb1 {
		t.Fatalf("masters after SIGSTOP %s / SIGCONT: %v, want lb1 alone", bound*3/2, names(m))
	}
	if !lb1.HasVIP(p.VIP) || lb2.HasVIP(p.VIP) {
		t.Errorf("VIP on lb1 %t, on lb2 %t; want lb1 only", lb1.HasVIP(p.VIP), lb2.HasVIP(p.VIP))
	}
	if got := p.Client.Neigh(t, p.VIP); got.String() != lb1.Host.MAC.String() {
		t.Errorf("client's neighbour entry for the VIP is %s, want lb1's %s", got, lb1.Host.MAC)
	}
	if n := pairStatus(t, lb1).FastTakeovers + pairStatus(t, lb2).FastTakeovers; n != 0 {
		t.Errorf("fast takeovers = %d, want 0", n)
	}
	t.Logf("lb2 transitions %d", lb2.Group(group).Transitions)
	waitLinkUp(t, lb1, true)
	waitLinkUp(t, lb2, true)
}

// setPairKey sets (path != "") or removes the pair_key line of n's site file.
func setPairKey(n *h.Node, path string) {
	var lines []string
	for _, l := range strings.Split(n.ReadConfig(), "\n") {
		if !strings.HasPrefix(l, "pair_key") {
			lines = append(lines, l)
		}
	}
	cfg := strings.Join(lines, "\n")
	if path != "" {
		cfg = h.SiteKey(cfg, "pair_key", fmt.Sprintf("%q", path))
	}
	n.WriteConfig(cfg)
}

// A rolling key change by reload, one node then the other: add a key,
// change it, remove it. In between the link is down (keys differ,
// counted forged) or up (authenticated as the keys say); no VRRP state
// changes at any step and the VIP never moves.
func TestAdvPairReloadKey(t *testing.T) {
	p := startPair(t, h.Site{NoPairKey: true})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	waitLinkUp(t, lb1, false)
	waitLinkUp(t, lb2, false)
	dir := t.TempDir()
	k1, k2 := filepath.Join(dir, "k1"), filepath.Join(dir, "k2")
	for _, k := range []string{k1, k2} {
		if err := pairwire.WriteNewKey(k); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	w := h.WatchVIPs(t, []netip.Addr{p.VIP}, lb1.Host, lb2.Host)
	time.Sleep(100 * time.Millisecond)
	listed := len(w.Events())
	b1, b2 := lb1.Group(group).Transitions, lb2.Group(group).Transitions
	reload := func(n *h.Node, key string) {
		t.Helper()
		setPairKey(n, key)
		if out, code := n.Reload(); code != 0 {
			t.Fatalf("%s: reload: exit %d\n%s", n.Name, code, out)
		}
	}
	linkDown := func(what string) {
		t.Helper()
		f1, f2 := pairStatus(t, lb1).Drops["forged"], pairStatus(t, lb2).Drops["forged"]
		h.WaitUntil(t, 5*time.Second, what+": link down, new forged drops on both", func() bool {
			s1, e1 := lb1.Status()
			s2, e2 := lb2.Status()
			return e1 == nil && e2 == nil && !s1.Peers[0].LinkUp && !s2.Peers[0].LinkUp &&
				s1.Pair.Drops["forged"] > f1 && s2.Pair.Drops["forged"] > f2
		})
	}
	// Each node's own file at one path, whose content is then replaced
	// in place (the site file's text unchanged).
	own := map[*h.Node]string{lb1: filepath.Join(dir, "lb1.key"), lb2: filepath.Join(dir, "lb2.key")}
	copyKey := func(from, to string) func() {
		return func() {
			b, err := os.ReadFile(from)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(to, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	steps := []struct {
		what    string
		n       *h.Node
		key     string
		prep    func()
		trusted *bool // nil: keys differ, link down
	}{
		{"lb1 adds k1", lb1, k1, nil, nil},
		{"lb2 adds k1", lb2, k1, nil, ptr(true)},
		{"lb1 changes to k2", lb1, k2, nil, nil},
		{"lb2 changes to k2", lb2, k2, nil, ptr(true)},
		{"lb1 names its own file, k2 in it", lb1, own[lb1], copyKey(k2, own[lb1]), ptr(true)},
		{"lb2 names its own file, k2 in it", lb2, own[lb2], copyKey(k2, own[lb2]), ptr(true)},
		{"lb1 rewrites its file in place with k1", lb1, own[lb1], copyKey(k1, own[lb1]), nil},
		{"lb2 rewrites its file in place with k1", lb2, own[lb2], copyKey(k1, own[lb2]), ptr(true)},
		{"lb1 removes its key", lb1, "", nil, nil},
		{"lb2 removes its key", lb2, "", nil, ptr(false)},
	}
	for _, s := range steps {
		t0 := time.Now()
		if s.prep != nil {
			s.prep()
		}
		reload(s.n, s.key)
		if s.trusted == nil {
			linkDown(s.what)
		} else {
			waitLinkUp(t, lb1, *s.trusted)
			waitLinkUp(t, lb2, *s.trusted)
		}
		t.Logf("%s: settled after %s", s.what, time.Since(t0).Round(time.Millisecond))
		if a1, a2 := lb1.Group(group).Transitions, lb2.Group(group).Transitions; a1 != b1 || a2 != b2 {
			t.Fatalf("%s: transitions lb1 %d -> %d, lb2 %d -> %d", s.what, b1, a1, b2, a2)
		}
	}
	if ev := w.Events(); len(ev) != listed {
		t.Errorf("the VIP moved: %v", ev[listed:])
	}
	if n := pairStatus(t, lb1).FastTakeovers + pairStatus(t, lb2).FastTakeovers; n != 0 {
		t.Errorf("fast takeovers %d", n)
	}
}

func ptr[T any](v T) *T { return &v }

// gauge reads an unlabelled sample from n's metrics.
func gauge(t *testing.T, n *h.Node, name string) float64 {
	t.Helper()
	out, err := n.Scrape()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err != nil {
				t.Fatalf("%s: %q: %v", name, l, err)
			}
			return f
		}
	}
	t.Fatalf("no %s in the metrics", name)
	return 0
}

// A connection flood on the pair port, from the dead peer's address and
// from a stranger, while the survivor is master: it stays master with its
// VIP, its goroutines and memory stay bounded, every connection is
// counted (busy, malformed, unknown_source), and the real peer, restarted
// in the middle of the flood, gets its link up.
func TestAdvPairFlood(t *testing.T) {
	p := h.NewPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	lb2.Metrics = "127.0.0.1:9110"
	startNodes(t, p)
	waitLinkUp(t, lb2, true)
	lb1.Signal(syscall.SIGKILL)
	lb2.WaitState(group, "MASTER", time.Second)
	time.Sleep(500 * time.Millisecond)
	w := h.WatchVIPs(t, []netip.Addr{p.VIP}, lb1.Host, lb2.Host)
	time.Sleep(100 * time.Millisecond)
	listed := len(w.Events())
	before := lb2.Group(group)
	g0, m0 := gauge(t, lb2, "go_goroutines"), gauge(t, lb2, "process_resident_memory_bytes")
	lb2Port := netip.AddrPortFrom(h.Addr2, pairPort).String()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	opened := map[string]int{}
	flood := func(host *lab.Host, from netip.Addr, who string) {
		defer wg.Done()
		junk := bytes.Repeat([]byte("HVPL\x01\x03lab\x03lb1"), 4)
		for {
			select {
			case <-stop:
				return
			default:
			}
			var c net.Conn
			_ = host.Do(func() error {
				d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(from, 0)), Timeout: time.Second}
				var err error
				c, err = d.Dial("tcp", lb2Port)
				return err
			})
			if c == nil {
				continue
			}
			_, _ = c.Write(junk)
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
			mu.Lock()
			opened[who]++
			mu.Unlock()
		}
	}
	for i := 0; i < 4; i++ {
		wg.Add(2)
		go flood(lb1.Host, h.Addr1, "peer's address")
		go flood(p.Client, h.ClientAddr, "stranger")
	}
	t.Cleanup(func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	})
	time.Sleep(2 * time.Second)
	g1, m1 := gauge(t, lb2, "go_goroutines"), gauge(t, lb2, "process_resident_memory_bytes")
	mid := lb2.Group(group)
	t0 := time.Now()
	lb1.Start()
	up := false
	for time.Since(t0) < 10*time.Second && !up {
		st, err := lb1.Status()
		up = err == nil && len(st.Peers) == 1 && st.Peers[0].LinkUp && st.Peers[0].Trusted
		time.Sleep(10 * time.Millisecond)
	}
	took := time.Since(t0)
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	mu.Lock()
	t.Logf("flood: %v connections; goroutines %v -> %v during, RSS %.1f -> %.1f MB; lb1 restarted mid-flood: link up %t after %s",
		opened, g0, g1, m0/1e6, m1/1e6, up, took)
	mu.Unlock()
	drops := pairStatus(t, lb2).Drops
	t.Logf("lb2 drops %v", drops)
	if !up || took > 5*time.Second {
		t.Errorf("the restarted peer's link: up %t after %s", up, took)
	}
	if mid.State != "MASTER" || mid.Transitions != before.Transitions {
		t.Errorf("lb2 under the flood before lb1 was back: %s, transitions %d -> %d", mid.State, before.Transitions, mid.Transitions)
	}
	if g1 > g0+20 {
		t.Errorf("goroutines %v -> %v under the flood: not bounded", g0, g1)
	}
	if m1 > m0+64e6 {
		t.Errorf("RSS %.1f -> %.1f MB under the flood", m0/1e6, m1/1e6)
	}
	if drops["unknown_source"] == 0 || drops["malformed"]+drops["busy"] == 0 {
		t.Errorf("the flood is not counted: %v", drops)
	}
	// lb1 preempts back: the VIP goes from lb2 to lb1 (and the copy
	// lb1's kernel kept since the kill -9 is removed at its start).
	lb1.WaitState(group, "MASTER", 3*time.Second)
	time.Sleep(200 * time.Millisecond)
	if ev := w.Events()[listed:]; len(ev) > 3 || !lb1.HasVIP(p.VIP) || lb2.HasVIP(p.VIP) {
		t.Errorf("the VIP after lb1 is back: on lb1 %t, on lb2 %t, moves %v", lb1.HasVIP(p.VIP), lb2.HasVIP(p.VIP), ev)
	}
}

// kill -9 of the master while a reload of it is in progress (a group
// change that keeps the link; a pair_port change that re-creates it and
// says bye first): whatever the moment, lb2 ends master alone with the
// VIP, within Master_Down_Interval (the fast path when the link had not
// said bye, else the timer).
func TestAdvPairKillDuringReload(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(cfg string) string
	}{
		{"group change", func(cfg string) string {
			return strings.Replace(cfg, `garp_interval = "20ms"`, `garp_interval = "25ms"`, 1)
		}},
		{"pair_port change", func(cfg string) string { return h.SiteKey(cfg, "pair_port", "7600") }},
	} {
		for _, after := range []time.Duration{0, 3 * time.Millisecond, 10 * time.Millisecond, 30 * time.Millisecond} {
			t.Run(fmt.Sprintf("%s/%s", tc.name, after), func(t *testing.T) {
				p := startPair(t, h.Site{})
				lb1, lb2 := p.Nodes[0], p.Nodes[1]
				waitLinkUp(t, lb2, true)
				lb1.WriteConfig(tc.change(lb1.ReadConfig()))
				added := h.WaitAddr(t, lb2.Host, p.VIP, true)
				bound := h.MasterDown(p.Site.Advert, 100)
				cmd := exec.Command(h.Binary(t), "reload", "-c", lb1.Config, "--socket", lb1.Sock)
				if err := lb1.Host.Start(cmd); err != nil {
					t.Fatal(err)
				}
				time.Sleep(after)
				t0 := time.Now()
				lb1.Signal(syscall.SIGKILL)
				_ = cmd.Wait()
				at := h.Within(t, added, 2*bound+time.Second, "VIP on lb2").Sub(t0)
				fast := pairStatus(t, lb2).FastTakeovers
				t.Logf("kill -9 %s into a reload (%s): VIP on lb2 after %s, fast takeovers %d", after, tc.name, at, fast)
				if at > bound+100*time.Millisecond {
					t.Errorf("VIP on lb2 after %s: later than Master_Down_Interval %s", at, bound)
				}
				time.Sleep(500 * time.Millisecond)
				if m := p.Masters(group); len(m) != 1 || m[0] != lb2 {
					t.Errorf("masters: %v, want lb2 alone", names(m))
				}
				if got := p.Client.Neigh(t, p.VIP); got.String() != lb2.Host.MAC.String() {
					t.Errorf("client's neighbour entry for the VIP is %s, want lb2's %s", got, lb2.Host.MAC)
				}
			})
		}
	}
}

// fakePeer answers lb1's dial at lb2's address with the real key and
// speaks as lb2: BACKUP of front at priority 100, echoing lb1's revision
// and table so the drill's pre-checks pass. answer decides the reply to
// each call (nil: never answer).
func fakePeer(t *testing.T, p *h.Pair, answer func(call map[string]any) map[string]any) {
	t.Helper()
	key, err := pairwire.LoadKey(p.PairKey)
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	if err := p.Nodes[1].Host.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(h.Addr2, pairPort).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	s, err := pairwire.Accept(c, key, pairwire.Identity{Site: "lab", Node: "lb2"}, func(n string) bool { return n == "lb1" }, nil)
	if err != nil {
		t.Fatalf("fake peer: handshake: %v", err)
	}
	_ = c.SetDeadline(time.Time{})
	go func() {
		seq := 0
		for {
			b, err := s.Recv()
			if err != nil {
				return
			}
			var m map[string]json.RawMessage
			if json.Unmarshal(b, &m) != nil {
				return
			}
			var groups map[string]map[string]any
			_ = json.Unmarshal(m["groups"], &groups)
			for _, g := range groups {
				g["state"], g["prio"] = "BACKUP", 100
			}
			out := map[string]any{"site": "lab", "node": "lb2", "rev": m["rev"], "groups": groups}
			for _, k := range []string{"table", "drains"} {
				if m[k] != nil {
					out[k] = m[k]
				}
			}
			if m["call"] != nil && answer != nil {
				var call map[string]any
				_ = json.Unmarshal(m["call"], &call)
				if a := answer(call); a != nil {
					a["id"] = call["id"]
					out["answer"] = a
				}
			}
			seq++
			out["seq"] = seq
			b, _ = json.Marshal(out)
			if s.Send(b) != nil {
				return
			}
		}
	}()
}

// A peer that holds the key says "taken over" to a drill's takeover but
// never claims the VIPs nor advertises (a lying or a broken peer): the
// make-before-break drill must not release the VIP on its word alone.
func TestAdvDrillPeerSaysDoneButIsNot(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	waitLinkUp(t, lb1, true)
	lb2.Signal(syscall.SIGKILL)
	h.WaitUntil(t, 3*time.Second, "lb1 sees lb2 gone", func() bool {
		st, err := lb1.Status()
		return err == nil && !st.Peers[0].Alive
	})
	fakePeer(t, p, func(call map[string]any) map[string]any {
		groups := map[string]string{}
		for _, g := range call["groups"].([]any) {
			groups[g.(string)] = "" // done
		}
		return map[string]any{"groups": groups}
	})
	waitLinkUp(t, lb1, true)
	time.Sleep(300 * time.Millisecond)
	w := h.WatchVIPs(t, []netip.Addr{p.VIP}, lb1.Host, lb2.Host)
	time.Sleep(100 * time.Millisecond)
	out, code := lb1.Run("failover")
	t.Logf("havip failover against a peer that says done but is not (exit %d):\n%s", code, out)
	time.Sleep(time.Second)
	var gone time.Duration
	var left time.Time
	for _, e := range w.Events() {
		f := strings.Fields(e)
		at, _ := time.Parse("15:04:05.000000", f[0])
		switch {
		case strings.Contains(e, "lb1 -"):
			left = at
		case strings.Contains(e, "lb1 +") && !left.IsZero():
			gone += at.Sub(left)
			left = time.Time{}
		}
	}
	t.Logf("VIP events %v; VIP unowned for %s", w.Events(), gone)
	if code == 0 {
		t.Errorf("havip failover succeeded (exit 0) though nobody took over")
	}
	vipKept(t, w, p.VIP, lb1)
}

// The backup hangs (SIGSTOP) 300 ms before a drill: it still counts as
// alive on the link (heard within 2 s), so the pre-checks pass, but it
// never answers the takeover: the drill must keep the VIP and exit 2.
func TestAdvDrillPeerHangs(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	waitLinkUp(t, lb1, true)
	time.Sleep(300 * time.Millisecond)
	w := h.WatchVIPs(t, []netip.Addr{p.VIP}, lb1.Host, lb2.Host)
	time.Sleep(100 * time.Millisecond)
	lb2.Signal(syscall.SIGSTOP)
	t.Cleanup(func() { lb2.Signal(syscall.SIGCONT) })
	time.Sleep(300 * time.Millisecond)
	t0 := time.Now()
	out, code := lb1.Run("failover")
	t.Logf("havip failover with the peer stopped 300 ms before (exit %d, %s):\n%s", code, time.Since(t0).Round(time.Millisecond), out)
	if code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	lb2.Signal(syscall.SIGCONT)
	tc := time.Now()
	for time.Since(tc) < 3*time.Second {
		if m := p.Masters(group); len(m) != 1 {
			t.Logf("%s after SIGCONT: masters %v", time.Since(tc).Round(time.Millisecond), names(m))
			if time.Since(tc) > 500*time.Millisecond {
				t.Errorf("two masters %s after the peer resumed", time.Since(tc).Round(time.Millisecond))
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	both := w.Both(p.VIP)
	t.Logf("after the peer resumed: VIP on both for %s; events %v", both, w.Events())
	vipKept(t, w, p.VIP, lb1)
	if m := p.Masters(group); len(m) != 1 || m[0] != lb1 {
		t.Errorf("masters 3 s after the peer resumed: %v, want lb1 alone", names(m))
	}
	if both > 3*p.Site.Advert {
		t.Errorf("the resumed peer acted on the abandoned takeover: the VIP was on both for %s", both)
	}
}

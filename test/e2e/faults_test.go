package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/havip/havip/internal/ctl"
	h "github.com/havip/havip/test/e2e/harness"
	"github.com/havip/havip/test/lab"
)

// Faults that heal (issue 6, item 3): each test breaks something under a
// running pair, or before it starts, and asserts that the daemons find
// their way back by themselves.

// groupOf returns n's status of the group, failing the test when n does
// not answer.
func groupOf(t *testing.T, n *h.Node) *ctl.GroupStatus {
	t.Helper()
	return groupNamed(t, n, group)
}

// groupNamed is n's status of group name; the test fails without one.
func groupNamed(t testing.TB, n *h.Node, name string) *ctl.GroupStatus {
	t.Helper()
	g := n.Group(name)
	if g == nil {
		t.Fatalf("%s: no status for group %s", n.Name, name)
	}
	return g
}

// other is the node of p that is not n.
func other(p *h.Pair, n *h.Node) *h.Node {
	if p.Nodes[0] == n {
		return p.Nodes[1]
	}
	return p.Nodes[0]
}

// settled asserts that the pair has settled on master: the only master,
// the only one holding the VIP, and the other node, BACKUP, keeps
// receiving its adverts.
func settled(t *testing.T, p *h.Pair, master *h.Node) {
	t.Helper()
	backup := other(p, master)
	master.WaitState(group, "MASTER", 5*time.Second)
	backup.WaitState(group, "BACKUP", 5*time.Second)
	h.WaitUntil(t, 5*time.Second, "VIP only on "+master.Name, func() bool {
		return master.HasVIP(p.VIP) && !backup.HasVIP(p.VIP)
	})
	if m := p.Masters(group); len(m) != 1 || m[0] != master {
		t.Fatalf("masters = %v, want only %s", names(m), master.Name)
	}
	rx0 := groupOf(t, backup).RxAdverts
	h.WaitUntil(t, 5*time.Second, backup.Name+" receiving adverts", func() bool {
		g := backup.Group(group)
		return g != nil && g.RxAdverts >= rx0+5
	})
	g := groupOf(t, backup)
	if g.State != "BACKUP" || g.MasterPriority != groupOf(t, master).Priority {
		t.Fatalf("%s: state %s, hears master priority %d, want BACKUP hearing %s's %d",
			backup.Name, g.State, g.MasterPriority, master.Name, groupOf(t, master).Priority)
	}
	t.Logf("settled: %s MASTER, %s BACKUP receiving its adverts (rx %d -> %d)", master.Name, backup.Name, rx0, g.RxAdverts)
}

// peersAlive waits until each node's pair link hears the other.
func peersAlive(t *testing.T, p *h.Pair) {
	t.Helper()
	for _, n := range p.Nodes {
		h.WaitUntil(t, 15*time.Second, n.Name+" hears its peer over the pair link", func() bool {
			st, err := n.Status()
			return err == nil && len(st.Peers) == 1 && st.Peers[0].Alive && st.Peers[0].Groups[group] != ""
		})
	}
}

// A master whose interface is deleted and created again (a new ifindex
// and MAC, the same address): FAULT while it is gone, the peer takes
// over; then the group reopens its socket, rejoins and preempts back,
// re-claiming and announcing the VIP from the new interface.
func TestFaultInterfaceRecreated(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	opens := groupOf(t, lb1).Reopens
	t0 := time.Now()
	lb1.Host.DelLink(t, "eth0")
	lb1.WaitState(group, "FAULT", 3*time.Second)
	if f := groupOf(t, lb1).Fault; !strings.Contains(f, "eth0") {
		t.Errorf("fault reason %q does not name eth0", f)
	}
	lb2.WaitState(group, "MASTER", 3*time.Second)
	takeover := time.Since(t0)

	t1 := time.Now()
	p.Reattach(lb1, true)
	moved := h.WaitNeigh(t, p.Client, p.VIP, lb1.Host.MAC)
	lb1.WaitState(group, "MASTER", 5*time.Second)
	back := time.Since(t1)
	settled(t, p, lb1)
	h.Within(t, moved, 5*time.Second, "client neighbour entry -> lb1's new MAC")
	t.Logf("eth0 deleted: lb2 MASTER after %s; re-created: lb1 MASTER again after %s", takeover.Round(time.Millisecond), back.Round(time.Millisecond))
	g := groupOf(t, lb1)
	if g.Reopens <= opens || g.Socket != "" {
		t.Errorf("socket_opens %d -> %d, socket error %q: want a new socket", opens, g.Reopens, g.Socket)
	}
	if !strings.Contains(lb1.Log(), "advert socket reopened") {
		t.Errorf("lb1 did not log reopening its advert socket")
	}
	t.Logf("re-created eth0: socket_opens %d -> %d, transitions %d", opens, g.Reopens, g.Transitions)
}

// A master's interface renamed away (eth0 -> eth9) and back: FAULT while
// eth0 does not exist, then it rejoins and preempts back.
func TestFaultInterfaceRenamed(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	opens := groupOf(t, lb1).Reopens
	lb1.Host.SetLinkName(t, "eth0", "eth9")
	lb1.WaitState(group, "FAULT", 3*time.Second)
	if f := groupOf(t, lb1).Fault; f != "interface eth0 does not exist" {
		t.Errorf("fault reason %q, want the missing eth0", f)
	}
	lb2.WaitState(group, "MASTER", 3*time.Second)
	if lb1.Host.HasAddr(t, "eth9", p.VIP) {
		t.Errorf("lb1 kept the VIP on the renamed interface")
	}
	time.Sleep(5 * p.Site.Advert)
	if s := lb1.State(group); s != "FAULT" {
		t.Fatalf("while eth0 is away lb1 is %s, want FAULT", s)
	}
	lb1.Host.SetLinkName(t, "eth9", "eth0")
	settled(t, p, lb1)
	if g := groupOf(t, lb1); g.Reopens <= opens {
		t.Errorf("socket_opens %d -> %d: no new socket after the rename back", opens, g.Reopens)
	}
}

// A director whose interface, or its node address alone, is missing when
// the daemon starts: the daemon runs, the group waits in FAULT naming
// what is missing, the pair link retries binding; once it appears the
// group joins as BACKUP and the pair link binds.
func TestFaultMissingAtStart(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault string
		take  func(t *testing.T, p *h.Pair, n *h.Node)
		give  func(t *testing.T, p *h.Pair, n *h.Node)
	}{
		{
			name:  "interface",
			fault: "interface eth0 does not exist",
			take:  func(t *testing.T, p *h.Pair, n *h.Node) { n.Host.DelLink(t, "eth0") },
			give:  func(t *testing.T, p *h.Pair, n *h.Node) { p.Reattach(n, true) },
		},
		{
			name:  "address",
			fault: "node address " + h.Addr2.String() + " is not configured on this host",
			take:  func(t *testing.T, p *h.Pair, n *h.Node) { n.Host.DelAddr(t, "eth0", netip.PrefixFrom(n.Addr, 24)) },
			give:  func(t *testing.T, p *h.Pair, n *h.Node) { n.Host.AddAddr(t, "eth0", netip.PrefixFrom(n.Addr, 24)) },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := h.NewPair(t, h.Site{})
			lb1, lb2 := p.Nodes[0], p.Nodes[1]
			tc.take(t, p, lb2)
			lb1.Start()
			lb2.Start() // returns once its control socket answers
			lb1.WaitState(group, "MASTER", 5*time.Second)
			lb2.WaitState(group, "FAULT", 5*time.Second)
			if f := groupOf(t, lb2).Fault; f != tc.fault {
				t.Errorf("fault reason %q, want %q", f, tc.fault)
			}
			h.WaitUntil(t, 5*time.Second, "lb2's pair link retrying", func() bool {
				return strings.Contains(lb2.Log(), "pair link: cannot bind yet; retrying")
			})
			if st, err := lb2.Status(); err != nil || !strings.Contains(st.PairError, "cannot assign requested address") {
				t.Errorf("status does not show the pair link's bind error: %v %+v", err, st)
			}
			time.Sleep(time.Second)
			if lb2.ExitCode() != -1 || lb2.State(group) != "FAULT" {
				t.Fatalf("lb2 exit %d, state %s: want running, in FAULT", lb2.ExitCode(), lb2.State(group))
			}

			t0 := time.Now()
			tc.give(t, p, lb2)
			lb2.WaitState(group, "BACKUP", 10*time.Second)
			joined := time.Since(t0)
			h.WaitUntil(t, 10*time.Second, "lb2's pair link bound", func() bool {
				return strings.Contains(lb2.Log(), "pair link listening")
			})
			if st, err := lb2.Status(); err != nil || st.PairError != "" {
				t.Errorf("the pair link's bind error stays in status after it bound: %v %+v", err, st)
			}
			peersAlive(t, p)
			t.Logf("%s missing at start: BACKUP %s after it appeared, pair link alive both ways after %s",
				tc.name, joined.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
			settled(t, p, lb1)
		})
	}
}

// Adverts dropped by the master's own firewall (sendmsg fails with
// EPERM): send errors are counted in status and metrics, the socket is
// replaced with backoff (not once per advert), the warning is rate
// limited, and the master stays MASTER (the backup becomes master too,
// the pair link reports it). Without the rule the pair settles again.
func TestFaultSendErrors(t *testing.T) {
	p := h.NewPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	lb1.Metrics = "127.0.0.1:9110"
	startNodes(t, p)
	before := *groupOf(t, lb1)
	h.Nft(t, lb1.Host, `table inet hvsend {
	chain out { type filter hook output priority 0; meta l4proto 112 drop; }
}`)
	t0 := time.Now()
	lb2.WaitState(group, "MASTER", 5*time.Second)

	time.Sleep(time.Until(t0.Add(3 * time.Second)))
	g := groupOf(t, lb1)
	errs, opens := g.SendErrors-before.SendErrors, g.Reopens-before.Reopens
	sent := int(3 * time.Second / p.Site.Advert)
	t.Logf("in 3 s (%d adverts due): %d send errors, %d new sockets", sent, errs, opens)
	if errs < uint64(sent)/3 {
		t.Errorf("%d send errors counted in 3 s, want most of the %d adverts", errs, sent)
	}
	if opens < 2 || opens > 8 {
		t.Errorf("%d new sockets in 3 s: want a handful (backoff from 100 ms), not none and not one per advert", opens)
	}
	body, err := lb1.Scrape()
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`havip_vrrp_send_errors_total\{group="front"\} (\d+)`).FindStringSubmatch(body)
	if m == nil || m[1] == "0" {
		t.Errorf("metrics: havip_vrrp_send_errors_total = %v, want > 0", m)
	}

	// The warning comes again after its 10 s rate limit, with the count
	// of what it left out.
	h.WaitUntil(t, 20*time.Second, "a second 'sending advert failed' warning", func() bool {
		return strings.Count(lb1.Log(), "sending advert failed") >= 2
	})
	lines, elapsed := strings.Count(lb1.Log(), "sending advert failed"), time.Since(t0)
	if bound := int(elapsed/(10*time.Second)) + 1; lines > bound {
		t.Errorf("%d 'sending advert failed' lines in %s, want at most %d", lines, elapsed.Round(time.Millisecond), bound)
	}
	if !strings.Contains(lb1.Log(), "suppressed_since_last=") {
		t.Errorf("the repeated warning does not say how many it left out")
	}
	g = groupOf(t, lb1)
	t.Logf("in %s: %d warning lines, %d send errors, %d new sockets", elapsed.Round(time.Millisecond), lines,
		g.SendErrors-before.SendErrors, g.Reopens-before.Reopens)
	if g.State != "MASTER" || strings.Contains(lb1.Log(), "to=FAULT") {
		t.Fatalf("lb1 is %s (fault %q): a master that cannot send must not go to FAULT", g.State, g.Fault)
	}

	h.Nft(t, lb1.Host, "delete table inet hvsend")
	settled(t, p, lb1)
}

// permanent reports whether ip is on n's eth0 with no lifetime (the
// kernel's valid_lft "forever", INFINITY_LIFE_TIME).
func permanent(t *testing.T, n *h.Node, ip netip.Addr) string {
	t.Helper()
	for _, a := range n.Host.AddrsOn(t, "eth0") {
		if got, ok := netip.AddrFromSlice(a.IP); ok && got.Unmap() == ip {
			if uint32(a.ValidLft) != 0xffffffff {
				return fmt.Sprintf("%s on %s has valid_lft %d s, want forever", ip, n.Name, a.ValidLft)
			}
			return ""
		}
	}
	return fmt.Sprintf("%s is not on %s's eth0", ip, n.Name)
}

// The address owner: a group whose VIP is lb1's own address (priority
// 255). havip never gives that address a lifetime, never releases it and
// never removes it as stale: SIGTERM, kill -9 and restarts leave it.
func TestFaultAddressOwner(t *testing.T) {
	p := h.NewPair(t, h.Site{VIPs: []string{netip.PrefixFrom(h.Addr1, 24).String()}})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	own := h.Addr1
	startNodes(t, p)
	if g := groupOf(t, lb1); g.Priority != 255 {
		t.Fatalf("lb1 owns the VIP but has priority %d, want 255", g.Priority)
	}
	time.Sleep(2 * time.Second) // the master's VIP refresh runs every vip_lifetime/3
	if why := permanent(t, lb1, own); why != "" {
		t.Fatalf("as master: %s", why)
	}

	lb1.Signal(syscall.SIGTERM)
	lb2.WaitState(group, "MASTER", 3*time.Second)
	if why := permanent(t, lb1, own); why != "" {
		t.Fatalf("after SIGTERM: %s", why)
	}
	// lb2 holds lb1's address now: only with accept_local does its kernel
	// deliver lb1's adverts (source: that address) when lb1 returns.
	if !strings.Contains(lb2.Log(), "set accept_local") {
		t.Errorf("lb2 did not set accept_local on eth0")
	}
	lb1.Start()
	lb1.WaitState(group, "MASTER", 5*time.Second)
	lb2.WaitState(group, "BACKUP", 5*time.Second)
	h.WaitUntil(t, 3*time.Second, "lb2 releasing the owner's address", func() bool { return !lb2.HasVIP(own) })

	lb1.Signal(syscall.SIGKILL)
	killed := time.Now()
	lb2.WaitState(group, "MASTER", 3*time.Second)
	time.Sleep(time.Until(killed.Add(7 * time.Second)))
	if why := permanent(t, lb1, own); why != "" {
		t.Fatalf("7 s after kill -9: %s", why)
	}
	lb1.Start()
	lb1.WaitState(group, "MASTER", 5*time.Second)
	if why := permanent(t, lb1, own); why != "" {
		t.Fatalf("after the restart: %s", why)
	}
	if strings.Contains(lb1.Log(), "removed stale VIPs") {
		t.Errorf("the restart removed VIPs as stale:\n%s", lb1.Log())
	}
	lb2.WaitState(group, "BACKUP", 5*time.Second)
	t.Logf("%s kept valid_lft forever as master, after SIGTERM, 7 s after kill -9 and after the restart", own)
}

// v6VIPs returns n IPv6 VIPs of one /64.
func v6VIPs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("2001:db8:51::%x/64", 0x100+i)
	}
	return out
}

// A group whose advert is bigger than an interface MTU the kernel allows
// for IPv6: 78 IPv6 VIPs are a 1296-byte advert. At MTU 1500 it works
// across the pair (the backup takes the big adverts, nothing dropped);
// with the master's MTU lowered to 1280 the group goes to FAULT with the
// MTU as its reason and the peer takes over; at 1500 again it is back.
func TestFaultMTU(t *testing.T) {
	const n, size = 78, 78*16 + 48
	p := h.NewPair(t, h.Site{VIPs: v6VIPs(n)})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	p.Client.AddAddr(t, "eth0", netip.MustParsePrefix("2001:db8:51::50/64"))
	for _, n := range p.Nodes {
		h.WaitLinkLocal(t, n.Host, "eth0")
	}
	startNodes(t, p)
	settled(t, p, lb1)
	if g := groupOf(t, lb2); len(g.Drops) != 0 {
		t.Fatalf("the backup dropped %d-byte adverts: %v", size, g.Drops)
	}

	t.Logf("%d IPv6 VIPs: %d-byte adverts, the backup received %d, dropped none", n, size, groupOf(t, lb2).RxAdverts)
	lb1.Host.SetMTU(t, "eth0", 1280)
	lb1.WaitState(group, "FAULT", 3*time.Second)
	want := fmt.Sprintf("an advert is %d bytes, more than the MTU 1280 of eth0", size)
	if f := groupOf(t, lb1).Fault; f != want {
		t.Errorf("fault %q, want %q", f, want)
	}
	lb2.WaitState(group, "MASTER", 3*time.Second)

	lb1.Host.SetMTU(t, "eth0", 1500)
	settled(t, p, lb1)
	if g := groupOf(t, lb2); len(g.Drops) != 0 {
		t.Errorf("drops on the backup: %v", g.Drops)
	}
}

// A notify hook that leaves a background child holding its stdout: each
// state change is still notified, in order, and SIGTERM ends the daemon
// well inside its 5 s bound (the bug this guards against stalled it 13 s).
func TestFaultNotifyBackgroundChild(t *testing.T) {
	// $0 is "hook"; havip appends group, state, priority as $1..$3. Each
	// node's hooks write to a directory of its own, named in its own
	// site file (hooks get none of the daemon's environment), that the
	// script user may write to.
	hook := `echo $$ >> "HOOK_DIR/pgids"; echo "$2" >> "HOOK_DIR/states"; sleep 30 &`
	p := h.NewPair(t, h.Site{ExtraGroup: fmt.Sprintf(`notify = ["/bin/sh", "-c", %q, "hook"]`, hook)})
	lb1 := p.Nodes[0]
	var states string
	for _, n := range p.Nodes {
		_, dir := scriptDirs(t)
		if n == lb1 {
			states = filepath.Join(dir, "states")
		}
		n.WriteConfig(strings.ReplaceAll(n.ReadConfig(), "HOOK_DIR", dir))
		t.Cleanup(func() {
			// Each hook ran in its own process group; end the sleeps
			// it left behind.
			b, _ := os.ReadFile(filepath.Join(dir, "pgids"))
			for _, f := range strings.Fields(string(b)) {
				var pg int
				if _, err := fmt.Sscan(f, &pg); err == nil && pg > 1 {
					syscall.Kill(-pg, syscall.SIGKILL)
				}
			}
		})
	}
	startNodes(t, p)
	for range 2 {
		lb1.Host.SetLinkDown(t, "eth0")
		lb1.WaitState(group, "FAULT", 3*time.Second)
		lb1.Host.SetLinkUp(t, "eth0")
		lb1.WaitState(group, "MASTER", 5*time.Second)
	}
	changes := regexp.MustCompile(`"state change".*? to=(\w+)`)
	logged := func() []string {
		var out []string
		for _, m := range changes.FindAllStringSubmatch(lb1.Log(), -1) {
			out = append(out, m[1])
		}
		return out
	}
	notified := func() []string {
		b, _ := os.ReadFile(states)
		return strings.Fields(string(b))
	}
	h.WaitUntil(t, 10*time.Second, "every state change notified", func() bool { return len(notified()) == len(logged()) })

	t0 := time.Now()
	lb1.Signal(syscall.SIGTERM)
	took := time.Since(t0)
	t.Logf("SIGTERM with hooks leaving children behind: exited after %s", took.Round(time.Millisecond))
	if took >= 5*time.Second {
		t.Errorf("SIGTERM took %s, want under 5 s", took)
	}
	want, got := logged(), notified()
	t.Logf("states logged %v, notified %v", want, got)
	if strings.Join(got, " ") != strings.Join(want, " ") || want[len(want)-1] != "INIT" {
		t.Errorf("notified %v, want every logged state change in order, ending with INIT: %v", got, want)
	}
}

// A zero-length realserver.json (a power cut while it was written) does
// not stop `havip realserver up`: the file is moved aside, logged, and up
// starts from the kernel's state.
func TestFaultEmptyRealserverState(t *testing.T) {
	lab.RequireRoot(t)
	host := lab.NewSwitch(t).AddHost(t, "rs", netip.MustParsePrefix("198.18.0.21/24"))
	dir := t.TempDir()
	path := filepath.Join(dir, "realserver.json")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	out := host.Run(t, h.Binary(t), "realserver", "up", "--mode", "dr", "--vip", "198.18.0.100", "--state-dir", dir)
	aside, _ := filepath.Glob(path + ".corrupt-*")
	if len(aside) != 1 {
		t.Fatalf("empty state file not moved aside (found %v); output:\n%s", aside, out)
	}
	if !strings.Contains(out, "moved aside") {
		t.Errorf("the move is not logged:\n%s", out)
	}
	if b, err := os.ReadFile(path); err != nil || len(b) == 0 {
		t.Fatalf("no new state file after up: %v (%d bytes)", err, len(b))
	}
	if !host.HasAddr(t, "lo", netip.MustParseAddr("198.18.0.100")) {
		t.Fatalf("up did not put the VIP on lo")
	}
	host.Run(t, h.Binary(t), "realserver", "down", "--mode", "dr", "--vip", "198.18.0.100", "--state-dir", dir)
	if host.HasAddr(t, "lo", netip.MustParseAddr("198.18.0.100")) {
		t.Fatalf("down left the VIP on lo")
	}
	t.Logf("moved aside to %s; up and down ran", filepath.Base(aside[0]))
}

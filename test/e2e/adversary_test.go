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
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/havip/havip/internal/ctl"
	h "github.com/havip/havip/test/e2e/harness"
)

// Bad input at odd moments, as an operator having a bad day and an
// attacker on the segment would send it: each probe asserts that it gets
// a clear error or a counted drop and that nothing running is lost.

// stopWithin sends SIGTERM to n and returns how long the daemon took to
// exit; the test fails if it is still running after bound.
func stopWithin(t *testing.T, n *h.Node, bound time.Duration) time.Duration {
	t.Helper()
	t0 := time.Now()
	if err := syscall.Kill(n.Pid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	h.WaitUntil(t, bound, n.Name+" exited after SIGTERM", n.Exited)
	return time.Since(t0)
}

// padded is cfg grown to about size bytes with comment lines: a valid
// site file that takes tens of milliseconds to load.
func padded(cfg string, size int) string {
	var b strings.Builder
	b.WriteString(cfg)
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "# padding %07d ..................................................\n", i)
	}
	return b.String()
}

// A SIGTERM in the middle of a SIGHUP storm stops the daemon gracefully at
// once, even when each reload takes a while (a site file near the size
// cap).
func TestAdversarySIGTERMInHUPStorm(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	lb1.WriteConfig(padded(lb1.ReadConfig(), 900<<10))
	pid := lb1.Pid()
	stop := make(chan struct{})
	done := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				done <- n
				return
			default:
			}
			if syscall.Kill(pid, syscall.SIGHUP) != nil {
				done <- n
				return
			}
			n++
		}
	}()
	time.Sleep(100 * time.Millisecond)
	added := h.WaitAddr(t, lb2.Host, p.VIP, true)
	t0 := time.Now()
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the storm goes on a while
	close(stop)
	sent := <-done
	h.WaitUntil(t, 3*time.Second, "lb1 exited after SIGTERM", lb1.Exited)
	// At most one reload (about 60 ms here) runs before the stop.
	took := h.Within(t, added, 3*time.Second, "the VIP on lb2").Sub(t0)
	t.Logf("SIGTERM among %d SIGHUPs: the VIP on lb2 after %s", sent, took.Round(time.Millisecond))
	if took > 500*time.Millisecond {
		t.Errorf("lb2 took the VIP %s after the SIGTERM, want a graceful handover within 500 ms", took)
	}
	if !strings.Contains(lb1.Log(), "msg=stopping signal=terminated") || !strings.Contains(lb1.Log(), "msg=stopped") {
		t.Errorf("lb1 did not stop gracefully on SIGTERM")
	}
	lb2.WaitState(group, "MASTER", time.Second)
}

// A SIGHUP storm while the daemon starts (here from 15 ms after exec,
// while it loads a site file near the size cap): every SIGHUP is a reload
// or coalesced into one, never the end of the daemon (which systemd, for
// a SIGHUP, would count as a clean exit and not restart); it comes up, and
// a SIGTERM stops it with exit code 0.
func TestAdversaryHUPStormAtStart(t *testing.T) {
	p := h.NewPair(t, h.Site{})
	lb1 := p.Nodes[0]
	lb1.WriteConfig(padded(lb1.ReadConfig(), 900<<10))
	cmd := exec.Command(h.Binary(t), "run", "-c", lb1.Config, "--node", lb1.Name, "--socket", lb1.Sock,
		"--state-dir", lb1.StateDir, "--metrics", "")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := lb1.Host.Start(cmd); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	sent := 0
	time.Sleep(15 * time.Millisecond) // the Go runtime is up; the site file is being read
	for t0 := time.Now(); time.Since(t0) < 500*time.Millisecond; sent++ {
		select {
		case <-exited:
			t.Fatalf("havip ended (%s) after %d SIGHUPs, %s into the storm:\n%s", cmd.ProcessState, sent, time.Since(t0), out.String())
		default:
		}
		_ = cmd.Process.Signal(syscall.SIGHUP)
		time.Sleep(200 * time.Microsecond)
	}
	h.WaitUntil(t, 5*time.Second, "havip answering after the storm", func() bool {
		_, err := ctl.Call(lb1.Sock, ctl.Request{Cmd: ctl.CmdPing}, time.Second)
		return err == nil
	})
	// SIGTERM with the storm still going: SIGHUPs after the shutdown do
	// not end the process either.
	storm := make(chan struct{})
	go func() {
		for {
			select {
			case <-exited:
				close(storm)
				return
			default:
			}
			_ = cmd.Process.Signal(syscall.SIGHUP)
			time.Sleep(200 * time.Microsecond)
		}
	}()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("havip did not stop within 5 s of SIGTERM")
	}
	<-storm
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("havip after %d SIGHUPs and a SIGTERM: %s, want exit 0:\n%s", sent, cmd.ProcessState, out.String())
	}
	t.Logf("%d SIGHUPs from the start, then SIGTERM: exit 0", sent)
}

// A site file that is a FIFO (or any file whose open blocks): SIGHUP is
// refused with a clear error, and a SIGTERM after it still stops the
// daemon.
func TestAdversaryReloadFIFO(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1 := p.Nodes[0]
	before := mustStatus(t, lb1)
	if err := os.Remove(lb1.Config); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(lb1.Config, 0o644); err != nil {
		t.Fatal(err)
	}
	lb1.Signal(syscall.SIGHUP)
	h.WaitUntil(t, 2*time.Second, "the refused reload in status", func() bool {
		st, err := lb1.Status()
		return err == nil && st.ReloadError != ""
	})
	st := mustStatus(t, lb1)
	t.Logf("reload error: %s", st.ReloadError)
	if !strings.Contains(st.ReloadError, lb1.Config) || !strings.Contains(st.ReloadError, "not a regular file") {
		t.Errorf("the reload error does not name the file and why: %q", st.ReloadError)
	}
	unchangedSince(t, lb1, before)
	took := stopWithin(t, lb1, 5*time.Second)
	t.Logf("SIGTERM after the reload of a FIFO: exited after %s", took.Round(time.Millisecond))
}

// noFlap asserts that master's adverts kept coming on backup's wire (no
// silence longer than twice the interval, over at least ten adverts) and
// that backup never left BACKUP since it had made transitions transitions.
func noFlap(t *testing.T, capt *h.Capture, master, backup *h.Node, transitions uint64) {
	t.Helper()
	var as []h.Advert
	h.WaitUntil(t, 5*time.Second, "ten adverts captured", func() bool {
		var err error
		if as, err = capt.Adverts(master.Addr, 51); err != nil {
			t.Fatal(err)
		}
		return len(as) >= 10
	})
	gap, n := h.LongestGap(as)
	t.Logf("%d adverts of %s on %s's wire, longest gap %s", n, master.Name, backup.Name, gap)
	if gap.Ratio() > 2 {
		t.Errorf("%s's adverts stopped for %s", master.Name, gap)
	}
	if g := groupOf(t, backup); g.State != "BACKUP" || g.Transitions != transitions {
		t.Errorf("%s: %s after %d transitions, want BACKUP after %d", backup.Name, g.State, g.Transitions, transitions)
	}
}

// Four root clients each send a 100 MB request line: each is refused as
// too large, the daemon's memory stays small, and the master's adverts
// never falter.
func TestAdversaryControlSocketHugeRequests(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	capt := h.CaptureAdverts(t, lb2.Host, "eth0")
	transitions := groupOf(t, lb2).Transitions
	before := rssKB(t, lb1.Pid())
	answers := make(chan string, 4)
	for range 4 {
		go func() {
			c, err := net.Dial("unix", lb1.Sock)
			if err != nil {
				answers <- err.Error()
				return
			}
			defer c.Close()
			chunk := []byte(`{"cmd":"status","groups":["` + strings.Repeat("a", 1<<20))
			for range 100 {
				_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
				if _, err := c.Write(chunk); err != nil {
					break // the daemon stopped reading
				}
				chunk = chunk[:0]
				chunk = append(chunk, strings.Repeat("a", 1<<20)...)
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			b, _ := io.ReadAll(c)
			answers <- string(b)
		}()
	}
	m := before
	for got := 0; got < 4; {
		select {
		case a := <-answers:
			got++
			if !strings.Contains(a, `"error":"bad request: larger than`) {
				t.Errorf("answer to a 100 MB request: %.200q, want it refused as too large", a)
			}
		case <-time.After(5 * time.Millisecond):
			m = max(m, rssKB(t, lb1.Pid()))
		}
	}
	t.Logf("havip's RSS: %d kB before, %d kB at most during the requests", before, m)
	if m > before+32<<10 {
		t.Errorf("RSS grew from %d kB to %d kB for requests it refuses", before, m)
	}
	noFlap(t, capt, lb1, lb2, transitions)
}

// Control-socket clients that hang (connected and silent, or asking for
// a status they never read, here one of a few hundred KB after a refused
// reload with long messages) do not hold up the shutdown.
func TestAdversaryControlSocketStuckClients(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	var junk strings.Builder
	for i := range 120 {
		fmt.Fprintf(&junk, "%q = 1\n", strings.Repeat("<", 400)+strconv.Itoa(i))
	}
	lb1.WriteConfig(strings.Replace(lb1.ReadConfig(), "[site]\n", "[site]\n"+junk.String(), 1))
	if _, code := lb1.Reload(); code != 1 {
		t.Fatalf("reload of a file with 120 unknown keys: exit %d, want 1", code)
	}
	b, err := json.Marshal(mustStatus(t, lb1))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("status is %d KB", len(b)>>10)
	for i := range 25 {
		c, err := net.Dial("unix", lb1.Sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if i < 5 {
			if _, err := c.Write([]byte(`{"cmd":"status"}`)); err != nil {
				t.Fatal(err)
			}
		}
	}
	time.Sleep(100 * time.Millisecond) // the daemon is blocked writing the statuses
	added := h.WaitAddr(t, lb2.Host, p.VIP, true)
	took := stopWithin(t, lb1, 3*time.Second)
	t.Logf("SIGTERM with 20 silent clients and 5 that do not read: exited after %s", took.Round(time.Millisecond))
	h.Within(t, added, time.Second, "the VIP on lb2")
}

// Renaming a group (nothing else: the same interface, VRID and VIPs) is
// a rolling push like any other: the renamed group takes over the state
// of the old one, the VIP never leaves lb1 and lb2 never holds it.
func TestAdversaryReloadRenameGroup(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	watch := h.WatchVIPs(t, []netip.Addr{p.VIP}, lb1.Host, lb2.Host)
	capt := h.CaptureAdverts(t, lb2.Host, "eth0")
	// A new instance taking over the old one's state logs it as a state
	// change: those are not changes.
	changes := func(n *h.Node) int {
		return strings.Count(n.Log(), `msg="state change"`) - strings.Count(n.Log(), "took over the state of the instance it replaces")
	}
	before := [2]int{changes(lb1), changes(lb2)}
	next := strings.Replace(lb1.ReadConfig(), `name = "front"`, `name = "web"`, 1)
	for _, n := range p.Nodes {
		n.WriteConfig(next)
		out, code := n.Reload()
		if code != 0 || !strings.Contains(out, "group web: renamed from front") {
			t.Errorf("reload on %s: exit %d, want the rename:\n%s", n.Name, code, out)
		}
		time.Sleep(time.Second)
	}
	lb1.WaitState("web", "MASTER", time.Second)
	lb2.WaitState("web", "BACKUP", time.Second)
	if ev := watch.Events(); len(ev) != 1 {
		t.Errorf("the VIP moved during the rename: %v", ev)
	}
	as, _ := capt.Adverts(lb1.Addr, 51)
	gap, n := h.LongestGap(as)
	t.Logf("%d adverts of lb1, longest gap %s", n, gap)
	if gap.Ratio() > 2 || slices.ContainsFunc(as, func(a h.Advert) bool { return a.Priority == 0 }) {
		t.Errorf("lb1 stopped advertising or resigned during the rename (longest gap %s)", gap)
	}
	for i, n := range p.Nodes {
		if d := changes(n) - before[i]; d != 0 {
			t.Errorf("%s: %d state changes during the rename, want none", n.Name, d)
		}
	}
}

// A reload that moves a VIP from one group to another, both master on
// lb1 and on the same interface, never takes the VIP off lb1: the group
// that lost it must not delete it after the group that gained it has
// claimed it. Moved back and forth four times, pushed to both nodes;
// then removed, it goes.
func TestAdversaryReloadMoveVIPBetweenGroups(t *testing.T) {
	moved := netip.MustParseAddr("198.18.0.120")
	p := h.NewPair(t, h.Site{VIPs: []string{h.DefaultVIP, "198.18.0.120/24"}, Extra: secondGroup})
	startNodes(t, p)
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	lb1.WaitState("second", "MASTER", 5*time.Second)
	lb2.WaitState("second", "BACKUP", time.Second)
	watch := h.WatchVIPs(t, []netip.Addr{moved}, lb1.Host, lb2.Host)
	cfg := lb1.ReadConfig()
	next := strings.Replace(cfg, `vips = ["198.18.0.100/24", "198.18.0.120/24"]`, `vips = ["198.18.0.100/24"]`, 1)
	next = strings.Replace(next, `vips = ["198.18.0.110/24"]`, `vips = ["198.18.0.110/24", "198.18.0.120/24"]`, 1)
	for range 4 {
		for _, n := range p.Nodes {
			n.WriteConfig(next)
			if out, code := n.Reload(); code != 0 || !strings.Contains(out, "198.18.0.120") {
				t.Fatalf("reload on %s: exit %d\n%s", n.Name, code, out)
			}
		}
		time.Sleep(300 * time.Millisecond)
		cfg, next = next, cfg
	}
	time.Sleep(time.Second)
	if ev := watch.Events(); len(ev) != 1 {
		t.Errorf("198.18.0.120 left lb1 while it moved between groups: %v", ev)
	}
	for _, g := range []string{group, "second"} {
		if m := p.Masters(g); len(m) != 1 || m[0] != lb1 {
			t.Errorf("masters of %s: %v, want lb1", g, names(m))
		}
	}
	// Removed from both groups, it goes.
	gone := strings.Replace(cfg, `, "198.18.0.120/24"]`, `]`, 1)
	lb1.WriteConfig(gone)
	if out, code := lb1.Reload(); code != 0 {
		t.Fatalf("reload on lb1: exit %d\n%s", code, out)
	}
	h.WaitUntil(t, time.Second, "198.18.0.120 released by lb1", func() bool { return !lb1.HasVIP(moved) })
}

// A VIP deleted behind the master's back (an operator, a network manager
// reconfiguring the interface) is put back at once, not at the next
// lifetime refresh, and nothing changes state.
func TestAdversaryVIPDeletedByHand(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	before := [2]*ctl.GroupStatus{groupOf(t, lb1), groupOf(t, lb2)}
	for range 3 {
		added := h.WaitAddr(t, lb1.Host, p.VIP, true)
		t0 := time.Now()
		lb1.Host.DelAddr(t, "eth0", netip.MustParsePrefix(h.DefaultVIP))
		back := h.Within(t, added, 5*time.Second, "the VIP back on lb1").Sub(t0)
		t.Logf("the VIP was back on lb1 %s after it was deleted", back.Round(time.Microsecond))
		if back > 100*time.Millisecond {
			t.Errorf("the VIP was put back %s after it was deleted, want within 100 ms", back)
		}
		time.Sleep(300 * time.Millisecond)
	}
	for i, n := range p.Nodes {
		if g := groupOf(t, n); g.State != before[i].State || g.Transitions != before[i].Transitions {
			t.Errorf("%s: %s after %d transitions, was %s after %d", n.Name, g.State, g.Transitions, before[i].State, before[i].Transitions)
		}
	}
	if lb2.HasVIP(p.VIP) {
		t.Errorf("lb2 holds the VIP")
	}
}

// A reload that restarts a group (a new VRID) and drops one of its VIPs:
// the master releases the dropped VIP with the restart, not when its
// lifetime runs out.
func TestAdversaryReloadRestartDropsVIP(t *testing.T) {
	dropped := netip.MustParseAddr("198.18.0.120")
	p := startPair(t, h.Site{VIPs: []string{h.DefaultVIP, "198.18.0.120/24"}})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	next := strings.Replace(lb1.ReadConfig(), `vips = ["198.18.0.100/24", "198.18.0.120/24"]`, `vips = ["198.18.0.100/24"]`, 1)
	next = strings.Replace(next, "vrid = 51", "vrid = 52", 1)
	// lb2 first: its restart waits for lb1, whose own then happens at once.
	for _, n := range []*h.Node{lb2, lb1} {
		n.WriteConfig(next)
		if out, code := n.Reload(); code != 0 || !strings.Contains(out, "vrid 51 -> 52") {
			t.Fatalf("reload on %s: exit %d\n%s", n.Name, code, out)
		}
	}
	t0 := time.Now()
	h.WaitUntil(t, 10*time.Second, "198.18.0.120 released by lb1", func() bool { return !lb1.HasVIP(dropped) })
	took := time.Since(t0)
	t.Logf("198.18.0.120 left lb1 %s after the reload", took.Round(time.Millisecond))
	if took > 200*time.Millisecond {
		t.Errorf("the dropped VIP stayed on lb1 for %s after the reload, want it released with the restart", took)
	}
	lb1.WaitState(group, "MASTER", time.Second)
	if !lb1.HasVIP(p.VIP) {
		t.Errorf("lb1 lost the VIP it keeps")
	}
}

// More reload requests than the controller's event queue holds, each
// slow (a site file near the size cap), do not starve the groups: with
// them queued on the backup, a kill -9 of the master still has the backup
// take over and advertise, and SIGTERM still stops it.
func TestAdversaryControlRequestFlood(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	lb2.WriteConfig(padded(lb2.ReadConfig(), 900<<10))
	capt := h.CaptureAdverts(t, lb1.Host, "eth0")
	for range 1300 {
		go func() { _, _ = ctl.Call(lb2.Sock, ctl.Request{Cmd: ctl.CmdReload}, 90*time.Second) }()
	}
	time.Sleep(time.Second) // queued
	added := h.WaitAddr(t, lb2.Host, p.VIP, true)
	t0 := time.Now()
	lb1.Signal(syscall.SIGKILL)
	took := h.Within(t, added, 5*time.Second, "the VIP on lb2").Sub(t0)
	h.WaitUntil(t, time.Second, "lb2 advertising as master", func() bool {
		as, _ := capt.Adverts(lb2.Addr, 51)
		return len(as) >= 3
	})
	t.Logf("kill -9 of lb1 with 1300 reloads queued on lb2: the VIP on lb2 after %s, and its adverts", took.Round(time.Millisecond))
	stopped := stopWithin(t, lb2, 3*time.Second)
	t.Logf("then SIGTERM stopped lb2 in %s", stopped.Round(time.Millisecond))
}

// A rolling push of a typo in an interface name (one this host does not
// have: the group's own, or a weight-0 track's) is refused on each node
// with the reason: applied, it put the working group in FAULT on both, and
// the VIP had no owner.
func TestAdversaryReloadMissingInterface(t *testing.T) {
	for _, tc := range []struct{ name, from, to string }{
		{"interface", `interface = "eth0"`, `interface = "eht0"`},
		{"tracked interface", `garp_interval = "20ms"`, "garp_interval = \"20ms\"\n[[vrrp.track]]\ninterface = \"eht0\"\nweight = 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startPair(t, h.Site{})
			lb1, lb2 := p.Nodes[0], p.Nodes[1]
			before := [2]*ctl.Status{mustStatus(t, lb1), mustStatus(t, lb2)}
			next := strings.Replace(lb1.ReadConfig(), tc.from, tc.to, 1)
			for _, n := range p.Nodes {
				n.WriteConfig(next)
				out, code := n.Reload()
				t.Logf("%s: havip reload:\n%s", n.Name, out)
				if code != 1 || !strings.Contains(out, "interface eht0 does not exist") {
					t.Errorf("reload on %s: exit %d, want 1 naming the missing interface", n.Name, code)
				}
			}
			time.Sleep(time.Second)
			t.Logf("lb1 %s, lb2 %s; the VIP on lb1 %v, on lb2 %v", lb1.State(group), lb2.State(group), lb1.HasVIP(p.VIP), lb2.HasVIP(p.VIP))
			for i, n := range p.Nodes {
				unchangedSince(t, n, before[i])
			}
			if !lb1.HasVIP(p.VIP) || lb2.HasVIP(p.VIP) {
				t.Errorf("VIP on lb1 %v, on lb2 %v: want lb1 only", lb1.HasVIP(p.VIP), lb2.HasVIP(p.VIP))
			}
		})
	}
}

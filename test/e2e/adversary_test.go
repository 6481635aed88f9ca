package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/havip/havip/internal/ctl"
	"github.com/havip/havip/internal/vrrp"
	"github.com/havip/havip/internal/vrrpnet"
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

// bare is havip run for a node, started without the harness (whose
// Start waits for the control socket): for signals at the very start.
type bare struct {
	cmd    *exec.Cmd
	out    bytes.Buffer // read it only once exited is closed
	exited chan struct{}
}

// startBare starts havip run for n; the end of the test kills it.
func startBare(t *testing.T, n *h.Node) *bare {
	t.Helper()
	b := &bare{exited: make(chan struct{})}
	b.cmd = exec.Command(h.Binary(t), "run", "-c", n.Config, "--node", n.Name, "--socket", n.Sock,
		"--state-dir", n.StateDir, "--metrics", "")
	b.cmd.Stdout, b.cmd.Stderr = &b.out, &b.out
	if err := n.Host.Start(b.cmd); err != nil {
		t.Fatal(err)
	}
	go func() { b.cmd.Wait(); close(b.exited) }()
	t.Cleanup(func() { b.cmd.Process.Kill(); <-b.exited })
	return b
}

// stopped waits up to timeout for the process to end, and says whether
// it did.
func (b *bare) stopped(timeout time.Duration) bool {
	select {
	case <-b.exited:
		return true
	case <-time.After(timeout):
		return false
	}
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
	d := startBare(t, lb1)
	cmd, exited := d.cmd, d.exited
	sent := 0
	time.Sleep(15 * time.Millisecond) // the Go runtime is up; the site file is being read
	for t0 := time.Now(); time.Since(t0) < 500*time.Millisecond; sent++ {
		select {
		case <-exited:
			t.Fatalf("havip ended (%s) after %d SIGHUPs, %s into the storm:\n%s", cmd.ProcessState, sent, time.Since(t0), d.out.String())
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
	if !d.stopped(5 * time.Second) {
		t.Fatalf("havip did not stop within 5 s of SIGTERM")
	}
	<-storm
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("havip after %d SIGHUPs and a SIGTERM: %s, want exit 0:\n%s", sent, cmd.ProcessState, d.out.String())
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

// sum16 is the Internet checksum of b, with initial sum.
func sum16(sum uint32, b []byte) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// rechecksum fixes the checksum of a VRRPv3 message over IPv4 from src to
// dst after a test changed its bytes.
func rechecksum(b []byte, src, dst netip.Addr) []byte {
	b[6], b[7] = 0, 0
	s, d := src.As4(), dst.As4()
	pseudo := append(append(s[:], d[:]...), 0, 112, byte(len(b)>>8), byte(len(b)))
	ck := sum16(uint32(^sum16(0, pseudo)), b)
	b[6], b[7] = byte(ck>>8), byte(ck)
	return b
}

// Malformed and foreign VRRP packets from a host on the segment: each is
// a drop counted under its reason on both directors, and nothing changes
// state.
func TestAdversaryMalformedAdverts(t *testing.T) {
	p := startPair(t, h.Site{})
	var conn vrrpnet.Conn
	var ttl64 *ipv4.PacketConn
	if err := p.Client.Do(func() error {
		var err error
		if conn, err = vrrpnet.Listen(vrrpnet.Options{Interface: "eth0", Multicast: true}); err != nil {
			return err
		}
		ic, err := net.ListenIP("ip4:112", &net.IPAddr{IP: net.IPv4zero})
		if err != nil {
			return err
		}
		ttl64 = ipv4.NewPacketConn(ic)
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		return errors.Join(ttl64.SetMulticastTTL(64), ttl64.SetMulticastInterface(ifi))
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	defer ttl64.Close()
	src, dst := h.ClientAddr, vrrpnet.Group4
	advert := func(f func(*vrrp.Packet)) []byte {
		pk := vrrp.Packet{Version: 3, VRID: 51, Priority: 254, Interval: p.Site.Advert, Addrs: []netip.Addr{p.VIP}}
		f(&pk)
		b, err := pk.Marshal(src, dst)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	same := func(*vrrp.Packet) {}
	var many []netip.Addr
	for i := range 255 {
		many = append(many, netip.AddrFrom4([4]byte{10, 9, byte(i / 250), byte(i%250 + 1)}))
	}
	cases := []struct {
		name, reason string
		b            []byte
	}{
		{"cut after 5 bytes", "truncated", advert(same)[:5]},
		{"count says 2, carries 1", "truncated", func() []byte { b := advert(same); b[3] = 2; return b }()},
		{"wrong checksum", "checksum", func() []byte { b := advert(same); b[7] ^= 0xff; return b }()},
		{"version 4", "version", rechecksum(func() []byte { b := advert(same); b[0] = 0x41; return b }(), src, dst)},
		{"VRRPv2", "version", advert(func(pk *vrrp.Packet) { pk.Version, pk.Interval = 2, time.Second })},
		{"type 2", "type", rechecksum(func() []byte { b := advert(same); b[0] = 0x32; return b }(), src, dst)},
		{"interval 0", "interval", rechecksum(func() []byte { b := advert(same); b[4], b[5] = 0, 0; return b }(), src, dst)},
		{"255 other addresses", "addr_list", advert(func(pk *vrrp.Packet) { pk.Addrs = many })},
	}
	before := map[string]*ctl.GroupStatus{}
	strangers := map[string]uint64{} // drops of the interface's socket: VRIDs no group runs
	for _, n := range p.Nodes {
		before[n.Name] = groupOf(t, n)
		strangers[n.Name] = socketOf(t, n, "eth0", "inet").Drops["vrid"]
	}
	const copies = 3
	// Another VRID: no group takes it, the interface's socket counts it.
	for range copies {
		if err := conn.WriteTo(advert(func(pk *vrrp.Packet) { pk.VRID = 52 }), src, dst); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]uint64{"ttl": copies}
	for _, c := range cases {
		want[c.reason] += copies
		for range copies {
			if err := conn.WriteTo(c.b, src, dst); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
		}
	}
	// Priority 254, the right list, but sent with TTL 64 (from off the
	// segment, RFC 5798 5.1.1.3).
	for range copies {
		if _, err := ttl64.WriteTo(advert(same), nil, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range p.Nodes {
		h.WaitUntil(t, 2*time.Second, n.Name+" counting every drop", func() bool {
			g := n.Group(group)
			for r, k := range want {
				if g == nil || g.Drops[r]-before[n.Name].Drops[r] < k {
					return false
				}
			}
			return true
		})
		g := groupOf(t, n)
		was := before[n.Name]
		for r, k := range g.Drops {
			if k-was.Drops[r] != want[r] {
				t.Errorf("%s: %d drops for %s, want %d", n.Name, k-was.Drops[r], r, want[r])
			}
		}
		if g.State != was.State || g.Transitions != was.Transitions {
			t.Errorf("%s: %s after %d transitions, was %s after %d", n.Name, g.State, g.Transitions, was.State, was.Transitions)
		}
		if d := socketOf(t, n, "eth0", "inet").Drops["vrid"] - strangers[n.Name]; d != copies {
			t.Errorf("%s: eth0's socket counted %d adverts for VRID 52 (no group runs it), want %d", n.Name, d, copies)
		}
		t.Logf("%s: %s, drops %v", n.Name, g.State, g.Drops)
	}
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

// Status, metrics and reloads asked in a tight loop on both nodes neither
// stall the master's adverts nor fail, and a failover drill in the middle
// of it completes.
func TestAdversaryControlStorm(t *testing.T) {
	p := h.NewPair(t, h.Site{})
	for _, n := range p.Nodes {
		n.Metrics = "127.0.0.1:9110"
	}
	startNodes(t, p)
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	capt := h.CaptureAdverts(t, lb2.Host, "eth0")
	transitions := groupOf(t, lb2).Transitions
	stop := make(chan struct{})
	var calls, failed atomic.Int64
	var wg sync.WaitGroup
	for _, n := range p.Nodes {
		for _, ask := range []func() error{
			func() error { _, err := ctl.Call(n.Sock, ctl.Request{Cmd: ctl.CmdStatus}, 2*time.Second); return err },
			func() error { _, err := n.Scrape(); return err },
			func() error { _, err := ctl.Call(n.Sock, ctl.Request{Cmd: ctl.CmdReload}, 2*time.Second); return err },
		} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					calls.Add(1)
					if err := ask(); err != nil {
						failed.Add(1)
						t.Logf("%s: %v", n.Name, err)
					}
				}
			}()
		}
	}
	time.Sleep(2 * time.Second)
	noFlap(t, capt, lb1, lb2, transitions)
	if out, code := lb1.Run("failover"); code != 0 {
		t.Errorf("havip failover under the storm: exit %d\n%s", code, out)
	}
	lb2.WaitState(group, "MASTER", time.Second)
	close(stop)
	wg.Wait()
	t.Logf("%d calls, %d failed", calls.Load(), failed.Load())
	if failed.Load() > 0 {
		t.Errorf("%d of %d calls failed", failed.Load(), calls.Load())
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

// Bad requests on the control socket each get a clear error, and the
// daemon answers the next one.
func TestAdversaryControlSocketBadRequests(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1 := p.Nodes[0]
	for _, tc := range []struct{ req, answer string }{
		{"", `"error":"bad request: EOF"`},
		{"{", `"error":"bad request: unexpected EOF"`},
		{"garbage\n", `"error":"bad request: invalid character 'g'`},
		{`[1,2,3]`, `"error":"bad request: json: cannot unmarshal array`},
		{`{"cmd":"status","groups":5}`, `"error":"bad request: json: cannot unmarshal number`},
		{`{"cmd":"halt"}`, `"error":"unknown command \"halt\""`},
		{`{"cmd":"failover","groups":["nope"]}`, `"error":"no group named \"nope\""`},
	} {
		c, err := net.Dial("unix", lb1.Sock)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write([]byte(tc.req))
		_ = c.(*net.UnixConn).CloseWrite()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(c)
		c.Close()
		if err != nil || !strings.Contains(string(b), `"ok":false`) || !strings.Contains(string(b), tc.answer) {
			t.Errorf("request %q: answer %q (%v), want %s", tc.req, b, err, tc.answer)
		}
	}
	if g := groupOf(t, lb1); g.State != "MASTER" {
		t.Errorf("lb1 is %s after the bad requests", g.State)
	}
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

// A SIGHUP with the site file broken in any way (gone, a directory, a
// symlink loop, over the size cap, cut short, empty, binary) is refused
// with a message that names the file and the problem; the running
// configuration stays.
func TestAdversaryReloadBrokenFiles(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1 := p.Nodes[0]
	good := lb1.ReadConfig()
	before := mustStatus(t, lb1)
	write := func(b string) func() error { return func() error { return os.WriteFile(lb1.Config, []byte(b), 0o644) } }
	for _, tc := range []struct {
		name, want string
		make       func() error
	}{
		{"gone", "no such file or directory", func() error { return nil }},
		{"a directory", "not a regular file", func() error { return os.Mkdir(lb1.Config, 0o755) }},
		{"a symlink loop", "too many levels of symbolic links", func() error { return os.Symlink(lb1.Config, lb1.Config) }},
		{"17 MB", "the limit is 16 MiB", write(padded(good, 17<<20))},
		{"cut short", "unexpected EOF", write(good[:strings.Index(good, "[[node]]")+len("[[node]]\nname")])},
		{"empty", "a [site] table with a name is required", write("")},
		{"binary", "files cannot contain NULL bytes", write("\x00\xff[site]\x00")},
	} {
		if err := os.RemoveAll(lb1.Config); err != nil {
			t.Fatal(err)
		}
		if err := tc.make(); err != nil {
			t.Fatal(err)
		}
		out, code := lb1.Run("reload", "-c", lb1.Config)
		if code != 1 || !strings.Contains(out, lb1.Config) || !strings.Contains(out, tc.want) {
			t.Errorf("%s: havip reload exit %d, want 1 naming the file and %q:\n%s", tc.name, code, tc.want, out)
		}
		lb1.Signal(syscall.SIGHUP)
		h.WaitUntil(t, 2*time.Second, tc.name+": the refusal in status", func() bool {
			st, err := lb1.Status()
			return err == nil && st.LastReload != nil && !st.LastReload.Applied && strings.Contains(st.ReloadError, tc.want)
		})
	}
	if err := os.RemoveAll(lb1.Config); err != nil {
		t.Fatal(err)
	}
	lb1.WriteConfig(good)
	unchangedSince(t, lb1, before)
}

// The master's interface flapping down and up fifty times within a
// fraction of a second, then its MTU jumping between 68 and 1468: the pair
// settles on lb1, the VIP on lb1 only.
func TestAdversaryLinkFlapStorm(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1 := p.Nodes[0]
	for i := range 50 {
		lb1.Host.SetLinkDown(t, "eth0")
		time.Sleep(time.Duration(i%7) * time.Millisecond)
		lb1.Host.SetLinkUp(t, "eth0")
		time.Sleep(time.Duration(i%5) * 3 * time.Millisecond)
	}
	for i := range 30 {
		lb1.Host.SetMTU(t, "eth0", 68+i%3*700)
		time.Sleep(time.Duration(i%4) * time.Millisecond)
	}
	lb1.Host.SetMTU(t, "eth0", 1500)
	settled(t, p, lb1)
}

// The master's own address removed and added again: FAULT meanwhile, the
// peer takes over; then the pair settles back and the pair link hears both
// ways again.
func TestAdversaryNodeAddressRemoved(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	peersAlive(t, p)
	own := netip.PrefixFrom(lb1.Addr, 24)
	lb1.Host.DelAddr(t, "eth0", own)
	lb1.WaitState(group, "FAULT", 3*time.Second)
	lb2.WaitState(group, "MASTER", 3*time.Second)
	if f := groupOf(t, lb1).Fault; !strings.Contains(f, lb1.Addr.String()) {
		t.Errorf("fault %q does not name the missing address", f)
	}
	time.Sleep(time.Second)
	lb1.Host.AddAddr(t, "eth0", own)
	settled(t, p, lb1)
	peersAlive(t, p)
}

// Reloads while a restart waits for the peer: a newer target replaces
// the waiting one, going back to what runs cancels it, and the last one
// happens when the peer runs it too.
func TestAdversaryReloadWhilePending(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	base := lb1.ReadConfig()
	vrid := func(v int) string { return strings.Replace(base, "vrid = 51", fmt.Sprintf("vrid = %d", v), 1) }
	for _, step := range []struct {
		vrid    int
		out     string
		pending bool
	}{
		{52, "restart (vrid 51 -> 52) waits until the peer runs it", true},
		{53, "restart (vrid 51 -> 53) waits until the peer runs it", true},
		{51, "no changes", false},
		{53, "restart (vrid 51 -> 53) waits until the peer runs it", true},
	} {
		lb1.WriteConfig(vrid(step.vrid))
		out, code := lb1.Reload()
		g := groupOf(t, lb1)
		if code != 0 || !strings.Contains(out, step.out) || (g.Pending != "") != step.pending || g.VRID != 51 {
			t.Fatalf("reload to vrid %d: exit %d, vrid %d, pending %q:\n%s", step.vrid, code, g.VRID, g.Pending, out)
		}
	}
	lb2.WriteConfig(vrid(53))
	if out, code := lb2.Reload(); code != 0 {
		t.Fatalf("reload on lb2: exit %d\n%s", code, out)
	}
	h.WaitUntil(t, 3*time.Second, "lb1 on vrid 53", func() bool {
		g := lb1.Group(group)
		return g != nil && g.VRID == 53 && g.Pending == ""
	})
	settled(t, p, lb1)
}

// SIGTERM (twice) at any moment of the start: the daemon ends at once and
// leaves no VIP behind; once it runs (here from 50 ms), with exit code 0.
func TestAdversarySIGTERMAtStart(t *testing.T) {
	p := h.NewPair(t, h.Site{})
	lb1 := p.Nodes[0]
	for _, after := range []time.Duration{0, time.Millisecond, 5 * time.Millisecond, 50 * time.Millisecond, 150 * time.Millisecond, 400 * time.Millisecond} {
		d := startBare(t, lb1)
		time.Sleep(after)
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		if !d.stopped(3 * time.Second) {
			t.Fatalf("SIGTERM %s after the start: still running after 3 s", after)
		}
		if after >= 50*time.Millisecond && d.cmd.ProcessState.ExitCode() != 0 {
			t.Errorf("SIGTERM %s after the start: %s, want exit 0:\n%s", after, d.cmd.ProcessState, d.out.String())
		}
		if lb1.HasVIP(p.VIP) {
			t.Fatalf("SIGTERM %s after the start left the VIP behind", after)
		}
	}
}

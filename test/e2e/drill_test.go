package e2e

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	h "github.com/havip/havip/test/e2e/harness"
	"github.com/havip/havip/test/lab"
)

// vipKept checks that the VIP never left lb1 while the watch ran.
func vipKept(t *testing.T, w *h.VIPWatch, vip netip.Addr, lb1 *h.Node) {
	t.Helper()
	for _, e := range w.Events() {
		if strings.Contains(e, "lb1 -") {
			t.Errorf("the VIP left lb1 during a refused drill: %s (events %v)", e, w.Events())
		}
	}
	if !slices.Contains(w.Holders(vip), "lb1") || !lb1.HasVIP(vip) {
		t.Errorf("after the refused drill the VIP is on %v, want lb1", w.Holders(vip))
	}
	if errs := w.Errors(); len(errs) > 0 {
		t.Errorf("the VIP watch lost messages: %v", errs)
	}
}

// (a) A drill whose peer's daemon was killed a second before refuses,
// exit 2, and the VIP never leaves the master.
func TestDrillDeadPeer(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	w := h.WatchVIPs(t, []netip.Addr{p.VIP}, lb1.Host, lb2.Host)
	lb2.Signal(syscall.SIGKILL)
	time.Sleep(time.Second)
	out, code := lb1.Run("failover")
	t.Logf("havip failover with the peer killed 1 s before (exit %d):\n%s", code, out)
	if code != 2 || !strings.Contains(out, "drill refused") || !strings.Contains(out, "peer lb2 is not alive on the pair link") {
		t.Errorf("havip failover: exit %d, want 2 and a refusal because the peer is dead", code)
	}
	time.Sleep(5 * p.Site.Advert)
	if s := lb1.State(group); s != "MASTER" {
		t.Errorf("lb1 is %s after the refused drill, want MASTER", s)
	}
	vipKept(t, w, p.VIP, lb1)
	if ev, _ := lb1.Run("events"); !strings.Contains(ev, `"kind":"drill","fields":{"groups":["front"],"peer":"lb2","refusals":{"front":"peer lb2 is not alive on the pair link`) {
		t.Errorf("havip events lacks the refused drill:\n%s", ev)
	}
}

// (b) A drill whose peer is not ready (in FAULT: its weight-0 tracked
// uplink is down) refuses, exit 2, naming the reason, and the VIP never
// leaves the master.
func TestDrillUnreadyPeer(t *testing.T) {
	p := h.NewPair(t, h.Site{ExtraGroup: "[[vrrp.track]]\ninterface = \"up0\"\nweight = 0\n"})
	for _, n := range p.Nodes {
		addUplink(t, n)
	}
	startNodes(t, p)
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	lb2.Host.SetLinkDown(t, "up0")
	lb2.WaitState(group, "FAULT", 2*time.Second)
	time.Sleep(500 * time.Millisecond) // the pair link tells lb1
	w := h.WatchVIPs(t, []netip.Addr{p.VIP}, lb1.Host, lb2.Host)
	out, code := lb1.Run("failover")
	t.Logf("havip failover with the peer in FAULT (exit %d):\n%s", code, out)
	if code != 2 || !strings.Contains(out, "refused") || !strings.Contains(out, "FAULT for it, not BACKUP") {
		t.Errorf("havip failover: exit %d, want 2 and the peer's FAULT as the reason", code)
	}
	time.Sleep(5 * p.Site.Advert)
	if s := lb1.State(group); s != "MASTER" {
		t.Errorf("lb1 is %s after the refused drill, want MASTER", s)
	}
	vipKept(t, w, p.VIP, lb1)
}

// (c) --force hands over past the pre-checks: make-before-break over an
// authenticated link; without a pair key (the plain drill refuses: the
// link is not authenticated) the old resign, break-before-make.
func TestDrillForce(t *testing.T) {
	for _, tc := range []struct {
		name  string
		noKey bool
		mode  string
	}{
		{"authenticated link", false, "make-before-break"},
		{"no pair key", true, "resign"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startPair(t, h.Site{NoPairKey: tc.noKey})
			lb1, lb2 := p.Nodes[0], p.Nodes[1]
			if tc.noKey {
				out, code := lb1.Run("failover")
				if code != 2 || !strings.Contains(out, "not authenticated") {
					t.Errorf("havip failover without a pair key: exit %d, want 2 naming the unauthenticated link:\n%s", code, out)
				}
			}
			out, code := lb1.Run("failover", "--force")
			t.Logf("havip failover --force (exit %d):\n%s", code, out)
			if code != 0 || !strings.Contains(out, tc.mode) {
				t.Fatalf("havip failover --force: exit %d, want 0 and mode %s", code, tc.mode)
			}
			lb2.WaitState(group, "MASTER", time.Second)
			lb1.WaitState(group, "BACKUP", time.Second)
			h.WaitUntil(t, time.Second, "the VIP only on lb2", func() bool { return lb2.HasVIP(p.VIP) && !lb1.HasVIP(p.VIP) })
			if !strings.Contains(out, "client-visible gap: not measured") {
				t.Errorf("without --probe the report must say the gap was not measured")
			}
		})
	}
}

// runFrom runs a havip subcommand in host's namespace against n's control
// socket: the CLI where the clients are, so that --probe sees what they see.
func runFrom(t *testing.T, host *lab.Host, n *h.Node, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(h.Binary(t), append(args, "--socket", n.Sock)...)
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	if err := host.Start(cmd); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok {
		return b.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return b.String(), 0
}

// (d) A drill under client traffic (a connection every 2 ms from the
// client through the VIP, each reading the director's greeting) loses no
// connection but, at most, one caught in flight at the switch (3 drills of
// 30 lost one, of about 450; --probe, run from the client, the same):
//   - its handshake straddled the move of the client's neighbour entry:
//     the SYN reached the old master, which answered, the ACK the new one,
//     which has no such connection: reset at connect. Any VIP move does
//     this (keepalived's too; with IPVS as well, the new director has no
//     entry for an ACK);
//   - it was accepted by the old master's own listener a moment before
//     the old master released the VIP, so its greeting can no longer leave
//     (a read timeout). This one is the lab's: the service here runs on
//     the directors themselves, where with LVS it runs on real servers and
//     the directors only forward.
//
// Anything else, or more than one, fails the test.
func TestDrillUnderTraffic(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	h.Serve(t, lb1.Host, 8080, "lb1")
	h.Serve(t, lb2.Host, 8080, "lb2")
	target := netip.AddrPortFrom(p.VIP, 8080)
	w := h.WatchVIPs(t, []netip.Addr{p.VIP}, lb1.Host, lb2.Host)
	traffic := h.StartProber(t, p.Client, 2*time.Millisecond, 200*time.Millisecond, target)
	time.Sleep(300 * time.Millisecond)
	out, code := runFrom(t, p.Client, lb1, "failover", "--probe", target.String(), "--json")
	t.Logf("havip failover --probe %s --json (exit %d):\n%s", target, code, out)
	time.Sleep(300 * time.Millisecond)
	st := traffic.Stop()
	t.Logf("client traffic: %d connections, %d failed, answers %v, longest outage %s", st.Attempts, st.Failed, st.Answers, st.LongestOutage)
	if code != 0 {
		t.Fatalf("havip failover: exit %d", code)
	}
	var rep struct {
		Groups []struct{ Mode, Error string }
		Probe  *struct{ Attempts, Failed int }
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Probe == nil || len(rep.Groups) != 1 {
		t.Fatalf("havip failover --json: %v, want the groups and the probe", err)
	}
	if g := rep.Groups[0]; g.Mode != "make-before-break" || g.Error != "" {
		t.Errorf("drill: mode %q error %q, want make-before-break without error", g.Mode, g.Error)
	}
	if rep.Probe.Failed > 1 || rep.Probe.Attempts < 100 {
		t.Errorf("--probe: %d of %d failed, want at most 1 (in flight at the switch) of at least 100", rep.Probe.Failed, rep.Probe.Attempts)
	}
	inFlight := 0
	for _, f := range st.Failures {
		if strings.Contains(f, "connect: connection reset by peer") || strings.Contains(f, "reading the greeting") && strings.Contains(f, "i/o timeout") {
			inFlight++
		}
	}
	if st.Failed > 1 || st.Failed != inFlight {
		t.Errorf("the client lost %d of %d connections during the drill, want at most 1 caught in flight at the switch: %v", st.Failed, st.Attempts, st.Failures)
	}
	ans := st.Answers[target.String()]
	if ans["lb1"] == 0 || ans["lb2"] == 0 {
		t.Errorf("answers %v: want lb1 before the drill and lb2 after", ans)
	}
	lb2.WaitState(group, "MASTER", time.Second)
	madeBeforeBreak(t, w, "lb2", "lb1")
}

// madeBeforeBreak checks that to claimed the VIP before from released it.
// The two hosts' address events reach the watcher over two netlink
// sockets, each read by its own goroutine, so their order is only as good
// as that: a release seen up to 1 ms before the claim counts as after it
// (seen once in CI: 56 µs). The make-before-break order itself is causal
// in the daemons: the old master resigns only on the new one's answer,
// sent after its claim.
func madeBeforeBreak(t *testing.T, w *h.VIPWatch, to, from string) {
	t.Helper()
	ev := w.Events()
	claimed := slices.IndexFunc(ev, func(e string) bool { return strings.Contains(e, " "+to+" +") })
	released := slices.IndexFunc(ev, func(e string) bool { return strings.Contains(e, " "+from+" -") })
	if claimed < 0 || released < 0 {
		t.Fatalf("VIP events %v: want %s's claim and %s's release", ev, to, from)
	}
	at := func(e string) time.Time {
		ts, err := time.Parse("15:04:05.000000", strings.Fields(e)[0])
		if err != nil {
			t.Fatal(err)
		}
		return ts
	}
	if released < claimed && at(ev[claimed]).Sub(at(ev[released])) > time.Millisecond {
		t.Errorf("VIP events %v: want %s's claim before %s's release", ev, to, from)
	}
}

// (e) --back, run on the node that handed the group away, gets it back
// with the same safe drill run by the peer.
func TestDrillBack(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	if out, code := lb1.Run("failover"); code != 0 {
		t.Fatalf("havip failover: exit %d\n%s", code, out)
	}
	lb2.WaitState(group, "MASTER", time.Second)
	lb1.WaitState(group, "BACKUP", time.Second)
	w := h.WatchVIPs(t, []netip.Addr{p.VIP}, lb1.Host, lb2.Host)
	out, code := lb1.Run("failover", "--back")
	t.Logf("havip failover --back (exit %d):\n%s", code, out)
	if code != 0 || !strings.Contains(out, "make-before-break") {
		t.Fatalf("havip failover --back: exit %d, want 0 and a make-before-break handover", code)
	}
	lb1.WaitState(group, "MASTER", time.Second)
	lb2.WaitState(group, "BACKUP", time.Second)
	h.WaitUntil(t, time.Second, "the VIP only on lb1", func() bool { return lb1.HasVIP(p.VIP) && !lb2.HasVIP(p.VIP) })
	madeBeforeBreak(t, w, "lb1", "lb2")
	if _, code := lb1.Run("failover", "--back"); code != 2 {
		t.Errorf("a second --back with nothing to take back: exit %d, want 2", code)
	}
}

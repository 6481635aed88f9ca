package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/havip/havip/internal/ctl"
	h "github.com/havip/havip/test/e2e/harness"
	"github.com/havip/havip/test/lab"
)

// A NAT director's two groups in one sync group: "front" holds the
// clients' VIP on eth0 (the harness's switch), "back" the real servers'
// gateway VIP on eth1, a second switch. Whatever moves one must move the
// other, and no node may hold one without the other for longer than the
// handover itself.

var backVIP = netip.MustParseAddr("198.19.0.1")

const back = "back"

// splitWindow is how long a node may hold one of the two VIPs without the
// other while they move: two advert intervals.
func splitWindow(p *h.Pair) time.Duration { return 2 * p.Site.Advert }

type syncPair struct {
	*h.Pair
	watch *h.VIPWatch
}

// startSyncPair starts the pair with front and back in sync group "nat";
// frontExtra is more TOML for the front group (tracks). before runs on
// each node's host before the daemons start. It returns once lb1 is
// master of both and lb2 backup of both.
func startSyncPair(t *testing.T, frontExtra string, before func(n *h.Node)) *syncPair {
	sp := newSyncPair(t, frontExtra, before)
	sp.start(t, group, back)
	return sp
}

// newSyncPair is startSyncPair without starting the daemons.
func newSyncPair(t *testing.T, frontExtra string, before func(n *h.Node)) *syncPair {
	p := h.NewPair(t, h.Site{
		ExtraGroup: "sync_group = \"nat\"\n" + frontExtra,
		Extra: fmt.Sprintf(`
[[vrrp]]
name = "back"
interface = "eth1"
vrid = 52
advert = "100ms"
vips = ["%s/24"]
garp_interval = "20ms"
sync_group = "nat"
`, backVIP),
	})
	backSw := lab.NewSwitch(t)
	for i, n := range p.Nodes {
		backSw.Attach(t, n.Host, "eth1", netip.MustParsePrefix(fmt.Sprintf("198.19.0.%d/24", 11+i)))
		if before != nil {
			before(n)
		}
	}
	return &syncPair{Pair: p, watch: h.WatchVIPs(t, []netip.Addr{p.VIP, backVIP}, p.Nodes[0].Host, p.Nodes[1].Host)}
}

// start starts both daemons and waits until lb1 is master and lb2 backup
// of groups.
func (sp *syncPair) start(t *testing.T, groups ...string) {
	t.Helper()
	sp.Nodes[0].Start()
	sp.Nodes[1].Start()
	timeout := 2*h.MasterDown(sp.Site.Advert, 100) + 2*time.Second
	for _, g := range groups {
		sp.Nodes[0].WaitState(g, "MASTER", timeout)
		sp.Nodes[1].WaitState(g, "BACKUP", timeout)
	}
	if len(groups) == 2 {
		sp.waitHolder(t, sp.Nodes[0], time.Second)
	}
}

func (sp *syncPair) waitBoth(t *testing.T, n *h.Node, state string, timeout time.Duration) {
	t.Helper()
	n.WaitState(group, state, timeout)
	n.WaitState(back, state, timeout)
}

// holds says which of the two VIPs n's kernel has.
func (sp *syncPair) holds(t *testing.T, n *h.Node) (front, back bool) {
	return n.HasVIP(sp.VIP), n.Host.HasAddr(t, "eth1", backVIP)
}

// waitHolder waits until n holds both VIPs and the other node neither.
func (sp *syncPair) waitHolder(t *testing.T, n *h.Node, timeout time.Duration) {
	t.Helper()
	other := sp.other(n)
	h.WaitUntil(t, timeout, "both VIPs on "+n.Name+" only", func() bool {
		f, b := sp.holds(t, n)
		of, ob := sp.holds(t, other)
		return f && b && !of && !ob
	})
}

func (sp *syncPair) other(n *h.Node) *h.Node {
	if n == sp.Nodes[0] {
		return sp.Nodes[1]
	}
	return sp.Nodes[0]
}

// move runs act, which must move both groups from one node to the
// other, and waits until it has: both VIPs on to (the time until the later
// one arrived, from act, is returned; more than bound, when not 0, fails
// the test), to master of both, from in fromState, and the VIPs on to
// only.
func (sp *syncPair) move(t *testing.T, from, to *h.Node, fromState, what string, bound time.Duration, act func()) time.Duration {
	t.Helper()
	front, back := h.WaitAddr(t, to.Host, sp.VIP, true), h.WaitAddr(t, to.Host, backVIP, true)
	t0 := time.Now()
	act()
	f := h.Within(t, front, 3*time.Second, what+": front VIP").Sub(t0)
	b := h.Within(t, back, 3*time.Second, what+": back VIP").Sub(t0)
	t.Logf("%s: front VIP on %s after %s, back VIP after %s", what, to.Name, f.Round(10*time.Microsecond), b.Round(10*time.Microsecond))
	if took := max(f, b); bound > 0 && took > bound {
		t.Errorf("%s: the VIPs moved after %s, want at most %s (Master_Down_Interval %s)", what, took, bound, h.MasterDown(sp.Site.Advert, 100))
	}
	sp.waitBoth(t, to, "MASTER", time.Second)
	if fromState != "" {
		sp.waitBoth(t, from, fromState, time.Second)
		sp.waitHolder(t, to, time.Second)
	}
	return max(f, b)
}

// checkSplit fails the test if a node among hosts (all when none) held
// one VIP without the other for longer than the window since from, and
// logs the worst spell.
func (sp *syncPair) checkSplit(t *testing.T, from time.Time, what string, hosts ...string) time.Duration {
	t.Helper()
	if errs := sp.watch.Errors(); len(errs) > 0 {
		t.Fatalf("address watch: %v", errs)
	}
	worst, where := sp.watch.Split(from, time.Now(), hosts...)
	t.Logf("%s: worst split %s %s", what, worst.Round(10*time.Microsecond), where)
	if worst > splitWindow(sp.Pair) {
		t.Errorf("%s: split for %s (%s), want at most %s\n%s", what, worst, where, splitWindow(sp.Pair), strings.Join(sp.watch.Events(), "\n"))
	}
	return worst
}

// (a) Both members start master on lb1 and backup on lb2.
func TestSyncGroupStart(t *testing.T) {
	sp := startSyncPair(t, "", nil)
	lb1, lb2 := sp.Nodes[0], sp.Nodes[1]
	for _, n := range []*h.Node{lb1, lb2} {
		st, err := n.Status()
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range st.Groups {
			if g.Priority != g.BasePriority || g.Fault != "" || g.SyncGroup != "nat" {
				t.Errorf("%s %s: priority %d of %d, fault %q, sync group %q", n.Name, g.Name, g.Priority, g.BasePriority, g.Fault, g.SyncGroup)
			}
		}
	}
	if out, _ := lb1.Run("status"); !strings.Contains(out, "back: sync group nat;") {
		t.Errorf("havip status does not name the sync group:\n%s", out)
	}
	if m := sp.Masters(back); len(m) != 1 || m[0] != lb1 {
		t.Fatalf("back masters = %v, want lb1", names(m))
	}
	sp.checkSplit(t, time.Time{}, "start (while settling)")
}

// (b) The master's back interface loses its link: both groups move to lb2
// at once, front too although its own link is fine, and both come back
// when the link returns.
func TestSyncGroupBackLinkDown(t *testing.T) {
	sp := startSyncPair(t, "", nil)
	lb1, lb2 := sp.Nodes[0], sp.Nodes[1]
	t0 := time.Now()
	// A priority-0 advert on front and the sync group taking back along:
	// well under Master_Down_Interval (which a lost back advert alone
	// would take).
	took := sp.move(t, lb1, lb2, "FAULT", "back link down", sp.Site.Advert, func() { lb1.Host.SetLinkDown(t, "eth1") })
	if g := groupStatus(t, lb1, group); !strings.Contains(g.Fault, "sync group nat") || !strings.Contains(g.Fault, "eth1") {
		t.Errorf("lb1 front fault = %q, want the sync group's reason naming eth1", g.Fault)
	}
	ret := sp.move(t, lb2, lb1, "BACKUP", "back link up (preempt)", 0, func() { lb1.Host.SetLinkUp(t, "eth1") })
	split := sp.checkSplit(t, t0, "back link down and up")
	t.Logf("SYNCGROUP back-link-down: handover %s, back after link up %s, worst split %s", took, ret, split)
}

// (c) A planned drill of one member moves both, and the handover sticks.
func TestSyncGroupDrill(t *testing.T) {
	sp := startSyncPair(t, "", nil)
	lb1, lb2 := sp.Nodes[0], sp.Nodes[1]
	t0 := time.Now()
	took := sp.move(t, lb1, lb2, "BACKUP", "drill of front", 0, func() {
		out, code := lb1.Run("failover", group)
		t.Logf("havip failover front:\n%s", out)
		if code != 0 {
			t.Fatalf("havip failover front: exit %d", code)
		}
	})
	time.Sleep(10 * sp.Site.Advert)
	sp.waitHolder(t, lb2, 50*time.Millisecond)
	for _, g := range []string{group, back} {
		if s := lb1.State(g); s != "BACKUP" {
			t.Errorf("after the drill lb1's %s is %s: the handover must stick for the whole sync group", g, s)
		}
	}
	split := sp.checkSplit(t, t0, "drill")
	t.Logf("SYNCGROUP drill: both VIPs on the peer %s after starting havip failover, worst split %s", took, split)
}

// uplinkTrack has front track an uplink, up0, with weight -60; addUplink
// gives a node one, with its carrier (so no node starts penalised).
const uplinkTrack = "[[vrrp.track]]\ninterface = \"up0\"\nweight = -60\n"

func addUplink(t *testing.T, n *h.Node) {
	n.Host.AddVethPair(t, "up0", "up0p")
	n.Host.WaitCarrier(t, "up0")
}

// (d) A tracked interface with a weight on one member lowers both, so
// preemption moves both; they come back together when it recovers.
func TestSyncGroupTrackWeight(t *testing.T) {
	sp := startSyncPair(t, uplinkTrack, func(n *h.Node) { addUplink(t, n) })
	lb1, lb2 := sp.Nodes[0], sp.Nodes[1]
	t0 := time.Now()
	took := sp.move(t, lb1, lb2, "BACKUP", "tracked uplink down", sp.Site.Advert, func() { lb1.Host.SetLinkDown(t, "up0") })
	for _, name := range []string{group, back} {
		if g := groupStatus(t, lb1, name); g.Priority != 90 || g.BasePriority != 150 {
			t.Errorf("lb1 %s: priority %d of %d, want 90 of 150 (the front's track lowers the whole sync group)", name, g.Priority, g.BasePriority)
		}
	}
	ret := sp.move(t, lb2, lb1, "BACKUP", "tracked uplink up (preempt)", sp.Site.Advert, func() { lb1.Host.SetLinkUp(t, "up0") })
	split := sp.checkSplit(t, t0, "tracked uplink down and up")
	t.Logf("SYNCGROUP track-weight: handover %s, back %s, worst split %s", took, ret, split)
}

// (e) kill -9 of the master moves both.
func TestSyncGroupKillMaster(t *testing.T) {
	sp := startSyncPair(t, "", nil)
	lb1, lb2 := sp.Nodes[0], sp.Nodes[1]
	bound := h.MasterDown(sp.Site.Advert, 100) + 50*time.Millisecond
	t0 := time.Now()
	took := sp.move(t, lb1, lb2, "", "kill -9", bound, func() { lb1.Signal(syscall.SIGKILL) })
	// The killed node's VIPs stay in its kernel until their lifetimes
	// run out; only the live node counts after the kill.
	h.WaitUntil(t, 10*time.Second, "the killed master's VIPs expiring", func() bool {
		f, b := sp.holds(t, lb1)
		return !f && !b
	})
	split := sp.checkSplit(t, t0, "kill -9 (the live node)", lb2.Name)
	t.Logf("SYNCGROUP kill-9: both VIPs on the peer after %s (bound %s), worst split on the live node %s", took, bound, split)
}

func groupStatus(t *testing.T, n *h.Node, name string) ctl.GroupStatus {
	t.Helper()
	st, err := n.Status()
	if err != nil {
		t.Fatalf("%s: status: %v", n.Name, err)
	}
	for _, g := range st.Groups {
		if g.Name == name {
			return g
		}
	}
	t.Fatalf("%s: no group %s in status", n.Name, name)
	return ctl.GroupStatus{}
}

// A member the peer holds, and outranks us in, is not taken over when the
// other member becomes master here for a reason the peer's copy of this
// one does not share. Taking it over had the peer answer, the member go
// back to BACKUP, the other member resign for it and become master again
// at its next Master_Down_Interval: a loop that announced the front VIP
// from the backup about three times a second.
func TestSyncGroupNoFlap(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cause  func(t *testing.T, sp *syncPair)
		finish func(t *testing.T, sp *syncPair) // ends the cause; nil: none
		// backMaster: lb2's back becomes master during the cause. A
		// rolling push that restarts back no longer does that: lb1 keeps
		// its running back until lb2 runs the new VRID too.
		backMaster bool
	}{
		{"back partition", func(t *testing.T, sp *syncPair) {
			// VRRP stops crossing the back segment only: lb2's back
			// hears no master and becomes one (a dual master there is
			// what a partition gives); front still hears lb1.
			h.Nft(t, sp.Nodes[1].Host, `table inet hvpart {
	chain in { type filter hook input priority 0; iifname "eth1" meta l4proto 112 drop; }
	chain out { type filter hook output priority 0; oifname "eth1" meta l4proto 112 drop; }
}`)
		}, func(t *testing.T, sp *syncPair) {
			h.Nft(t, sp.Nodes[1].Host, "delete table inet hvpart")
		}, true},
		{"rolling push restarting back", func(t *testing.T, sp *syncPair) {
			// lb1 is told to run back under a new VRID before lb2 is.
			lb1 := sp.Nodes[0]
			lb1.WriteConfig(strings.Replace(lb1.ReadConfig(), "vrid = 52", "vrid = 53", 1))
			if out, code := lb1.Reload(); code != 0 {
				t.Fatalf("reload on lb1: exit %d\n%s", code, out)
			}
		}, func(t *testing.T, sp *syncPair) {
			lb2 := sp.Nodes[1]
			lb2.WriteConfig(sp.Nodes[0].ReadConfig())
			if out, code := lb2.Reload(); code != 0 {
				t.Fatalf("reload on lb2: exit %d\n%s", code, out)
			}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp := startSyncPair(t, "", nil)
			lb1, lb2 := sp.Nodes[0], sp.Nodes[1]
			before1, before2 := groupStatus(t, lb1, group).Transitions, groupStatus(t, lb2, group).Transitions
			tc.cause(t, sp)
			if tc.backMaster {
				lb2.WaitState(back, "MASTER", 2*time.Second)
			}
			time.Sleep(20 * sp.Site.Advert) // more than five Master_Down_Intervals
			if !tc.backMaster {
				if st := lb2.State(back); st != "BACKUP" {
					t.Errorf("lb2's back is %s during the push, want BACKUP (lb1 waits for lb2 to run the new VRID)", st)
				}
				if g := groupStatus(t, lb1, back); g.VRID != 52 || g.Pending == "" {
					t.Errorf("lb1's back during the push: vrid %d, pending %q; want the old one running, the restart waiting", g.VRID, g.Pending)
				}
			}
			if n := groupStatus(t, lb1, group).Transitions - before1; n != 0 || lb1.State(group) != "MASTER" {
				t.Errorf("lb1's front changed state %d times (now %s), want it master throughout", n, lb1.State(group))
			}
			n := groupStatus(t, lb2, group).Transitions - before2
			t.Logf("lb2's front changed state %d times in %s; lb2's back is %s", n, 20*sp.Site.Advert, lb2.State(back))
			if n != 0 {
				t.Errorf("lb2's front changed state %d times, want none (the peer holds it)\n%s", n, strings.Join(sp.watch.Events(), "\n"))
			}
			if lb2.HasVIP(sp.VIP) || !lb1.HasVIP(sp.VIP) {
				t.Errorf("front VIP on lb1 %v, lb2 %v; want lb1 only", lb1.HasVIP(sp.VIP), lb2.HasVIP(sp.VIP))
			}
			if tc.finish != nil {
				tc.finish(t, sp)
				sp.waitBoth(t, lb2, "BACKUP", 2*time.Second)
				sp.waitBoth(t, lb1, "MASTER", time.Second)
				sp.waitHolder(t, lb1, time.Second)
			}
		})
	}
}

// A reload that joins two running groups into a sync group while they are
// split (front handed to lb2 by a drill of front alone, back still on lb1)
// brings them together: no state change is needed for that.
func TestSyncGroupJoinedByReload(t *testing.T) {
	joined := ""
	sp := startSyncPair(t, "", func(n *h.Node) {
		joined = n.ReadConfig()
		n.WriteConfig(strings.ReplaceAll(joined, "sync_group = \"nat\"\n", ""))
	})
	lb1, lb2 := sp.Nodes[0], sp.Nodes[1]
	if out, code := lb1.Run("failover", group); code != 0 {
		t.Fatalf("havip failover front: exit %d\n%s", code, out)
	}
	lb2.WaitState(group, "MASTER", time.Second)
	time.Sleep(5 * sp.Site.Advert)
	if f, b := sp.holds(t, lb1); f || !b {
		t.Fatalf("before the reload lb1 holds front %v back %v, want back only (the split the reload must mend)", f, b)
	}
	t0 := time.Now()
	for _, n := range []*h.Node{lb1, lb2} {
		n.WriteConfig(joined)
		if out, code := n.Reload(); code != 0 || !strings.Contains(out, "sync_group") {
			t.Fatalf("reload on %s: exit %d\n%s", n.Name, code, out)
		}
	}
	h.WaitUntil(t, 2*time.Second, "both VIPs on one node", func() bool {
		f1, b1 := sp.holds(t, lb1)
		f2, b2 := sp.holds(t, lb2)
		return f1 == b1 && f2 == b2 && f1 != f2
	})
	t.Logf("joined by reload: together after %s", time.Since(t0))
	time.Sleep(10 * sp.Site.Advert)
	f1, b1 := sp.holds(t, lb1)
	f2, b2 := sp.holds(t, lb2)
	if f1 != b1 || f2 != b2 || f1 == f2 {
		t.Fatalf("after the reload: lb1 front %v back %v, lb2 front %v back %v; want both on one node", f1, b1, f2, b2)
	}
}

// A member with preempt = false moves with one that preempts: the
// returning lb1 takes both back, whichever of them preempts.
func TestSyncGroupMixedPreempt(t *testing.T) {
	for _, tc := range []struct{ name, old, new string }{
		{"front without preempt", "preempt = true\n", "preempt = false\n"},
		{"back without preempt", "vrid = 52\n", "vrid = 52\npreempt = false\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp := startSyncPair(t, "", func(n *h.Node) {
				n.WriteConfig(strings.Replace(n.ReadConfig(), tc.old, tc.new, 1))
			})
			lb1, lb2 := sp.Nodes[0], sp.Nodes[1]
			sp.move(t, lb1, lb2, "", "kill -9", 0, func() { lb1.Signal(syscall.SIGKILL) })
			h.WaitUntil(t, 10*time.Second, "the killed master's VIPs expiring", func() bool {
				f, b := sp.holds(t, lb1)
				return !f && !b
			})
			t0 := time.Now()
			took := sp.move(t, lb2, lb1, "BACKUP", "lb1 returns", 0, lb1.Start)
			time.Sleep(10 * sp.Site.Advert)
			sp.waitHolder(t, lb1, 50*time.Millisecond)
			split := sp.checkSplit(t, t0, "lb1 returns")
			t.Logf("SYNCGROUP %s: both back on lb1 %s after its start, worst split %s", tc.name, took, split)
		})
	}
}

// A member added by a rolling reload, on the backup first, does not
// demote the members the master holds, and ends on the master with them,
// even without preempt of its own.
func TestSyncGroupMemberAddedByReload(t *testing.T) {
	full := ""
	sp := newSyncPair(t, "", func(n *h.Node) {
		full = strings.Replace(n.ReadConfig(), "vrid = 52\n", "vrid = 52\npreempt = false\n", 1)
		n.WriteConfig(full[:strings.Index(full, "\n[[vrrp]]\nname = \"back\"")])
	})
	sp.start(t, group)
	lb1, lb2 := sp.Nodes[0], sp.Nodes[1]
	before := groupStatus(t, lb1, group).Transitions
	reload := func(n *h.Node) time.Time {
		n.WriteConfig(full)
		at := time.Now()
		if out, code := n.Reload(); code != 0 {
			t.Fatalf("reload on %s: exit %d\n%s", n.Name, code, out)
		}
		return at
	}
	t0 := reload(lb2)
	// lb2 alone runs back now, so it is its master: a split the push
	// itself makes, for as long as the two files differ.
	lb2.WaitState(back, "MASTER", 2*time.Second)
	time.Sleep(10 * sp.Site.Advert)
	t1 := reload(lb1)
	sp.waitBoth(t, lb1, "MASTER", 2*time.Second)
	sp.waitBoth(t, lb2, "BACKUP", time.Second)
	sp.waitHolder(t, lb1, time.Second)
	if n := groupStatus(t, lb1, group).Transitions - before; n != 0 {
		t.Errorf("lb1's front changed state %d times while back was added", n)
	}
	pushed, _ := sp.watch.Split(t0, t1, lb2.Name)
	split := sp.checkSplit(t, t1, "back added on lb1 too")
	t.Logf("SYNCGROUP member added by a rolling reload: split while only lb2 ran back %s (the push's own), after lb1 reloaded %s", pushed, split)
}

// Members whose priorities lie differently far apart: front 150 to 100,
// back 200 to 100. The uplink penalty (-60, both members) puts lb1's front
// below lb2's (90 < 100) but not its back (140 > 100): the elections
// disagree, and the state changes must still bring both to one node.
func TestSyncGroupUnequalGaps(t *testing.T) {
	sp := startSyncPair(t, uplinkTrack, func(n *h.Node) {
		addUplink(t, n)
		n.WriteConfig(strings.Replace(n.ReadConfig(), "vrid = 52\n", "vrid = 52\npriorities = { lb1 = 200 }\n", 1))
	})
	lb1, lb2 := sp.Nodes[0], sp.Nodes[1]
	t0 := time.Now()
	took := sp.move(t, lb1, lb2, "BACKUP", "tracked uplink down", 0, func() { lb1.Host.SetLinkDown(t, "up0") })
	time.Sleep(10 * sp.Site.Advert)
	sp.waitHolder(t, lb2, 50*time.Millisecond)
	ret := sp.move(t, lb2, lb1, "BACKUP", "tracked uplink up (preempt)", 0, func() { lb1.Host.SetLinkUp(t, "up0") })
	split := sp.checkSplit(t, t0, "unequal gaps")
	t.Logf("SYNCGROUP unequal gaps: to lb2 in %s, back in %s, worst split %s", took, ret, split)
}

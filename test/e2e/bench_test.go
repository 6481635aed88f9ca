package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/havip/havip/internal/conf"
	h "github.com/havip/havip/test/e2e/harness"
)

const benchTrials = 10

// BenchmarkFailover measures failover in the namespace lab: kill -9 and
// SIGTERM of the master, benchTrials each, against the RFC bound, plus the
// daemon's idle RSS. It prints a table; targets are in README, not asserted.
func BenchmarkFailover(b *testing.B) {
	for range b.N {
		p := h.NewPair(b, h.Site{})
		lb1, lb2 := p.Nodes[0], p.Nodes[1]
		lb1.Start()
		lb2.Start()
		lb1.WaitState(group, "MASTER", 3*time.Second)
		lb2.WaitState(group, "BACKUP", time.Second)
		p.Client.Ping(b, p.VIP)

		time.Sleep(3 * time.Second) // idle
		rss := rssKB(b, lb1.Pid())

		trial := func(sig syscall.Signal) time.Duration {
			added := h.WaitAddr(b, lb2.Host, p.VIP, true)
			moved := h.WaitNeigh(b, p.Client, p.VIP, lb2.Host.MAC)
			t0 := time.Now()
			lb1.Signal(sig)
			vipAt := h.Within(b, added, 10*time.Second, "VIP on backup")
			at := h.Within(b, moved, 10*time.Second, "client neighbour -> backup")
			d := at.Sub(t0)
			if testing.Verbose() {
				fmt.Printf("  %s: VIP on backup %s, client moved %s\n", sig, vipAt.Sub(t0), d)
			}
			// Bring lb1 back; with preempt it takes the group back.
			lb1.Start()
			lb1.WaitState(group, "MASTER", 3*time.Second)
			lb2.WaitState(group, "BACKUP", time.Second)
			h.WaitUntil(b, 2*time.Second, "client back on lb1", func() bool {
				return p.Client.Neigh(b, p.VIP).String() == lb1.Host.MAC.String()
			})
			return d
		}
		var kill, term, stop []time.Duration
		for range benchTrials {
			kill = append(kill, trial(syscall.SIGKILL))
		}
		for range benchTrials {
			term = append(term, trial(syscall.SIGTERM))
		}
		// A hung host: no FIN, so VRRP's timer decides (the fast path
		// never fires on silence).
		for range 3 {
			added := h.WaitAddr(b, lb2.Host, p.VIP, true)
			moved := h.WaitNeigh(b, p.Client, p.VIP, lb2.Host.MAC)
			t0 := time.Now()
			lb1.Signal(syscall.SIGSTOP)
			h.Within(b, added, 10*time.Second, "VIP on backup")
			stop = append(stop, h.Within(b, moved, 10*time.Second, "client neighbour -> backup").Sub(t0))
			lb1.Signal(syscall.SIGCONT)
			lb1.WaitState(group, "MASTER", 3*time.Second)
			lb2.WaitState(group, "BACKUP", time.Second)
			h.WaitUntil(b, 2*time.Second, "client back on lb1", func() bool {
				return p.Client.Neigh(b, p.VIP).String() == lb1.Host.MAC.String()
			})
		}
		lb1.Signal(syscall.SIGTERM)
		lb2.Signal(syscall.SIGTERM)
		ka := keepalivedKills(b, p)
		bound := h.MasterDown(p.Site.Advert, 100)
		fmt.Printf("\nfailover in the namespace lab: %d trials each, advert %s, backup priority 100\n", benchTrials, p.Site.Advert)
		fmt.Printf("(time from the signal until the client's neighbour entry for the VIP points at the backup)\n")
		row := func(what string, ds []time.Duration, rfc, target string) {
			fmt.Printf("%-26s %12s %12s %24s %22s\n", what, med(ds), worst(ds), rfc, target)
		}
		fmt.Printf("%-26s %12s %12s %24s %22s\n", "event", "median", "worst", "RFC bound", "target")
		row("havip kill -9 (fast path)", kill, "Master_Down "+bound.String(), "median < 20ms")
		row("keepalived kill -9", ka, "Master_Down "+bound.String(), "(same run, for comparison)")
		row("havip SIGSTOP (host hang)", stop, "Master_Down "+bound.String(), "<= "+(bound+20*time.Millisecond).String())
		row("havip SIGTERM", term, "Skew_Time "+(time.Duration(256-100)*p.Site.Advert/256).String(), "< 10ms")
		fmt.Printf("kill -9: havip/keepalived = %.3f\n", float64(median(kill))/float64(median(ka)))
		fmt.Printf("idle RSS of havip run (one group): %.1f MB (target < 20 MB)\n\n", float64(rss)/1024)
		b.ReportMetric(float64(median(kill).Microseconds())/1000, "kill9-median-ms")
		b.ReportMetric(float64(median(term).Microseconds())/1000, "sigterm-median-ms")
		b.ReportMetric(float64(median(ka).Microseconds())/1000, "keepalived-kill9-median-ms")
		b.ReportMetric(float64(rss)/1024, "idle-rss-MB")
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func med(ds []time.Duration) string { return median(ds).Round(10 * time.Microsecond).String() }

func worst(ds []time.Duration) string { return slices.Max(ds).Round(10 * time.Microsecond).String() }

func rssKB(tb testing.TB, pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	tb.Fatal("no VmRSS")
	return 0
}

// reloadRun is what one way of applying new files (reload, or the naive
// restart) cost under client traffic.
type reloadRun struct {
	took    []time.Duration // the daemon's own time, signal to applied (reload only)
	visible []time.Duration // signal until status shows the group on the new revision
	master  []time.Duration // signal until lb1 is MASTER on the new revision again
	push    time.Duration   // rolling push: lb1's change until lb1 is master of the new file and lb2 runs it
	measured
}

// BenchmarkReload measures applying new site files under a client that
// connects to the VIP every 5 ms: 20 changes of the master's file (a
// comment: a new revision, nothing to do), each by SIGHUP, then a rolling
// push that adds a VIP and changes the advert interval (lb1 2 s before
// lb2). Side by side, the naive way in the same run: a restart of the
// daemon for each change. Figures are printed, never asserted.
func BenchmarkReload(b *testing.B) {
	for range b.N {
		reload := benchApply(b, false)
		restart := benchApply(b, true)
		fmt.Printf("\napplying new site files under client traffic (namespace lab, adverts 100ms, a TCP connection to the VIP every 5ms):\n")
		fmt.Printf("%-36s %16s %16s\n", "", "SIGHUP reload", "restart")
		row := func(what, a, b string) { fmt.Printf("%-36s %16s %16s\n", what, a, b) }
		row("applied, daemon's own time (median)", med(reload.took), "-")
		row("signal -> new revision in status", med(reload.visible)+" med", med(restart.visible)+" med")
		row("", worst(reload.visible)+" max", worst(restart.visible)+" max")
		row("signal -> MASTER on the new file", "never left", med(restart.master)+" med")
		row("rolling push, lb1 first -> settled", reload.push.Round(time.Millisecond).String(), restart.push.Round(time.Millisecond).String())
		row("client connections", fmt.Sprint(reload.client.Attempts), fmt.Sprint(restart.client.Attempts))
		row("failed client connections", fmt.Sprint(reload.client.Failed), fmt.Sprint(restart.client.Failed))
		row("longest time without a connection", reload.client.LongestOutage.Round(time.Millisecond).String(), restart.client.LongestOutage.Round(time.Millisecond).String())
		row("VIP on both directors, in all", reload.both.Round(time.Millisecond).String(), restart.both.Round(time.Millisecond).String())
		row("longest gap in lb1's adverts", fmt.Sprintf("%.2f intervals", reload.gap.Ratio()), fmt.Sprintf("%.2f intervals", restart.gap.Ratio()))
		fmt.Println("(20 changes of the master's file, then a rolling push: a VIP added, advert 100ms -> 200ms)")
		fmt.Println()
		b.ReportMetric(ms(median(reload.took)), "reload-took-median-ms")
		b.ReportMetric(ms(median(reload.visible)), "reload-visible-median-ms")
		b.ReportMetric(float64(reload.client.Failed), "reload-failed-conns")
		b.ReportMetric(ms(median(restart.visible)), "restart-visible-median-ms")
		b.ReportMetric(float64(restart.client.Failed), "restart-failed-conns")
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// benchApply runs the changes on a new pair, by SIGHUP or by restarting
// the daemon.
func benchApply(b *testing.B, restart bool) reloadRun {
	p := h.NewPair(b, h.Site{})
	startNodes(b, p)
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	vip2 := p.VIP.Next()
	tr := underTraffic(b, p, vip2)
	var run reloadRun
	// apply makes n run cfg and returns when status shows its revision.
	apply := func(n *h.Node, cfg string) {
		n.WriteConfig(cfg)
		rev := revisionOf(b, n.Config)
		onRev := func() bool {
			st, err := n.Status()
			return err == nil && len(st.Groups) > 0 && st.Groups[0].Revision == rev
		}
		t0 := time.Now()
		if restart {
			n.Signal(syscall.SIGTERM)
			n.Start()
		} else {
			n.Signal(syscall.SIGHUP)
		}
		// Polled every millisecond (WaitUntil's 5 ms would blur it).
		for deadline := t0.Add(20 * time.Second); !onRev(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				b.Fatalf("%s: not on revision %s after 20s", n.Name, rev)
			}
		}
		run.visible = append(run.visible, time.Since(t0))
		if !restart {
			st, _ := n.Status()
			run.took = append(run.took, parseTook(b, st.LastReload.Took))
			return
		}
		if n == lb1 {
			n.WaitState(group, "MASTER", 20*time.Second)
			run.master = append(run.master, time.Since(t0))
		}
	}
	base := lb1.ReadConfig()
	for i := range 20 {
		apply(lb1, fmt.Sprintf("%s# change %d\n", base, i+1))
		time.Sleep(200 * time.Millisecond)
	}
	next := pushNext(b, base, 100*time.Millisecond, 200*time.Millisecond)
	t0 := time.Now()
	apply(lb1, next)
	h.WaitUntil(b, 10*time.Second, "the new VIP on lb1", func() bool { return lb1.HasVIP(vip2) })
	tr.prober.AddTarget(netip.AddrPortFrom(vip2, servePort))
	time.Sleep(time.Until(t0.Add(2 * time.Second)))
	apply(lb2, next)
	h.WaitUntil(b, 20*time.Second, "the push settled", func() bool {
		g1, g2 := groupNamed(b, lb1, group), groupNamed(b, lb2, group)
		return g1.State == "MASTER" && g2.State == "BACKUP" && len(g1.Advertising) == 0 && lb1.HasVIP(vip2) && !lb2.HasVIP(p.VIP)
	})
	run.push = time.Since(t0)
	time.Sleep(time.Second)
	run.measured = tr.measure(b, 51)
	return run
}

// revisionOf is the revision conf gives the site file at path.
func revisionOf(tb testing.TB, path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	site, _ := conf.Parse(path, data)
	if site == nil {
		tb.Fatalf("%s does not parse", path)
	}
	return site.Revision
}

// keepalivedKills runs keepalived on both directors of p (priorities 150
// and 100, the same VRID, advert and VIP) and measures kill -9 of the
// master, benchTrials times, as BenchmarkFailover does for havip.
func keepalivedKills(b *testing.B, p *h.Pair) []time.Duration {
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	k2 := startKeepalived(b, lb2.Host, p, 100)
	var out []time.Duration
	for range benchTrials {
		k1 := startKeepalived(b, lb1.Host, p, 150)
		h.WaitUntil(b, 10*time.Second, "keepalived master on lb1", func() bool { return lb1.HasVIP(p.VIP) && !lb2.HasVIP(p.VIP) })
		p.Client.Ping(b, p.VIP)
		h.WaitUntil(b, 2*time.Second, "client on lb1", func() bool {
			return p.Client.Neigh(b, p.VIP).String() == lb1.Host.MAC.String()
		})
		added := h.WaitAddr(b, lb2.Host, p.VIP, true)
		moved := h.WaitNeigh(b, p.Client, p.VIP, lb2.Host.MAC)
		t0 := time.Now()
		k1.kill(b, syscall.SIGKILL)
		h.Within(b, added, 10*time.Second, "VIP on the keepalived backup")
		out = append(out, h.Within(b, moved, 10*time.Second, "client neighbour -> keepalived backup").Sub(t0))
		// keepalived killed with -9 leaves its VIP; remove it as its
		// restart would.
		lb1.Host.DelAddr(b, "eth0", netip.MustParsePrefix(p.Site.VIPs[0]))
	}
	k2.kill(b, syscall.SIGTERM)
	return out
}

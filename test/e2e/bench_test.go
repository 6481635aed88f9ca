package e2e

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

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
		var kill, term []time.Duration
		for range benchTrials {
			kill = append(kill, trial(syscall.SIGKILL))
		}
		for range benchTrials {
			term = append(term, trial(syscall.SIGTERM))
		}
		bound := h.MasterDown(p.Site.Advert, 100)
		fmt.Printf("\nfailover in the namespace lab: %d trials each, advert %s, backup priority 100\n", benchTrials, p.Site.Advert)
		fmt.Printf("(time from the signal until the client's neighbour entry for the VIP points at the backup)\n")
		fmt.Printf("%-10s %12s %12s %24s %22s\n", "event", "median", "worst", "RFC bound", "target")
		fmt.Printf("%-10s %12s %12s %24s %22s\n", "kill -9", med(kill), worst(kill), "Master_Down "+bound.String(), "median <= "+(bound+20*time.Millisecond).String())
		fmt.Printf("%-10s %12s %12s %24s %22s\n", "SIGTERM", med(term), worst(term), "Skew_Time "+(time.Duration(256-100)*p.Site.Advert/256).String(), "< 10ms")
		fmt.Printf("idle RSS of havip run (one group): %.1f MB (target < 20 MB)\n\n", float64(rss)/1024)
		b.ReportMetric(float64(median(kill).Microseconds())/1000, "kill9-median-ms")
		b.ReportMetric(float64(median(term).Microseconds())/1000, "sigterm-median-ms")
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

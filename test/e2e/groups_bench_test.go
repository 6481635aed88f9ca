package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	h "github.com/havip/havip/test/e2e/harness"
)

// manyGroupsN is every VRID: front (51) and 254 more, on eth0.
const manyGroupsN = 254

// manyGroupsWindow is how long CPU is measured, after the pair settled.
const manyGroupsWindow = 20 * time.Second

// usage is what a daemon cost over the window: CPU (user+sys) as a share
// of one core, and its RSS at the end.
type usage struct {
	cpu   float64 // cores
	rssMB float64
}

// BenchmarkManyGroups runs a havip pair, then a keepalived pair, each
// with 255 groups on one interface (every VRID), 1 s adverts and one VIP
// per group, lb1 master of all; once settled it measures each director's
// CPU over manyGroupsWindow (from /proc/PID/stat) and its RSS, and prints
// them side by side with the ratios to keepalived. Targets (issue 8 part
// 6): backup CPU <= 2x keepalived's, RSS <= keepalived's + 10 MB. Figures
// are printed, never asserted.
func BenchmarkManyGroups(b *testing.B) {
	for range b.N {
		hv := benchHavipGroups(b)
		ka := benchKeepalivedGroups(b)
		fmt.Printf("\n%d VRRP groups on one interface, adverts 1s, one VIP each, lb1 master of all; CPU over %s after settling\n",
			manyGroupsN+1, manyGroupsWindow)
		fmt.Printf("%-18s %14s %14s %10s %22s\n", "", "havip", "keepalived", "ratio", "target")
		row := func(what string, a, k float64, unit, target string) {
			fmt.Printf("%-18s %11.2f %-2s %11.2f %-2s %9.2fx %22s\n", what, a, unit, k, unit, a/k, target)
		}
		row("backup CPU", 100*hv[1].cpu, 100*ka[1].cpu, "%", "<= 2x keepalived")
		row("master CPU", 100*hv[0].cpu, 100*ka[0].cpu, "%", "(for comparison)")
		row("backup RSS", hv[1].rssMB, ka[1].rssMB, "MB", fmt.Sprintf("<= %.1f MB", ka[1].rssMB+10))
		row("master RSS", hv[0].rssMB, ka[0].rssMB, "MB", fmt.Sprintf("<= %.1f MB", ka[0].rssMB+10))
		fmt.Printf("RSS over keepalived's: backup %+.1f MB, master %+.1f MB (target <= +10 MB)\n",
			hv[1].rssMB-ka[1].rssMB, hv[0].rssMB-ka[0].rssMB)
		fmt.Println("(keepalived: its parent and VRRP child together; CPU in % of one core)")
		fmt.Println()
		b.ReportMetric(100*hv[1].cpu, "havip-backup-cpu-%")
		b.ReportMetric(100*ka[1].cpu, "keepalived-backup-cpu-%")
		b.ReportMetric(hv[1].cpu/ka[1].cpu, "backup-cpu-ratio")
		b.ReportMetric(hv[0].rssMB, "havip-master-rss-MB")
		b.ReportMetric(hv[1].rssMB, "havip-backup-rss-MB")
		b.ReportMetric(ka[1].rssMB, "keepalived-backup-rss-MB")
	}
}

// benchHavipGroups measures a havip pair: [0] the master, [1] the backup.
func benchHavipGroups(b *testing.B) [2]usage {
	gs := manyGroups(manyGroupsN)
	for i := range gs {
		gs[i].lb2 = false // lb1 master of all
	}
	p := h.NewPair(b, h.Site{Advert: time.Second, Extra: groupsTOML(gs, time.Second, "", "")})
	startNodes(b, p)
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	h.WaitUntil(b, 30*time.Second, "havip: lb1 master and lb2 backup of every group", func() bool {
		return allIn(lb1, "MASTER", manyGroupsN+1) && allIn(lb2, "BACKUP", manyGroupsN+1)
	})
	time.Sleep(3 * time.Second)
	u := measure(b, []int{lb1.Pid()}, []int{lb2.Pid()})
	if !allIn(lb1, "MASTER", manyGroupsN+1) || !allIn(lb2, "BACKUP", manyGroupsN+1) {
		b.Fatalf("havip: the pair did not stay settled while measured")
	}
	return u
}

// allIn reports whether n runs want groups, all in state.
func allIn(n *h.Node, state string, want int) bool {
	st, err := n.Status()
	if err != nil || len(st.Groups) != want {
		return false
	}
	for _, g := range st.Groups {
		if g.State != state {
			return false
		}
	}
	return true
}

// benchKeepalivedGroups measures a keepalived pair with the same groups.
func benchKeepalivedGroups(b *testing.B) [2]usage {
	p := h.NewPair(b, h.Site{Advert: time.Second})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	gs := append([]manyGroup{{name: group, vrid: 51, vip: p.VIP}}, manyGroups(manyGroupsN)...)
	cfg := func(name string, prio int) string {
		var s strings.Builder
		fmt.Fprintf(&s, "global_defs {\n    router_id ka-%s\n    vrrp_version 3\n    vrrp_garp_master_delay 0\n    vrrp_garp_master_repeat 1\n}\n", name)
		for _, g := range gs {
			fmt.Fprintf(&s, "vrrp_instance %s {\n    state BACKUP\n    interface eth0\n    virtual_router_id %d\n    priority %d\n    advert_int 1\n    virtual_ipaddress {\n        %s/32 dev eth0\n    }\n}\n",
				g.name, g.vrid, prio, g.vip)
		}
		return s.String()
	}
	k1 := runKeepalived(b, lb1.Host, cfg("lb1", 150))
	k2 := runKeepalived(b, lb2.Host, cfg("lb2", 100))
	h.WaitUntil(b, 30*time.Second, "keepalived: every VIP on lb1 only", func() bool {
		for _, g := range gs {
			if !lb1.HasVIP(g.vip) || lb2.HasVIP(g.vip) {
				return false
			}
		}
		return true
	})
	time.Sleep(3 * time.Second)
	u := measure(b, processGroup(b, k1.cmd.Process.Pid), processGroup(b, k2.cmd.Process.Pid))
	if lb2.HasVIP(p.VIP) || !lb1.HasVIP(p.VIP) {
		b.Fatalf("keepalived: the pair did not stay settled while measured")
	}
	return u
}

// processGroup lists the processes of process group pgid.
func processGroup(tb testing.TB, pgid int) []int {
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		tb.Fatal(err)
	}
	var out []int
	for _, f := range stats {
		if fs := statFields(f); len(fs) > 5 && fs[4] == strconv.Itoa(pgid) {
			pid, _ := strconv.Atoi(fs[0])
			out = append(out, pid)
		}
	}
	if len(out) == 0 {
		tb.Fatalf("no process in group %d", pgid)
	}
	return out
}

// statFields splits /proc/PID/stat, the command name (which may hold
// spaces) as one field.
func statFields(file string) []string {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil
	}
	s := string(b)
	i, j := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if i < 0 || j < i {
		return nil
	}
	return append([]string{strings.TrimSpace(s[:i]), s[i+1 : j]}, strings.Fields(s[j+1:])...)
}

// cpuTicks is utime+stime of the processes, in clock ticks.
func cpuTicks(pids []int) int {
	n := 0
	for _, pid := range pids {
		fs := statFields(fmt.Sprintf("/proc/%d/stat", pid))
		if len(fs) > 14 {
			u, _ := strconv.Atoi(fs[13])
			s, _ := strconv.Atoi(fs[14])
			n += u + s
		}
	}
	return n
}

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

// measure samples both directors' processes over the same window.
func measure(tb testing.TB, master, backup []int) [2]usage {
	sets := [2][]int{master, backup}
	var t0 [2]int
	for i, s := range sets {
		t0[i] = cpuTicks(s)
	}
	start := time.Now()
	time.Sleep(manyGroupsWindow)
	el := time.Since(start).Seconds()
	var out [2]usage
	for i, s := range sets {
		out[i].cpu = float64(cpuTicks(s)-t0[i]) / clockTicks / el
		for _, pid := range s {
			out[i].rssMB += float64(rssKB(tb, pid)) / 1024
		}
	}
	return out
}

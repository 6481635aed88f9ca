package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// checkFigures is what test/checkbench run prints, plus the listener's
// drift for the run.
type checkFigures struct {
	Engine     string            `json:"engine"`
	Seconds    float64           `json:"seconds"`
	CPUSeconds float64           `json:"cpu_s"`
	CPUPercent float64           `json:"cpu_pct"`
	UserS      float64           `json:"user_s"`
	SysS       float64           `json:"sys_s"`
	PeakRSSMB  float64           `json:"peak_rss_mb"`
	RSSMB      float64           `json:"rss_mb"`
	Downs      int64             `json:"downs"`
	Late       uint64            `json:"late"`
	TimeWait   int               `json:"time_wait"`
	Failures   map[string]uint64 `json:"failures"`
	// ListenerS: the listener process's CPU (user+sys) over the run. On
	// loopback the receiving half of each packet is charged to whoever
	// sent it, so a prober that closes with a reset pays for the
	// listener's side of the close, and one that closes with a FIN leaves
	// the listener to send its own FIN: the sum of both is the fairer
	// comparison, printed next to the prober's alone.
	ListenerS float64 `json:"-"`
	Drift     struct {
		Samples int     `json:"samples"`
		Missed  int     `json:"missed"`
		P50ms   float64 `json:"p50_ms"`
		P99ms   float64 `json:"p99_ms"`
	}
}

// BenchmarkChecks compares havip's check engine (internal/checks) with a
// naive prober (a goroutine per target: dial or net/http GET, close,
// sleep) on 10,000 TCP, and 5,000 TCP + 5,000 HTTP, targets at 1 s, each
// engine in its own process (test/checkbench) one after the other, the
// listeners in a third. It prints CPU (and the ratio), RSS, interval
// drift as the listener sees it (gaps between connections to a target
// minus the interval; gaps of 1.5 intervals or more are counted as
// missed probes instead), TIME_WAIT sockets and DOWN transitions
// of healthy targets next to the targets of issue 8; nothing is
// asserted. CHECKBENCH_DURATION (default 30s) sets each run's length.
func BenchmarkChecks(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "checkbench")
	if out, err := exec.Command("go", "build", "-o", bin, "../checkbench").CombinedOutput(); err != nil {
		b.Fatalf("build checkbench: %v\n%s", err, out)
	}
	for range b.N {
		for _, sc := range []struct {
			name      string
			tcp, http int
		}{{"10000 tcp", 10000, 0}, {"5000 tcp + 5000 http", 5000, 5000}} {
			var figs []checkFigures
			for _, engine := range []string{"havip", "naive"} {
				figs = append(figs, checkRun(b, bin, engine, sc.tcp, sc.http))
			}
			h, n := figs[0], figs[1]
			ratio := h.CPUSeconds / n.CPUSeconds
			// Per probe the listener saw: a naive prober that falls
			// behind runs fewer probes for its CPU.
			perProbe := (h.CPUSeconds / float64(max(h.Drift.Samples, 1))) / (n.CPUSeconds / float64(max(n.Drift.Samples, 1)))
			fmt.Printf("BenchmarkChecks %s at 1s, %0.fs per engine\n", sc.name, h.Seconds)
			fmt.Printf("  %-6s %8s %8s %8s %9s %9s %8s %9s %9s %9s %6s %5s\n", "engine", "cpu%", "user_s", "sys_s", "peakRSS", "RSS", "probes", "p50drift", "p99drift", "TIME_WAIT", "DOWNs", "late")
			for _, f := range figs {
				fmt.Printf("  %-6s %7.1f%% %8.2f %8.2f %7.1fMB %7.1fMB %8d %7d %7.1fms %7.1fms %9d %6d %5d\n", f.Engine, f.CPUPercent, f.UserS, f.SysS,
					f.PeakRSSMB, f.RSSMB, f.Drift.Samples, f.Drift.Missed, f.Drift.P50ms, f.Drift.P99ms, f.TimeWait, f.Downs, f.Late)
			}
			fmt.Printf("  havip/naive CPU %.2fx (target <= 0.75x), per probe %.2fx, user %.2fx; peak RSS %.1f MB (target <= 64); p99 drift %.1f ms (target <= 20); TIME_WAIT %d (target < 1000); DOWN %d (target 0)\n",
				ratio, perProbe, h.UserS/n.UserS, h.PeakRSSMB, h.Drift.P99ms, h.TimeWait, h.Downs)
			fmt.Printf("  with the listener's CPU (the other end of every probe on loopback): havip %.2f s + %.2f s, naive %.2f s + %.2f s: %.2fx\n",
				h.CPUSeconds, h.ListenerS, n.CPUSeconds, n.ListenerS, (h.CPUSeconds+h.ListenerS)/(n.CPUSeconds+n.ListenerS))
			if len(h.Failures) > 0 {
				fmt.Printf("  havip failed probes: %v\n", h.Failures)
			}
			b.ReportMetric(ratio, "cpu-ratio-"+strings.ReplaceAll(sc.name, " ", ""))
		}
	}
}

// checkRun runs one engine against a fresh listener process.
func checkRun(b *testing.B, bin, engine string, nTCP, nHTTP int) checkFigures {
	b.Helper()
	lis := exec.Command(bin, "listen")
	lis.Stderr = os.Stderr
	stdin, err := lis.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := lis.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := lis.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { stdin.Close(); _ = lis.Wait() }()
	lines := bufio.NewScanner(stdout)
	var tcpPort, httpPort int
	if !lines.Scan() {
		b.Fatal("checkbench listen: no ports")
	}
	if _, err := fmt.Sscanf(lines.Text(), "ports %d %d", &tcpPort, &httpPort); err != nil {
		b.Fatalf("checkbench listen: %q: %v", lines.Text(), err)
	}
	cmd := exec.Command(bin, "run", "-engine", engine, "-tcp", fmt.Sprint(nTCP), "-http", fmt.Sprint(nHTTP),
		"-tcp-port", fmt.Sprint(tcpPort), "-http-port", fmt.Sprint(httpPort))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("checkbench run %s: %v", engine, err)
	}
	var f checkFigures
	if err := json.Unmarshal(out, &f); err != nil {
		b.Fatalf("checkbench run %s: %q: %v", engine, out, err)
	}
	if _, err := fmt.Fprintln(stdin, "report"); err != nil {
		b.Fatal(err)
	}
	if !lines.Scan() {
		b.Fatal("checkbench listen: no report")
	}
	if err := json.Unmarshal(lines.Bytes(), &f.Drift); err != nil {
		b.Fatalf("checkbench listen report %q: %v", lines.Text(), err)
	}
	stdin.Close()
	if err := lis.Wait(); err != nil {
		b.Fatalf("checkbench listen: %v", err)
	}
	f.ListenerS = (lis.ProcessState.UserTime() + lis.ProcessState.SystemTime()).Seconds()
	return f
}

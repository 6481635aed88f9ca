package conf

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/havip/havip/internal/conf/conftest"
)

// Issue 8's target: a site of 10,000 virtual servers x 10 real servers
// loads, validates and reloads (one weight changed) in under 1 s.
const (
	largeVS   = 10000
	largeRS   = 10
	largeGoal = time.Second
)

// BenchmarkLoadLarge times Load (what havip check and the daemon run) of
// the large site, and of the same site with one weight changed, against
// the full TOML decoder alone on the same bytes, measured in the same run,
// and shows what of it is decodePlain's.
func BenchmarkLoadLarge(b *testing.B) {
	dir := b.TempDir()
	before, after := filepath.Join(dir, "before.toml"), filepath.Join(dir, "after.toml")
	data := conftest.Large(largeVS, largeRS, -1)
	if err := os.WriteFile(before, data, 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(after, conftest.Large(largeVS, largeRS, largeVS*largeRS/2), 0o644); err != nil {
		b.Fatal(err)
	}
	var decode, plain, load, reload, decodeCPU, loadCPU time.Duration
	for b.Loop() {
		start, cpu := time.Now(), cpuTime()
		var raw map[string]any
		if _, err := toml.Decode(string(data), &raw); err != nil {
			b.Fatal(err)
		}
		decode, decodeCPU = decode+time.Since(start), decodeCPU+cpuTime()-cpu

		start = time.Now()
		if _, _, ok := decodePlain(data); !ok {
			b.Fatal("the large site is not plain")
		}
		plain += time.Since(start)

		start, cpu = time.Now(), cpuTime()
		s := loadLarge(b, before)
		load, loadCPU = load+time.Since(start), loadCPU+cpuTime()-cpu

		start = time.Now()
		s2 := loadLarge(b, after)
		reload += time.Since(start)
		if s.Revision == s2.Revision || s2.VirtualServers[largeVS/2].RealServers[0].Weight != 2 {
			b.Fatalf("the changed file loaded as the same site (revisions %s, %s)", s.Revision, s2.Revision)
		}
	}
	n := time.Duration(b.N)
	b.Logf("site of %d virtual servers x %d real servers, %.1f MiB", largeVS, largeRS, float64(len(data))/(1<<20))
	b.Logf("toml decode alone (baseline): %v; decodePlain alone (part of conf.Load): %v", (decode / n).Round(time.Millisecond), (plain / n).Round(time.Millisecond))
	b.Logf("conf.Load: %v (%.2f x the decode; target < %v: %.2f of it)", (load / n).Round(time.Millisecond),
		float64(load)/float64(decode), largeGoal, float64(load/n)/float64(largeGoal))
	b.Logf("conf.Load, one weight changed: %v (%.2f of the target)", (reload / n).Round(time.Millisecond), float64(reload/n)/float64(largeGoal))
	b.Logf("CPU time of the process (every core; less sensitive to other load on the machine): decode %v, conf.Load %v (%.2f x)",
		(decodeCPU / n).Round(time.Millisecond), (loadCPU / n).Round(time.Millisecond), float64(loadCPU)/float64(decodeCPU))
}

// cpuTime is the user and system CPU time of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func loadLarge(b *testing.B, path string) *Site {
	b.Helper()
	s, ps, err := Load(path)
	if err != nil || HasErrors(ps) {
		b.Fatalf("Load: %v %v", err, ps)
	}
	return s
}

// TestLargeSiteInParallel: a site large enough to be built by several
// workers gives the same site and the same problems, in the same order,
// as building it alone (a tracer makes parse build alone).
func TestLargeSiteInParallel(t *testing.T) {
	data := conftest.Large(3000, 3, 4000)
	text := strings.Replace(string(data), "weight = 2\n", "weight = 70000\n", 1)          // an error in virtual server 1333
	text = strings.Replace(text, "name = \"vs2999\"", "name = \"vs2999\"\ncolour = 1", 1) // and one in the last
	text = strings.Replace(text, "name = \"vs7\"\n", "name = \"vs7\"\nquorum = 9\n", 1)   // and one in the first worker's
	build := func(sequential bool) (*Site, []Problem) {
		x := scan([]byte(text))
		var raw map[string]any
		if _, err := toml.Decode(text, &raw); err != nil {
			t.Fatal(err)
		}
		p := &parser{file: "t.toml", ix: x.ix}
		if sequential {
			p.tracer = func(string) {}
		}
		s := p.site(p.newTable("", 0, pos{line: 1}, raw))
		sortProblems(p.probs)
		return s, p.probs
	}
	s1, ps1 := build(false)
	s2, ps2 := build(true)
	if len(ps1) < 3 {
		t.Fatalf("want the three errors, got %v", strs(ps1))
	}
	if diff := cmp.Diff(strs(ps2), strs(ps1)); diff != "" {
		t.Errorf("problems, alone (-) and in parallel (+):\n%s", diff)
	}
	if diff := cmp.Diff(s2, s1, cmp.AllowUnexported(), cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{}, netip.Prefix{})); diff != "" {
		t.Errorf("site, alone (-) and in parallel (+):\n%s", diff)
	}
}

//go:build !vmtest

package lvs

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// vmPackages are the packages whose vmtest tests need a kernel with IPVS.
// ipvsync first: its real-kernel test reads /proc/net/ip_vs, whose walk of
// the kernel's global tables misses this namespace's fwmark service while
// namespaces of the e2e tests still hold services (seen twice in full runs).
var vmPackages = []string{"./internal/ipvsync", "./test/e2e/lvs", "./internal/realserver"}

// TestVMLab boots the VM lab once and runs every VM-only test in it: DR,
// TUN and NAT through a havip pair, the reconciler and sync daemons
// against the real kernel, and the real-server side. It fails (never
// skips) when the VM cannot be set up.
func TestVMLab(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM; skipped with -short")
	}
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("bash", filepath.Join(root, "test", "vmlab", "setup.sh")).CombinedOutput(); err != nil {
		t.Fatalf("vmlab/setup.sh: %v\n%s", err, out)
	}
	args := []string{"run", "./test/vmlab/vmrun", "-timeout", "8m"}
	for _, p := range vmPackages {
		args = append(args, "-pkg", p)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	log := out.String()
	if dir := os.Getenv("HAVIP_VMLOG"); dir != "" {
		_ = os.WriteFile(filepath.Join(dir, "vmlab.log"), out.Bytes(), 0o644)
	}
	// The LVS results table, for the record.
	if i := strings.Index(log, "LVS through a havip pair"); i >= 0 {
		table := log[i:]
		if j := strings.Index(table, "--- "); j >= 0 {
			table = table[:j]
		}
		t.Logf("\n%s", table)
	}
	if err != nil {
		// The failures first: CI keeps only the head and tail of a long log.
		t.Fatalf("vmrun: %v\nfailures:\n%s\nVM output:\n%s", err, failures(log), log)
	}
	for _, p := range vmPackages {
		name := strings.TrimPrefix(p, "./")
		if !regexp.MustCompile(`VMLAB-RESULT ` + regexp.QuoteMeta(name) + ` rc=0`).MatchString(log) {
			t.Errorf("no passing result for %s in the VM output", name)
		}
	}
	for _, want := range []string{"--- PASS: TestLVS/dr", "--- PASS: TestLVS/tun", "--- PASS: TestLVS/nat", "--- PASS: TestQuorumSorryServer", "--- PASS: TestIPVSStateAndSyncHeal", "--- PASS: TestReloadFirstVirtualServer", "--- PASS: TestDrainMirrored", "--- PASS: TestDrillSyncedUnderTraffic"} {
		if !strings.Contains(log, want) {
			t.Errorf("VM output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("failures:\n%s\nVM output:\n%s", failures(log), log)
	}
}

// failures returns each "--- FAIL" line of a go test -v log with the
// lines that test printed since its "=== RUN", at most 40 of them.
func failures(log string) string {
	lines := strings.Split(log, "\n")
	var b strings.Builder
	for i, l := range lines {
		if !strings.Contains(l, "--- FAIL") {
			continue
		}
		start := i
		for start > 0 && i-start < 40 && !strings.Contains(lines[start], "=== RUN") {
			start--
		}
		for _, x := range lines[start : i+1] {
			b.WriteString(x)
			b.WriteByte('\n')
		}
	}
	if b.Len() == 0 {
		return "(no --- FAIL line: see VMLAB-RESULT lines below)\n"
	}
	return b.String()
}

func TestFailuresExtract(t *testing.T) {
	log := "=== RUN   TestA\n--- PASS: TestA (0.00s)\n=== RUN   TestB\nb.go:3: want 1, got 2\n--- FAIL: TestB (0.01s)\nPASS\n"
	got := failures(log)
	want := "=== RUN   TestB\nb.go:3: want 1, got 2\n--- FAIL: TestB (0.01s)\n"
	if got != want {
		t.Errorf("failures:\n%q\nwant\n%q", got, want)
	}
	if got := failures("ok\n"); !strings.Contains(got, "no --- FAIL line") {
		t.Errorf("no failure: %q", got)
	}
}

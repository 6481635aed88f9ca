package vmlab

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// vmrunHarness prepares the host (setup.sh: idempotent, fast when cached)
// and builds the vmrun command. It fails, never skips, when that cannot be
// done: VM tests that cannot run must not pass.
func vmrunHarness(t *testing.T) (vmrun, root string) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a VM; skipped with -short")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	setup := exec.Command("bash", filepath.Join(root, "test", "vmlab", "setup.sh"))
	if out, err := setup.CombinedOutput(); err != nil {
		t.Fatalf("vmlab/setup.sh: %v\n%s", err, out)
	}
	vmrun = filepath.Join(t.TempDir(), "vmrun")
	build := exec.Command("go", "build", "-o", vmrun, "./test/vmlab/vmrun")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./test/vmlab/vmrun: %v\n%s", err, out)
	}
	return vmrun, root
}

// runVM runs vmrun from the module root and returns its exit code and
// combined output (console and harness log).
func runVM(t *testing.T, vmrun, root string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(vmrun, args...)
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	// Shown only if the test fails, each line behind "| ": the VM's own
	// "--- FAIL" lines must not look like results to go test -json.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("vmrun %s:\n| %s", strings.Join(args, " "),
				strings.ReplaceAll(strings.TrimRight(out.String(), "\n"), "\n", "\n| "))
		}
	})
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String()
	}
	t.Fatalf("vmrun: %v", err)
	return -1, ""
}

// TestSmokeVM is the harness end to end: build the smoke package's vmtest
// binary and havip, boot the VM, run it, and get rc=0 back through the
// console.
func TestSmokeVM(t *testing.T) {
	vmrun, root := vmrunHarness(t)
	// The default path, as other packages use it: with ./cmd/havip built in.
	rc, out := runVM(t, vmrun, root, "-pkg", "./test/vmlab/smoke", "-timeout", "2m")
	if rc != 0 {
		t.Fatalf("vmrun exit %d, want 0", rc)
	}
	for _, want := range []string{
		"VMLAB-MODULES loaded=",
		"HAVIP_BIN /bin/havip: havip ",
		"--- PASS: TestProcNetIPVS",
		"--- PASS: TestIPVSProgramAndReadBack",
		"--- PASS: TestIPVSAdmRestore",
		"VMLAB-RESULT test/vmlab/smoke rc=0",
		"VMLAB-DONE",
		"vmlab: PASS",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(out, "--- FAIL") || strings.Contains(out, "VMLAB-MODULE-FAIL") {
		t.Errorf("output reports a failure")
	}
}

// TestFailuresReported proves that a failing test, a VM that powers off or
// panics under a test, and a VM that outlives its watchdog each make vmrun
// exit 1 and say why.
func TestFailuresReported(t *testing.T) {
	vmrun, root := vmrunHarness(t)
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{
			name: "test fails",
			args: []string{"-env", "VMLAB_SMOKE_FAIL=yes", "-run", "TestVMEnvironment"},
			want: []string{"--- FAIL: TestVMEnvironment", "VMLAB-RESULT test/vmlab/smoke rc=1", "VMLAB-DONE", "test/vmlab/smoke: FAILED rc=1"},
		},
		{
			name: "VM dies mid-test",
			args: []string{"-env", "VMLAB_SMOKE_POWEROFF=1", "-run", "TestVMEnvironment"},
			want: []string{"VMLAB-START test/vmlab/smoke", "test/vmlab/smoke: started but no result", "VM ended before VMLAB-DONE", "last "},
		},
		{
			name: "kernel panic",
			args: []string{"-env", "VMLAB_SMOKE_PANIC=1", "-run", "TestVMEnvironment"},
			want: []string{"kernel panic: ", "test/vmlab/smoke: started but no result"},
		},
		{
			name: "watchdog",
			args: []string{"-vm-timeout", "1s"},
			want: []string{"VM watchdog: killed after 1s"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-pkg", "./test/vmlab/smoke", "-no-havip", "-timeout", "1m"}, tc.args...)
			rc, out := runVM(t, vmrun, root, args...)
			if rc != 1 {
				t.Errorf("vmrun exit %d, want 1", rc)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q", w)
				}
			}
			if strings.Contains(out, "vmlab: PASS") {
				t.Errorf("output claims PASS")
			}
		})
	}
}

// TestNoTestFiles: a package without vmtest tests is a build error (exit 2),
// not a silent pass.
func TestNoTestFiles(t *testing.T) {
	vmrun, root := vmrunHarness(t)
	rc, out := runVM(t, vmrun, root, "-pkg", "./test/vmlab/vmrun", "-no-havip")
	if rc != 2 || !strings.Contains(out, "has no test files") {
		t.Errorf("vmrun exit %d, want 2 with 'has no test files'", rc)
	}
}

// Package vmlab runs havip's VM-only Go tests inside a qemu virtual machine
// that boots Debian's cloud kernel (which has IPVS) with a busybox initramfs.
//
// It owns: compiling the test binaries (build tag vmtest) and havip as static
// binaries, building the initramfs (busybox, kernel modules in dependency
// order, ipvsadm with its libraries, /init), booting qemu under TCG,
// streaming the serial console and turning /init's marker lines into a
// verdict. It never touches the host's network or kernel: the VM has no NIC.
//
// The kernel tree and host packages come from test/vmlab/setup.sh.
package vmlab

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

//go:embed init.sh
var initScript []byte

// DefaultCache is where setup.sh unpacks the kernel; VMLAB_CACHE overrides it.
const DefaultCache = "/var/cache/havip-vmlab"

// Config says what to run and how big a VM to run it in.
type Config struct {
	Packages []string      // Go packages with vmtest tests, as for go test (e.g. ./internal/ipvsync)
	Run      string        // -test.run regexp, empty for all
	Bench    string        // -test.bench regexp, empty for none
	Timeout  time.Duration // -test.timeout for each test binary
	TestArgs []string      // more flags for every test binary
	Env      []string      // more KEY=VALUE for the test binaries

	NoHavip bool     // do not build ./cmd/havip (HAVIP_BIN is then unset)
	Bins    []string // more host binaries to copy (with their libraries) to /usr/local/bin
	Modules []string // more kernel modules to load (see DefaultModules for syntax)

	SMP   int // virtual CPUs
	MemMB int // VM memory in MiB

	KernelTree string        // unpacked kernel package; default $VMLAB_CACHE/current
	VMTimeout  time.Duration // whole-VM watchdog; default derived from Timeout
	Keep       bool          // keep the work dir (initramfs, binaries, console.log)
	Shell      bool          // after the tests, an interactive shell on the console

	Stdout io.Writer // console stream; default os.Stdout
	Log    io.Writer // harness progress; default os.Stderr
}

// Report is the outcome of one VM run.
type Report struct {
	Results  []TestResult
	WorkDir  string        // removed unless Config.Keep
	Build    time.Duration // compiling + initramfs
	Boot     time.Duration // qemu start to /init
	Modules  time.Duration // qemu start to modules loaded
	Total    time.Duration // qemu start to exit
	Tail     []string      // last console lines
	Initrd   int64         // initramfs size in bytes
	QEMUArgs []string
}

type testBin struct {
	name    string // marker name: import path relative to the module, e.g. vmlab/smoke
	file    string // file name under /tests
	dir     string // package source dir (for testdata)
	hostBin string
}

func (c *Config) defaults() {
	if c.Timeout == 0 {
		c.Timeout = 8 * time.Minute
	}
	if c.SMP == 0 {
		c.SMP = 2
	}
	if c.MemMB == 0 {
		c.MemMB = 1024
	}
	if c.Stdout == nil {
		c.Stdout = os.Stdout
	}
	if c.Log == nil {
		c.Log = os.Stderr
	}
	if c.KernelTree == "" {
		cache := os.Getenv("VMLAB_CACHE")
		if cache == "" {
			cache = DefaultCache
		}
		c.KernelTree = filepath.Join(cache, "current")
	}
	if c.VMTimeout == 0 {
		// Boot and module loading take seconds; the test timeouts dominate.
		c.VMTimeout = 3*time.Minute + time.Duration(len(c.Packages))*(c.Timeout+30*time.Second)
	}
}

func (c *Config) logf(format string, args ...any) {
	fmt.Fprintf(c.Log, "vmlab: "+format+"\n", args...)
}

// Run builds everything, boots the VM and returns its report. The error is
// nil only if every test binary exited 0; it wraps ErrVM when the VM ran
// but a test failed or the VM died, timed out or panicked.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.defaults()
	if len(cfg.Packages) == 0 && !cfg.Shell {
		return nil, errors.New("vmlab: no packages to test")
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return nil, fmt.Errorf("vmlab: qemu-system-x86_64 not found (run test/vmlab/setup.sh): %w", err)
	}
	kernels, _ := filepath.Glob(filepath.Join(cfg.KernelTree, "boot", "vmlinuz-*"))
	if len(kernels) != 1 {
		return nil, fmt.Errorf("vmlab: no kernel at %s/boot/vmlinuz-* (run test/vmlab/setup.sh)", cfg.KernelTree)
	}

	rep := &Report{}
	work, err := os.MkdirTemp("", "havip-vmlab-")
	if err != nil {
		return nil, fmt.Errorf("vmlab: %w", err)
	}
	rep.WorkDir = work
	if cfg.Keep {
		cfg.logf("work dir %s (kept)", work)
	} else {
		defer os.RemoveAll(work)
	}

	start := time.Now()
	bins, havip, err := buildBinaries(ctx, &cfg, work)
	if err != nil {
		return rep, err
	}
	initrd := filepath.Join(work, "initramfs.cpio")
	size, err := buildInitramfs(&cfg, initrd, bins, havip)
	if err != nil {
		return rep, err
	}
	rep.Initrd = size
	rep.Build = time.Since(start)
	cfg.logf("built %d test binaries and a %.1f MiB initramfs in %s",
		len(bins), float64(size)/(1<<20), rep.Build.Round(100*time.Millisecond))

	var want []string
	for _, b := range bins {
		want = append(want, b.name)
	}
	err = boot(ctx, &cfg, rep, qemu, kernels[0], initrd, want)
	for _, r := range rep.Results {
		status := "PASS"
		if r.RC != 0 {
			status = "FAIL"
		}
		cfg.logf("%s %s rc=%d", status, r.Name, r.RC)
	}
	if rep.Total > 0 {
		cfg.logf("/init reached after %s, modules loaded after %s, VM ran %s",
			roundOrNot(rep.Boot), roundOrNot(rep.Modules), roundOrNot(rep.Total))
	}
	if err != nil {
		fmt.Fprintf(cfg.Log, "vmlab: last %d console lines:\n", len(rep.Tail))
		for _, l := range rep.Tail {
			fmt.Fprintf(cfg.Log, "  | %s\n", l)
		}
	}
	return rep, err
}

// buildBinaries compiles the test binaries and (unless NoHavip) havip,
// two at a time.
func buildBinaries(ctx context.Context, cfg *Config, work string) ([]testBin, string, error) {
	var bins []testBin
	seen := map[string]bool{}
	for _, pkg := range cfg.Packages {
		out, err := goCmd(ctx, "list", "-tags", "vmtest", "-f", "{{.Dir}}|{{.ImportPath}}|{{with .Module}}{{.Path}}{{end}}", pkg)
		if err != nil {
			return nil, "", fmt.Errorf("vmlab: go list %s: %w", pkg, err)
		}
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			parts := strings.SplitN(l, "|", 3)
			if len(parts) != 3 {
				return nil, "", fmt.Errorf("vmlab: go list %s: unexpected %q", pkg, l)
			}
			name := strings.TrimPrefix(strings.TrimPrefix(parts[1], parts[2]), "/")
			if name == "" {
				name = filepath.Base(parts[1])
			}
			if seen[name] {
				continue
			}
			seen[name] = true
			file := strings.NewReplacer("/", "_", ".", "_").Replace(name) + ".test"
			bins = append(bins, testBin{name: name, file: file, dir: parts[0], hostBin: filepath.Join(work, file)})
		}
	}

	type job struct {
		what string
		args []string
	}
	var jobs []job
	for _, b := range bins {
		jobs = append(jobs, job{b.name, []string{"test", "-c", "-tags", "vmtest", "-o", b.hostBin, b.dir}})
	}
	havip := ""
	if !cfg.NoHavip {
		havip = filepath.Join(work, "havip")
		root, err := goCmd(ctx, "list", "-m", "-f", "{{.Dir}}")
		if err != nil {
			return nil, "", fmt.Errorf("vmlab: find module root: %w", err)
		}
		jobs = append(jobs, job{"havip", []string{"build", "-o", havip, filepath.Join(strings.TrimSpace(root), "cmd", "havip")}})
	}

	errs := make([]error, len(jobs))
	sem := make(chan struct{}, 2)
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if _, err := goCmd(ctx, j.args...); err != nil {
				if j.what == "havip" {
					err = fmt.Errorf("vmlab: ./cmd/havip does not build (pass -no-havip to run without it): %w", err)
				} else {
					err = fmt.Errorf("vmlab: compile tests of %s: %w", j.what, err)
				}
				errs[i] = err
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, "", err
	}
	for _, b := range bins {
		if _, err := os.Stat(b.hostBin); err != nil {
			return nil, "", fmt.Errorf("vmlab: %s has no test files (with build tag vmtest?)", b.name)
		}
	}
	return bins, havip, nil
}

// goCmd runs the go tool with CGO disabled (static binaries) and returns its
// stdout; stderr goes into the error.
func goCmd(ctx context.Context, args ...string) (string, error) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, gobin, args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// isStatic reports whether an ELF file has no program interpreter.
func isStatic(p string) (bool, error) {
	f, err := elf.Open(p)
	if err != nil {
		return false, err
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return false, nil
		}
	}
	return true, nil
}

// boot runs qemu, streams and parses the console, and sets the verdict.
func boot(ctx context.Context, cfg *Config, rep *Report, qemu, kernel, initrd string, want []string) error {
	appendLine := "console=ttyS0 quiet panic=-1"
	serial := "-serial"
	serialArg := "stdio"
	if cfg.Shell {
		appendLine += " vmlab.shell=1"
		serialArg = "mon:stdio" // Ctrl-A x quits, Ctrl-A c is the monitor
	}
	args := []string{
		"-accel", "tcg", "-cpu", "max",
		"-m", fmt.Sprint(cfg.MemMB), "-smp", fmt.Sprint(cfg.SMP),
		"-nodefaults", "-no-user-config", "-no-reboot", "-display", "none",
		serial, serialArg,
		"-kernel", kernel, "-initrd", initrd, "-append", appendLine,
	}
	rep.QEMUArgs = append([]string{qemu}, args...)
	if cfg.Keep {
		cmdline := shellQuote(rep.QEMUArgs)
		os.WriteFile(filepath.Join(rep.WorkDir, "qemu.sh"), []byte("#!/bin/sh\nexec "+cmdline+" \"$@\"\n"), 0o755)
		cfg.logf("rerun the VM with %s", filepath.Join(rep.WorkDir, "qemu.sh"))
	}

	vctx := ctx
	var cancel context.CancelFunc
	if !cfg.Shell {
		vctx, cancel = context.WithTimeout(ctx, cfg.VMTimeout)
		defer cancel()
	}
	cmd := exec.CommandContext(vctx, qemu, args...)
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = io.MultiWriter(&stderr, cfg.Log)
	if cfg.Shell {
		cmd.Stdin = os.Stdin
	}
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("vmlab: %w", err)
	}
	logFile, err := os.Create(filepath.Join(rep.WorkDir, "console.log"))
	if err != nil {
		return fmt.Errorf("vmlab: %w", err)
	}
	defer logFile.Close()

	start := time.Now()
	cfg.logf("booting %s (smp %d, %d MiB, watchdog %s)", filepath.Base(kernel), cfg.SMP, cfg.MemMB, cfg.VMTimeout)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("vmlab: start qemu: %w", err)
	}
	con := newConsole(40)
	br := bufio.NewReaderSize(pipe, 64<<10)
	for {
		line, rerr := br.ReadString('\n')
		if line != "" {
			logFile.WriteString(line)
			if cfg.Shell {
				io.WriteString(cfg.Stdout, line) // terminal is raw: pass \r through
			}
			line = strings.TrimRight(line, "\r\n")
			if !cfg.Shell {
				io.WriteString(cfg.Stdout, line+"\n")
			}
			wasBooted, wasMods := con.booted, con.modsDone
			con.line(line)
			if !wasBooted && con.booted {
				rep.Boot = time.Since(start)
			}
			if !wasMods && con.modsDone {
				rep.Modules = time.Since(start)
			}
		}
		if rerr != nil {
			break
		}
	}
	werr := cmd.Wait()
	rep.Total = time.Since(start)
	rep.Results = con.results
	rep.Tail = con.tail

	var problems []string
	switch {
	case vctx.Err() == context.DeadlineExceeded:
		problems = append(problems, fmt.Sprintf("VM watchdog: killed after %s", cfg.VMTimeout))
	case ctx.Err() != nil:
		problems = append(problems, "interrupted: "+ctx.Err().Error())
	case werr != nil:
		problems = append(problems, fmt.Sprintf("qemu: %v: %s", werr, strings.TrimSpace(stderr.String())))
	}
	problems = append(problems, con.problems(want)...)
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%w:\n  %s", ErrVM, strings.Join(problems, "\n  "))
}

func shellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=./:,+@%") == "" {
			q[i] = a
		} else {
			q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(q, " ")
}

func roundOrNot(d time.Duration) string {
	if d == 0 {
		return "(never)"
	}
	return d.Round(100 * time.Millisecond).String()
}

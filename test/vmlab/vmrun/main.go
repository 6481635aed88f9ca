// Command vmrun runs havip's VM-only tests (build tag vmtest) inside a qemu
// VM with Debian's cloud kernel. See vmlab/README.md.
//
//	go run ./test/vmlab/vmrun -pkg ./internal/ipvsync -pkg ./test/e2e -run REGEX -timeout 8m [-smp 2] [-mem 1024] [-keep] [-- TESTFLAGS]
//
// Exit status: 0 if every test binary passed, 1 if a test failed or the VM
// died, panicked or timed out, 2 on a usage or build error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/havip/havip/test/vmlab"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

func main() {
	var cfg vmlab.Config
	var pkgs, env, bins, mods listFlag
	flag.Var(&pkgs, "pkg", "Go package with vmtest tests (repeatable), e.g. ./internal/ipvsync")
	flag.StringVar(&cfg.Run, "run", "", "only tests matching this regexp (-test.run)")
	flag.StringVar(&cfg.Bench, "bench", "", "benchmarks matching this regexp (-test.bench)")
	flag.DurationVar(&cfg.Timeout, "timeout", 0, "-test.timeout of each test binary (default 8m)")
	flag.DurationVar(&cfg.VMTimeout, "vm-timeout", 0, "watchdog for the whole VM (default 3m + per package timeout+30s)")
	flag.IntVar(&cfg.SMP, "smp", 2, "virtual CPUs")
	flag.IntVar(&cfg.MemMB, "mem", 1024, "VM memory in MiB")
	flag.BoolVar(&cfg.Keep, "keep", false, "keep the work dir (initramfs, test binaries, console.log, qemu.sh)")
	flag.BoolVar(&cfg.NoHavip, "no-havip", false, "do not build ./cmd/havip into the VM (HAVIP_BIN stays unset)")
	flag.BoolVar(&cfg.Shell, "shell", os.Getenv("VMLAB_SHELL") == "1", "interactive shell on the console after the tests (also VMLAB_SHELL=1)")
	flag.StringVar(&cfg.KernelTree, "kernel-tree", "", "unpacked kernel package (default $VMLAB_CACHE/current)")
	flag.Var(&env, "env", "KEY=VALUE for the test binaries (repeatable)")
	flag.Var(&bins, "bin", "host binary to copy with its libraries to /usr/local/bin (repeatable)")
	flag.Var(&mods, "module", "extra kernel module to load, with dependencies (repeatable)")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: vmrun -pkg PKG [-pkg PKG...] [flags] [-- test flags]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	cfg.Packages, cfg.Env, cfg.Bins, cfg.Modules = pkgs, env, bins, mods
	cfg.TestArgs = flag.Args()
	if len(pkgs) == 0 && !cfg.Shell {
		flag.Usage()
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	_, err := vmlab.Run(ctx, cfg)
	switch {
	case err == nil:
		fmt.Fprintln(os.Stderr, "vmlab: PASS")
	case errors.Is(err, vmlab.ErrVM):
		fmt.Fprintf(os.Stderr, "vmlab: FAIL\n%v\n", err)
		os.Exit(1)
	default:
		fmt.Fprintf(os.Stderr, "vmlab: error: %v\n", err)
		os.Exit(2)
	}
}

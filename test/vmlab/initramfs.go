package vmlab

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// Host files the initramfs is made of (Debian paths).
var (
	hostBusybox = "/bin/busybox"      // busybox-static
	hostIPVSAdm = "/usr/sbin/ipvsadm" // ipvsadm, dynamically linked
)

// buildInitramfs writes an uncompressed newc initramfs to out. Uncompressed
// because gzip -1 saved nothing measurable at boot (3.0 s to /init either
// way for 26 MiB) and would cost host time on every run.
func buildInitramfs(cfg *Config, out string, bins []testBin, havip string) (int64, error) {
	a := newCPIO()
	for _, d := range []string{"proc", "sys", "dev", "run", "tmp", "root", "etc", "bin", "sbin", "usr/bin", "usr/sbin", "mnt"} {
		a.AddDir(d)
	}
	a.AddSymlink("var/run", "../run")
	a.AddFile("init", 0o755, initScript)
	a.AddFile("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"))
	a.AddFile("etc/group", 0o644, []byte("root:x:0:\nnogroup:x:65534:\n"))
	a.AddFile("etc/hosts", 0o644, []byte("127.0.0.1 localhost vmlab\n::1 localhost ip6-localhost\n"))

	if err := addBusybox(a); err != nil {
		return 0, err
	}
	if err := addDynamic(a, hostIPVSAdm, "sbin/ipvsadm"); err != nil {
		return 0, err
	}
	for _, b := range cfg.Bins {
		if err := addDynamic(a, b, "usr/local/bin/"+filepath.Base(b)); err != nil {
			return 0, err
		}
	}

	mods, err := addModules(a, cfg)
	if err != nil {
		return 0, err
	}
	a.AddFile("etc/vmlab/modules", 0o644, []byte(strings.Join(mods, "\n")+"\n"))

	env := []string{"HAVIP_VM=1"}
	if havip != "" {
		if err := addHostFile(a, havip, "bin/havip", 0o755); err != nil {
			return 0, err
		}
		env = append(env, "HAVIP_BIN=/bin/havip")
	}
	env = append(env, cfg.Env...)
	var envSh strings.Builder
	envSh.WriteString("unset HAVIP_BIN\n")
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \t'\"$=") {
			return 0, fmt.Errorf("vmlab: bad env %q, want KEY=VALUE", kv)
		}
		fmt.Fprintf(&envSh, "export %s=%s\n", k, shellQuote([]string{v}))
	}
	a.AddFile("etc/vmlab/env.sh", 0o644, []byte(envSh.String()))

	var tests strings.Builder
	for _, b := range bins {
		if err := addHostFile(a, b.hostBin, "tests/"+b.file, 0o755); err != nil {
			return 0, err
		}
		src := "src/" + strings.TrimSuffix(b.file, ".test")
		a.AddDir(src)
		if err := addTree(a, filepath.Join(b.dir, "testdata"), src+"/testdata"); err != nil {
			return 0, err
		}
		cmd := []string{"vmlab_run", b.name, "/" + src, "/tests/" + b.file,
			"-test.v", "-test.timeout=" + cfg.Timeout.String()}
		if cfg.Run != "" {
			cmd = append(cmd, "-test.run="+cfg.Run)
		}
		if cfg.Bench != "" {
			cmd = append(cmd, "-test.bench="+cfg.Bench)
		}
		cmd = append(cmd, cfg.TestArgs...)
		tests.WriteString(shellQuote(cmd) + "\n")
	}
	a.AddFile("etc/vmlab/tests.sh", 0o644, []byte(tests.String()))

	f, err := os.Create(out)
	if err != nil {
		return 0, fmt.Errorf("vmlab: %w", err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	n, err := a.WriteTo(w)
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("vmlab: write initramfs: %w", err)
	}
	return n, nil
}

func addHostFile(a *cpioArchive, host, dst string, perm uint32) error {
	b, err := os.ReadFile(host)
	if err != nil {
		return fmt.Errorf("vmlab: %w", err)
	}
	a.AddFile(dst, perm, b)
	return nil
}

// addBusybox adds the static busybox and a symlink for each of its applets.
func addBusybox(a *cpioArchive) error {
	static, err := isStatic(hostBusybox)
	if err != nil {
		return fmt.Errorf("vmlab: %s (install busybox-static: run test/vmlab/setup.sh): %w", hostBusybox, err)
	}
	if !static {
		return fmt.Errorf("vmlab: %s is dynamically linked; install busybox-static (test/vmlab/setup.sh)", hostBusybox)
	}
	if err := addHostFile(a, hostBusybox, "bin/busybox", 0o755); err != nil {
		return err
	}
	out, err := exec.Command(hostBusybox, "--list-full").Output()
	if err != nil {
		return fmt.Errorf("vmlab: busybox --list-full: %w", err)
	}
	for _, app := range strings.Fields(string(out)) {
		if app == "bin/busybox" || a.Has(app) {
			continue
		}
		a.AddSymlink(app, "/bin/busybox")
	}
	return nil
}

// addDynamic adds a dynamically linked host binary at dst plus every library
// ldd lists (including the dynamic loader) at its host path.
func addDynamic(a *cpioArchive, host, dst string) error {
	if err := addHostFile(a, host, dst, 0o755); err != nil {
		return err
	}
	static, err := isStatic(host)
	if err != nil {
		return fmt.Errorf("vmlab: %s: %w", host, err)
	}
	if static {
		return nil
	}
	out, err := exec.Command("ldd", host).Output()
	if err != nil {
		return fmt.Errorf("vmlab: ldd %s: %w", host, err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		// "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
		// "/lib64/ld-linux-x86-64.so.2 (0x...)"; vdso has no path.
		f := strings.Fields(l)
		var lib string
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			lib = f[2]
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			lib = f[0]
		case len(f) >= 3 && f[1] == "=>" && f[2] == "not":
			return fmt.Errorf("vmlab: %s: library %s not found", host, f[0])
		default:
			continue
		}
		if a.Has(lib) {
			continue
		}
		// Read through symlinks (/lib64/ld-linux... -> ...), store at the
		// path the binary asks for.
		if err := addHostFile(a, lib, lib, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// addTree copies a host directory (e.g. testdata) into the archive; a
// missing directory is not an error.
func addTree(a *cpioArchive, host, dst string) error {
	if _, err := os.Stat(host); os.IsNotExist(err) {
		return nil
	}
	return filepath.WalkDir(host, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(host, p)
		target := path.Join(dst, filepath.ToSlash(rel))
		switch {
		case d.IsDir():
			a.AddDir(target)
		case d.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			a.AddSymlink(target, l)
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			return addHostFile(a, p, target, uint32(info.Mode().Perm()))
		}
		return nil
	})
}

// addModules adds the resolved modules under /lib/modules/KVER (decompressed)
// with a modules.dep for busybox modprobe, and returns the insmod lines
// (path and parameters) in load order.
func addModules(a *cpioArchive, cfg *Config) ([]string, error) {
	t0 := time.Now()
	tree, err := openModuleTree(cfg.KernelTree)
	if err != nil {
		return nil, err
	}
	order, err := tree.resolve(append(append([]string{}, DefaultModules...), cfg.Modules...))
	if err != nil {
		return nil, err
	}
	base := "lib/modules/" + tree.release
	var paths []string
	var dep strings.Builder
	closure := map[string][]string{} // module -> every module it needs, load order
	for _, m := range order {
		ko, err := tree.readKo(m)
		if err != nil {
			return nil, err
		}
		rel := uncompressedPath(m.relPath)
		a.AddFile(base+"/"+rel, 0o644, ko)
		paths = append(paths, strings.TrimSpace("/"+base+"/"+rel+" "+moduleParams[m.name]))

		deps, _ := tree.depsOf(m.name)
		need := map[string]bool{}
		for _, d := range deps {
			need[d] = true
			for _, dd := range closure[d] {
				need[dd] = true
			}
		}
		var all, files []string
		for _, o := range order { // keep load order; modprobe loads right to left
			if need[o.name] {
				all = append(all, o.name)
				files = append([]string{uncompressedPath(o.relPath)}, files...)
			}
		}
		closure[m.name] = all
		fmt.Fprintf(&dep, "%s: %s\n", rel, strings.Join(files, " "))
	}
	a.AddFile(base+"/modules.dep", 0o644, []byte(dep.String()))
	if b, err := os.ReadFile(filepath.Join(tree.dir, "modules.builtin")); err == nil {
		a.AddFile(base+"/modules.builtin", 0o644, b)
	}
	cfg.logf("%d kernel modules from %s resolved in %s", len(order), tree.release, time.Since(t0).Round(time.Millisecond))
	return paths, nil
}

func uncompressedPath(p string) string {
	for _, suf := range []string{".xz", ".zst", ".gz"} {
		p = strings.TrimSuffix(p, suf)
	}
	return p
}

package pkg

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The Debian root the install test starts from: what debootstrap makes of
// these, cached under cacheDir and keyed by them, so that a change of the
// include list builds a new one. man-db lets systemd-analyze verify find
// the man pages the units' Documentation= names.
const (
	suite            = "bookworm"
	bootstrapInclude = "systemd,adduser,man-db"
	cacheDir         = "/var/cache/havip-pkgtest"
	completeMark     = ".havip-pkgtest-complete"
)

// chroot is a throw-away Debian root: an overlay on the cached one (which
// it never changes), with /proc mounted.
type chroot struct {
	t   *testing.T
	dir string
}

// newChroot mounts an overlay of the cached root (building that first if
// there is none) in a temporary directory; the test's cleanup unmounts it
// before the directory is removed.
func newChroot(t *testing.T) *chroot {
	t.Helper()
	requireTools(t, "debootstrap", "chroot")
	cached := cachedRoot(t)
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "root")
	for _, d := range []string{dir, filepath.Join(tmp, "upper"), filepath.Join(tmp, "work")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s/upper,workdir=%s/work", cached, tmp, tmp)
	if err := syscall.Mount("overlay", dir, "overlay", 0, opts); err != nil {
		t.Fatalf("pkg: mount an overlay on the cached Debian root: %v", err)
	}
	// Cleanups run last-registered first, all before t.TempDir's removal.
	t.Cleanup(func() { unmount(t, dir) })
	proc := filepath.Join(dir, "proc")
	if err := syscall.Mount("proc", proc, "proc", 0, ""); err != nil {
		t.Fatalf("pkg: mount /proc in the chroot: %v", err)
	}
	t.Cleanup(func() { unmount(t, proc) })
	return &chroot{t: t, dir: dir}
}

func unmount(t *testing.T, dir string) {
	if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
		t.Errorf("pkg: unmount %s: %v", dir, err)
	}
}

// cachedRoot returns the cached Debian root, building it under an exclusive
// lock when it is missing: parallel test binaries wait for one debootstrap
// instead of racing. A root is used only once debootstrap finished.
func cachedRoot(t *testing.T) string {
	t.Helper()
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile(filepath.Join(cacheDir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("pkg: lock %s: %v", cacheDir, err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)

	root := filepath.Join(cacheDir, suite+"-minbase-"+strings.ReplaceAll(bootstrapInclude, ",", "+"))
	if _, err := os.Stat(filepath.Join(root, completeMark)); err == nil {
		t.Logf("using the cached Debian root %s", root)
		return root
	} else if !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	tmp := root + ".partial"
	if err := os.RemoveAll(tmp); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// debootstrap's default mirror, as apt on this machine reaches it.
	out, errOut, err := runExit("debootstrap", "--variant=minbase", "--include="+bootstrapInclude, suite, tmp)
	if err != nil {
		t.Fatalf("pkg: debootstrap %s: %v\n%s%s", suite, err, tail(out, 20), tail(errOut, 20))
	}
	if err := os.WriteFile(filepath.Join(tmp, completeMark), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, root); err != nil {
		t.Fatal(err)
	}
	t.Logf("debootstrap --variant=minbase --include=%s %s: %v (cached in %s)", bootstrapInclude, suite, time.Since(start).Round(time.Second), root)
	return root
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n") + "\n"
}

// path is a path inside the chroot, as seen from outside.
func (c *chroot) path(p string) string { return filepath.Join(c.dir, p) }

// exec runs argv inside the chroot and returns stdout, stderr and the exit code.
func (c *chroot) exec(argv ...string) (stdout, stderr string, code int) {
	c.t.Helper()
	cmd := exec.Command("chroot", append([]string{c.dir}, argv...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "DEBIAN_FRONTEND=noninteractive", "HOME=/root"}
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		c.t.Fatalf("pkg: chroot %s: %v", strings.Join(argv, " "), err)
	}
	return o.String(), e.String(), code
}

// must runs argv inside the chroot and fails the test unless it exits 0.
func (c *chroot) must(argv ...string) string {
	c.t.Helper()
	out, errOut, code := c.exec(argv...)
	if code != 0 {
		c.t.Fatalf("chroot: %s: exit %d\n%s%s", strings.Join(argv, " "), code, out, errOut)
	}
	return out
}

// exists reports whether p exists inside the chroot.
func (c *chroot) exists(p string) bool {
	c.t.Helper()
	_, err := os.Lstat(c.path(p))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		c.t.Fatal(err)
	}
	return err == nil
}

// install copies a .deb into the chroot and dpkg -i's it; it returns
// dpkg's stdout and stderr.
func (c *chroot) install(deb string) string {
	c.t.Helper()
	data, err := os.ReadFile(deb)
	if err != nil {
		c.t.Fatal(err)
	}
	inside := "/tmp/" + filepath.Base(deb)
	if err := os.WriteFile(c.path(inside), data, 0o644); err != nil {
		c.t.Fatal(err)
	}
	out, errOut, code := c.exec("dpkg", "-i", inside)
	if code != 0 {
		c.t.Fatalf("chroot: dpkg -i %s: exit %d\n%s%s", inside, code, out, errOut)
	}
	return out + errOut
}

// traceSystemd makes the chroot look booted with systemd (so that the
// maintainer scripts take their systemd branch) and logs every systemctl
// and deb-systemd-invoke call they make; the real tools still run (inside a
// chroot systemctl acts on no running manager). calls returns the log since
// the previous call.
func (c *chroot) traceSystemd() (calls func() []string) {
	c.t.Helper()
	if err := os.MkdirAll(c.path("/run/systemd/system"), 0o755); err != nil {
		c.t.Fatal(err)
	}
	const log = "/var/log/havip-pkgtest-systemd.log"
	// The calls deb-systemd-invoke makes itself are logged prefixed with
	// "via deb-systemd-invoke: ", apart from the scripts' own.
	wrappers := map[string]string{
		"/usr/bin/systemctl": `echo "${HAVIP_PKGTEST_VIA:+via $HAVIP_PKGTEST_VIA: }systemctl $*" >>` + log + `
exec /usr/bin/systemctl.real "$@"`,
		"/usr/bin/deb-systemd-invoke": `echo "deb-systemd-invoke $*" >>` + log + `
HAVIP_PKGTEST_VIA=deb-systemd-invoke exec /usr/bin/deb-systemd-invoke.real "$@"`,
	}
	for tool, body := range wrappers {
		c.must("dpkg-divert", "--local", "--rename", "--divert", tool+".real", "--add", tool)
		if err := os.WriteFile(c.path(tool), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			c.t.Fatal(err)
		}
	}
	var seen int
	return func() []string {
		c.t.Helper()
		data, err := os.ReadFile(c.path(log))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			c.t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(data) == 0 {
			lines = nil
		}
		news := lines[seen:]
		seen = len(lines)
		return news
	}
}

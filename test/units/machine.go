// Package units boots Debian bookworm roots with systemd as their init in
// systemd-nspawn containers, each in a network namespace the test built,
// so havip's systemd units run for real: with their sandbox, watchdog,
// restart policy and reload, as on a director. The machine running the
// tests need not run systemd itself (the lab's does not).
//
// The root comes from debootstrap once and is cached under CacheDir (a
// lock serialises the build); every machine boots a copy of it and the
// copy is removed in t.Cleanup. units owns only its cache, its copies and
// the container processes it starts.
package units

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// CacheDir holds the debootstrap'd root (Root) and the per-test copies.
const CacheDir = "/var/cache/havip-unittest"

// rootName names the cached root by what went into it, so a change of
// the package list builds a new one instead of reusing a stale one.
const rootName = "bookworm-minbase-systemd-dbus-iproute2"

// Require fails the test (it never skips) unless this machine can boot
// containers: root, systemd-nspawn (Debian: systemd-container) and
// debootstrap.
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("units: this test boots systemd containers and needs root (euid %d)", os.Geteuid())
	}
	for _, tool := range []string{"systemd-nspawn", "debootstrap", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("units: %s is missing (Debian packages systemd-container, debootstrap, util-linux; `make deps` installs them): %v", tool, err)
		}
	}
}

// Root returns the cached bookworm root with systemd, building it first
// if needed (about 35 s to 2 min, from Debian's mirror). Callers must not
// write to it: Boot copies it.
func Root(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(CacheDir, rootName)
	if err := os.MkdirAll(CacheDir, 0o755); err != nil {
		t.Fatalf("units: %v", err)
	}
	lock, err := os.OpenFile(filepath.Join(CacheDir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("units: %v", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("units: lock %s: %v", lock.Name(), err)
	}
	if _, err := os.Stat(dir); err == nil {
		return dir
	}
	// A build that died half way left its .tmp behind: start over. The
	// rename makes a finished root appear whole or not at all.
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		t.Fatalf("units: %v", err)
	}
	start := time.Now()
	out, err := exec.Command("debootstrap", "--variant=minbase", "--include=systemd,dbus,iproute2", "bookworm", tmp).CombinedOutput()
	if err != nil {
		t.Fatalf("units: debootstrap: %v\n%s", err, tail(out, 20))
	}
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatalf("units: %v", err)
	}
	t.Logf("units: built %s in %s", dir, time.Since(start).Round(time.Second))
	return dir
}

// Machine is one booted container.
type Machine struct {
	Name string // container and host name
	Dir  string // its root directory, on the host
	t    testing.TB
	cmd  *exec.Cmd
	log  string // its console output
	pid  int    // its init (systemd), as the host sees it
	done chan struct{}
}

// NewMachine copies the cached root for a machine called name (also its
// host name) and returns it unbooted, so the test can put files in Dir.
func NewMachine(t testing.TB, root, name string) *Machine {
	t.Helper()
	runs := filepath.Join(CacheDir, "run")
	if err := os.MkdirAll(runs, 0o755); err != nil {
		t.Fatalf("units: %v", err)
	}
	dir, err := os.MkdirTemp(runs, name+"-")
	if err != nil {
		t.Fatalf("units: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if out, err := exec.Command("cp", "-a", "--reflink=auto", root+"/.", dir).CombinedOutput(); err != nil {
		t.Fatalf("units: copy root: %v\n%s", err, out)
	}
	m := &Machine{Name: name, Dir: dir, t: t, log: filepath.Join(t.TempDir(), name+".console"), done: make(chan struct{})}
	m.WriteFile("/etc/hostname", 0o644, name+"\n")
	return m
}

// WriteFile writes a file into the machine's root, creating directories.
func (m *Machine) WriteFile(path string, mode os.FileMode, content string) {
	m.t.Helper()
	p := filepath.Join(m.Dir, path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		m.t.Fatalf("units: %s: %v", m.Name, err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		m.t.Fatalf("units: %s: %v", m.Name, err)
	}
	// WriteFile keeps the mode of a file that exists.
	if err := os.Chmod(p, mode); err != nil {
		m.t.Fatalf("units: %s: %v", m.Name, err)
	}
}

// CopyFile copies a host file into the machine's root.
func (m *Machine) CopyFile(src, path string, mode os.FileMode) {
	m.t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		m.t.Fatalf("units: %s: %v", m.Name, err)
	}
	m.WriteFile(path, mode, string(b))
}

// Boot starts the container in the network namespace at netnsPath
// (CAP_NET_ADMIN added: the container owns that namespace) and returns at
// once; Wait waits for its boot. The container is powered off in
// t.Cleanup.
func (m *Machine) Boot(netnsPath string) {
	m.t.Helper()
	args := []string{"--quiet", "--register=no", "--keep-unit", "--capability=CAP_NET_ADMIN",
		"-D", m.Dir, "-M", m.Name, "--network-namespace-path=" + netnsPath, "-b"}
	name := "systemd-nspawn"
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		// On a host run by systemd, --keep-unit needs a scope of its own
		// whose cgroup the container's systemd may manage.
		args = append([]string{"--scope", "--quiet", "-p", "Delegate=yes", name}, args...)
		name = "systemd-run"
	}
	console, err := os.Create(m.log)
	if err != nil {
		m.t.Fatalf("units: %v", err)
	}
	m.cmd = exec.Command(name, args...)
	m.cmd.Stdout, m.cmd.Stderr = console, console
	if err := m.cmd.Start(); err != nil {
		console.Close()
		m.t.Fatalf("units: %s: %v", name, err)
	}
	go func() {
		m.cmd.Wait()
		console.Close()
		close(m.done)
	}()
	m.t.Cleanup(m.powerOff)
}

// Wait waits until systemd in the container has finished booting.
func (m *Machine) Wait() {
	m.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for m.pid == 0 {
		m.pid = initOf(m.cmd.Process.Pid)
		m.checkAlive(deadline, "start its init")
	}
	var last string
	for {
		// "degraded": some unit of the stock root failed in a container;
		// that is not ours to judge.
		out, _ := m.Output("systemctl", "is-system-running")
		if last = strings.TrimSpace(out); last == "running" || last == "degraded" {
			return
		}
		m.checkAlive(deadline, "boot (last state "+last+")")
	}
}

func (m *Machine) checkAlive(deadline time.Time, what string) {
	m.t.Helper()
	select {
	case <-m.done:
		m.t.Fatalf("units: %s exited before it could %s; console:\n%s", m.Name, what, m.Console(30))
	case <-time.After(100 * time.Millisecond):
	}
	if time.Now().After(deadline) {
		m.t.Fatalf("units: %s did not %s in time; console:\n%s", m.Name, what, m.Console(30))
	}
}

// powerOff asks systemd to power the container off and waits for it;
// SIGKILL after 30 s.
func (m *Machine) powerOff() {
	if m.pid != 0 {
		// SIGRTMIN+4 is systemd's "poweroff".
		syscall.Kill(m.pid, syscall.Signal(34+4))
	} else {
		m.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-m.done:
	case <-time.After(30 * time.Second):
		m.cmd.Process.Kill()
		<-m.done
	}
}

// initOf returns the container's init among nspawn's children, or 0.
// nspawn's first child only sets up the container and exits; the init it
// forks is reparented to nspawn (a subreaper) and runs systemd.
func initOf(nspawn int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", nspawn, nspawn))
	if err != nil {
		return 0
	}
	for _, f := range strings.Fields(string(b)) {
		comm, err := os.ReadFile("/proc/" + f + "/comm")
		if err == nil && strings.TrimSpace(string(comm)) == "systemd" {
			pid, _ := strconv.Atoi(f)
			return pid
		}
	}
	return 0
}

// Command is argv run inside the machine: its mount, UTS, IPC, network
// and PID namespaces, as root.
func (m *Machine) Command(ctx context.Context, argv ...string) *exec.Cmd {
	args := append([]string{"-t", strconv.Itoa(m.pid), "-m", "-u", "-i", "-n", "-p", "--"}, argv...)
	cmd := exec.CommandContext(ctx, "nsenter", args...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0"}
	return cmd
}

// Output runs argv inside the machine (30 s at most) and returns its
// stdout and stderr.
func (m *Machine) Output(argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := m.Command(ctx, argv...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("units: %s: %q: %w", m.Name, argv, err)
	}
	return string(out), nil
}

// Run is Output that fails the test on an error.
func (m *Machine) Run(argv ...string) string {
	m.t.Helper()
	out, err := m.Output(argv...)
	if err != nil {
		j, _ := m.Output("journalctl", "--no-pager", "-o", "cat", "-n", "20")
		m.t.Fatalf("%v\n%s\nlast of %s's journal:\n%s", err, out, m.Name, j)
	}
	return out
}

// Show returns systemd's properties of unit.
func (m *Machine) Show(unit string, props ...string) map[string]string {
	m.t.Helper()
	argv := []string{"systemctl", "show", unit}
	for _, p := range props {
		argv = append(argv, "-p", p)
	}
	got := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(m.Run(argv...)))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			got[k] = v
		}
	}
	return got
}

// Journal is unit's journal, message text only.
func (m *Machine) Journal(unit string) string {
	m.t.Helper()
	out, _ := m.Output("journalctl", "--no-pager", "-o", "cat", "-u", unit)
	return out
}

// Console returns the last n lines of the container's console.
func (m *Machine) Console(n int) string {
	b, err := os.ReadFile(m.log)
	if err != nil {
		return err.Error()
	}
	return tail(b, n)
}

// ProcsOf returns the age of each process of uid inside the machine, by
// host PID.
func (m *Machine) ProcsOf(uid int) (map[int]time.Duration, error) {
	self, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", m.pid))
	if err != nil {
		return nil, fmt.Errorf("units: %w", err)
	}
	up, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return nil, fmt.Errorf("units: %w", err)
	}
	uptime, err := strconv.ParseFloat(strings.Fields(string(up))[0], 64)
	if err != nil {
		return nil, fmt.Errorf("units: uptime: %w", err)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("units: %w", err)
	}
	got := map[int]time.Duration{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid)); err != nil || ns != self {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(fmt.Sprintf("/proc/%d", pid), &st) != nil || int(st.Uid) != uid {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue // gone meanwhile
		}
		// Field 22 is the start time in clock ticks (100 per second on
		// Linux); the command name before it may hold spaces.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		ticks, err := strconv.ParseFloat(f[19], 64)
		if err != nil {
			return nil, fmt.Errorf("units: /proc/%d/stat: %w", pid, err)
		}
		got[pid] = time.Duration((uptime - ticks/100) * float64(time.Second))
	}
	return got, nil
}

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// ErrNoUser is returned by UID for a user the machine does not have.
var ErrNoUser = errors.New("no such user")

// UID looks user up in the machine's /etc/passwd.
func (m *Machine) UID(user string) (int, error) {
	b, err := os.ReadFile(filepath.Join(m.Dir, "etc/passwd"))
	if err != nil {
		return 0, fmt.Errorf("units: %w", err)
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		f := strings.Split(l, ":")
		if len(f) > 2 && f[0] == user {
			return strconv.Atoi(f[2])
		}
	}
	return 0, fmt.Errorf("units: %s: %q: %w", m.Name, user, ErrNoUser)
}

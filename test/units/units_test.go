package units

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/havip/havip/internal/ctl"
	h "github.com/havip/havip/test/e2e/harness"
	"github.com/havip/havip/test/lab"
)

var (
	vip      = netip.MustParsePrefix("10.77.0.100/24")
	addedVIP = netip.MustParsePrefix("10.77.0.101/24")
	lb1Addr  = netip.MustParsePrefix("10.77.0.1/24")
	lb2Addr  = netip.MustParsePrefix("10.77.0.2/24")
	rsAddr   = netip.MustParsePrefix("10.77.0.50/24")
	vip6     = netip.MustParsePrefix("fd77::100/64")
)

// site is the pair's file. Group "front" moves vips between lb1 (150)
// and lb2; group "owner" has lb2's own address as its VIP, so lb1 must
// set accept_local through the sandbox's writable /proc/sys/net/ipv4/conf.
// Group "front6" is IPv6 (VRRP over AF_INET6, unsolicited NA).
// The exec check "asuser" fails unless it runs as the script user (a
// failure would put front in FAULT); "hang" outlives its timeout, so its
// process group must be killed (CAP_KILL); "ping" (a raw ICMP socket with
// a socket filter) and "tcp" (lb2's pair link port) must pass under the
// sandbox's capabilities, address families and system call filter.
func site(vips ...netip.Prefix) string {
	q := make([]string, len(vips))
	for i, v := range vips {
		q[i] = strconv.Quote(v.String())
	}
	return fmt.Sprintf(`[site]
name = "units"
pair_key = "/etc/havip/pair.key"

[[node]]
name = "lb1"
address = "%s"
priority = 150

[[node]]
name = "lb2"
address = "%s"
priority = 100

[[vrrp]]
name = "front"
interface = "eth0"
vrid = 51
advert = "100ms"
vips = [%s]
notify = ["/usr/local/bin/havip-hook"]

[[vrrp.track]]
check = "asuser"
weight = 0

[[vrrp.track]]
check = "hang"
weight = -1

[[vrrp.track]]
check = "ping"
weight = -2

[[vrrp.track]]
check = "tcp"
weight = -2

[[vrrp]]
name = "owner"
interface = "eth0"
vrid = 52
advert = "100ms"
vips = ["%s"]

[[vrrp]]
name = "front6"
interface = "eth0"
vrid = 53
advert = "100ms"
vips = ["%s"]

[[check]]
name = "asuser"
type = "exec"
command = ["/usr/local/bin/havip-asuser"]
interval = "1s"
timeout = "500ms"

[[check]]
name = "ping"
type = "ping"
target = "%s"

[[check]]
name = "tcp"
type = "tcp"
target = "%s:7519"

[[check]]
name = "hang"
type = "exec"
command = ["/bin/sleep", "30"]
interval = "2s"
timeout = "1s"
`, lb1Addr.Addr(), lb2Addr.Addr(), strings.Join(q, ", "), lb2Addr, vip6, rsAddr.Addr(), lb2Addr.Addr())
}

const (
	hook   = "#!/bin/sh\necho \"hook user=$(id -un) groups=$(id -G) args=$*\"\n"
	asUser = "#!/bin/sh\n[ \"$(id -un)\" = havip ] || { echo \"running as $(id -un)\" >&2; exit 1; }\n"
	// The package creates this user; systemd-sysusers does it at boot here.
	sysusers = "u havip - \"havip scripts\" /nonexistent\n"
)

// machine prepares a copy of root with the binary, both units and the
// script user, named name.
func machine(t *testing.T, root, name, bin, key string) *Machine {
	m := NewMachine(t, root, name)
	m.CopyFile(bin, "/usr/sbin/havip", 0o755)
	for _, u := range []string{"havip.service", "havip-realserver@.service"} {
		m.CopyFile(filepath.Join("..", "..", "packaging", u), "/etc/systemd/system/"+u, 0o644)
	}
	m.WriteFile("/etc/sysusers.d/havip.conf", 0o644, sysusers)
	m.WriteFile("/etc/havip/havip.toml", 0o644, site(vip))
	m.CopyFile(key, "/etc/havip/pair.key", 0o600)
	m.WriteFile("/usr/local/bin/havip-hook", 0o755, hook)
	m.WriteFile("/usr/local/bin/havip-asuser", 0o755, asUser)
	return m
}

// TestUnits runs packaging/havip.service on a pair of containers and
// fails it over every way it can fail: kill -9, a crash loop, a hung
// daemon (the watchdog) and a stop; it reloads it, checks what the
// sandbox still lets it do, and runs havip-realserver@.service on a
// third container. Cold (no cached root) it takes debootstrap's time
// more.
func TestUnits(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short: needs root, systemd-nspawn and debootstrap")
	}
	Require(t)
	lab.RequireRoot(t)
	start := time.Now()
	root := Root(t)
	bin := h.Binary(t)
	key := filepath.Join(t.TempDir(), "pair.key")
	if out, err := exec.Command(bin, "keygen", key).CombinedOutput(); err != nil {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	sw := lab.NewSwitch(t)
	hosts := []*lab.Host{sw.AddHost(t, "lb1", lb1Addr), sw.AddHost(t, "lb2", lb2Addr), sw.AddHost(t, "rs1", rsAddr)}
	ms := make([]*Machine, len(hosts))
	for i, host := range hosts {
		ms[i] = machine(t, root, host.Name, bin, key)
	}
	// rs1 applies its real-server settings at boot, as `systemctl enable
	// havip-realserver@web` sets it up.
	rsOrig := realserverSysctls(t, hosts[2])
	ms[2].WriteFile("/etc/havip/realserver-web.conf", 0o644, "MODE=dr\nVIPS=\""+vip.Addr().String()+" "+addedVIP.Addr().String()+"\"\n")
	if err := os.Symlink("../havip-realserver@.service", filepath.Join(ms[2].Dir, "etc/systemd/system/multi-user.target.wants/havip-realserver@web.service")); err != nil {
		t.Fatal(err)
	}
	bootAll(ms, hosts)
	lb1, lb2, rs1 := ms[0], ms[1], ms[2]
	t.Logf("root, copies and boot: %s", time.Since(start).Round(100*time.Millisecond))

	for _, m := range ms[:2] {
		m.Run("systemctl", "start", "havip")
	}
	waitStates(t, lb1, lb2, "front", "MASTER", "BACKUP")
	waitStates(t, lb2, lb1, "owner", "MASTER", "BACKUP")
	waitStates(t, lb1, lb2, "front6", "MASTER", "BACKUP")
	for _, v := range []netip.Prefix{vip, vip6} {
		if !hosts[0].HasAddr(t, "eth0", v.Addr()) {
			t.Errorf("lb1 is MASTER but %s is not on its eth0", v)
		}
	}

	checkSandbox(t, lb1)
	checkPings(t, lb1)
	checkReload(t, lb1, lb2, hosts[0])

	// kill -9: the peer takes over; systemd restarts the daemon, which
	// preempts back.
	restarts := nRestarts(t, lb1)
	took := crash(t, lb1, lb2, "SIGKILL")
	t.Logf("kill -9 of the master: lb2 MASTER after %s", took)
	waitStates(t, lb1, lb2, "front", "MASTER", "BACKUP")
	if n := nRestarts(t, lb1); n != restarts+1 {
		t.Errorf("NRestarts %d after one kill -9, want %d", n, restarts+1)
	}

	checkCrashLoop(t, lb1, lb2)
	checkWatchdogKill(t, lb1, lb2)

	// A stop is not a failure: priority 0, the peer at once, no restart.
	lb1.Run("systemctl", "stop", "havip")
	waitStates(t, lb2, nil, "front", "MASTER", "")
	time.Sleep(3 * time.Second) // more than RestartSec
	if s := lb1.Show("havip", "ActiveState")["ActiveState"]; s != "inactive" {
		t.Errorf("after systemctl stop: ActiveState %s, want inactive (not restarted)", s)
	}
	checkBrokenStart(t, lb1, lb2)

	checkRealserver(t, rs1, hosts[2], rsOrig)
	// What the sandbox refuses shows up as EPERM or EACCES somewhere in
	// the logs (a gratuitous ARP, a socket, a sysctl, a script).
	for _, m := range ms {
		for _, l := range strings.Split(m.Journal("havip")+m.Journal("havip-realserver@web"), "\n") {
			if denied.MatchString(l) {
				t.Errorf("%s: %s", m.Name, l)
			}
		}
	}
	analyze(t, lb1)
	t.Logf("total: %s", time.Since(start).Round(100*time.Millisecond))
}

// bootAll boots the machines side by side, each in its host's namespace.
func bootAll(ms []*Machine, hosts []*lab.Host) {
	for i, m := range ms {
		m.Boot(hosts[i].NSPath)
	}
	for _, m := range ms {
		m.Wait()
	}
}

// status reads `havip status --json` inside m; nil while the daemon is
// not answering.
func status(m *Machine) *ctl.Status {
	out, err := m.Output("havip", "status", "--json")
	if err != nil {
		return nil
	}
	var st ctl.Status
	if json.Unmarshal([]byte(out), &st) != nil {
		return nil
	}
	return &st
}

func state(m *Machine, group string) string {
	st := status(m)
	if st == nil {
		return "(down)"
	}
	for _, g := range st.Groups {
		if g.Name == group {
			return g.State
		}
	}
	return "(no group)"
}

// waitStates waits until group is want on a and (b non-nil) wantB on b.
func waitStates(t *testing.T, a, b *Machine, group, want, wantB string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		sa, sb := state(a, group), ""
		if b != nil {
			sb = state(b, group)
		}
		if sa == want && (b == nil || sb == wantB) {
			return time.Since(start)
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("group %s: %s is %s, want %s; other %s, want %s\n%s journal:\n%s", group, a.Name, sa, want, sb, wantB, a.Name, tailString(a.Journal("havip"), 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tailString(s string, n int) string { return tail([]byte(s), n) }

func nRestarts(t *testing.T, m *Machine) int {
	t.Helper()
	n, err := strconv.Atoi(m.Show("havip", "NRestarts")["NRestarts"])
	if err != nil {
		t.Fatalf("NRestarts: %v", err)
	}
	return n
}

// crash sends sig to the daemon on master (its main process only) and
// returns how long the peer took to become MASTER of front.
func crash(t *testing.T, master, peer *Machine, sig string) time.Duration {
	t.Helper()
	master.Run("systemctl", "kill", "--kill-who=main", "-s", sig, "havip")
	return waitStates(t, peer, nil, "front", "MASTER", "")
}

// checkSandbox: the daemon runs with exactly the unit's capabilities, no
// new privileges and a seccomp filter, and what it needs still works
// under them: scripts as the script user, a hung script killed, a sysctl
// written.
func checkSandbox(t *testing.T, m *Machine) {
	pid := m.Show("havip", "MainPID")["MainPID"]
	procStatus := m.Run("cat", "/proc/"+pid+"/status")
	for _, want := range []string{
		// CAP_KILL 5, CAP_SETGID 6, CAP_SETUID 7, CAP_NET_ADMIN 12, CAP_NET_RAW 13
		"CapBnd:\t00000000000030e0", "CapEff:\t00000000000030e0",
		"NoNewPrivs:\t1", "Seccomp:\t2",
	} {
		if !strings.Contains(procStatus, want) {
			t.Errorf("/proc/%s/status lacks %q:\n%s", pid, want, procStatus)
		}
	}
	if got := strings.TrimSpace(m.Run("cat", "/proc/sys/net/ipv4/conf/eth0/accept_local")); got != "1" {
		t.Errorf("accept_local on lb1's eth0 is %s, want 1 (lb1 holds the address owner lb2's address when lb2 is down)", got)
	}
	j := m.Journal("havip")
	if !strings.Contains(j, "hook user=havip groups="+uidOf(t, m, "havip")+" args=front MASTER") {
		t.Errorf("no notify hook ran as havip (and its group only) for MASTER; journal:\n%s", tailString(j, 40))
	}
	uid, err := m.UID("havip")
	if err != nil {
		t.Fatal(err)
	}
	// "hang" starts every 2 s and is killed after 1 s: no process of the
	// script user may be older than that (with slack for a loaded
	// machine) until the check has failed fall (3) times in a row.
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(m.Journal("havip"), "killed: timeout after 1s") {
		if time.Now().After(deadline) {
			t.Fatalf("the hang check never timed out:\n%s", tailString(m.Journal("havip"), 20))
		}
		procs, err := m.ProcsOf(uid)
		if err != nil {
			t.Fatal(err)
		}
		for pid, age := range procs {
			if age > 3*time.Second {
				cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
				t.Fatalf("a process of the script user is %s old (%q): a timed-out check was not killed", age.Round(time.Millisecond), cmdline)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Now hang has failed; every other track must pass.
	st := status(m)
	if st == nil {
		t.Fatal("no status")
	}
	for _, g := range st.Groups {
		for _, tr := range g.Tracks {
			if tr.Failing != (tr.Name == "hang") {
				t.Errorf("group %s: track %s %s failing=%v", g.Name, tr.Kind, tr.Name, tr.Failing)
			}
		}
	}
}

func uidOf(t *testing.T, m *Machine, user string) string {
	t.Helper()
	uid, err := m.UID(user)
	if err != nil {
		t.Fatal(err)
	}
	return strconv.Itoa(uid) // sysusers gives the group the user's number
}

// checkPings: the daemon pings systemd's watchdog (WatchdogSec=10s; it
// pings at half of that).
func checkPings(t *testing.T, m *Machine) {
	p := m.Show("havip", "WatchdogUSec", "WatchdogTimestampMonotonic")
	if p["WatchdogUSec"] != "10s" {
		t.Errorf("WatchdogUSec %q, want 10s", p["WatchdogUSec"])
	}
	first := p["WatchdogTimestampMonotonic"]
	deadline := time.Now().Add(8 * time.Second)
	for m.Show("havip", "WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"] == first {
		if time.Now().After(deadline) {
			t.Fatalf("no watchdog ping in 8 s (timestamp stays %s)", first)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkReload: systemctl reload (ExecReload with $MAINPID) applies a new
// VIP on both, keeps the same process, and refuses a broken file.
func checkReload(t *testing.T, lb1, lb2 *Machine, lb1Host *lab.Host) {
	pid := lb1.Show("havip", "MainPID")["MainPID"]
	for _, m := range []*Machine{lb1, lb2} {
		m.WriteFile("/etc/havip/havip.toml", 0o644, site(vip, addedVIP))
		m.Run("systemctl", "reload", "havip")
	}
	deadline := time.Now().Add(10 * time.Second)
	for !lb1Host.HasAddr(t, "eth0", addedVIP.Addr()) {
		if time.Now().After(deadline) {
			t.Fatalf("after reload, %s is not on the master's eth0", addedVIP)
		}
		time.Sleep(50 * time.Millisecond)
	}
	lb1.WriteFile("/etc/havip/havip.toml", 0o644, site(vip, addedVIP)+"\n[[vrrp]]\nname = 7\n")
	if out, err := lb1.Output("systemctl", "reload", "havip"); err == nil {
		t.Errorf("reload of a broken file succeeded:\n%s", out)
	}
	// (havip status reads the file too: look at the kernel meanwhile.)
	if !lb1Host.HasAddr(t, "eth0", addedVIP.Addr()) {
		t.Errorf("after a refused reload the master lost %s", addedVIP)
	}
	lb1.WriteFile("/etc/havip/havip.toml", 0o644, site(vip, addedVIP))
	lb1.Run("systemctl", "reload", "havip")
	if got := lb1.Show("havip", "MainPID", "ActiveState"); got["MainPID"] != pid || got["ActiveState"] != "active" {
		t.Errorf("after reloads: %v, want MainPID %s active", got, pid)
	}
	if s := state(lb1, "front"); s != "MASTER" {
		t.Errorf("after the reloads lb1 is %s, want MASTER", s)
	}
}

// checkCrashLoop: five crashes in a row, each as soon as the daemon is
// back, leave the director running (no start limit), master again.
func checkCrashLoop(t *testing.T, lb1, lb2 *Machine) {
	before := nRestarts(t, lb1)
	for i := range 5 {
		crash(t, lb1, lb2, "SIGABRT") // Go exits 2 with a stack dump, as after a panic
		// Back: a new daemon answering (a BACKUP first, then preempting).
		deadline := time.Now().Add(20 * time.Second)
		for status(lb1) == nil || nRestarts(t, lb1) < before+i+1 {
			if time.Now().After(deadline) {
				t.Fatalf("crash %d: the daemon did not come back: %v\n%s", i+1, lb1.Show("havip", "ActiveState", "SubState", "Result"), tailString(lb1.Journal("havip"), 20))
			}
			time.Sleep(100 * time.Millisecond)
		}
		waitStates(t, lb1, lb2, "front", "MASTER", "BACKUP")
	}
	if got := lb1.Show("havip", "ActiveState", "NRestarts"); got["ActiveState"] != "active" || got["NRestarts"] != strconv.Itoa(before+5) {
		t.Errorf("after 5 crashes: %v, want active with NRestarts %d", got, before+5)
	}
}

var denied = regexp.MustCompile(`(?i)operation not permitted|permission denied|bad system call`)

var fileLine = regexp.MustCompile(`/etc/havip/havip\.toml:[0-9]+(:[0-9]+)?: `)

// checkBrokenStart: a start with a broken file fails in ExecStartPre
// (FILE:LINE in the journal) and is retried every RestartSec for as long
// as it takes: once the file is fixed, the director comes back by itself.
func checkBrokenStart(t *testing.T, lb1, lb2 *Machine) {
	good := site(vip, addedVIP)
	lb1.WriteFile("/etc/havip/havip.toml", 0o644, good+"\n[[vrrp]]\nname = 7\n")
	before := nRestarts(t, lb1)
	if out, err := lb1.Output("systemctl", "start", "havip"); err == nil {
		t.Errorf("start with a broken file succeeded:\n%s", out)
	}
	time.Sleep(5 * time.Second) // two RestartSec and more
	if got := lb1.Show("havip", "ActiveState", "NRestarts"); got["ActiveState"] == "failed" || got["NRestarts"] == strconv.Itoa(before) {
		t.Errorf("a broken file at start: %v, want it retried (NRestarts above %d), not failed", got, before)
	}
	if j := lb1.Journal("havip"); !fileLine.MatchString(j) {
		t.Errorf("no FILE:LINE message in the journal:\n%s", tailString(j, 10))
	}
	lb1.WriteFile("/etc/havip/havip.toml", 0o644, good)
	waitStates(t, lb1, lb2, "front", "MASTER", "BACKUP")
}

// checkWatchdogKill: a daemon that stops answering (SIGSTOP) loses the
// VIPs to its peer at once (no adverts) and is killed by the watchdog
// after WatchdogSec, then restarted.
func checkWatchdogKill(t *testing.T, lb1, lb2 *Machine) {
	before := nRestarts(t, lb1)
	start := time.Now()
	crash(t, lb1, lb2, "SIGSTOP")
	deadline := time.Now().Add(30 * time.Second)
	for nRestarts(t, lb1) == before {
		if time.Now().After(deadline) {
			t.Fatalf("a stopped daemon was not restarted in 30 s: %v", lb1.Show("havip", "ActiveState", "SubState", "Result"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("stopped daemon restarted after %s", time.Since(start).Round(100*time.Millisecond))
	if j := lb1.Journal("havip"); !strings.Contains(j, "Watchdog timeout") {
		t.Errorf("journal names no watchdog timeout:\n%s", tailString(j, 20))
	}
	waitStates(t, lb1, lb2, "front", "MASTER", "BACKUP")
}

var rsSysctls = []string{"all/arp_ignore", "all/arp_announce"}

// realserverSysctls reads rsSysctls in host's namespace (from the host:
// also before its container boots).
func realserverSysctls(t *testing.T, host *lab.Host) []string {
	t.Helper()
	var v []string
	err := host.Do(func() error {
		for _, s := range rsSysctls {
			b, err := os.ReadFile("/proc/sys/net/ipv4/conf/" + s)
			if err != nil {
				return err
			}
			v = append(v, strings.TrimSpace(string(b)))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// checkRealserver: havip-realserver@web, enabled, put the VIPs on lo
// with the ARP settings of LVS-DR at boot; stop takes both back to orig,
// and a start applies them again.
func checkRealserver(t *testing.T, m *Machine, host *lab.Host, orig []string) {
	applied := func(when string) {
		if s := m.Show("havip-realserver@web", "ActiveState")["ActiveState"]; s != "active" {
			t.Errorf("%s: havip-realserver@web is %s, want active\n%s", when, s, m.Journal("havip-realserver@web"))
		}
		for _, a := range []netip.Prefix{vip, addedVIP} {
			if !host.HasAddr(t, "lo", a.Addr()) {
				t.Errorf("%s: %s is not on lo", when, a.Addr())
			}
		}
		if got := realserverSysctls(t, host); got[0] != "1" || got[1] != "2" {
			t.Errorf("%s: %v = %v, want 1 2", when, rsSysctls, got)
		}
	}
	applied("after boot")
	m.Run("systemctl", "stop", "havip-realserver@web")
	for _, a := range []netip.Prefix{vip, addedVIP} {
		if host.HasAddr(t, "lo", a.Addr()) {
			t.Errorf("after stop: %s is still on lo", a.Addr())
		}
	}
	if got := realserverSysctls(t, host); strings.Join(got, " ") != strings.Join(orig, " ") {
		t.Errorf("after stop: %v = %v, want the originals %v", rsSysctls, got, orig)
	}
	m.Run("systemctl", "start", "havip-realserver@web")
	applied("after start")
}

var exposure = regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)

// analyze: both units pass systemd-analyze verify (but for the man pages
// of Documentation=, which this root lacks), and their exposure
// scores stay at what this change measured (2.7 and lower for the real
// server's).
func analyze(t *testing.T, m *Machine) {
	for _, u := range []string{"havip.service", "havip-realserver@web.service"} {
		if out, err := m.Output("systemd-analyze", "verify", "--man=no", "/etc/systemd/system/"+strings.Replace(u, "@web", "@", 1)); err != nil {
			t.Errorf("systemd-analyze verify %s: %v\n%s", u, err, out)
		}
		out := m.Run("systemd-analyze", "security", "--no-pager", u)
		sc := exposure.FindStringSubmatch(out)
		if sc == nil {
			t.Fatalf("no exposure score in:\n%s", out)
		}
		score, _ := strconv.ParseFloat(sc[1], 64)
		t.Logf("systemd-analyze security %s: %s", u, sc[1])
		if score > 2.7 {
			t.Errorf("%s: exposure %s, more than 2.7:\n%s", u, sc[1], out)
		}
	}
}

package pkg

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestInstall installs the amd64 .deb into a fresh Debian root, then
// upgrades, removes and purges it, checking at each step what Debian policy
// and issue 9 ask: the shipped config is refused until edited, every unit
// passes systemd-analyze verify, the maintainer scripts never enable or
// start havip (nor restart it while this version refuses the config), an
// edited config survives an upgrade, remove keeps config
// and state, purge removes them (and keeps the system user).
func TestInstall(t *testing.T) {
	a, b := packages(t)
	c := newChroot(t)
	calls := c.traceSystemd()
	start := time.Now()

	c.install(filepath.Join(a, "havip_"+versionA+"_amd64.deb"))
	wantCalls(t, "install", calls(), "systemctl --system daemon-reload")
	notEnabled(t, c, "install")

	if out := c.must("havip", "version"); !strings.HasPrefix(out, "havip ") {
		t.Errorf("havip version: %q", out)
	}
	checkShippedConfig(t, c)
	verifyUnits(t, c)
	checkUser(t, c, "/usr/sbin/nologin")
	checkSysusers(t, c)
	if got := c.must("cat", "/usr/lib/modules-load.d/havip.conf"); !slices.Contains(strings.Split(got, "\n"), "ip_vs") {
		t.Errorf("/usr/lib/modules-load.d/havip.conf has no ip_vs line:\n%s", got)
	}

	// Reinstalled (postinst runs as for an upgrade) while the file is the
	// refused template: no restart, and dpkg says why.
	out := c.install(filepath.Join(a, "havip_"+versionA+"_amd64.deb"))
	wantCalls(t, "reinstall with a refused config", calls(), "systemctl --system daemon-reload")
	wantRefusedNote(t, "dpkg -i (reinstall)", out)

	// The operator fills in the site from the template's own comments.
	edited := editConfig(t, c)
	c.install(filepath.Join(b, "havip_"+versionB+"_amd64.deb"))
	wantCalls(t, "upgrade", calls(),
		"systemctl --system daemon-reload",
		"deb-systemd-invoke try-restart havip.service")
	notEnabled(t, c, "upgrade")
	if got := c.must("dpkg-query", "-W", "-f", "${Version}", "havip"); got != versionB {
		t.Errorf("after the upgrade havip is at %q, want %s", got, versionB)
	}
	if got := c.must("cat", "/etc/havip/havip.toml"); got != edited {
		t.Errorf("the upgrade changed the edited /etc/havip/havip.toml:\n%s", got)
	}
	if left, _ := filepath.Glob(c.path("/etc/havip/havip.toml.dpkg-*")); len(left) > 0 {
		t.Errorf("the upgrade left %q", left)
	}
	c.must("havip", "check", "-c", "/etc/havip/havip.toml")

	// An operator's enable (offline: no manager runs in the chroot), and
	// state the daemon would have written.
	c.must("systemctl", "--root=/", "enable", "havip.service")
	calls()
	if err := os.MkdirAll(c.path("/var/lib/havip"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.path("/var/lib/havip/drains.json"), []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	c.must("dpkg", "-r", "havip")
	wantCalls(t, "remove", calls(),
		"deb-systemd-invoke stop havip.service",
		"systemctl --system daemon-reload")
	for _, p := range []string{"/etc/havip/havip.toml", "/etc/havip/pair.key", "/var/lib/havip/drains.json"} {
		if !c.exists(p) {
			t.Errorf("dpkg -r removed %s; remove keeps configuration and state", p)
		}
	}
	for _, p := range []string{"/usr/sbin/havip", "/lib/systemd/system/havip.service", "/lib/systemd/system/havip-realserver@.service"} {
		if c.exists(p) {
			t.Errorf("dpkg -r left %s", p)
		}
	}
	if got := c.must("dpkg-query", "-W", "-f", "${db:Status-Abbrev}", "havip"); strings.TrimSpace(got) != "rc" {
		t.Errorf("after dpkg -r havip's status is %q, want rc (removed, config-files)", got)
	}

	c.must("dpkg", "-P", "havip")
	wantCalls(t, "purge", calls(), "systemctl --system daemon-reload")
	for _, p := range []string{"/etc/havip", "/var/lib/havip", "/etc/systemd/system/multi-user.target.wants/havip.service"} {
		if c.exists(p) {
			t.Errorf("dpkg -P left %s", p)
		}
	}
	if _, _, code := c.exec("dpkg-query", "-W", "havip"); code == 0 {
		t.Errorf("dpkg -P: dpkg still knows havip")
	}
	// Debian policy: a system user stays on purge, so a uid that still owns
	// files elsewhere is never reused.
	if _, _, code := c.exec("getent", "passwd", "havip"); code != 0 {
		t.Errorf("dpkg -P removed the havip user")
	}
	t.Logf("install, upgrade, remove and purge: %v", time.Since(start).Round(time.Millisecond))
}

// wantCalls compares the systemctl and deb-systemd-invoke calls a dpkg or
// rpm step made with want, in order (leaving out those deb-systemd-invoke
// made itself). Anything else (enable, start, restart) there
// would bring up a director the operator did not ask for.
func wantCalls(t *testing.T, step string, got []string, want ...string) {
	t.Helper()
	var own []string
	for _, call := range got {
		if !strings.HasPrefix(call, "via ") {
			own = append(own, call)
		}
	}
	if !slices.Equal(own, want) {
		t.Errorf("%s: the maintainer scripts called\n %q\nwant\n %q\n(all calls: %q)", step, own, want, got)
	}
}

// wantRefusedNote: the upgrade said why it did not restart havip, after
// havip check's own FILE:LINE message.
func wantRefusedNote(t *testing.T, step, out string) {
	t.Helper()
	check := strings.Index(out, "/etc/havip/havip.toml:1:")
	note := strings.Index(out, "havip: not restarted: this version refuses /etc/havip/havip.toml")
	if check < 0 || note < check {
		t.Errorf("%s with the refused template: no check message followed by the not-restarted note in:\n%s", step, out)
	}
}

// notEnabled: no unit of havip is enabled or linked anywhere in /etc.
func notEnabled(t *testing.T, c *chroot, step string) {
	t.Helper()
	if out := c.must("find", "/etc/systemd", "/etc/rc0.d", "/etc/rc2.d", "-name", "*havip*"); strings.TrimSpace(out) != "" {
		t.Errorf("%s enabled havip:\n%s", step, out)
	}
}

// checkShippedConfig: as installed, `havip check` refuses the config with
// a FILE:LINE message, and that line tells the operator to edit the file.
func checkShippedConfig(t *testing.T, c *chroot) {
	t.Helper()
	out, errOut, code := c.exec("havip", "check", "-c", "/etc/havip/havip.toml")
	t.Logf("havip check on the shipped config: exit %d, stderr:\n%s", code, errOut)
	if code != 1 {
		t.Errorf("havip check on the shipped config: exit %d, want 1\n%s%s", code, out, errOut)
	}
	m := regexp.MustCompile(`^/etc/havip/havip\.toml:(\d+):(?:\d+:)? (.*)`).FindStringSubmatch(errOut)
	if m == nil {
		t.Fatalf("havip check on the shipped config: no FILE:LINE: message first:\n%s", errOut)
	}
	lines := strings.Split(c.must("cat", "/etc/havip/havip.toml"), "\n")
	n, _ := strconv.Atoi(m[1])
	if n < 1 || n > len(lines) || !strings.Contains(lines[n-1], "EDIT THIS FILE") {
		t.Errorf("havip check points at line %s of the shipped config, which does not tell the operator to edit it", m[1])
	}
}

// verifyUnits runs systemd-analyze verify on every unit the package ships;
// a template is verified through an instance of it.
func verifyUnits(t *testing.T, c *chroot) {
	t.Helper()
	units := strings.Fields(c.must("sh", "-c", "dpkg -L havip | grep '^/lib/systemd/system/.*\\.service$'"))
	if len(units) < 2 {
		t.Fatalf("the package ships units %q, want havip.service and havip-realserver@.service", units)
	}
	for _, u := range units {
		target := u
		if strings.HasSuffix(u, "@.service") {
			target = strings.TrimSuffix(u, "@.service") + "@test.service"
		}
		if out, errOut, code := c.exec("systemd-analyze", "verify", target); code != 0 || strings.TrimSpace(errOut) != "" {
			t.Errorf("systemd-analyze verify %s: exit %d\n%s%s", target, code, out, errOut)
		}
	}
}

// checkUser: the system user and group havip, with no home and the
// format's no-login shell.
func checkUser(t *testing.T, c *chroot, shell string) {
	t.Helper()
	f := strings.Split(strings.TrimSpace(c.must("getent", "passwd", "havip")), ":")
	if len(f) != 7 || f[5] != "/nonexistent" || f[6] != shell {
		t.Errorf("havip user: %q, want home /nonexistent and shell %s", f, shell)
	}
	if uid, err := strconv.Atoi(f[2]); len(f) == 7 && (err != nil || uid == 0 || uid >= 1000) {
		t.Errorf("havip user has uid %s: not a system user (1..999)", f[2])
	}
	c.must("getent", "group", "havip")
	if c.exists("/nonexistent") {
		t.Errorf("adduser made the havip user's home /nonexistent")
	}
}

// checkSysusers: systemd-sysusers makes from the shipped sysusers.d file
// the user that postinst made: name, comment (adduser pads it with the
// empty GECOS fields ",,,"), home and shell.
func checkSysusers(t *testing.T, c *chroot) {
	t.Helper()
	c.must("mkdir", "-p", "/tmp/sysusers/etc")
	c.must("systemd-sysusers", "--root=/tmp/sysusers", "/usr/lib/sysusers.d/havip.conf")
	fields := func(passwd string) []string {
		for _, line := range strings.Split(passwd, "\n") {
			if f := strings.Split(line, ":"); len(f) == 7 && f[0] == "havip" {
				return []string{f[0], strings.TrimRight(f[4], ","), f[5], f[6]}
			}
		}
		return nil
	}
	got := fields(c.must("cat", "/tmp/sysusers/etc/passwd"))
	want := fields(c.must("getent", "passwd", "havip"))
	if got == nil || !slices.Equal(got, want) {
		t.Errorf("sysusers.d/havip.conf makes %q, postinst made %q", got, want)
	}
}

// editConfig makes the site the shipped file's comments describe (its
// sections uncommented, a pair key made with havip keygen), checks that it
// is valid, and returns the file's new content.
func editConfig(t *testing.T, c *chroot) string {
	t.Helper()
	c.must("havip", "keygen", "/etc/havip/pair.key")
	shipped := c.must("cat", "/etc/havip/havip.toml")
	edited := regexp.MustCompile(`(?m)^# ?(\[|[a-z_]+ =)`).ReplaceAllString(shipped, "$1")
	if err := os.WriteFile(c.path("/etc/havip/havip.toml"), []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := c.exec("havip", "check", "-c", "/etc/havip/havip.toml"); code != 0 {
		t.Fatalf("the shipped config with its sections uncommented does not check: exit %d\n%s%s\n%s", code, out, errOut, edited)
	}
	return edited
}

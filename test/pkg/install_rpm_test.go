package pkg

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestInstallRPM runs the .rpm's scriptlets for real: rpm --root installs
// it into a copy of the Debian root (rpm runs the scriptlets chrooted
// there, with the same shell tools an rpm distribution has), upgrades and
// erases it. It checks the rpm conventions: the user from %pre, no enable
// or start, try-restart on upgrade (none while the new version refuses the
// config), an edited %config(noreplace) kept on
// upgrade and saved as .rpmsave on erase, state kept.
func TestInstallRPM(t *testing.T) {
	requireTools(t, "rpm")
	a, b := packages(t)
	c := newChroot(t)
	calls := c.traceSystemd()
	rpm := func(args ...string) string {
		t.Helper()
		out, errOut, err := runExit("rpm", append([]string{"--root=" + c.dir}, args...)...)
		if err != nil {
			t.Fatalf("rpm %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
		}
		return out + errOut
	}
	rpm("--initdb")
	// --nodeps: the Debian root's tools are no rpm packages (shadow-utils).
	rpm("-i", "--nodeps", filepath.Join(a, "havip-"+versionA+"-1.x86_64.rpm"))
	wantCalls(t, "rpm -i", calls(), "systemctl daemon-reload")
	notEnabled(t, c, "rpm -i")
	checkUser(t, c, "/sbin/nologin")
	checkShippedConfig(t, c)
	for _, u := range []string{"/usr/lib/systemd/system/havip.service", "/usr/lib/systemd/system/havip-realserver@.service"} {
		if !c.exists(u) {
			t.Errorf("rpm -i: no %s", u)
		}
	}

	// Reinstalled (the scriptlets run as for an upgrade) while the file is
	// the refused template: no restart, and rpm says why.
	out := rpm("-U", "--nodeps", "--replacepkgs", filepath.Join(a, "havip-"+versionA+"-1.x86_64.rpm"))
	wantCalls(t, "rpm -U --replacepkgs with a refused config", calls(), "systemctl daemon-reload", "systemctl daemon-reload")
	wantRefusedNote(t, "rpm -U --replacepkgs", out)

	edited := editConfig(t, c)
	rpm("-U", "--nodeps", filepath.Join(b, "havip-"+versionB+"-1.x86_64.rpm"))
	// %post of the new package, then %postun of the old one ($1 = 1).
	wantCalls(t, "rpm -U", calls(),
		"systemctl daemon-reload",
		"systemctl daemon-reload",
		"systemctl try-restart havip.service")
	notEnabled(t, c, "rpm -U")
	if got := run(t, "rpm", "--root="+c.dir, "-q", "--queryformat", "%{VERSION}", "havip"); got != versionB {
		t.Errorf("after rpm -U havip is at %q, want %s", got, versionB)
	}
	if got := c.must("cat", "/etc/havip/havip.toml"); got != edited {
		t.Errorf("rpm -U changed the edited /etc/havip/havip.toml:\n%s", got)
	}
	if c.exists("/etc/havip/havip.toml.rpmnew") {
		t.Errorf("rpm -U left /etc/havip/havip.toml.rpmnew, but the shipped file did not change")
	}

	if err := os.MkdirAll(c.path("/var/lib/havip"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.path("/var/lib/havip/drains.json"), []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rpm("-e", "havip")
	wantCalls(t, "rpm -e", calls(),
		"systemctl --no-reload disable --now havip.service",
		"systemctl daemon-reload")
	if got := c.must("cat", "/etc/havip/havip.toml.rpmsave"); got != edited {
		t.Errorf("rpm -e: /etc/havip/havip.toml.rpmsave is not the edited config:\n%s", got)
	}
	for _, p := range []string{"/etc/havip/pair.key", "/var/lib/havip/drains.json"} {
		if !c.exists(p) {
			t.Errorf("rpm -e removed %s", p)
		}
	}
	for _, p := range []string{"/etc/havip/havip.toml", "/usr/sbin/havip", "/usr/lib/systemd/system/havip.service"} {
		if c.exists(p) {
			t.Errorf("rpm -e left %s", p)
		}
	}
	if _, _, code := c.exec("getent", "passwd", "havip"); code != 0 {
		t.Errorf("rpm -e removed the havip user")
	}
}

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/havip/havip/internal/runas"
	h "github.com/havip/havip/test/e2e/harness"
)

// scriptDirs makes a directory for a test's scripts that script_security
// accepts (root's, 0755, in /tmp) and one the script user can write
// records into (t.TempDir is root's 0700).
func scriptDirs(t *testing.T) (scripts, out string) {
	t.Helper()
	for _, d := range []*string{&scripts, &out} {
		dir, err := os.MkdirTemp("", "havip-scripts-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		*d = dir
	}
	if err := os.Chmod(scripts, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(out, 0o1777); err != nil {
		t.Fatal(err)
	}
	return scripts, out
}

// recorder is a script that writes who it runs as, its groups, working
// directory and environment into OUT/KIND.*, KIND and OUT being its
// first two arguments.
const recorder = `#!/bin/sh
kind=$1 out=$2
id -u > "$out/$kind.uid.tmp"; mv "$out/$kind.uid.tmp" "$out/$kind.uid"
id -g > "$out/$kind.gid"
id -G > "$out/$kind.groups"
pwd > "$out/$kind.cwd"
env > "$out/$kind.env"
`

// An exec check and a notify hook run as the script user: with no
// script_user the default havip, or nobody where it does not exist (this
// lab: the warning is then in havip check's output and the daemon's
// log); with script_user and script_group naming a temporary system user
// and root's group, that uid and gid. Both have no supplementary groups,
// "/" as working directory and the clean environment: PATH, HOME, LANG
// and their own variables, none of the daemon's (NOTIFY_SOCKET, a
// variable set for the test).
func TestScriptsRunAsScriptUser(t *testing.T) {
	name := fmt.Sprintf("hvt%d", os.Getpid()%100000)
	if out, err := exec.Command("useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent-"+name, "--shell", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v\n%s", name, err, out)
		}
	})
	temp, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	def, fallback := user.Lookup("havip")
	if fallback != nil {
		if def, err = user.Lookup("nobody"); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name, keys string
		uid, gid   string
		home       string
		warn       bool
	}{
		{"default", "", def.Uid, def.Gid, def.HomeDir, fallback != nil},
		{"named", fmt.Sprintf("script_user = %q\nscript_group = \"root\"\n", name), temp.Uid, "0", temp.HomeDir, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			scripts, out := scriptDirs(t)
			rec := filepath.Join(scripts, "record")
			if err := os.WriteFile(rec, []byte(recorder), 0o755); err != nil {
				t.Fatal(err)
			}
			p := h.NewPair(t, h.Site{
				ExtraGroup: fmt.Sprintf("notify = [%q, \"notify\", \"OUT\"]\n", rec),
				Extra:      fmt.Sprintf("[[check]]\nname = \"rec\"\ntype = \"exec\"\ncommand = [%q, \"check\", \"OUT\"]\n", rec),
			})
			lb1 := p.Nodes[0]
			for _, n := range p.Nodes {
				dir := filepath.Join(out, n.Name)
				if err := os.Mkdir(dir, 0o777); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(dir, 0o777); err != nil {
					t.Fatal(err)
				}
				cfg := strings.ReplaceAll(n.ReadConfig(), `"OUT"`, fmt.Sprintf("%q", dir))
				n.WriteConfig(strings.Replace(cfg, "name = \"lab\"\n", "name = \"lab\"\n"+tc.keys, 1))
				n.Env = append(n.Env, "NOTIFY_SOCKET=/nonexistent/havip-test.sock", "HAVIP_TEST_DAEMON_ONLY=1")
			}
			checkOut, err := exec.Command(h.Binary(t), "check", "-c", lb1.Config).CombinedOutput()
			if err != nil {
				t.Fatalf("havip check: %v\n%s", err, checkOut)
			}
			const warning = "no user havip on this host: exec checks and notify hooks run as nobody"
			if strings.Contains(string(checkOut), warning) != tc.warn {
				t.Errorf("havip check: the fallback warning shown %t, want %t:\n%s", !tc.warn, tc.warn, checkOut)
			}
			startNodes(t, p)
			if strings.Contains(lb1.Log(), warning) != tc.warn {
				t.Errorf("daemon log: the fallback warning shown %t, want %t:\n%s", !tc.warn, tc.warn, lb1.Log())
			}
			dir := filepath.Join(out, "lb1")
			read := func(kind, what string) string {
				b, err := os.ReadFile(filepath.Join(dir, kind+"."+what))
				if err != nil {
					t.Fatalf("%s did not record its %s: %v", kind, what, err)
				}
				return strings.TrimSpace(string(b))
			}
			h.WaitUntil(t, 5*time.Second, "both scripts ran", func() bool {
				for _, kind := range []string{"check", "notify"} {
					if _, err := os.Stat(filepath.Join(dir, kind+".env")); err != nil {
						return false
					}
				}
				return true
			})
			time.Sleep(300 * time.Millisecond) // the last of their files
			home := tc.home
			if home == "" {
				home = "/"
			}
			for _, kind := range []string{"check", "notify"} {
				if got := read(kind, "uid"); got != tc.uid {
					t.Errorf("%s: uid %s, want %s", kind, got, tc.uid)
				}
				if got := read(kind, "gid"); got != tc.gid {
					t.Errorf("%s: gid %s, want %s", kind, got, tc.gid)
				}
				if got := read(kind, "groups"); got != tc.gid {
					t.Errorf("%s: groups %q, want %q alone (no supplementary groups)", kind, got, tc.gid)
				}
				if got := read(kind, "cwd"); got != "/" {
					t.Errorf("%s: working directory %s, want /", kind, got)
				}
				env := strings.Split(read(kind, "env"), "\n")
				for _, want := range []string{"PATH=" + runas.Path, "HOME=" + home, "LANG=C"} {
					if !slices.Contains(env, want) {
						t.Errorf("%s: environment lacks %s:\n%s", kind, want, strings.Join(env, "\n"))
					}
				}
				for _, v := range env {
					k, _, _ := strings.Cut(v, "=")
					allowed := []string{"PATH", "HOME", "LANG", "PWD", "SHLVL", "_"} // the last three are sh's own
					if kind == "check" {
						allowed = append(allowed, "HAVIP_CHECK_ADDR", "HAVIP_CHECK_PORT")
					}
					if !slices.Contains(allowed, k) {
						t.Errorf("%s: environment has %s, which is not a script's", kind, v)
					}
				}
			}
		})
	}
}

// havip check refuses a script_user that does not exist, and a script in
// a directory anyone may write to (script_security), each at its line.
func TestScriptUserRefused(t *testing.T) {
	scripts, _ := scriptDirs(t)
	open := filepath.Join(scripts, "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	probe := filepath.Join(open, "probe")
	if err := os.WriteFile(probe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := h.NewPair(t, h.Site{Extra: "[[check]]\nname = \"c\"\ntype = \"exec\"\ncommand = [\"PROG\"]\n"})
	site := p.Nodes[0].ReadConfig()
	line := func(key string) int {
		for i, l := range strings.Split(site, "\n") {
			if strings.HasPrefix(l, key) {
				return i + 2 // the key added below [site]'s name shifts it by one
			}
		}
		t.Fatalf("no %s in the site", key)
		return 0
	}
	for _, tc := range []struct {
		name, keys, prog, want string
	}{
		{"unknown user", `script_user = "no-such-user-havip-test"`, "/bin/true",
			fmt.Sprintf(`:3:1: site.script_user: no user "no-such-user-havip-test" on this host`)},
		{"world-writable directory", `script_user = "nobody"`, probe,
			fmt.Sprintf(":%d:1: check[0].command: %s is refused by script_security: directory %s is writable by anyone (mode 0777)", line("command"), probe, open)},
	} {
		text := strings.Replace(strings.Replace(site, "PROG", tc.prog, 1), "name = \"lab\"\n", "name = \"lab\"\n"+tc.keys+"\n", 1)
		path := filepath.Join(t.TempDir(), "havip.toml")
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(h.Binary(t), "check", "-c", path).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), path+tc.want) {
			t.Errorf("%s: havip check: %v, want exit 1 with %q:\n%s", tc.name, err, path+tc.want, out)
		}
	}
}

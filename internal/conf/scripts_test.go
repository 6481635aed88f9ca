package conf

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/havip/havip/internal/runas"
)

// scriptSite is head (a valid site: [site] and two nodes) with keys in
// [site] from line 3 on, a group with a notify hook and an exec check.
func scriptSite(siteKeys, command, notify string) string {
	return strings.Replace(head, "name = \"t\"\n", "name = \"t\"\n"+siteKeys, 1) + group +
		"notify = [" + strconv.Quote(notify) + "]\n[[check]]\nname = \"c\"\ntype = \"exec\"\ncommand = [" + strconv.Quote(command) + "]\n"
}

func loadText(t *testing.T, text string) (*Site, []string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "t.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	s, ps, err := loadT(path)
	if err != nil {
		t.Fatal(err)
	}
	out := strs(ps)
	for i := range out {
		out[i] = strings.TrimPrefix(out[i], path)
	}
	return s, out
}

func lookupUser(t *testing.T, name string) runas.User {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("this test needs user %s: %v", name, err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return runas.User{Name: u.Username, UID: uint32(uid), GID: uint32(gid), Home: u.HomeDir}
}

// TestScriptUser: Load resolves [site] script_user (default havip, else
// nobody with a warning when there is a script) and script_group into
// the uid and gid every exec check and notify hook gets; an unknown user
// or group is an error at its key, root a warning; Parse resolves nothing.
func TestScriptUser(t *testing.T) {
	defer func(d string) { defaultScriptUser = d }(defaultScriptUser)
	defaultScriptUser = "havip-test-no-such-user"
	nobody := lookupUser(t, "nobody")
	root := lookupUser(t, "root")
	rootGroup := nobody
	rootGroup.GID = 0
	const prog = "/bin/true"
	for _, tc := range []struct {
		name, keys string
		scripts    bool
		want       *runas.User
		problems   []string
	}{
		{"default absent: nobody", "", true, &nobody, []string{
			":1:1: warning: site: no user havip-test-no-such-user on this host: exec checks and notify hooks run as nobody; create a system user havip-test-no-such-user (useradd --system havip-test-no-such-user) or name one in script_user",
		}},
		{"default absent, no scripts: no warning", "", false, &nobody, nil},
		{"named", "script_user = \"nobody\"\n", true, &nobody, nil},
		{"named with a group", "script_user = \"nobody\"\nscript_group = \"root\"\n", true, &rootGroup, nil},
		{"root", "script_user = \"root\"\n", true, &root, []string{
			":3:1: warning: site.script_user: exec checks and notify hooks run as root (uid 0): a fault or a compromise of any script is one of the director",
		}},
		{"unknown user", "script_user = \"no-such-user-xyz\"\n", true, nil, []string{
			":3:1: site.script_user: no user \"no-such-user-xyz\" on this host",
		}},
		{"unknown group", "script_user = \"nobody\"\nscript_group = \"no-such-group-xyz\"\n", true, nil, []string{
			":4:1: site.script_group: no group \"no-such-group-xyz\" on this host",
		}},
		{"empty user", "script_user = \"\"\n", true, nil, []string{
			":3:1: site.script_user: must not be empty: name a user, or leave the key out for \"havip\"",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := scriptSite(tc.keys, prog, prog)
			if !tc.scripts {
				text = strings.Replace(strings.Replace(text, `type = "exec"`, `type = "tcp"`+"\ntarget = \"10.0.0.9:80\"", 1), "command = ", "# command = ", 1)
				text = strings.Replace(text, "notify = ", "# notify = ", 1)
			}
			s, ps := loadText(t, text)
			if diff := cmp.Diff(tc.problems, ps, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
			if tc.want == nil {
				if s != nil {
					t.Errorf("a site despite errors")
				}
				return
			}
			if s == nil {
				t.Fatal("no site")
			}
			if diff := cmp.Diff(tc.want, s.ScriptUser); diff != "" {
				t.Errorf("ScriptUser (-want +got):\n%s", diff)
			}
			if tc.scripts && (s.Checks[0].RunAs != s.ScriptUser || s.Groups[0].NotifyAs != s.ScriptUser) {
				t.Errorf("check runs as %v, notify as %v; want both %v", s.Checks[0].RunAs, s.Groups[0].NotifyAs, s.ScriptUser)
			}
		})
	}
	// Parse does not look at the host: nobody is resolved.
	s, ps := parseT("t.toml", []byte(scriptSite("script_user = \"no-such-user-xyz\"\n", prog, prog)))
	if HasErrors(ps) || s.ScriptUser != nil || s.Checks[0].RunAs != nil || s.Groups[0].NotifyAs != nil {
		t.Errorf("Parse: %v, user %v", ps, s.ScriptUser)
	}
}

// TestScriptSecurity: Load refuses a program that anyone but root and
// the script user could change (the file, or a directory above it), and
// one it cannot find in the scripts' PATH; script_security = false lets
// the unsafe ones run, with a warning. The script user is the one
// running the test, so that the test's own files are its own.
func TestScriptSecurity(t *testing.T) {
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	keys := fmt.Sprintf("script_user = %q\n", me.Username)
	dir := t.TempDir()
	write := func(name string, dirMode, mode os.FileMode) string {
		d := filepath.Join(dir, name)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(d, "probe")
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, dirMode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	safe := write("safe", 0o755, 0o755)
	worldFile := write("world-file", 0o755, 0o757)
	worldDir := filepath.Dir(write("world-dir", 0o777, 0o755))
	stickyDir := filepath.Dir(write("sticky-dir", 0o1777|os.ModeSticky, 0o755))
	groupFile := write("group-file", 0o755, 0o775)
	if err := os.Chown(groupFile, -1, 4242); err != nil && os.Geteuid() == 0 {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "safe-dir-link")
	if err := os.Symlink(worldDir, link); err != nil {
		t.Fatal(err)
	}
	refused := func(line int, key, prog, why string) string {
		return fmt.Sprintf(":%d:1: %s: %s is refused by script_security: %s; only root and the script user (%s) may be able to change a script and the directories above it (or set [site] script_security = false)",
			line, key, prog, why, me.Username)
	}
	check := func(line int, prog, why string) string { return refused(line, "check[0].command", prog, why) }
	for _, tc := range []struct {
		name, keys, prog string
		problems         []string
	}{
		{"safe", keys, safe, nil},
		{"in PATH", keys, "true", nil},
		{"a sticky directory", keys, stickyDir + "/probe", nil},
		{"world-writable file", keys, worldFile, []string{check(20, worldFile, "file "+worldFile+" is writable by anyone (mode 0757)")}},
		{"world-writable directory", keys, worldDir + "/probe", []string{check(20, worldDir+"/probe", "directory "+worldDir+" is writable by anyone (mode 0777)")}},
		{"through a symlink", keys, link + "/probe", []string{check(20, link+"/probe", "directory "+link+" is writable by anyone (mode 0777)")}},
		{"not in PATH", keys, "no-such-probe-xyz", []string{
			":20:1: check[0].command: \"no-such-probe-xyz\" is no program in " + runas.Path + " (the PATH scripts get; write the full path)",
		}},
		{"missing", keys, dir + "/missing", []string{":20:1: check[0].command: " + dir + "/missing: no such file or directory"}},
		{"security off", keys + "script_security = false\n", worldFile, []string{
			":4:1: warning: site.script_security: off: scripts run even when users other than root and the script user can change them",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ps := loadText(t, scriptSite(tc.keys, tc.prog, "/bin/true"))
			if me.Uid == "0" {
				ps = dropRootWarning(ps)
			}
			if diff := cmp.Diff(tc.problems, ps, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
	// A group-writable file is refused unless the group is root's; as
	// root the file's group is 4242 here.
	if os.Geteuid() == 0 {
		_, ps := loadText(t, scriptSite(keys, groupFile, "/bin/true"))
		want := []string{check(20, groupFile, "file "+groupFile+" is writable by group 4242 (mode 0775)")}
		if diff := cmp.Diff(want, dropRootWarning(ps)); diff != "" {
			t.Errorf("group-writable (-want +got):\n%s", diff)
		}
	}
	// Owned by someone else: a file of the test's user, for a script
	// user who is nobody (as root: chowned to uid 4243).
	other := write("other", 0o755, 0o755)
	if os.Geteuid() == 0 {
		if err := os.Chown(other, 4243, -1); err != nil {
			t.Fatal(err)
		}
	}
	uid := os.Getuid()
	if uid == 0 {
		uid = 4243
	}
	_, ps := loadText(t, scriptSite("script_user = \"nobody\"\n", other, "/bin/true"))
	want := fmt.Sprintf(":20:1: check[0].command: %s is refused by script_security: file %s is owned by uid %d, neither root nor the script user; only root and the script user (nobody) may be able to change a script and the directories above it (or set [site] script_security = false)",
		other, other, uid)
	if diff := cmp.Diff([]string{want}, ps); diff != "" {
		t.Errorf("owned by another user (-want +got):\n%s", diff)
	}
}

// dropRootWarning drops the warning a root script user gets.
func dropRootWarning(ps []string) []string {
	var out []string
	for _, p := range ps {
		if !strings.Contains(p, "run as root (uid 0)") {
			out = append(out, p)
		}
	}
	return out
}

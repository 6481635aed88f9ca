package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	broken := filepath.Join(dir, "broken.toml")
	if err := os.WriteFile(broken, []byte("[site]\nname = \"x\"\nbogus = 1\n[[node]]\nname = \"a\"\naddress = \"10.0.0.1\"\npriority = 300\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "none.sock")
	for _, tc := range []struct {
		args []string
		code int
		want string // in stdout+stderr
	}{
		{[]string{"version"}, 0, "havip "},
		{[]string{"check", "-c", "../../examples/havip.toml"}, 0, "ok"},
		{[]string{"check", "-c", "../../examples/minimal.toml"}, 0, "ok"},
		{[]string{"check", "-c", "../../examples/havip.toml", "--node", "nosuch"}, 1, "nosuch"},
		{[]string{"check", "-c", broken}, 1, broken + ":3:1: "},
		{[]string{"check", "-c", filepath.Join(dir, "missing.toml")}, 1, "missing.toml"},
		{[]string{"frobnicate"}, 1, "unknown command"},
		{[]string{}, 1, "usage"},
		{[]string{"run", "--no-such-flag"}, 1, "flag provided but not defined"},
		{[]string{"run", "-c", broken}, 1, "invalid site file"},
		{[]string{"status", "--socket", sock}, 2, "not running"},
		{[]string{"failover", "front", "--socket", sock}, 2, "not running"},
		{[]string{"realserver", "up", "--mode", "nat", "--vip", "10.0.0.1"}, 1, "--mode must be dr or tun"},
		{[]string{"realserver", "up", "--mode", "dr"}, 1, "at least one --vip"},
		{[]string{"realserver", "sideways", "--mode", "dr", "--vip", "10.0.0.1"}, 1, "up or down"},
		{[]string{"realserver", "up", "--mode", "dr", "--vip", "not-an-ip"}, 1, "bad VIP"},
	} {
		code, out, errs := runCLI(tc.args...)
		if code != tc.code || !strings.Contains(out+errs, tc.want) {
			t.Errorf("havip %s: exit %d (want %d), output lacks %q:\n%s%s", strings.Join(tc.args, " "), code, tc.code, tc.want, out, errs)
		}
	}
}

// Every problem of a broken file is printed as FILE:LINE:COL: message.
func TestCheckPrintsEveryProblem(t *testing.T) {
	code, _, errs := runCLI("check", "-c", "../../internal/conf/testdata/broken.toml")
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	lines := strings.Split(strings.TrimSpace(errs), "\n")
	re := regexp.MustCompile(`^\.\./\.\./internal/conf/testdata/broken\.toml:\d+(:\d+)?: `)
	for _, l := range lines {
		if !re.MatchString(l) {
			t.Errorf("not FILE:LINE:COL: %q", l)
		}
	}
	if len(lines) < 10 {
		t.Errorf("only %d problems printed; the file has dozens", len(lines))
	}
}

func TestParseInterspersed(t *testing.T) {
	fs := newFlags("x", &bytes.Buffer{})
	sock := fs.String("socket", "", "")
	pos, err := parse(fs, []string{"front", "--socket", "/s", "back"})
	if err != nil || *sock != "/s" || strings.Join(pos, ",") != "front,back" {
		t.Fatalf("parse: %v %q %v", err, *sock, pos)
	}
}

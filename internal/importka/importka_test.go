package importka

import (
	"flag"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/havip/havip/internal/conf"
	"github.com/havip/havip/internal/siteout"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// golden compares got with testdata/golden/name, or rewrites it.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -run %s -update writes it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func notesText(ns []siteout.Note) string {
	var b strings.Builder
	for _, n := range ns {
		b.WriteString(n.String() + "\n")
	}
	return b.String()
}

// scriptArg is a whole argv string naming a script of the testdata.
var scriptArg = regexp.MustCompile(`"/etc/keepalived/scripts/([^"]+)"`)

// LoadOnHost writes site where havip check would read it, with the
// testdata's scripts made real (Load checks that each exists and is
// safe) and this user as the script user, and loads it as havip check
// does.
func loadOnHost(t *testing.T, site string) []conf.Problem {
	t.Helper()
	dir := t.TempDir()
	scripts := filepath.Join(dir, "scripts")
	if err := os.Mkdir(scripts, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, m := range scriptArg.FindAllStringSubmatch(site, -1) {
		if err := os.WriteFile(filepath.Join(scripts, m[1]), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	site = strings.ReplaceAll(site, "/etc/keepalived/scripts/", scripts+"/")
	site = strings.ReplaceAll(site, `script_user = "keepalived_script"`, `script_user = "`+me.Username+`"`)
	if !strings.Contains(site, "script_user") {
		site = strings.Replace(site, "[site]\n", "[site]\nscript_user = \""+me.Username+"\"\n", 1)
	}
	// Load refuses a control socket or state directory path that is
	// something else on this host; point them into the test's directory.
	site = strings.Replace(site, "[site]\n", "[site]\ncontrol_socket = \""+dir+"/havip.sock\"\nstate_dir = \""+dir+"/state\"\n", 1)
	path := filepath.Join(dir, "havip.toml")
	if err := os.WriteFile(path, []byte(site), 0o644); err != nil {
		t.Fatal(err)
	}
	s, problems, err := conf.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if conf.HasErrors(problems) || s == nil {
		for _, p := range problems {
			t.Log(p)
		}
		t.Fatalf("the converted site does not load:\n%s", site)
	}
	return problems
}

func TestConvertGolden(t *testing.T) {
	for _, tc := range []struct {
		name   string
		files  []string
		opts   Options
		unsafe bool
	}{
		{name: "dr-pair", files: []string{"testdata/dr/lb1.conf", "testdata/dr/lb2.conf"}, opts: Options{SiteName: "web-dc1"}},
		{name: "dr-master-only", files: []string{"testdata/dr/lb1.conf"}},
		{name: "nat", files: []string{"testdata/nat/keepalived.conf"}},
		{name: "odd", files: []string{"testdata/odd/keepalived.conf"}, unsafe: true,
			opts: Options{Addresses: map[string]netip.Addr{PeerPlaceholder: netip.MustParseAddr("192.168.50.3")}}},
		{name: "differ", files: []string{"testdata/differ/a.conf", "testdata/differ/b.conf"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, notes, err := Convert(tc.files, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			out := siteout.Render(s)
			golden(t, tc.name+".toml", out)
			golden(t, tc.name+".notes", notesText(notes))
			if got := siteout.Unsafe(notes); got != tc.unsafe {
				t.Errorf("unsafe = %t, want %t:\n%s", got, tc.unsafe, notesText(notes))
			}
			loadOnHost(t, out)
		})
	}
}

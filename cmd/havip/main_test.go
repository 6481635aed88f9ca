package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/havip/havip/internal/cli"
	"github.com/havip/havip/internal/ctl"
)

func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// onThisHost makes the reference example's scripts and script user ones
// this machine has (Load checks them): nobody and its group, /bin/true.
func onThisHost(t *testing.T, example []byte) []byte {
	t.Helper()
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	g, err := user.LookupGroupId(u.Gid)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range [][2]string{
		{`script_user = "havip"`, `script_user = "nobody"`},
		{`script_group = "havip"`, `script_group = "` + g.Name + `"`},
		{"/etc/havip/notify", "/bin/true"},
		{"/usr/local/lib/havip/probe-shop", "/bin/true"},
	} {
		if !bytes.Contains(example, []byte(r[0])) {
			t.Fatalf("the reference example has no %s", r[0])
		}
		example = bytes.ReplaceAll(example, []byte(r[0]), []byte(r[1]))
	}
	return example
}

func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	broken := filepath.Join(dir, "broken.toml")
	if err := os.WriteFile(broken, []byte("[site]\nname = \"x\"\nbogus = 1\n[[node]]\nname = \"a\"\naddress = \"10.0.0.1\"\npriority = 300\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "none.sock")
	// The reference example names /etc/havip/pair.key; give it one here.
	ref := filepath.Join(dir, "havip.toml")
	refKey := filepath.Join(dir, "pair.key")
	example, err := os.ReadFile("../../examples/havip.toml")
	if err != nil {
		t.Fatal(err)
	}
	// And the CA file of its https check, a real one.
	ca, err := filepath.Abs("../../internal/conf/testdata/ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	example = bytes.Replace(example, []byte("/etc/havip/api-ca.pem"), []byte(ca), 1)
	example = onThisHost(t, example)
	if err := os.WriteFile(ref, bytes.Replace(example, []byte("/etc/havip/pair.key"), []byte(refKey), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	openKey := filepath.Join(dir, "open.key")
	if err := os.WriteFile(openKey, []byte(strings.Repeat("ab", 32)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	openRef := filepath.Join(dir, "open.toml")
	if err := os.WriteFile(openRef, bytes.Replace(example, []byte("/etc/havip/pair.key"), []byte(openKey), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string // in stdout+stderr
	}{
		{[]string{"version"}, 0, "havip "},
		{[]string{"check", "-c", ref}, 1, "pair.key: no such file"},
		{[]string{"keygen", refKey}, 0, "mode 0600"},
		{[]string{"keygen", refKey}, 1, "exists"},
		{[]string{"keygen"}, 1, "name one file"},
		{[]string{"keygen", filepath.Join(dir, "no", "such", "dir")}, 2, "no such file"},
		{[]string{"check", "-c", ref}, 0, "ok"},
		{[]string{"check", "-c", openRef}, 1, "chmod 600"},
		{[]string{"check", "-c", "../../examples/minimal.toml"}, 0, "ok"},
		{[]string{"check", "-c", ref, "--node", "nosuch"}, 1, "nosuch"},
		{[]string{"check", "-c", broken}, 1, broken + ":3:1: "},
		{[]string{"check", "-c", filepath.Join(dir, "missing.toml")}, 1, "missing.toml"},
		{[]string{"frobnicate"}, 1, "unknown command"},
		{[]string{}, 1, "usage"},
		{[]string{"run", "--no-such-flag"}, 1, "flag provided but not defined"},
		{[]string{"run", "-c", broken}, 1, "invalid site file"},
		{[]string{"status", "--socket", sock}, 2, "not running"},
		{[]string{"status", "-c", filepath.Join(dir, "missing.toml")}, 1, "missing.toml"},
		{[]string{"reload", "--socket", sock}, 2, "not running"},
		{[]string{"run", "-c", broken, "extra"}, 1, `unexpected argument "extra"`},
		{[]string{"check", "-c", "../../examples/havip.toml", "../../examples/minimal.toml"}, 1, "unexpected argument"},
		{[]string{"status", "--socket", sock, "front"}, 1, `unexpected argument "front"`},
		{[]string{"reload", "now", "--socket", sock}, 1, `unexpected argument "now"`},
		{[]string{"version", "extra"}, 1, "unexpected argument"},
		{[]string{"--version", "extra"}, 1, "unexpected argument"},
		{[]string{"failover", "front", "--socket", sock}, 2, "not running"},
		{[]string{"events", "--socket", sock}, 2, "not running"},
		{[]string{"events", "--follow", "--socket", sock}, 2, "not running"},
		{[]string{"events", "--after", "x", "--socket", sock}, 1, "invalid value"},
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

// A group whose advert cannot fit a 1500-byte MTU (100 IPv6 VIPs) is
// refused by check, with its line, before havip run ever meets it.
func TestCheckAdvertOverMTU(t *testing.T) {
	vips := make([]string, 100)
	for i := range vips {
		vips[i] = fmt.Sprintf(`"2001:db8::%x/64"`, 0x100+i)
	}
	path := filepath.Join(t.TempDir(), "big.toml")
	site := `[site]
name = "x"
[[node]]
name = "lb1"
address = "2001:db8::11"
link_local = "fe80::11"
priority = 150
[[node]]
name = "lb2"
address = "2001:db8::12"
link_local = "fe80::12"
[[vrrp]]
name = "v6"
interface = "eth0"
vrid = 1
vips = [` + strings.Join(vips, ", ") + `]
`
	if err := os.WriteFile(path, []byte(site), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI("check", "-c", path)
	want := path + ":16:1: vrrp[0].vips: an advert carrying 100 IPv6 VIPs is 1648 bytes, more than the 1500-byte Ethernet MTU; split them across groups"
	if code != 1 || !strings.HasSuffix(strings.TrimSpace(errs), "\n"+want) {
		t.Fatalf("havip check: exit %d, want 1 and one line\n%s\ngot:\n%s%s", code, want, out, errs)
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
	f := newFlags("failover", &bytes.Buffer{}, &bytes.Buffer{})
	sock := f.String("socket", "", "")
	pos, err := f.parse([]string{"front", "--socket", "/s", "back"})
	if err != nil || *sock != "/s" || strings.Join(pos, ",") != "front,back" {
		t.Fatalf("parse: %v %q %v", err, *sock, pos)
	}
}

// -h and --help print the command's usage to stdout and exit 0; a bad
// flag prints it to stderr and exits 1.
func TestHelp(t *testing.T) {
	for _, c := range commands() {
		usage := strings.TrimSpace("usage: havip "+c.name+" "+c.args) + "\n" + c.what + "\n"
		for _, h := range []string{"-h", "--help"} {
			code, out, errs := runCLI(c.name, h)
			if code != 0 || !strings.HasPrefix(out, usage) || errs != "" {
				t.Errorf("havip %s %s: exit %d, stdout %q, stderr %q", c.name, h, code, out, errs)
			}
		}
		code, out, errs := runCLI(c.name, "--no-such-flag")
		if code != 1 || out != "" || !strings.Contains(errs, usage) {
			t.Errorf("havip %s --no-such-flag: exit %d, stdout %q, stderr %q", c.name, code, out, errs)
		}
	}
	code, out, _ := runCLI("help")
	if code != 0 || !strings.Contains(out, "\n  reload    [-c FILE] [--json]") {
		t.Errorf("havip help: exit %d, the usage lacks reload:\n%s", code, out)
	}
}

// TestCommandTable: every command of cli.Commands runs, and its Flags
// (what havip(8) and the bash completion list) define exactly the flags
// the command itself parses, as its -h shows them.
func TestCommandTable(t *testing.T) {
	flagLine := regexp.MustCompile(`(?m)^  -(\S+)`)
	for _, c := range cli.Commands() {
		cmds := commands()
		if i := slices.IndexFunc(cmds, func(x command) bool { return x.name == c.Name }); i < 0 || cmds[i].run == nil {
			t.Errorf("%s: nothing runs it", c.Name)
			continue
		}
		_, out, _ := runCLI(c.Name, "-h")
		var ran []string
		for _, m := range flagLine.FindAllStringSubmatch(out, -1) {
			ran = append(ran, m[1])
		}
		fs := flag.NewFlagSet(c.Name, flag.ContinueOnError)
		c.Flags(fs)
		var listed []string
		fs.VisitAll(func(f *flag.Flag) { listed = append(listed, f.Name) })
		if diff := cmp.Diff(ran, listed); diff != "" {
			t.Errorf("%s: -h shows other flags than cli.Commands (-h +table):\n%s", c.Name, diff)
		}
	}
}

// fakeDaemon answers every connection to a new control socket with the
// canned JSON answer, and passes on the requests it read.
func fakeDaemon(t *testing.T, answer string) (string, <-chan ctl.Request) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "havip.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	reqs := make(chan ctl.Request, 8)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			var req ctl.Request
			if err := json.NewDecoder(c).Decode(&req); err == nil {
				reqs <- req
			}
			_, _ = io.WriteString(c, answer+"\n")
			c.Close()
		}
	}()
	return path, reqs
}

func TestReload(t *testing.T) {
	for _, tc := range []struct {
		name, answer string
		code         int
		stdout       string
		stderr       string
	}{
		{
			name:   "applied",
			answer: `{"ok":true,"reload":{"file":"/etc/havip/havip.toml","applied":true,"old_revision":"3f2a","revision":"9c1d","changes":["group front: vips +198.18.0.101/24","virtual_server web: real_server 192.168.0.9:80 added"],"warnings":["/etc/havip/havip.toml:12: vrrp[0].advert: 10ms is short"],"took":"41ms"}}`,
			stdout: "group front: vips +198.18.0.101/24\nvirtual_server web: real_server 192.168.0.9:80 added\nreloaded /etc/havip/havip.toml (revision 3f2a -> 9c1d) in 41ms\n",
			stderr: "/etc/havip/havip.toml:12: vrrp[0].advert: 10ms is short\n",
		},
		{
			name:   "no changes",
			answer: `{"ok":true,"reload":{"file":"/e/h.toml","applied":true,"old_revision":"3f2a","revision":"3f2a","took":"2ms"}}`,
			stdout: "no changes\nreloaded /e/h.toml (revision 3f2a -> 3f2a) in 2ms\n",
		},
		{
			name:   "refused",
			answer: `{"ok":false,"error":"reload refused","reload":{"file":"/e/h.toml","applied":false,"old_revision":"3f2a","revision":"3f2a","problems":["/e/h.toml:7: vrrp[0].vrid: 300 is not in 1..255","/e/h.toml:9: unknown key vrrp[0].colour"]}}`,
			code:   1,
			stderr: "/e/h.toml:7: vrrp[0].vrid: 300 is not in 1..255\n/e/h.toml:9: unknown key vrrp[0].colour\nreload refused; the running configuration is unchanged\n",
		},
		{
			name:   "refused without problems",
			answer: `{"ok":false,"error":"reload: another reload is running","reload":{"file":"/e/h.toml","applied":false}}`,
			code:   1,
			stderr: "havip reload: ctl: daemon: reload: another reload is running\nreload refused; the running configuration is unchanged\n",
		},
		{
			name:   "a daemon without reload",
			answer: `{"ok":false,"error":"unknown command \"reload\""}`,
			code:   2,
			stderr: "havip reload: ctl: daemon: unknown command \"reload\"\n",
		},
		{
			name:   "not root",
			answer: `{"ok":false,"error":"permission denied: root only"}`,
			code:   2,
			stderr: "havip reload: ctl: permission denied (the control socket is root only) (daemon: permission denied: root only)\n",
		},
	} {
		sock, reqs := fakeDaemon(t, tc.answer)
		code, out, errs := runCLI("reload", "--socket", sock)
		if code != tc.code || out != tc.stdout || errs != tc.stderr {
			t.Errorf("%s: exit %d (want %d)\nstdout %q\nwant   %q\nstderr %q\nwant   %q", tc.name, code, tc.code, out, tc.stdout, errs, tc.stderr)
		}
		if req := <-reqs; req.Cmd != ctl.CmdReload {
			t.Errorf("%s: sent %+v", tc.name, req)
		}
	}
}

func TestReloadJSON(t *testing.T) {
	sock, _ := fakeDaemon(t, `{"ok":false,"reload":{"file":"/e/h.toml","applied":false,"problems":["/e/h.toml:7: bad"]}}`)
	code, out, _ := runCLI("reload", "--socket", sock, "--json")
	var res ctl.ReloadResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != 1 || res.Problems[0] != "/e/h.toml:7: bad" {
		t.Errorf("exit %d, %v, stdout %q", code, err, out)
	}
}

const statusAnswer = `{"ok":true,"status":{"site":"web-dc1","node":"lb1","address":"192.168.0.11","config_file":"/etc/havip/havip.toml","revision":"3f2a",
"last_reload":{"file":"/etc/havip/havip.toml","applied":false,"revision":"3f2a","problems":["/etc/havip/havip.toml:7: vrrp[0].vrid: 300 is not in 1..255"]},
"peers":[{"node":"lb2","address":"192.168.0.12","revision":"9c1d"},{"node":"lb3","address":"192.168.0.13","revision":"3f2a"}]}}`

func TestStatusRevisions(t *testing.T) {
	sock, _ := fakeDaemon(t, statusAnswer)
	code, out, errs := runCLI("status", "--socket", sock)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"config /etc/havip/havip.toml  revision 3f2a\n",
		"LAST RELOAD REFUSED (running config kept):\n  /etc/havip/havip.toml:7: vrrp[0].vrid: 300 is not in 1..255\n",
		"peer lb2 (192.168.0.12): not heard, revision 9c1d (differs from this node's); pair link down\n",
		"peer lb3 (192.168.0.13): not heard, revision 3f2a; pair link down\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
}

// An invalid site file still leads to the daemon: its control_socket is
// read leniently, with a note.
func TestStatusInvalidFile(t *testing.T) {
	sock, _ := fakeDaemon(t, statusAnswer)
	dir := t.TempDir()
	minimal, err := os.ReadFile("../../examples/minimal.toml")
	if err != nil {
		t.Fatal(err)
	}
	valid := strings.Replace(string(minimal), "[site]\n", "[site]\ncontrol_socket = \""+sock+"\"\n", 1)
	for _, tc := range []struct {
		name, text string
		note       bool
	}{
		{"valid", valid, false},
		{"invalid", valid + "[[node]]\nname = \"lb1\"\npriority = 300\n", true},
		{"does not parse", valid + "[[vrrp]\nvrid = \n", true},
	} {
		file := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".toml")
		if err := os.WriteFile(file, []byte(tc.text), 0o644); err != nil {
			t.Fatal(err)
		}
		code, out, errs := runCLI("status", "-c", file)
		note := "havip status: note: " + file + " is invalid"
		if code != 0 || !strings.Contains(out, "site web-dc1") || strings.Contains(errs, note) != tc.note {
			t.Errorf("%s: exit %d, stdout %q, stderr %q (want a note: %v)", tc.name, code, out, errs, tc.note)
		}
	}
}

// A user who may not use the control socket is told so (exit 2), not
// that the daemon is not running: the real binary, run as nobody, against
// a socket in a root-only directory.
func TestNotRootPermissionDenied(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short: builds havip and runs it as nobody, which needs root")
	}
	if os.Geteuid() != 0 {
		t.Fatalf("this test needs root to run havip as nobody (euid %d); run it as root, or with -short to leave it out", os.Geteuid())
	}
	dir := t.TempDir()
	// The test's directories are 0700: nobody must reach the binary.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "havip")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	private := filepath.Join(dir, "private")
	if err := os.Mkdir(private, 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(private, "havip.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, args := range [][]string{{"status"}, {"reload"}, {"failover", "front"}} {
		cmd := exec.Command(bin, append(args, "--socket", sock)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		var errs bytes.Buffer
		cmd.Stderr = &errs
		err := cmd.Run()
		code := 0
		if ee, ok := errors.AsType[*exec.ExitError](err); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != 2 || !strings.Contains(errs.String(), "permission denied") || strings.Contains(errs.String(), "not running") {
			t.Errorf("havip %s as nobody: exit %d (want 2), stderr %q", strings.Join(args, " "), code, errs.String())
		}
	}
}

// --pid finds the one unix socket the process listens on: here, this test.
func TestSocketOfPID(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctl.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got, err := socketOfPID(os.Getpid())
	if err != nil || got != path {
		t.Fatalf("socketOfPID = %q, %v; want %q", got, err, path)
	}
	if _, err := socketOfPID(1 << 30); err == nil {
		t.Errorf("a process that does not exist was found")
	}
	if code, _, errs := runCLI("status", "--pid", strconv.Itoa(1<<30)); code != 2 || !strings.Contains(errs, "not running") {
		t.Errorf("status --pid of no process: exit %d, %q; want 2 and not running", code, errs)
	}
}

// Status shows each interface's shared advert socket with what it could
// give to no group.
func TestPrintStatusSockets(t *testing.T) {
	var b strings.Builder
	printStatus(&b, &ctl.Status{Sockets: []ctl.SocketStatus{{Interface: "eth0", Family: "inet", Groups: 20, Multicast: true, Opens: 1,
		Drops: map[string]uint64{"vrid": 6, "truncated": 1}}}})
	want := "  advert socket eth0 inet: 20 groups, multicast joined, 1 opened; dropped (no group for them): truncated=1 vrid=6\n"
	if !strings.Contains(b.String(), want) {
		t.Errorf("status lacks %q:\n%s", want, b.String())
	}
}

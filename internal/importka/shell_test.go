package importka

import (
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"testing"
)

func TestSplitCommand(t *testing.T) {
	for in, want := range map[string][]string{
		`/bin/check --a b`:               {"/bin/check", "--a", "b"},
		`'/opt/my check.sh' "two words"`: {"/opt/my check.sh", "two words"},
		`/bin/x a\ b 'it''s'`:            {"/bin/x", "a b", "its"},
		`  /bin/x   `:                    {"/bin/x"},
	} {
		if got := splitCommand(in); !slices.Equal(got, want) {
			t.Errorf("splitCommand(%q) = %q, want %q", in, got, want)
		}
	}
}

// run runs argv with extra arguments and environment, as havip would,
// and returns its output.
func run(t *testing.T, argv []string, env []string, extra ...string) string {
	t.Helper()
	cmd := exec.Command(argv[0], append(slices.Clone(argv[1:]), extra...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%q: %v: %s", argv, err, out)
	}
	return string(out)
}

// The notify hook calls keepalived's scripts as keepalived did: the
// state's own script, then notify with INSTANCE NAME STATE PRIORITY;
// havip appends group, state and priority to the hook's argv.
func TestNotifyRunsKeepalivedScripts(t *testing.T) {
	c := &conv{}
	in := &instance{name: "VI_1", notify: map[string]*Stmt{
		"notify_master": {Words: []string{"notify_master", `/bin/echo "it's master"`}},
		"notify_fault":  {Words: []string{"notify_fault", "/bin/echo fault"}},
		"notify":        {Words: []string{"notify", "/bin/echo all:"}},
	}}
	argv := c.notify(in)
	for state, want := range map[string]string{
		"MASTER": "it's master\nall: INSTANCE VI_1 MASTER 150\n",
		"BACKUP": "all: INSTANCE VI_1 BACKUP 150\n",
		"FAULT":  "fault\nall: INSTANCE VI_1 FAULT 150\n",
	} {
		if got := run(t, argv, nil, "VI_1", state, "150"); got != want {
			t.Errorf("%s: output %q, want %q", state, got, want)
		}
	}
}

// A MISC_CHECK naming its real server's address gets it from the exec
// check's environment, so one check serves every real server.
func TestMiscCheckAddress(t *testing.T) {
	rs := netip.MustParseAddrPort("10.1.0.41:8080")
	argv := execCommand(splitCommand(`/bin/echo 10.1.0.41 8080 http://10.1.0.41:8080/x 'it''s'`), rs)
	got := run(t, argv, []string{"HAVIP_CHECK_ADDR=10.9.9.9", "HAVIP_CHECK_PORT=99"})
	if want := "10.9.9.9 99 http://10.9.9.9:99/x its\n"; got != want {
		t.Errorf("output %q, want %q (argv %q)", got, want, argv)
	}
	plain := splitCommand("/usr/local/bin/check --all")
	if got := execCommand(plain, rs); !slices.Equal(got, plain) {
		t.Errorf("a command without the address became %q", got)
	}
}

func TestAddrRange(t *testing.T) {
	for in, want := range map[string]int{"192.168.200.1-10": 10, "192.168.200.250-192.168.201.10": 17, "192.168.202.8/29": 8, "2001:db8::1-2001:db8::4": 4, "10.0.0.1": 1} {
		got, err := addrRange(in)
		if err != nil || len(got) != want {
			t.Errorf("addrRange(%q) = %d addresses, %v; want %d", in, len(got), err, want)
		}
	}
	for _, in := range []string{"10.0.0.0/8", "::/0", "10.0.0.9-1", "10.0.0.1-10.0.9.1", "x"} {
		if got, err := addrRange(in); err == nil {
			t.Errorf("addrRange(%q) = %d addresses, want an error", in, len(got))
		}
	}
}

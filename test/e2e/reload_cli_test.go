package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/havip/havip/internal/ctl"
	h "github.com/havip/havip/test/e2e/harness"
)

// lineOf is the 1-based line of cfg that starts with prefix.
func lineOf(t *testing.T, cfg, prefix string) int {
	t.Helper()
	for i, l := range strings.Split(cfg, "\n") {
		if strings.HasPrefix(l, prefix) {
			return i + 1
		}
	}
	t.Fatalf("no line starts with %q", prefix)
	return 0
}

// `havip reload` against the real daemon: a change prints its changes and
// exits 0; an invalid file prints every problem as FILE:LINE: message and
// exits 1, and the old file keeps running; no daemon is exit 2. The
// systemd unit reloads with it.
func TestReloadCommand(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	good := lb1.ReadConfig()

	changed := strings.Replace(good, "preempt = true", "preempt = true\npreempt_delay = \"1s\"", 1)
	lb1.WriteConfig(changed)
	out, code := lb1.Reload()
	want := regexp.MustCompile(`^group front: updated in place \(preempt_delay\)\n` +
		`reloaded ` + regexp.QuoteMeta(lb1.Config) + ` \(revision [0-9a-f]{12} -> [0-9a-f]{12}\) in [0-9.]+[µm]?s\n$`)
	if code != 0 || !want.MatchString(out) {
		t.Errorf("havip reload of a change: exit %d, want 0 and %s:\n%s", code, want, out)
	}
	applied := mustStatus(t, lb1)

	// --json: the result as the daemon sent it.
	out, code = lb1.Run("reload", "-c", lb1.Config, "--json")
	var res ctl.ReloadResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != 0 || !res.Applied || res.Revision != applied.Revision {
		t.Errorf("havip reload --json: exit %d, %v, %+v\n%s", code, err, res, out)
	}

	// Two problems, each on its own line with its position.
	bad := strings.Replace(changed, "vrid = 51", "vrid = 300", 1)
	bad = strings.Replace(bad, "garp_interval", "bogus = 1\ngarp_interval", 1)
	lb1.WriteConfig(bad)
	out, code = lb1.Reload()
	t.Logf("havip reload of an invalid file (exit %d):\n%s", code, out)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if code != 1 || len(lines) != 3 || lines[2] != "reload refused; the running configuration is unchanged" {
		t.Fatalf("havip reload of an invalid file: exit %d, want 1, two problems and the refusal", code)
	}
	for i, key := range []string{"vrid", "bogus"} {
		re := regexp.MustCompile(`^` + regexp.QuoteMeta(lb1.Config) + `:` + strconv.Itoa(lineOf(t, bad, key+" =")) + `(:\d+)?: .*` + key)
		if !re.MatchString(lines[i]) {
			t.Errorf("problem %d: %q, want %s", i+1, lines[i], re)
		}
	}
	st := mustStatus(t, lb1)
	if st.Revision != applied.Revision || st.PID != applied.PID || st.Groups[0].State != "MASTER" ||
		st.Groups[0].Transitions != applied.Groups[0].Transitions || st.LastReload == nil || st.LastReload.Applied {
		t.Errorf("after the refused reload: revision %s (running %s), group %+v, last reload %+v",
			st.Revision, applied.Revision, st.Groups[0], st.LastReload)
	}
	out, code = lb1.Run("reload", "-c", lb1.Config, "--json")
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != 1 || res.Applied || len(res.Problems) != 2 {
		t.Errorf("havip reload --json of an invalid file: exit %d, %v, %+v", code, err, res)
	}

	// No daemon to ask.
	lb2.Signal(syscall.SIGTERM)
	out, code = lb2.Reload()
	if code != 2 || !strings.Contains(out, "not running") {
		t.Errorf("havip reload without a daemon: exit %d, want 2:\n%s", code, out)
	}

	unit, err := os.ReadFile(filepath.Join("..", "..", "packaging", "havip.service"))
	if err != nil {
		t.Fatal(err)
	}
	// "+": outside the sandbox, where --pid can read the daemon's fds
	// (see the unit's comment).
	if !regexp.MustCompile(`(?m)^ExecReload=\+/usr/sbin/havip reload -c /etc/havip/havip.toml --pid \$MAINPID$`).Match(unit) {
		t.Errorf("packaging/havip.service does not reload with havip reload:\n%s", unit)
	}
}

package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/havip/havip/internal/ctl"
)

// Peer text reaches the terminal escaped: ESC (a C0 control), DEL and the
// C1 CSI (U+009B) never leave havip events raw, and the line still decodes
// to the same value.
func TestEventsTerminalSafe(t *testing.T) {
	name := "fr\x1b[2Jont\x7f\u009b31m\u2028x"
	answer, err := json.Marshal(ctl.Response{OK: true, Events: []ctl.Event{
		{Seq: 7, Kind: "vrrp_transition", Fields: map[string]any{"group": name, "from": "BACKUP", "to": "MASTER"}},
		{Seq: 8, Kind: "reload", Fields: map[string]any{"ok": true, "changes": []string{}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	sock, reqs := fakeDaemon(t, string(answer))
	code, out, errs := runCLI("events", "--socket", sock, "--after", "6")
	if code != 0 || errs != "" {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	if req := <-reqs; req.Cmd != ctl.CmdEvents || req.After != 6 || req.Follow {
		t.Errorf("sent %+v, want events after 6 without follow", req)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 lines, got:\n%s", out)
	}
	for _, l := range lines {
		for _, r := range l {
			if isTerminalControl(r) {
				t.Errorf("raw control %U in %q", r, l)
			}
		}
	}
	for _, esc := range []string{`\u001b`, `\u007f`, `\u009b`, `\u2028`} {
		if !strings.Contains(lines[0], esc) {
			t.Errorf("line lacks %s: %s", esc, lines[0])
		}
	}
	var ev ctl.Event
	if err := json.Unmarshal([]byte(lines[0]), &ev); err != nil || ev.Seq != 7 || ev.Fields["group"] != name {
		t.Errorf("line 1 decodes to %+v (%v), want seq 7 and the group name intact", ev, err)
	}
}

// --follow prints every batch the daemon streams; a stream the daemon
// closes (it stopped) is exit 2 with a message.
func TestEventsFollowDaemonStops(t *testing.T) {
	sock, reqs := fakeDaemon(t, `{"ok":true,"events":[{"seq":1,"time":"2026-01-01T00:00:00Z","kind":"pair_link_up","fields":{"peer":"lb2"}}]}
{"ok":true}
{"ok":true,"events":[{"seq":2,"time":"2026-01-01T00:00:01Z","kind":"vrrp_transition","fields":{"group":"front","from":"BACKUP","to":"MASTER"}}]}`)
	code, out, errs := runCLI("events", "--socket", sock, "--follow")
	if code != 2 || !strings.Contains(errs, "the daemon closed the stream") {
		t.Errorf("exit %d, stderr %q; want 2 and why", code, errs)
	}
	if req := <-reqs; !req.Follow {
		t.Errorf("sent %+v, want follow", req)
	}
	want := `{"seq":1,"time":"2026-01-01T00:00:00Z","kind":"pair_link_up","fields":{"peer":"lb2"}}
{"seq":2,"time":"2026-01-01T00:00:01Z","kind":"vrrp_transition","fields":{"from":"BACKUP","group":"front","to":"MASTER"}}
`
	if out != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", out, want)
	}
	// A daemon saying it stops ends the stream the same way, with its words.
	sock, _ = fakeDaemon(t, `{"ok":false,"error":"the control socket is closing (the daemon stops, or a reload moved it)"}`)
	code, _, errs = runCLI("events", "--socket", sock, "--follow")
	if code != 2 || !strings.Contains(errs, "control socket is closing") {
		t.Errorf("exit %d, stderr %q; want 2 and the daemon's reason", code, errs)
	}
}

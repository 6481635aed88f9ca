package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/havip/havip/internal/ctl"
	h "github.com/havip/havip/test/e2e/harness"
)

// follower is `havip events --follow` running in a node's namespace.
type follower struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	events []ctl.Event
	at     []time.Time // when each line arrived
	bad    []string    // lines that are not one JSON event
	stderr bytes.Buffer
	done   chan struct{}
}

func follow(t *testing.T, n *h.Node) *follower {
	t.Helper()
	f := &follower{cmd: exec.Command(h.Binary(t), "events", "--follow", "--socket", n.Sock), done: make(chan struct{})}
	out, err := f.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	f.cmd.Stderr = &f.stderr
	if err := n.Host.Start(f.cmd); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(f.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var e ctl.Event
			err := json.Unmarshal(sc.Bytes(), &e)
			f.mu.Lock()
			if err != nil || e.Kind == "" {
				f.bad = append(f.bad, sc.Text())
			} else {
				f.events, f.at = append(f.events, e), append(f.at, time.Now())
			}
			f.mu.Unlock()
		}
		_ = f.cmd.Wait()
	}()
	t.Cleanup(func() {
		if f.cmd.ProcessState == nil {
			_ = f.cmd.Process.Kill()
		}
		<-f.done
	})
	return f
}

// wait waits for an event matching m and returns it with its arrival time.
func (f *follower) wait(t *testing.T, timeout time.Duration, what string, m func(ctl.Event) bool) (ctl.Event, time.Time) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		f.mu.Lock()
		for i, e := range f.events {
			if m(e) {
				f.mu.Unlock()
				return e, f.at[i]
			}
		}
		f.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	t.Fatalf("havip events --follow: no %s within %s; got %+v, stderr %q", what, timeout, f.events, f.stderr.String())
	return ctl.Event{}, time.Time{}
}

// exit waits for the follower to end and returns its exit code.
func (f *follower) exit(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-f.done:
	case <-time.After(timeout):
		t.Fatalf("havip events --follow did not exit within %s", timeout)
	}
	return f.cmd.ProcessState.ExitCode()
}

func transition(group, from, to string) func(ctl.Event) bool {
	return func(e ctl.Event) bool {
		return e.Kind == "vrrp_transition" && e.Fields["group"] == group && (from == "" || e.Fields["from"] == from) && e.Fields["to"] == to
	}
}

func kind(k string, fields map[string]any) func(ctl.Event) bool {
	return func(e ctl.Event) bool {
		if e.Kind != k {
			return false
		}
		for key, v := range fields {
			if fmt.Sprint(e.Fields[key]) != fmt.Sprint(v) {
				return false
			}
		}
		return true
	}
}

// parseEvents reads havip events output: one JSON event per line.
func parseEvents(t *testing.T, out string) []ctl.Event {
	t.Helper()
	var evs []ctl.Event
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var e ctl.Event
		if err := json.Unmarshal([]byte(l), &e); err != nil || e.Kind == "" {
			t.Fatalf("havip events printed a line that is not one JSON event: %q (%v)", l, err)
		}
		evs = append(evs, e)
	}
	return evs
}

// havip events shows a drill, the pair link, reloads (applied and
// refused), health changes and a crash of the peer, in the order they
// happened with sequence numbers 1, 2, 3...; --follow streams a transition
// as it happens, ends with exit 0 on SIGINT, and with exit 2 and a reason
// when the daemon stops.
func TestEvents(t *testing.T) {
	flag := "/proc/sys/net/ipv4/conf/hc0"
	p := h.NewPair(t, h.Site{Extra: fmt.Sprintf(`
[[check]]
name = "flag"
type = "exec"
command = ["test", "-e", %q]
interval = "100ms"
timeout = "90ms"
rise = 1
fall = 2
`, flag)})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	lb1.Metrics = "127.0.0.1:9110"
	for _, n := range p.Nodes {
		n.Host.AddVethPair(t, "hc0", "hc1")
	}
	startNodes(t, p)

	f2 := follow(t, lb2)
	f2.wait(t, 3*time.Second, "INIT -> BACKUP from the ring", transition(group, "", "BACKUP"))

	// A drill: lb2 becomes master, and the follower prints it at once.
	if out, code := lb1.Run("failover"); code != 0 {
		t.Fatalf("havip failover: exit %d\n%s", code, out)
	}
	lb2.WaitState(group, "MASTER", time.Second)
	seen := time.Now()
	_, at := f2.wait(t, 2*time.Second, "BACKUP -> MASTER streamed", transition(group, "BACKUP", "MASTER"))
	if lag := at.Sub(seen); lag > 500*time.Millisecond {
		t.Errorf("the transition reached the follower %s after status showed it; want it streamed", lag.Round(time.Millisecond))
	}

	// A reload applied, then one refused.
	cfg := lb1.ReadConfig()
	lb1.WriteConfig(strings.Replace(cfg, `garp_interval = "20ms"`, `garp_interval = "30ms"`, 1))
	if out, code := lb1.Reload(); code != 0 {
		t.Fatalf("havip reload: exit %d\n%s", code, out)
	}
	lb1.WriteConfig(strings.Replace(cfg, "vrid = 51", "vrid = 300", 1))
	if out, code := lb1.Reload(); code != 1 {
		t.Fatalf("havip reload of a bad file: exit %d, want 1\n%s", code, out)
	}
	lb1.WriteConfig(cfg)
	body, err := lb1.Scrape()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`havip_reloads_total{result="applied"} 1`, `havip_reloads_total{result="refused"} 1`, "havip_events_total "} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	// The check goes down and up again.
	lb1.Host.DelLink(t, "hc0")
	h.WaitUntil(t, 3*time.Second, "check/flag down", func() bool {
		st, err := lb1.Status()
		return err == nil && len(st.Checks) == 1 && !st.Checks[0].Up
	})
	lb1.Host.AddVethPair(t, "hc0", "hc1")
	h.WaitUntil(t, 3*time.Second, "check/flag up", func() bool {
		st, err := lb1.Status()
		return err == nil && len(st.Checks) == 1 && st.Checks[0].Up
	})

	// SIGINT ends a follower with exit 0.
	_ = f2.cmd.Process.Signal(syscall.SIGINT)
	if code := f2.exit(t, 3*time.Second); code != 0 {
		t.Errorf("havip events --follow after SIGINT: exit %d, want 0; stderr %q", code, f2.stderr.String())
	}

	// lb2 crashes: lb1 takes over and the pair link goes down.
	f1 := follow(t, lb1)
	lb2.Signal(syscall.SIGKILL)
	lb1.WaitState(group, "MASTER", 2*time.Second)
	f1.wait(t, 5*time.Second, "pair_link_down", kind("pair_link_down", map[string]any{"peer": "lb2"}))

	out, code := lb1.Run("events")
	if code != 0 {
		t.Fatalf("havip events: exit %d\n%s", code, out)
	}
	t.Logf("havip events on lb1:\n%s", out)
	evs := parseEvents(t, out)
	for i, e := range evs {
		if e.Seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d, want %d (no gaps, no reordering):\n%s", i, e.Seq, i+1, out)
		}
		if i > 0 && e.Time.Before(evs[i-1].Time) {
			t.Errorf("event %d's time %s is before the previous one's %s", e.Seq, e.Time, evs[i-1].Time)
		}
	}
	want := []struct {
		what string
		m    func(ctl.Event) bool
	}{
		{"INIT -> BACKUP", transition(group, "INIT", "BACKUP")},
		{"pair link up", kind("pair_link_up", map[string]any{"peer": "lb2", "address": h.Addr2.String()})},
		{"BACKUP -> MASTER", transition(group, "BACKUP", "MASTER")},
		{"the drill: MASTER -> BACKUP", transition(group, "MASTER", "BACKUP")},
		{"reload applied", kind("reload", map[string]any{"ok": true})},
		{"reload refused", kind("reload", map[string]any{"ok": false})},
		{"health down", kind("health", map[string]any{"target": "check/flag", "check": "flag", "up": false})},
		{"health up", kind("health", map[string]any{"target": "check/flag", "check": "flag", "up": true})},
		// The crash closes the pair link first; the takeover follows from it.
		{"pair link down", kind("pair_link_down", map[string]any{"peer": "lb2"})},
		{"takeover after the crash: BACKUP -> MASTER", transition(group, "BACKUP", "MASTER")},
	}
	i := 0
	for _, e := range evs {
		if i < len(want) && want[i].m(e) {
			i++
		}
	}
	if i < len(want) {
		t.Fatalf("havip events lacks, in order, %q (and what follows it):\n%s", want[i].what, out)
	}
	for _, e := range evs {
		// The peer died as master: its stale last word is no dual master.
		if e.Kind == "dual_master_start" {
			t.Errorf("a dual master reported after the peer crashed: %+v", e)
		}
		if kind("reload", map[string]any{"ok": false})(e) && !strings.Contains(fmt.Sprint(e.Fields["problems"]), "vrid") {
			t.Errorf("the refused reload's event does not carry the problem: %+v", e)
		}
		if kind("reload", map[string]any{"ok": true})(e) && !strings.Contains(fmt.Sprint(e.Fields["changes"]), "front") {
			t.Errorf("the applied reload's event does not carry the change: %+v", e)
		}
	}

	// The daemon stops: the follower says so and exits 2.
	lb1.Signal(syscall.SIGTERM)
	if code := f1.exit(t, 5*time.Second); code != 2 || !strings.Contains(f1.stderr.String(), "closing") {
		t.Errorf("havip events --follow when the daemon stopped: exit %d, stderr %q; want 2 and why", code, f1.stderr.String())
	}
	for _, f := range []*follower{f1, f2} {
		if len(f.bad) > 0 {
			t.Errorf("havip events --follow printed lines that are not events: %q", f.bad)
		}
		for i := 1; i < len(f.events); i++ {
			if f.events[i].Seq != f.events[i-1].Seq+1 {
				t.Errorf("havip events --follow printed seq %d after %d", f.events[i].Seq, f.events[i-1].Seq)
			}
		}
	}
}

// Followers that never read their stream, while refused reloads with
// long problem lists (about 60 KB per event) pour in: the daemon keeps
// mastering and answering, drops those followers, and stops at once.
func TestAdversaryEventFollowersStuck(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1 := p.Nodes[0]
	for range 20 {
		c, err := net.Dial("unix", lb1.Sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte(`{"cmd":"events","follow":true}`)); err != nil {
			t.Fatal(err)
		}
	}
	good := lb1.ReadConfig()
	var junk strings.Builder
	for i := range 120 {
		fmt.Fprintf(&junk, "%q = 1\n", strings.Repeat("x", 400)+strconv.Itoa(i))
	}
	lb1.WriteConfig(strings.Replace(good, "[site]\n", "[site]\n"+junk.String(), 1))
	before := mustStatus(t, lb1).Groups[0].Transitions
	const reloads = 60
	for range reloads {
		t0 := time.Now()
		if _, code := lb1.Reload(); code != 1 {
			t.Fatalf("reload of a file with 120 unknown keys: exit %d, want 1", code)
		}
		if d := time.Since(t0); d > 2*time.Second {
			t.Fatalf("a reload took %s with stuck followers", d)
		}
	}
	st := mustStatus(t, lb1)
	if st.Groups[0].State != "MASTER" || st.Groups[0].Transitions != before {
		t.Fatalf("lb1 %s with %d transitions (was %d): the stuck followers disturbed the master", st.Groups[0].State, st.Groups[0].Transitions, before)
	}
	out, code := lb1.Run("events", "--after", "2")
	if code != 0 || strings.Count(out, `"kind":"reload"`) != reloads {
		t.Fatalf("havip events --after 2: exit %d, %d reload events, want %d", code, strings.Count(out, `"kind":"reload"`), reloads)
	}
	took := stopWithin(t, lb1, 3*time.Second)
	t.Logf("%d KB of events for each of 20 followers that do not read; SIGTERM exited after %s", len(out)>>10, took.Round(time.Millisecond))
}

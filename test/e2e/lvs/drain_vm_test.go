//go:build vmtest

package lvs

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	h "github.com/havip/havip/test/e2e/harness"
)

// kernelWeight is the weight `ipvsadm -Ln` shows on host for real server
// rs of the web service, -1 when it is not there.
func kernelWeight(t *testing.T, n *h.Node, rs string) int {
	out, _ := runIn(t, n.Host, "ipvsadm", "-Ln")
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 && f[0] == "->" && f[1] == rs {
			w, err := strconv.Atoi(f[3])
			if err == nil {
				return w
			}
		}
	}
	return -1
}

// logTime is the time of the last line of log containing all of subs
// (slog's time=), zero when none does.
func logTime(log string, subs ...string) time.Time {
	var at time.Time
	for _, line := range strings.Split(log, "\n") {
		ok := strings.HasPrefix(line, "time=")
		for _, s := range subs {
			ok = ok && strings.Contains(line, s)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		if ts, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(f[0], "time=")); err == nil {
			at = ts
		}
	}
	return at
}

// traffic makes a new connection through the VIP every 50 ms and counts
// who answered after since, until stop is closed.
type traffic struct {
	mu     sync.Mutex
	by     map[string]int
	failed int
	since  time.Time
}

func (tr *traffic) reset() {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.by, tr.failed, tr.since = map[string]int{}, 0, time.Now()
}

func (tr *traffic) counts() (map[string]int, int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	out := map[string]int{}
	for k, v := range tr.by {
		out[k] = v
	}
	return out, tr.failed
}

func (tp *topo) runTraffic(t *testing.T, tr *traffic, stop chan struct{}) {
	tr.reset()
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			c, _, name, err := tp.dial(t)
			tr.mu.Lock()
			if err != nil {
				tr.failed++
			} else {
				c.Close()
				tr.by[name]++
			}
			tr.mu.Unlock()
		}
	}()
}

// Drains under client traffic, mirrored to the backup, kept across a
// failover and a restart, and undone on both.
func TestDrainMirrored(t *testing.T) {
	tp := newTopo(t, "dr")
	p := tp.pair
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	rs1 := tp.rss[0].addr.String() + ":80"
	for _, n := range p.Nodes {
		h.WaitUntil(t, 10*time.Second, n.Name+" has both real servers at weight 1", func() bool {
			return kernelWeight(t, n, rs1) == 1 && kernelWeight(t, n, tp.rss[1].addr.String()+":80") == 1
		})
	}
	// Long-lived connections, half of them to rs1 (rr).
	var onRS1 []conn
	for range 10 {
		c, r, name, err := tp.dial(t)
		if err != nil {
			t.Fatalf("connection: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Time{})
		if name == "rs1" {
			onRS1 = append(onRS1, conn{c, r, name})
		}
	}
	if len(onRS1) == 0 {
		t.Fatalf("no connection went to rs1")
	}
	var tr traffic
	stop := make(chan struct{})
	defer close(stop)
	tp.runTraffic(t, &tr, stop)
	time.Sleep(time.Second)

	// Bad input: exit 1 with the reason.
	if out, code := lb1.Run("drain", "web", "198.18.0.99:80"); code != 1 || !strings.Contains(out, "has no real server") {
		t.Errorf("drain of an unknown real server: exit %d\n%s", code, out)
	}
	if out, code := lb1.Run("drain", "nope", rs1); code != 1 || !strings.Contains(out, `no [[virtual_server]] named "nope"`) {
		t.Errorf("drain of an unknown virtual server: exit %d\n%s", code, out)
	}

	// Drain rs1 on the master.
	t0 := time.Now()
	out, code := lb1.Run("drain", "web", rs1)
	if code != 0 {
		t.Fatalf("havip drain: exit %d\n%s", code, out)
	}
	var onMaster, onBackup time.Duration
	h.WaitUntil(t, 10*time.Second, "weight 0 on both directors' kernels", func() bool {
		if onMaster == 0 && kernelWeight(t, lb1, rs1) == 0 {
			onMaster = time.Since(t0)
		}
		if onBackup == 0 && kernelWeight(t, lb2, rs1) == 0 {
			onBackup = time.Since(t0)
		}
		return onMaster > 0 && onBackup > 0
	})
	t.Logf("havip drain started -> weight 0 seen by ipvsadm polls (CLI start and ipvsadm under TCG included): master %s, backup %s", onMaster.Round(time.Millisecond), onBackup.Round(time.Millisecond))
	// The daemons' own figures: the drain accepted on lb1, written to
	// lb1's kernel, adopted by lb2 and written to its kernel.
	dAt := logTime(lb1.Log(), `msg="drain: web `+rs1+` drained (weight 0)"`)
	k1 := logTime(lb1.Log(), "ipvs: applied", rs1+": weight 1->0")
	aAt := logTime(lb2.Log(), "drain: adopted from the peer: web "+rs1+" drained")
	k2 := logTime(lb2.Log(), "ipvs: applied", rs1+": weight 1->0")
	if dAt.IsZero() || k1.IsZero() || aAt.IsZero() || k2.IsZero() {
		t.Errorf("log lines missing: drain %v, lb1 kernel %v, lb2 adopted %v, lb2 kernel %v", dAt, k1, aAt, k2)
	} else {
		t.Logf("daemon logs: lb1 accepted the drain; its kernel written %s later; lb2 adopted it %s after lb1 accepted it, and wrote its kernel %s after that",
			k1.Sub(dAt).Round(time.Millisecond), aAt.Sub(dAt).Round(time.Millisecond), k2.Sub(aAt).Round(time.Millisecond))
	}
	tr.reset()
	time.Sleep(2 * time.Second)
	by, failed := tr.counts()
	if by["rs1"] != 0 || by["rs2"] == 0 || failed != 0 {
		t.Errorf("new connections after the drain: %v, %d failed; want rs2 only", by, failed)
	}
	for i, cn := range onRS1 {
		if err := cn.echo(fmt.Sprintf("drained-%d", i)); err != nil {
			t.Errorf("an existing connection to the drained rs1 broke: %v", err)
		}
	}
	// Status on both: the drain, matching digests.
	for _, n := range p.Nodes {
		h.WaitUntil(t, 5*time.Second, n.Name+" status: drain and matching tables", func() bool {
			st, err := n.Status()
			return err == nil && len(st.Drains) == 1 && st.Drains[0].RealServer == rs1 && st.Mirror != nil && st.Mirror.Match
		})
	}
	st1, _ := lb1.Status()
	st2, _ := lb2.Status()
	if st1.Mirror.Digest != st2.Mirror.Digest || st1.Mirror.PeerDigest != st2.Mirror.Digest {
		t.Errorf("digests: lb1 %s (peer %s), lb2 %s", st1.Mirror.Digest, st1.Mirror.PeerDigest, st2.Mirror.Digest)
	}
	if st2.Drains[0].By != "lb1" || st1.Mirror.DrainsRevision != st2.Mirror.DrainsRevision {
		t.Errorf("lb2's drain: %+v, revisions %d %d", st2.Drains[0], st1.Mirror.DrainsRevision, st2.Mirror.DrainsRevision)
	}
	if _, err := os.Stat(filepath.Join(lb2.StateDir, "drains.json")); err != nil {
		t.Errorf("the backup did not save the mirrored drain: %v", err)
	}
	stOut, _ := lb2.Run("status")
	t.Logf("havip status on the backup:\n%s", stOut)

	// --wait with connections open: exit 2 at the timeout, with the count.
	out, code = lb1.Run("drain", "web", rs1, "--wait", "--timeout", "3s")
	if code != 2 || !strings.Contains(out, fmt.Sprintf("%d active connection(s) left", len(onRS1))) {
		t.Errorf("drain --wait with %d connections open: exit %d\n%s", len(onRS1), code, out)
	}
	t.Logf("drain --wait --timeout 3s with %d connections open: exit %d: %s", len(onRS1), code, strings.TrimSpace(out))
	// --wait returns once they close.
	type res struct {
		out  string
		code int
		at   time.Time
	}
	done := make(chan res, 1)
	go func() {
		o, c := lb1.Run("drain", "web", rs1, "--wait", "--timeout", "60s")
		done <- res{o, c, time.Now()}
	}()
	time.Sleep(1500 * time.Millisecond)
	select {
	case r := <-done:
		t.Fatalf("drain --wait returned with connections open: exit %d\n%s", r.code, r.out)
	default:
	}
	closed := time.Now()
	for _, cn := range onRS1 {
		cn.c.Close()
	}
	var waitTook time.Duration
	select {
	case r := <-done:
		waitTook = r.at.Sub(closed)
		if r.code != 0 || !strings.Contains(r.out, "no active connection left") {
			t.Errorf("drain --wait: exit %d\n%s", r.code, r.out)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("drain --wait did not return 30 s after the connections closed")
	}
	t.Logf("drain --wait returned %s after the last connection closed", waitTook.Round(time.Millisecond))

	// Fail over: kill -9 of the master; the new master keeps the drain.
	lb1.Signal(syscall.SIGKILL)
	lb2.WaitState("front", "MASTER", 10*time.Second)
	if w := kernelWeight(t, lb2, rs1); w != 0 {
		t.Errorf("the new master's kernel weight for rs1: %d, want 0", w)
	}
	tr.reset()
	time.Sleep(2 * time.Second)
	by, failed = tr.counts()
	if by["rs1"] != 0 || by["rs2"] == 0 {
		t.Errorf("new connections through the new master: %v (%d failed); want rs2 only", by, failed)
	}
	t.Logf("after the failover: %v, %d failed (during the takeover)", by, failed)

	// Restart lb1 (its file) and lb2 (SIGTERM, start): the drain is still
	// there, from each one's own state file.
	lb1.Start()
	lb1.WaitState("front", "MASTER", 15*time.Second)
	lb2.Signal(syscall.SIGTERM)
	lb2.Start()
	lb2.WaitState("front", "BACKUP", 15*time.Second)
	for _, n := range p.Nodes {
		st, err := n.Status()
		if err != nil || len(st.Drains) != 1 || st.Drains[0].RealServer != rs1 {
			t.Errorf("%s after the restart: drains %+v %v", n.Name, st, err)
		}
		if w := kernelWeight(t, n, rs1); w != 0 {
			t.Errorf("%s after the restart: kernel weight %d", n.Name, w)
		}
		if strings.Contains(n.Log(), "adopted from the peer") {
			t.Errorf("%s adopted the drain from the peer after its restart: it should have it from its state file", n.Name)
		}
	}

	// Undrain on the backup: weight 1 again on both.
	t1 := time.Now()
	if out, code := lb2.Run("undrain", "web", rs1); code != 0 {
		t.Fatalf("havip undrain: exit %d\n%s", code, out)
	}
	h.WaitUntil(t, 10*time.Second, "weight 1 on both after the undrain", func() bool {
		return kernelWeight(t, lb1, rs1) == 1 && kernelWeight(t, lb2, rs1) == 1
	})
	t.Logf("undrain on the backup -> weight 1 on both kernels: %s", time.Since(t1).Round(time.Millisecond))
	tr.reset()
	time.Sleep(2 * time.Second)
	if by, _ := tr.counts(); by["rs1"] == 0 || by["rs2"] == 0 {
		t.Errorf("after the undrain: %v, want both real servers", by)
	}
	// --remove takes it out of both tables.
	if out, code := lb1.Run("drain", "web", rs1, "--remove"); code != 0 {
		t.Fatalf("drain --remove: exit %d\n%s", code, out)
	}
	h.WaitUntil(t, 10*time.Second, "rs1 gone from both tables", func() bool {
		return kernelWeight(t, lb1, rs1) == -1 && kernelWeight(t, lb2, rs1) == -1
	})
	// A reload that drops rs1 from the site file drops its drain, saying
	// so; rs2's drain stays.
	rs2 := tp.rss[1].addr.String() + ":80"
	if out, code := lb1.Run("drain", "web", rs2); code != 0 {
		t.Fatalf("drain rs2: exit %d\n%s", code, out)
	}
	h.WaitUntil(t, 10*time.Second, "two drains on both", func() bool {
		s1, e1 := lb1.Status()
		s2, e2 := lb2.Status()
		return e1 == nil && e2 == nil && len(s1.Drains) == 2 && len(s2.Drains) == 2
	})
	cfg := lb1.ReadConfig()
	rsBlock := fmt.Sprintf("\n[[virtual_server.real_server]]\naddress = \"%s\"\nweight = 1\n", rs1)
	if !strings.Contains(cfg, rsBlock) {
		t.Fatalf("site file lacks %q:\n%s", rsBlock, cfg)
	}
	p.WriteConfig(strings.Replace(cfg, rsBlock, "\n", 1))
	for _, n := range p.Nodes {
		if out, code := n.Reload(); code != 0 {
			t.Fatalf("%s reload: exit %d\n%s", n.Name, code, out)
		}
	}
	for _, n := range p.Nodes {
		h.WaitUntil(t, 10*time.Second, n.Name+": only rs2's drain left", func() bool {
			st, err := n.Status()
			return err == nil && len(st.Drains) == 1 && st.Drains[0].RealServer == rs2 && st.Mirror.Match
		})
		// lb1 reloads first and drops it; lb2 then either adopts lb1's
		// set before its own reload, or drops it itself.
		dropped := strings.Contains(n.Log(), "drain dropped: the real server is no longer in the site file")
		if !dropped && (n == lb1 || !strings.Contains(n.Log(), "adopted from the peer: web "+rs1+" undrained")) {
			t.Errorf("%s did not log the dropped drain", n.Name)
		}
		if w := kernelWeight(t, n, rs2); w != 0 {
			t.Errorf("%s: rs2 weight %d after the reload, want 0 (still drained)", n.Name, w)
		}
	}
	for _, n := range p.Nodes {
		t.Logf("--- log of %s ---\n%s", n.Name, n.Log())
	}
}

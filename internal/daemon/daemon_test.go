package daemon

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// Hooks run in order, with group, state and priority appended, and a hook
// that overruns its timeout is killed without holding up the next.
func TestNotifierOrderAndTimeout(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	n := newNotifier(quiet)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.loop(ctx); close(done) }()
	hook := []string{"/bin/sh", "-c", `echo "$*" >> ` + out, "hook"}
	n.run(hook, time.Second, "front", "MASTER", 150)
	start := time.Now()
	n.run([]string{"sleep", "10"}, 100*time.Millisecond, "front", "x", 1)
	n.run(hook, time.Second, "front", "BACKUP", 100)
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(out)
		if strings.Count(string(b), "\n") == 2 {
			if got, want := string(b), "front MASTER 150\nfront BACKUP 100\n"; got != want {
				t.Fatalf("hooks wrote %q, want %q", got, want)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hooks did not both run; file: %q", b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("a hook past its timeout held the queue for %s", took)
	}
	cancel()
	<-done
}

type fakeStates struct {
	mu sync.Mutex
	m  map[string]string
}

func (s *fakeStates) set(g, st string) { s.mu.Lock(); s.m[g] = st; s.mu.Unlock() }
func (s *fakeStates) get() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	for k, v := range s.m {
		out[k] = v
	}
	return out
}

// Two pair links on loopback: a dual master is reported only after the
// grace, ends when one side yields (which tells the other to re-announce),
// and garbage is counted, not believed.
func TestPairLinkDualMaster(t *testing.T) {
	a, b := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	port := freeUDPPort(t)
	sa := &fakeStates{m: map[string]string{"front": "MASTER"}}
	sb := &fakeStates{m: map[string]string{"front": "BACKUP"}}
	grace := func(string) time.Duration { return 600 * time.Millisecond }
	la, err := newPairLink("lab", "lb1", a, port, map[netip.Addr]string{b: "lb2"}, sa.get, grace, quiet)
	if err != nil {
		t.Fatal(err)
	}
	lb, err := newPairLink("lab", "lb2", b, port, map[netip.Addr]string{a: "lb1"}, sb.get, grace, quiet)
	if err != nil {
		t.Fatal(err)
	}
	yielded := make(chan string, 4)
	la.peerYielded = func(g string) { yielded <- g }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go la.run(ctx)
	go lb.run(ctx)

	waitFor(t, "lb1 hears lb2 as BACKUP", func() bool { st, _ := la.peerState("front"); return st == "BACKUP" })
	sb.set("front", "MASTER")
	lb.notify()
	waitFor(t, "lb1 hears lb2 as MASTER", func() bool { st, _ := la.peerState("front"); return st == "MASTER" })
	if la.dualMaster("front") {
		t.Fatal("a dual master was reported before the grace passed")
	}
	waitFor(t, "dual master reported on both", func() bool { return la.dualMaster("front") && lb.dualMaster("front") })

	sb.set("front", "BACKUP")
	lb.notify()
	select {
	case g := <-yielded:
		if g != "front" {
			t.Fatalf("peerYielded(%q)", g)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("lb1 was not told to re-announce when lb2 yielded")
	}
	waitFor(t, "dual master resolved", func() bool { return !la.dualMaster("front") })

	// Garbage and strangers are dropped and counted.
	c, err := net.Dial("udp", netip.AddrPortFrom(a, port).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("{not json"))
	waitFor(t, "garbage counted", func() bool { return la.drops.Load() > 0 })
}

func freeUDPPort(t *testing.T) uint16 {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return uint16(c.LocalAddr().(*net.UDPAddr).Port)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 3s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

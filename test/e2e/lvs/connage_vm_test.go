//go:build vmtest

package lvs

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	h "github.com/havip/havip/test/e2e/harness"
)

// minAge is the age from which a connection must survive the master's
// death: established more than 50ms before it.
const minAge = 50 * time.Millisecond

// TestSyncConnAge opens four batches of 10 connections through the master
// of a DR pair with [sync], at least 3.5s, 1.5s, 0.5s and 60ms old when the
// master host dies (its link cut, then its havip killed: nothing more
// leaves it, not even what its kernel sync daemon still holds), and checks
// on the new master that every connection older than minAge still works.
//
// HAVIP_SYNC_KEYS (vmrun -env) adds raw TOML keys to [sync], e.g. the
// kernel's own defaults for comparison; "\n" in it stands for a newline.
// Then the figures are printed and only the oldest batch, older than the
// kernel's longest hold of a partly filled message (3s), must survive.
func TestSyncConnAge(t *testing.T) {
	keys := strings.ReplaceAll(os.Getenv("HAVIP_SYNC_KEYS"), `\n`, "\n")
	tp := buildTopo(t, "dr")
	p := tp.pair
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	if keys != "" {
		cfg := lb1.ReadConfig()
		anchor := "\n[sync]\n"
		if !strings.Contains(cfg, anchor) {
			t.Fatalf("site file has no %q to add keys after:\n%s", anchor, cfg)
		}
		p.WriteConfig(strings.Replace(cfg, anchor, anchor+keys+"\n", 1))
	}
	tp.start(t)
	for _, n := range p.Nodes {
		h.WaitUntil(t, 10*time.Second, n.Name+" has the IPVS service and its sync daemons", func() bool {
			out, _ := runIn(t, n.Host, "ipvsadm", "-Ln")
			st, err := n.Status()
			want := 1 // backup daemon
			if n == lb1 {
				want = 2
			}
			return strings.Count(out, "->") >= 3 && err == nil && st.IPVS != nil && len(st.IPVS.Sync) == want
		})
	}
	out, _ := runIn(t, lb1.Host, "ipvsadm", "-L", "--daemon")
	t.Logf("lb1's sync daemons:\n%s", out)
	out, _ = runIn(t, lb1.Host, "sh", "-c", "cd /proc/sys/net/ipv4/vs && for f in sync_version sync_threshold sync_refresh_period sync_retries sync_persist_mode; do echo $f=$(cat $f); done")
	t.Logf("lb1's sync sysctls:\n%s", out)

	// Warm up (neighbour caches, the first handshakes under emulation),
	// so the batches open when planned.
	for range 4 {
		c, _, _, err := tp.dial(t)
		if err != nil {
			t.Fatalf("warm-up connection: %v", err)
		}
		c.Close()
	}

	type batch struct {
		age   time.Duration // wanted age at the crash
		conns []conn
		at    []time.Time // when each was established (greeting read)
	}
	batches := []*batch{{age: 3500 * time.Millisecond}, {age: 1500 * time.Millisecond}, {age: 500 * time.Millisecond}, {age: 60 * time.Millisecond}}
	crash := time.Now().Add(4 * time.Second)
	for _, b := range batches {
		time.Sleep(time.Until(crash.Add(-b.age)))
		var mu sync.Mutex
		var wg sync.WaitGroup
		for range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, r, name, err := tp.dial(t)
				if err != nil {
					t.Errorf("connection of batch %s: %v", b.age, err)
					return
				}
				now := time.Now()
				t.Cleanup(func() { c.Close() })
				mu.Lock()
				b.conns = append(b.conns, conn{c, r, name})
				b.at = append(b.at, now)
				mu.Unlock()
			}()
		}
		wg.Wait()
		// Dials under emulation take tens to hundreds of milliseconds: a
		// batch that took long moves the crash (and the batches after
		// it), so each is at least as old as planned.
		if len(b.at) > 0 {
			if last := slices.MaxFunc(b.at, time.Time.Compare).Add(b.age); last.After(crash) {
				crash = last
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// The master host dies: its link goes first, so nothing it still
	// holds leaves it, then its daemon.
	added := h.WaitAddr(t, lb2.Host, p.VIP, true)
	time.Sleep(time.Until(crash))
	t0 := time.Now()
	lb1.Host.DelLink(t, "eth0")
	lb1.Signal(syscall.SIGKILL)
	takeover := h.Within(t, added, 10*time.Second, "VIP on the backup").Sub(t0)
	lb2.WaitState("front", "MASTER", 5*time.Second)
	out, _ = runIn(t, lb2.Host, "ipvsadm", "-Lnc")
	t.Logf("lb2's connection table after the takeover (%s):\n%s", takeover.Round(time.Millisecond), out)

	fmt.Printf("connection sync, master host dies (takeover %s)%s:\n", takeover.Round(time.Millisecond), map[bool]string{true: " with [sync] " + strings.ReplaceAll(keys, "\n", "; "), false: ""}[keys != ""])
	for i, b := range batches {
		var ages []time.Duration
		ok, oldEnough, oldOK := 0, 0, 0
		for j, cn := range b.conns {
			age := t0.Sub(b.at[j])
			ages = append(ages, age)
			alive := cn.echo("after") == nil
			if alive {
				ok++
			}
			if age >= minAge {
				oldEnough++
				if alive {
					oldOK++
				}
			}
		}
		lo, hi := slices.Min(ages), slices.Max(ages)
		fmt.Printf("  batch %d, aged %s..%s: %d/%d survived (%d/%d of those older than %s)\n",
			i+1, lo.Round(time.Millisecond), hi.Round(time.Millisecond), ok, len(b.conns), oldOK, oldEnough, minAge)
		switch {
		case keys == "" && oldOK != oldEnough:
			t.Errorf("batch %d (aged %s..%s): %d of %d connections older than %s survived, want all", i+1, lo, hi, oldOK, oldEnough, minAge)
		case keys != "" && lo > 3*time.Second && ok != len(b.conns):
			t.Errorf("batch %d (aged %s..%s): %d of %d survived, want all: older than the kernel's longest hold", i+1, lo, hi, ok, len(b.conns))
		}
	}
}

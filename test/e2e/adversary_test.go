package e2e

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	h "github.com/havip/havip/test/e2e/harness"
)

// Bad input at odd moments, as an operator having a bad day and an
// attacker on the segment would send it: each probe asserts that it gets
// a clear error or a counted drop and that nothing running is lost.

// padded is cfg grown to about size bytes with comment lines: a valid
// site file that takes tens of milliseconds to load.
func padded(cfg string, size int) string {
	var b strings.Builder
	b.WriteString(cfg)
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "# padding %07d ..................................................\n", i)
	}
	return b.String()
}

// A SIGTERM in the middle of a SIGHUP storm stops the daemon gracefully at
// once, even when each reload takes a while (a site file near the size
// cap).
func TestAdversarySIGTERMInHUPStorm(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	lb1.WriteConfig(padded(lb1.ReadConfig(), 900<<10))
	pid := lb1.Pid()
	stop := make(chan struct{})
	done := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				done <- n
				return
			default:
			}
			if syscall.Kill(pid, syscall.SIGHUP) != nil {
				done <- n
				return
			}
			n++
		}
	}()
	time.Sleep(100 * time.Millisecond)
	added := h.WaitAddr(t, lb2.Host, p.VIP, true)
	t0 := time.Now()
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the storm goes on a while
	close(stop)
	sent := <-done
	h.WaitUntil(t, 3*time.Second, "lb1 exited after SIGTERM", lb1.Exited)
	// At most one reload (about 60 ms here) runs before the stop.
	took := h.Within(t, added, 3*time.Second, "the VIP on lb2").Sub(t0)
	t.Logf("SIGTERM among %d SIGHUPs: the VIP on lb2 after %s", sent, took.Round(time.Millisecond))
	if took > 500*time.Millisecond {
		t.Errorf("lb2 took the VIP %s after the SIGTERM, want a graceful handover within 500 ms", took)
	}
	if !strings.Contains(lb1.Log(), "msg=stopping signal=terminated") || !strings.Contains(lb1.Log(), "msg=stopped") {
		t.Errorf("lb1 did not stop gracefully on SIGTERM")
	}
	lb2.WaitState(group, "MASTER", time.Second)
}

package e2e

import (
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	h "github.com/havip/havip/test/e2e/harness"
)

// Two checks that probe the same thing the same way (names differ, the
// name is only a key) run one probe: the server sees one connection per
// interval, and status says the probe is shared. A third check of the
// same server with another interval has a probe of its own.
//
// The namespace lab has no IPVS, so the keys are two top-level checks;
// real servers of virtual servers share through the same code path
// (checks.Runner keys them "VS/ADDR").
func TestSharedCheckProbesOnce(t *testing.T) {
	const port = 8081
	p := h.NewPair(t, h.Site{Extra: `
[[check]]
name = "a"
type = "tcp"
target = "198.18.0.50:8081"
interval = "200ms"
timeout = "150ms"
rise = 1
fall = 1

[[check]]
name = "b"
type = "tcp"
target = "198.18.0.50:8081"
interval = "200ms"
timeout = "150ms"
rise = 1
fall = 1

[[check]]
name = "other"
type = "tcp"
target = "198.18.0.50:8082"
interval = "200ms"
timeout = "150ms"
rise = 1
fall = 1
`})
	var accepts atomic.Int64
	h.Listen(t, p.Client, port, func(c net.Conn) {
		defer c.Close()
		if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil && ap.Addr() == h.Addr1 {
			accepts.Add(1)
		}
		var b [1]byte
		c.Read(b[:]) // the prober closes first
	})
	h.Listen(t, p.Client, port+1, func(c net.Conn) { c.Close() })
	lb1 := p.Nodes[0]
	lb1.Start() // alone: only its probes reach the listener
	h.WaitUntil(t, 5*time.Second, "checks up", func() bool {
		st, err := lb1.Status()
		if err != nil || len(st.Checks) != 3 {
			return false
		}
		for _, c := range st.Checks {
			if !c.Up {
				return false
			}
		}
		return true
	})
	const window = 3 * time.Second
	n0 := accepts.Load()
	time.Sleep(window)
	got := accepts.Load() - n0
	want := int64(window / (200 * time.Millisecond)) // 15 with one probe, 30 with two
	t.Logf("%d connections in %s at a 200ms interval from the two checks", got, window)
	if got < want-3 || got > want+2 {
		t.Errorf("%d connections in %s, want about %d: one probe for both checks", got, window, want)
	}
	st, err := lb1.Status()
	if err != nil {
		t.Fatal(err)
	}
	shared := map[string]int{}
	for _, c := range st.Checks {
		shared[c.Key] = c.SharedBy
	}
	if shared["check/a"] != 2 || shared["check/b"] != 2 || shared["check/other"] != 1 {
		t.Errorf("status shared_by %v, want check/a and check/b 2, check/other 1", shared)
	}
	out, _ := lb1.Run("status")
	for _, want := range []string{"health checks: 3, 0 down, 2 probes", "SHARED check/a (probe shared by 2)", "SHARED check/b (probe shared by 2)"} {
		if !strings.Contains(out, want) {
			t.Errorf("havip status lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "SHARED check/other") {
		t.Errorf("havip status shows check/other shared:\n%s", out)
	}
}

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	h "github.com/havip/havip/test/e2e/harness"
)

// A tracked [[check]] moves the priority: failing lowers lb1 below lb2,
// which preempts; passing again gives the group back. With weight 0 the
// failing check puts the node in FAULT.
func TestTrackedCheck(t *testing.T) {
	for _, weight := range []int{-100, 0} {
		t.Run(fmt.Sprintf("weight%d", weight), func(t *testing.T) {
			// The check looks at something each director sees alone:
			// a link of its own namespace (/proc/sys/net is per netns).
			flag := "/proc/sys/net/ipv4/conf/hc0"
			p := h.NewPair(t, h.Site{
				ExtraGroup: fmt.Sprintf("[[vrrp.track]]\ncheck = \"flag\"\nweight = %d\n", weight),
				Extra: fmt.Sprintf(`
[[check]]
name = "flag"
type = "exec"
command = ["test", "-e", %q]
interval = "100ms"
timeout = "90ms"
rise = 1
fall = 2
`, flag),
			})
			lb1, lb2 := p.Nodes[0], p.Nodes[1]
			for _, n := range p.Nodes {
				n.Host.AddVethPair(t, "hc0", "hc1")
			}
			startNodes(t, p)
			lb1.Host.DelLink(t, "hc0")
			lb2.WaitState(group, "MASTER", 3*time.Second)
			want := "BACKUP"
			if weight == 0 {
				want = "FAULT"
			}
			lb1.WaitState(group, want, time.Second)
			st, err := lb1.Status()
			if err != nil {
				t.Fatal(err)
			}
			if weight != 0 && st.Groups[0].Priority != 50 {
				t.Errorf("priority with the check failing = %d, want 150-100 = 50", st.Groups[0].Priority)
			}
			if len(st.Checks) != 1 || st.Checks[0].Up {
				t.Errorf("status checks = %+v, want check/flag down", st.Checks)
			}
			out, _ := lb1.Run("status")
			if !strings.Contains(out, "DOWN check/flag") {
				t.Errorf("havip status does not show the failing check:\n%s", out)
			}
			lb1.Host.AddVethPair(t, "hc0", "hc1")
			lb1.WaitState(group, "MASTER", 3*time.Second)
			lb2.WaitState(group, "BACKUP", time.Second)
		})
	}
}

// start = "down": a tracked check counts as failing until its first rise
// successes, so a director that has just started does not take the group
// on the strength of checks it has not run yet.
func TestCheckStartDown(t *testing.T) {
	p := h.NewPair(t, h.Site{
		ExtraGroup: "[[vrrp.track]]\ncheck = \"slow\"\nweight = -100\n",
		Extra: `
[[check]]
name = "slow"
type = "exec"
command = ["true"]
start = "down"
interval = "500ms"
timeout = "400ms"
rise = 4
fall = 1
`,
	})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	lb2.Start()
	lb2.WaitState(group, "MASTER", 5*time.Second) // alone
	h.WaitUntil(t, 5*time.Second, "lb2's check risen (priority 100)", func() bool {
		st, err := lb2.Status()
		return err == nil && len(st.Groups) == 1 && st.Groups[0].Priority == 100
	})
	t0 := time.Now()
	lb1.Start()
	st, err := lb1.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Groups[0].Priority != 50 || len(st.Checks) != 1 || st.Checks[0].Up {
		t.Errorf("lb1 just started: priority %d, checks %+v; want 150-100 = 50 and check/slow down (not probed yet)", st.Groups[0].Priority, st.Checks)
	}
	// lb1 (50) stays below lb2 (100) until its check has risen (4
	// successes 500 ms apart: about 1.5–2 s), then preempts with 150.
	lb1.WaitState(group, "MASTER", 6*time.Second)
	took := time.Since(t0)
	t.Logf("lb1 master %s after its start (its check needs 4 successes 500 ms apart)", took.Round(time.Millisecond))
	if took < 1400*time.Millisecond {
		t.Errorf("lb1 became master %s after start: before its start = \"down\" check could have risen", took)
	}
	lb2.WaitState(group, "BACKUP", time.Second)
}

// A tracked ping check, run by the daemon as root over a raw socket:
// each director pings its own loopback; when lb1's stops answering echo
// requests (icmp_echo_ignore_all in its namespace), lb1 drops below lb2,
// and takes the group back once it answers again.
func TestPingCheck(t *testing.T) {
	p := h.NewPair(t, h.Site{
		ExtraGroup: "[[vrrp.track]]\ncheck = \"lo\"\nweight = -100\n",
		Extra:      "\n[[check]]\nname = \"lo\"\ntype = \"ping\"\ntarget = \"127.0.0.1\"\ninterval = \"100ms\"\ntimeout = \"90ms\"\nrise = 1\nfall = 2\n",
	})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	startNodes(t, p)
	lb1.Host.Sysctl(t, "net.ipv4.icmp_echo_ignore_all", "1")
	lb2.WaitState(group, "MASTER", 3*time.Second)
	lb1.WaitState(group, "BACKUP", time.Second)
	st, err := lb1.Status()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Checks) != 1 || st.Checks[0].Up || !strings.Contains(st.Checks[0].Reason, "ping: no echo reply within 90ms") {
		t.Errorf("status checks = %+v, want check/lo down: no echo reply", st.Checks)
	}
	lb1.Host.Sysctl(t, "net.ipv4.icmp_echo_ignore_all", "0")
	lb1.WaitState(group, "MASTER", 3*time.Second)
	lb2.WaitState(group, "BACKUP", time.Second)
}

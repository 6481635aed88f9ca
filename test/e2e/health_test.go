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

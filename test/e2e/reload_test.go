package e2e

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/havip/havip/internal/ipvsync"
	h "github.com/havip/havip/test/e2e/harness"
)

// SIGHUP with a broken file keeps the running config; a good file applies.
func TestReload(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	good := lb1.ReadConfig()
	// Broken: an unknown key and a VRID out of range.
	p.WriteConfig(strings.Replace(good, "vrid = 51", "vrid = 300\nbogus = 1", 1))
	lb1.Signal(syscall.SIGHUP)
	h.WaitUntil(t, 2*time.Second, "reload refusal in status", func() bool {
		st, err := lb1.Status()
		return err == nil && st.ReloadError != ""
	})
	st, _ := lb1.Status()
	if !strings.Contains(st.ReloadError, "vrid") || !strings.Contains(st.ReloadError, "bogus") {
		t.Errorf("reload error does not name both problems: %s", st.ReloadError)
	}
	if !strings.Contains(lb1.Log(), "reload refused") {
		t.Errorf("the refusal is not logged")
	}
	time.Sleep(5 * p.Site.Advert)
	if lb1.ExitCode() != -1 || lb1.State(group) != "MASTER" || !lb1.HasVIP(p.VIP) {
		t.Fatalf("an invalid reload disturbed the master: exit %d state %s", lb1.ExitCode(), lb1.State(group))
	}
	out, _ := lb1.Run("status")
	if !strings.Contains(out, "RELOAD REFUSED") {
		t.Errorf("havip status does not show the refused reload:\n%s", out)
	}

	// Valid: lb2 gets a higher priority for the group; after both reload,
	// lb2 preempts.
	p.WriteConfig(strings.Replace(good, "preempt = true", "preempt = true\npriorities = { lb2 = 200 }", 1))
	lb1.Signal(syscall.SIGHUP)
	lb2.Signal(syscall.SIGHUP)
	lb2.WaitState(group, "MASTER", 3*time.Second)
	lb1.WaitState(group, "BACKUP", time.Second)
	st, _ = lb2.Status()
	if st.ReloadError != "" || st.Groups[0].Priority != 200 {
		t.Fatalf("after a good reload: error %q priority %d", st.ReloadError, st.Groups[0].Priority)
	}
	// A priority change is applied in place: lb1 never left the group
	// (no INIT transition, no restart).
	if strings.Contains(lb1.Log(), "to=INIT") {
		t.Errorf("a priority-only reload restarted the group on lb1:\n%s", lb1.Log())
	}
	if !strings.Contains(lb2.Log(), "group front: updated in place (priorities)") {
		t.Errorf("lb2 did not log the new priority as an in-place update")
	}
}

// A site with virtual servers on a kernel without IPVS: exit 2 and one
// clear message (the host kernel here has none; with IPVS the daemon runs).
func TestNoIPVS(t *testing.T) {
	p := h.NewPair(t, h.Site{Extra: `
[[virtual_server]]
name = "web"
address = "198.18.0.100:80"
[[virtual_server.real_server]]
address = "198.18.0.21:80"
`})
	n := p.Nodes[0]
	out, code := n.RunDaemonOnce()
	if ipvsync.Probe() == nil {
		if code != -1 {
			t.Fatalf("with IPVS in the kernel havip run exited %d:\n%s", code, out)
		}
		return
	}
	if code != 2 {
		t.Fatalf("havip run without IPVS: exit %d, want 2:\n%s", code, out)
	}
	for _, want := range []string{"no IPVS", "modprobe ip_vs", "CONFIG_IP_VS"} {
		if !strings.Contains(out, want) {
			t.Errorf("message lacks %q:\n%s", want, out)
		}
	}
}

// Adding the first virtual servers by reload needs IPVS: on a kernel
// without it the reload is refused with the message naming the fix, and
// nothing changes (the VM lab's lvs tests add them on a kernel with IPVS).
func TestReloadFirstVirtualServerNoIPVS(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1 := p.Nodes[0]
	before := mustStatus(t, lb1)
	lb1.WriteConfig(lb1.ReadConfig() + `
[[virtual_server]]
name = "web"
address = "198.18.0.100:80"
[[virtual_server.real_server]]
address = "198.18.0.21:80"
`)
	out, code := lb1.Reload()
	t.Logf("havip reload:\n%s", out)
	if ipvsync.Probe() == nil {
		if code != 0 || !strings.Contains(out, "virtual server web: added") {
			t.Fatalf("with IPVS in the kernel the reload: exit %d", code)
		}
		return
	}
	if code != 1 {
		t.Fatalf("reload adding virtual servers without IPVS: exit %d, want 1", code)
	}
	for _, want := range []string{"no IPVS", "modprobe ip_vs", "CONFIG_IP_VS"} {
		if !strings.Contains(out, want) {
			t.Errorf("the refusal lacks %q", want)
		}
	}
	unchangedSince(t, lb1, before)
	if st := mustStatus(t, lb1); st.IPVS != nil {
		t.Errorf("status shows an IPVS table after the refusal: %+v", st.IPVS)
	}
}

//go:build vmtest

package lvs

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	h "github.com/havip/havip/test/e2e/harness"
)

// Two faults of the IPVS side that must heal by themselves, against the
// real kernel: a zero-length ipvs-owned.json (a power cut during a write)
// does not stop the daemon, and connection-sync daemons the kernel refuses
// (their interface does not exist yet) are retried until it appears, with
// status saying so meanwhile.
func TestIPVSStateAndSyncHeal(t *testing.T) {
	extra := fmt.Sprintf(`
[sync]
interface = "sync0"
sync_id = 9

[[virtual_server]]
name = "web"
address = "198.18.0.100:%d"
scheduler = "rr"
forward = "dr"
[virtual_server.check]
type = "none"
[[virtual_server.real_server]]
address = "198.18.0.21:%d"
`, port, port)
	p := h.NewPair(t, h.Site{Advert: advert, Extra: extra})
	lb1 := p.Nodes[0]
	if err := os.MkdirAll(lb1.StateDir, 0o755); err != nil {
		t.Fatal(err)
	}
	owned := filepath.Join(lb1.StateDir, "ipvs-owned.json")
	if err := os.WriteFile(owned, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	lb1.Start()
	lb1.WaitState("front", "MASTER", 15*time.Second)

	// The empty file was moved aside and the table programmed anyway.
	if aside, _ := filepath.Glob(owned + ".corrupt-*"); len(aside) != 1 {
		t.Errorf("files moved aside: %v, want one", aside)
	}
	h.WaitUntil(t, 10*time.Second, "IPVS table programmed", func() bool {
		out, _ := runIn(t, lb1.Host, "ipvsadm", "-Ln")
		return strings.Contains(out, "198.18.0.100:80") && strings.Contains(out, "198.18.0.21:80")
	})
	if b, err := os.ReadFile(owned); err != nil || !strings.Contains(string(b), "198.18.0.100:80") {
		t.Errorf("ipvs-owned.json after start: %q %v", b, err)
	}

	// sync0 does not exist: the kernel refuses the daemons; status says
	// so and havip keeps retrying.
	h.WaitUntil(t, 10*time.Second, "sync refusal in status", func() bool {
		st, err := lb1.Status()
		return err == nil && st.IPVS != nil && strings.Contains(st.IPVS.Error, "sync daemons") && len(st.IPVS.Sync) == 0
	})
	st, _ := lb1.Status()
	t.Logf("while sync0 is missing: %s", st.IPVS.Error)
	if !strings.Contains(lb1.Log(), "connection sync daemons refused; retrying") {
		t.Errorf("the refusal is not logged")
	}
	// The interface appears: both daemons start (lb1 is master).
	lb1.Host.AddVethPair(t, "sync0", "sync0p", netip.MustParsePrefix("198.20.0.1/24"))
	h.WaitUntil(t, 45*time.Second, "sync daemons running after sync0 appeared", func() bool {
		st, err := lb1.Status()
		return err == nil && st.IPVS != nil && len(st.IPVS.Sync) == 2 && st.IPVS.Error == ""
	})
	out, _ := runIn(t, lb1.Host, "ipvsadm", "-L", "--daemon")
	if !strings.Contains(out, "master sync daemon") || !strings.Contains(out, "backup sync daemon") {
		t.Errorf("ipvsadm --daemon:\n%s", out)
	}
	if !strings.Contains(lb1.Log(), "connection sync daemons running again") {
		t.Errorf("the recovery is not logged")
	}
}

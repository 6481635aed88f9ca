package e2e

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/havip/havip/internal/ctl"
	h "github.com/havip/havip/test/e2e/harness"
)

// The drain commands against the real binary in the namespace lab. This
// kernel has no IPVS, so the pair runs without virtual servers (a site
// with some exits 2 here): what is proven here is the command line's exit
// codes and that the pair link carries each node's desired-table digest,
// so status on both shows both digests matching. Drains themselves, with
// IPVS, are proven in the VM lab (test/e2e/lvs/drain_vm_test.go).
func TestDrainCommandsNoIPVS(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"drain", "web", "198.18.0.21:80"}, 1, `no [[virtual_server]] named "web"`},
		{[]string{"undrain", "web", "198.18.0.21:80"}, 1, `no [[virtual_server]] named "web"`},
		{[]string{"drain", "web", "198.18.0.21"}, 1, "want ADDRESS:PORT"},
		{[]string{"drain", "web"}, 1, "want two arguments"},
		{[]string{"drain", "web", "198.18.0.21:80", "--bogus"}, 1, "flag provided but not defined"},
	} {
		out, code := lb1.Run(tc.args...)
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("havip %s: exit %d, want %d and %q\n%s", strings.Join(tc.args, " "), code, tc.code, tc.want, out)
		}
	}

	empty := fmt.Sprintf("%x", sha256.Sum256(nil))
	for _, n := range p.Nodes {
		h.WaitUntil(t, 5*time.Second, n.Name+": the peer's digest in status", func() bool {
			st, err := n.Status()
			return err == nil && st.Mirror != nil && st.Mirror.PeerDigest != ""
		})
		out, code := n.Run("status", "--json")
		var st ctl.Status
		if err := json.Unmarshal([]byte(out), &st); err != nil || code != 0 {
			t.Fatalf("%s: status --json: exit %d %v\n%s", n.Name, code, err, out)
		}
		m := st.Mirror
		if m.Digest != empty || m.PeerDigest != empty || !m.Match || len(m.Differences) != 0 || st.Drains == nil || len(st.Drains) != 0 {
			t.Errorf("%s: mirror %+v drains %v; want both digests of the empty table, matching", n.Name, m, st.Drains)
		}
		text, _ := n.Run("status")
		if !strings.Contains(text, "tables MATCH") || !strings.Contains(text, "desired table here:   "+empty) {
			t.Errorf("%s: status text lacks the mirror:\n%s", n.Name, text)
		}
	}
	text, _ := lb2.Run("status")
	t.Logf("status on lb2:\n%s", text)

	lb1.Signal(syscall.SIGTERM)
	if out, code := lb1.Run("drain", "web", "198.18.0.21:80"); code != 2 || !strings.Contains(out, "not running") {
		t.Errorf("havip drain without a daemon: exit %d, want 2\n%s", code, out)
	}
}

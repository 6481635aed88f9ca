//go:build vmtest

package lvs

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/havip/havip/internal/ctl"
	"github.com/havip/havip/internal/ipvsync"
	h "github.com/havip/havip/test/e2e/harness"
)

// A pair started without virtual servers (VRRP only) gets its first
// [[virtual_server]] and [sync] by reload and programs IPVS without a
// restart: both directors carry the table and run their sync daemons,
// requests through the VIP are spread over the real servers, and no group
// changed state. Then state_dir moves by reload, and the file of owned
// services with it.
func TestReloadFirstVirtualServer(t *testing.T) {
	tp := buildTopo(t, "dr")
	p := tp.pair
	full := map[string]string{}
	for _, n := range p.Nodes {
		n.UseSiteKeys(t.TempDir())
		full[n.Name] = n.ReadConfig()
		vrrpOnly := strings.Replace(full[n.Name], tp.extra, "\n", 1)
		if vrrpOnly == full[n.Name] || strings.Contains(vrrpOnly, "virtual_server") {
			t.Fatalf("cannot take the virtual servers out of:\n%s", full[n.Name])
		}
		n.WriteConfig(vrrpOnly)
	}
	tp.start(t)
	before := map[string]*ctl.Status{}
	for _, n := range p.Nodes {
		st, err := n.Status()
		if err != nil {
			t.Fatal(err)
		}
		if st.IPVS != nil {
			t.Fatalf("%s: a VRRP-only site shows IPVS: %+v", n.Name, st.IPVS)
		}
		if out, _ := runIn(t, n.Host, "ipvsadm", "-Ln"); strings.Contains(out, "198.18.0.100:80") {
			t.Fatalf("%s: IPVS programmed before the reload:\n%s", n.Name, out)
		}
		before[n.Name] = st
	}
	for _, n := range p.Nodes {
		n.WriteConfig(full[n.Name])
		out, code := n.Reload()
		t.Logf("%s: havip reload:\n%s", n.Name, out)
		if code != 0 || !strings.Contains(out, "virtual server web: added") || !strings.Contains(out, "sync: daemons") {
			t.Fatalf("%s: reload adding the first virtual server: exit %d", n.Name, code)
		}
	}
	for _, n := range p.Nodes {
		h.WaitUntil(t, 10*time.Second, n.Name+" programs the IPVS service", func() bool {
			out, _ := runIn(t, n.Host, "ipvsadm", "-Ln")
			return strings.Contains(out, "198.18.0.100:80") && strings.Count(out, "->") >= 3
		})
		want := map[string]int{"lb1": 2, "lb2": 1}[n.Name] // the master runs both sync daemons
		h.WaitUntil(t, 10*time.Second, n.Name+" runs its sync daemons", func() bool {
			st, err := n.Status()
			return err == nil && st.IPVS != nil && len(st.IPVS.Sync) == want
		})
		st, _ := n.Status()
		if was := before[n.Name]; st.PID != was.PID || st.Groups[0].Transitions != was.Groups[0].Transitions {
			t.Errorf("%s: pid %d -> %d, transitions %d -> %d: not a reload in place", n.Name,
				was.PID, st.PID, was.Groups[0].Transitions, st.Groups[0].Transitions)
		}
	}
	if spread := tp.requests(t, 10); spread["rs1"] != 5 || spread["rs2"] != 5 {
		t.Errorf("rr spread after the reload = %v, want 5 each", spread)
	}

	lb1 := p.Nodes[0]
	dir := filepath.Dir(lb1.Sock)
	h.WaitUntil(t, 10*time.Second, "the owned services written to state_dir", func() bool {
		_, err := os.Stat(filepath.Join(dir, "state", ipvsync.OwnedFile))
		return err == nil
	})
	lb1.WriteConfig(h.SiteKey(lb1.ReadConfig(), "state_dir", strconv.Quote(filepath.Join(dir, "state2"))))
	out, code := lb1.Reload()
	t.Logf("lb1: havip reload:\n%s", out)
	if code != 0 || !strings.Contains(out, "state_dir: ") {
		t.Fatalf("reload moving state_dir: exit %d", code)
	}
	b, err := os.ReadFile(filepath.Join(dir, "state2", ipvsync.OwnedFile))
	if err != nil || !strings.Contains(string(b), "198.18.0.100") {
		t.Errorf("the owned services in the new state_dir: %q, %v", b, err)
	}
	time.Sleep(2 * time.Second) // a resync of the new reconciler
	if out, _ := runIn(t, lb1.Host, "ipvsadm", "-Ln"); strings.Count(out, "->") < 3 {
		t.Errorf("the table after the state_dir move:\n%s", out)
	}
	if st, err := lb1.Status(); err != nil || st.IPVS == nil || st.IPVS.Error != "" || len(st.IPVS.Sync) != 2 {
		t.Errorf("lb1 after the state_dir move: %v %+v", err, st.IPVS)
	}
}

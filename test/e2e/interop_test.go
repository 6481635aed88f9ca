package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	h "github.com/havip/havip/test/e2e/harness"
	"github.com/havip/havip/test/lab"
)

// keepalived runs Debian's keepalived (VRRP only) in host's namespace as
// the peer of a havip node: the rolling-migration path.
type keepalived struct {
	cmd    *exec.Cmd
	out    bytes.Buffer
	exited chan struct{}
}

func startKeepalived(t testing.TB, host *lab.Host, p *h.Pair, prio int) *keepalived {
	t.Helper()
	cfg := fmt.Sprintf(`global_defs {
    router_id ka-%s
    vrrp_version %d
    vrrp_garp_master_delay 0
    vrrp_garp_master_repeat 1
}
vrrp_instance front {
    state BACKUP
    interface eth0
    virtual_router_id %d
    priority %d
    advert_int %g
    virtual_ipaddress {
        %s dev eth0
    }
}
`, host.Name, p.Site.Version, p.Site.VRID, prio, p.Site.Advert.Seconds(), p.Site.VIPs[0])
	return runKeepalived(t, host, cfg)
}

// runKeepalived runs keepalived with the configuration cfg in host's
// namespace until the test ends.
func runKeepalived(t testing.TB, host *lab.Host, cfg string) *keepalived {
	t.Helper()
	bin, err := exec.LookPath("keepalived")
	if err != nil {
		t.Fatalf("keepalived is not installed (make deps installs it): %v", err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	k := &keepalived{exited: make(chan struct{})}
	k.cmd = exec.Command(bin, "-P", "-n", "-l", "-D", "-f", file,
		"-p", filepath.Join(dir, "k.pid"), "-r", filepath.Join(dir, "v.pid"))
	k.cmd.Stdout, k.cmd.Stderr = &k.out, &k.out
	k.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its VRRP child dies with the group
	if err := host.Start(k.cmd); err != nil {
		t.Fatalf("start keepalived: %v", err)
	}
	go func() { k.cmd.Wait(); close(k.exited) }()
	t.Cleanup(func() {
		select {
		case <-k.exited:
		default:
			syscall.Kill(-k.cmd.Process.Pid, syscall.SIGKILL)
			<-k.exited
		}
		if t.Failed() {
			t.Logf("--- keepalived output ---\n%s", k.out.String())
		}
	})
	return k
}

func (k *keepalived) kill(t testing.TB, sig syscall.Signal) {
	t.Helper()
	// The whole process group: keepalived's VRRP child must go too.
	if err := syscall.Kill(-k.cmd.Process.Pid, sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-k.exited:
	case <-time.After(5 * time.Second):
		t.Fatalf("keepalived did not exit after %s", sig)
	}
}

func TestInteropKeepalived(t *testing.T) {
	for _, v := range []struct {
		version int
		advert  time.Duration
	}{{3, 100 * time.Millisecond}, {2, time.Second}} {
		t.Run(fmt.Sprintf("v%d/keepalived-master", v.version), func(t *testing.T) {
			p := h.NewPair(t, h.Site{Version: v.version, Advert: v.advert})
			ka := startKeepalived(t, p.Nodes[0].Host, p, 200)
			hv := p.Nodes[1]
			hv.Start()
			hv.WaitState(group, "BACKUP", time.Second)
			h.WaitUntil(t, 2*h.MasterDown(v.advert, 100)+2*time.Second, "keepalived owns the VIP", func() bool {
				return p.Nodes[0].HasVIP(p.VIP)
			})
			time.Sleep(5 * v.advert)
			st, err := hv.Status()
			if err != nil {
				t.Fatal(err)
			}
			g := st.Groups[0]
			if g.State != "BACKUP" || g.RxAdverts == 0 || len(g.Drops) != 0 || hv.HasVIP(p.VIP) {
				t.Fatalf("havip next to a keepalived master: state %s, rx %d, drops %v, VIP here %v",
					g.State, g.RxAdverts, g.Drops, hv.HasVIP(p.VIP))
			}
			if g.MasterAddr != h.Addr1.String() || g.MasterPriority != 200 {
				t.Fatalf("havip sees master %s prio %d, want %s prio 200", g.MasterAddr, g.MasterPriority, h.Addr1)
			}
			added := h.WaitAddr(t, hv.Host, p.VIP, true)
			t0 := time.Now()
			ka.kill(t, syscall.SIGKILL)
			took := h.Within(t, added, h.MasterDown(v.advert, 100)+time.Second, "havip takes over from keepalived").Sub(t0)
			t.Logf("keepalived killed: havip owns the VIP after %s (Master_Down %s)", took, h.MasterDown(v.advert, 100))
			hv.WaitState(group, "MASTER", time.Second)
		})
		t.Run(fmt.Sprintf("v%d/havip-master", v.version), func(t *testing.T) {
			p := h.NewPair(t, h.Site{Version: v.version, Advert: v.advert})
			hv := p.Nodes[0]
			hv.Start()
			hv.WaitState(group, "MASTER", 2*h.MasterDown(v.advert, 150)+2*time.Second)
			startKeepalived(t, p.Nodes[1].Host, p, 100)
			time.Sleep(h.MasterDown(v.advert, 100) + 5*v.advert)
			if p.Nodes[1].HasVIP(p.VIP) || hv.State(group) != "MASTER" {
				t.Fatalf("keepalived backup took the VIP from a havip master (havip %s)", hv.State(group))
			}
			st, _ := hv.Status()
			if d := st.Groups[0].Drops; len(d) != 0 {
				t.Fatalf("havip dropped keepalived's packets: %v", d)
			}
			added := h.WaitAddr(t, p.Nodes[1].Host, p.VIP, true)
			t0 := time.Now()
			hv.Signal(syscall.SIGTERM)
			took := h.Within(t, added, h.MasterDown(v.advert, 100)+time.Second, "keepalived takes over on havip's graceful stop").Sub(t0)
			t.Logf("havip stopped: keepalived owns the VIP after %s", took)
		})
	}
}

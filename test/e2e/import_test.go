package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	h "github.com/havip/havip/test/e2e/harness"
)

// kaDirector is one director's keepalived configuration as an operator
// would have it: VRRPv2 multicast, a VIP on eth0, a tracked interface.
const kaDirector = `! director %[1]s
global_defs {
    router_id %[1]s
    vrrp_garp_master_repeat 1
}
vrrp_instance front {
    state %[2]s
    interface eth0
    virtual_router_id 51
    priority %[3]d
    advert_int 1
    mcast_src_ip %[4]s
    authentication {
        auth_type PASS
        auth_pass migrate
    }
    virtual_ipaddress {
        %[5]s dev eth0
    }
    track_interface {
        eth0
    }
}
`

// The MASTER's keepalived configuration, converted by havip import, runs
// next to the keepalived it replaces on the BACKUP: keepalived accepts
// havip's adverts and takes over on havip's stop. (keepalived's backup
// here has no authentication: havip sends none, as the import says.)
func TestImportedMasterWithKeepalivedBackup(t *testing.T) {
	p := h.NewPair(t, h.Site{Version: 2, Advert: time.Second})
	dir := t.TempDir()
	master := filepath.Join(dir, "lb1.conf")
	backup := filepath.Join(dir, "lb2.conf")
	write := func(path, content string) {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(master, fmt.Sprintf(kaDirector, "lb1", "MASTER", 150, h.Addr1, h.DefaultVIP))
	backupCfg := fmt.Sprintf(kaDirector, "lb2", "BACKUP", 100, h.Addr2, h.DefaultVIP)
	write(backup, backupCfg)

	site := filepath.Join(dir, "havip.toml")
	out, err := exec.Command(h.Binary(t), "import", "keepalived", "-o", site, master, backup).CombinedOutput()
	if err != nil {
		t.Fatalf("havip import: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "lb1.conf:13: not converted: authentication:") {
		t.Errorf("the import does not report the authentication block:\n%s", out)
	}
	converted, err := os.ReadFile(site)
	if err != nil {
		t.Fatal(err)
	}
	hv := p.Nodes[0]
	hv.WriteConfig(string(converted))

	// keepalived's side of the migration: its authentication removed.
	noAuth := strings.Replace(backupCfg, "    authentication {\n        auth_type PASS\n        auth_pass migrate\n    }\n", "", 1)
	ka := runKeepalived(t, p.Nodes[1].Host, noAuth)
	hv.Start()
	hv.WaitState(group, "MASTER", 2*h.MasterDown(time.Second, 150)+2*time.Second)
	time.Sleep(h.MasterDown(time.Second, 100) + 2*time.Second)
	if p.Nodes[1].HasVIP(p.VIP) || !hv.HasVIP(p.VIP) || hv.State(group) != "MASTER" {
		t.Fatalf("keepalived backup next to the converted havip master: VIP on keepalived %v, on havip %v, havip %s\n%s",
			p.Nodes[1].HasVIP(p.VIP), hv.HasVIP(p.VIP), hv.State(group), converted)
	}
	if st, err := hv.Status(); err != nil || len(st.Groups[0].Drops) != 0 {
		t.Fatalf("havip status: %v, drops %v", err, st.Groups[0].Drops)
	}
	added := h.WaitAddr(t, p.Nodes[1].Host, p.VIP, true)
	t0 := time.Now()
	hv.Signal(syscall.SIGTERM)
	took := h.Within(t, added, h.MasterDown(time.Second, 100)+time.Second, "keepalived takes over from the converted havip master").Sub(t0)
	t.Logf("converted havip master stopped: keepalived owns the VIP after %s", took)
	select {
	case <-ka.exited:
		t.Fatalf("keepalived exited:\n%s", ka.out.String())
	default:
	}
}

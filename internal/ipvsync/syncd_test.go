package ipvsync

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/havip/havip/internal/conf"
	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// fakeDaemonKernel answers the three daemon commands the way ip_vs_ctl.c
// does, keeping one config per role.
type fakeDaemonKernel struct {
	running map[Role]DaemonStatus
	cmds    []string
}

func (f *fakeDaemonKernel) Close() error { return nil }

func (f *fakeDaemonKernel) Execute(m genetlink.Message, family uint16, flags netlink.HeaderFlags) ([]genetlink.Message, error) {
	if family != 0x42 || m.Header.Version != ipvsGenlVersion {
		return nil, unix.EINVAL
	}
	switch m.Header.Command {
	case cmdGetDaemon:
		if flags&netlink.Dump != netlink.Dump {
			return nil, unix.EOPNOTSUPP
		}
		f.cmds = append(f.cmds, "get")
		var out []genetlink.Message
		for _, r := range []Role{RoleMaster, RoleBackup} {
			d, ok := f.running[r]
			if !ok {
				continue
			}
			cfg := conf.Sync{Interface: d.Interface, SyncID: uint8(d.SyncID), MaxLen: int(d.MaxLen), Group: d.Group, Port: d.Port, TTL: d.TTL}
			b, err := encodeDaemon(r, &cfg)
			if err != nil {
				return nil, err
			}
			out = append(out, genetlink.Message{Header: genetlink.Header{Command: cmdNewDaemon}, Data: b})
		}
		return out, nil
	case cmdNewDaemon, cmdDelDaemon:
		d, ok, err := parseDaemon(m.Data)
		if err != nil || !ok || (d.Role != RoleMaster && d.Role != RoleBackup) {
			return nil, unix.EINVAL
		}
		if m.Header.Command == cmdDelDaemon {
			f.cmds = append(f.cmds, "del "+d.Role.String())
			if _, ok := f.running[d.Role]; !ok {
				return nil, unix.ESRCH
			}
			delete(f.running, d.Role)
			return nil, nil
		}
		f.cmds = append(f.cmds, "new "+d.Role.String())
		if d.Interface == "" {
			return nil, unix.EINVAL
		}
		if _, ok := f.running[d.Role]; ok {
			return nil, unix.EEXIST
		}
		// Kernel defaults for what was left out.
		if !d.Group.IsValid() {
			d.Group = netip.MustParseAddr("224.0.0.81")
		}
		if d.Port == 0 {
			d.Port = 8848
		}
		if d.TTL == 0 {
			d.TTL = 1
		}
		if d.MaxLen == 0 {
			d.MaxLen = 1472
		}
		f.running[d.Role] = d
		return nil, nil
	}
	return nil, unix.EINVAL
}

// fakeFlush records the flusher's life.
type fakeFlush struct{ cmds *[]string }

func (f fakeFlush) start(every time.Duration, port uint16, _ *slog.Logger) (stopper, error) {
	*f.cmds = append(*f.cmds, fmt.Sprintf("flush start %s %d", every, port))
	return f, nil
}
func (f fakeFlush) del(port uint16) error {
	*f.cmds = append(*f.cmds, fmt.Sprintf("flush del %d", port))
	return nil
}
func (f fakeFlush) stop() { *f.cmds = append(*f.cmds, "flush stop") }

// sysctlFiles makes a directory holding the sync sysctls as a fresh
// network namespace shows them.
func sysctlFiles(t *testing.T) string {
	dir := t.TempDir()
	for k, v := range map[string]string{"sync_version": "1", "sync_threshold": "3\t50", "sync_refresh_period": "0", "sync_retries": "0"} {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestSyncDaemonsFollow(t *testing.T) {
	fk := &fakeDaemonKernel{running: map[Role]DaemonStatus{}}
	cfg := conf.Sync{Interface: "eth1", SyncID: 51, Group: netip.MustParseAddr("224.0.0.81"), Port: 8848, TTL: 1,
		MaxLen: 100, Version: 1, Threshold: 3, Period: 0, RefreshPeriod: 10 * time.Second, Flush: 20 * time.Millisecond}
	dir := sysctlFiles(t)
	s := &SyncDaemons{c: fk, family: 0x42, cfg: cfg, sysctlDir: dir, flushOps: fakeFlush{&fk.cmds}}

	steps := []struct {
		master bool
		cmds   []string
		roles  []Role
	}{
		{false, []string{"get", "new backup", "flush del 8848", "del master"}, []Role{RoleBackup}},
		{true, []string{"get", "get", "new master", "flush start 20ms 8848"}, []Role{RoleMaster, RoleBackup}},
		{true, []string{"get", "get"}, []Role{RoleMaster, RoleBackup}}, // idempotent
		{false, []string{"get", "flush stop", "flush del 8848", "del master"}, []Role{RoleBackup}},
	}
	for i, st := range steps {
		fk.cmds = nil
		if err := s.Follow(st.master); err != nil {
			t.Fatalf("step %d: Follow(%v): %v", i, st.master, err)
		}
		if diff := cmp.Diff(st.cmds, fk.cmds); diff != "" {
			t.Errorf("step %d: commands (-want +got):\n%s", i, diff)
		}
		for k, want := range map[string]string{"sync_version": "1\n", "sync_threshold": "3 0\n", "sync_refresh_period": "10\n", "sync_retries": "0\n"} {
			if b, _ := os.ReadFile(filepath.Join(dir, k)); string(b) != want {
				t.Errorf("step %d: %s = %q, want %q", i, k, b, want)
			}
		}
		// The backup's receive buffer stays the kernel's; the master's
		// message size is cfg's.
		for _, d := range fk.running {
			if want := map[Role]uint16{RoleMaster: 100, RoleBackup: 1472}[d.Role]; d.MaxLen != want {
				t.Errorf("step %d: %s daemon maxlen %d, want %d", i, d.Role, d.MaxLen, want)
			}
		}
		got, err := s.Get()
		if err != nil {
			t.Fatal(err)
		}
		var roles []Role
		for _, d := range got {
			roles = append(roles, d.Role)
			if d.Interface != "eth1" || d.SyncID != 51 || d.Port != 8848 || d.Group != cfg.Group {
				t.Errorf("step %d: daemon %+v does not carry the config", i, d)
			}
		}
		if diff := cmp.Diff(st.roles, roles); diff != "" {
			t.Errorf("step %d: running (-want +got):\n%s", i, diff)
		}
	}

	// A changed config restarts the daemon.
	fk.cmds = nil
	cfg2 := cfg
	cfg2.SyncID = 52
	if err := s.Start(RoleBackup, cfg2); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"get", "del backup", "new backup"}, fk.cmds); diff != "" {
		t.Errorf("restart commands (-want +got):\n%s", diff)
	}
	if err := s.Stop(RoleBackup); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(RoleBackup); err != nil {
		t.Errorf("stopping a stopped daemon: %v", err)
	}
}

func TestEncodeDaemonAttributes(t *testing.T) {
	b, err := encodeDaemon(RoleMaster, &conf.Sync{Interface: "eth1", SyncID: 7, Group: netip.MustParseAddr("239.1.2.3"), Port: 9000, TTL: 2, MaxLen: 1400})
	if err != nil {
		t.Fatal(err)
	}
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		t.Fatal(err)
	}
	got := map[uint16][]byte{}
	for ad.Next() {
		if ad.Type() != cmdAttrDaemon {
			t.Fatalf("outer attribute %d, want IPVS_CMD_ATTR_DAEMON", ad.Type())
		}
		ad.Nested(func(n *netlink.AttributeDecoder) error {
			for n.Next() {
				got[n.Type()] = n.Bytes()
			}
			return nil
		})
	}
	if err := ad.Err(); err != nil {
		t.Fatal(err)
	}
	ne := func(v uint32, n int) []byte {
		b := make([]byte, 4)
		binary.NativeEndian.PutUint32(b, v)
		return b[:n]
	}
	want := map[uint16][]byte{
		daemonAttrState:      ne(1, 4),
		daemonAttrMcastIfn:   []byte("eth1\x00"),
		daemonAttrSyncID:     ne(7, 4),
		daemonAttrSyncMaxLen: ne(1400, 2),
		daemonAttrMcastGroup: {239, 1, 2, 3}, // network order, as nla_get_in_addr reads it
		daemonAttrMcastPort:  ne(9000, 2),    // host order, as nla_get_u16 reads it
		daemonAttrMcastTTL:   {2},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("attributes (-want +got):\n%s", diff)
	}
}

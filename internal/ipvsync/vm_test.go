//go:build vmtest

package ipvsync

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/havip/havip/internal/conf"
	"github.com/havip/havip/test/lab"
	"github.com/moby/ipvs"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// These tests program a real kernel's IPVS; run them in the vmlab VM:
//
//	go run ./test/vmlab/vmrun -pkg ./internal/ipvsync

// inNewNetns runs the rest of the test in a fresh network namespace.
func inNewNetns(t *testing.T) { lab.EnterNewNetns(t) }

func openKernel(t *testing.T) *NetlinkKernel {
	t.Helper()
	k, err := OpenKernel()
	if err != nil {
		t.Fatalf("OpenKernel: %v", err)
	}
	t.Cleanup(k.Close)
	return k
}

func TestVMProbe(t *testing.T) {
	if err := Probe(); err != nil {
		t.Fatalf("Probe in the VM (IPVS loaded): %v", err)
	}
}

func vmSite() []conf.VirtualServer {
	return virtualServers(`[[virtual_server]]
name = "web"
address = "10.10.0.210:80"
scheduler = "wrr"
[[virtual_server.real_server]]
address = "10.10.0.11:80"
[[virtual_server.real_server]]
address = "10.10.0.12:80"
weight = 3
forward = "tun"
[[virtual_server.real_server]]
address = "10.10.0.13:8080"
weight = 2
forward = "nat"

[[virtual_server]]
name = "mark"
fwmark = 5
scheduler = "sh"
scheduler_flags = ["sh-fallback", "sh-port"]
persistence = "60s"
persistence_netmask = "/24"
real_server = [{ address = "10.10.0.11:0" }]

[[virtual_server]]
name = "dns6"
address = "[2001:db8::53]:53"
protocol = "udp"
scheduler = "mh"
scheduler_flags = ["mh-port"]
persistence = "30s"
persistence_netmask = "/64"
real_server = [{ address = "[2001:db8::11]:53" }, { address = "[2001:db8::12]:53" }]
`)
}

func foreignService(t *testing.T, k Kernel) (*ipvs.Service, *ipvs.Destination) {
	t.Helper()
	s := &ipvs.Service{AddressFamily: unix.AF_INET, Protocol: unix.IPPROTO_TCP, Address: net.ParseIP("10.96.0.1").To4(),
		Port: 443, SchedName: "rr", Netmask: 0xffffffff}
	d := &ipvs.Destination{Address: net.ParseIP("10.0.0.5").To4(), Port: 6443, Weight: 1, ConnectionFlags: ipvs.ConnectionFlagMasq}
	if errs := k.Write([]Write{{OpAddService, s, nil}, {OpAddDest, s, d}}); errs[0] != nil || errs[1] != nil {
		t.Fatalf("create foreign service and destination: %v", errs)
	}
	return s, d
}

func checkForeign(t *testing.T, k Kernel, s *ipvs.Service) {
	t.Helper()
	ds, err := k.Destinations(s)
	if err != nil {
		t.Fatalf("foreign service gone: %v", err)
	}
	if len(ds) != 1 || ds[0].Weight != 1 || destAddr(ds[0]) != netip.MustParseAddrPort("10.0.0.5:6443") ||
		ds[0].ConnectionFlags&ipvs.ConnectionFlagFwdMask != ipvs.ConnectionFlagMasq {
		t.Fatalf("foreign service destinations changed: %+v", ds)
	}
}

// procIPVSText reads this thread's /proc/net/ip_vs until two reads
// agree: the kernel walks its global service tables by position, so a
// namespace of an earlier test being torn down meanwhile (asynchronously)
// can make one read skip an entry (seen once: the FWM service missing).
func procIPVSText(t *testing.T) string {
	t.Helper()
	prev := ""
	for range 10 {
		b, err := os.ReadFile("/proc/thread-self/net/ip_vs")
		if err != nil {
			t.Fatal(err)
		}
		if string(b) == prev {
			return prev
		}
		prev = string(b)
		time.Sleep(20 * time.Millisecond)
	}
	return prev
}

func TestVMReconcileRealKernel(t *testing.T) {
	inNewNetns(t)
	k := openKernel(t)
	other := openKernel(t) // another program's handle
	fs, _ := foreignService(t, other)

	tab := Desired(vmSite(), nil)
	r, err := NewReconciler(k, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := r.Reconcile(tab)
	if err != nil {
		t.Fatalf("first reconcile: %v", err)
	}
	if len(ch) != 3+3+1+2 {
		t.Errorf("first reconcile made %d changes, want 9: %v", len(ch), ops(ch))
	}

	// The real kernel reports HASHED, its own netmask encoding, seconds:
	// reading it back must compare equal, or havip would write forever.
	ch, err = r.Reconcile(tab)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch) != 0 {
		t.Fatalf("second reconcile against the real kernel was not a no-op: %v", ops(ch))
	}
	proc := procIPVSText(t)
	// /proc shows the timeout in jiffies and the netmask as ntohl() of
	// the stored value: FFFFFF00 proves the IPv4 mask is in network order,
	// 40000000 that the IPv6 one is the plain prefix length 64.
	for _, want := range []string{
		`FWM  00000005 sh persistent \d+ FFFFFF00\n`,
		`TCP  0A0A00D2:0050 wrr`,
		`UDP  \[2001:0db8:0000:0000:0000:0000:0000:0053\]:0035 mh persistent \d+ 40000000\n`,
	} {
		if !regexp.MustCompile(want).MatchString(proc) {
			t.Errorf("/proc/net/ip_vs lacks %q:\n%s", want, proc)
		}
	}
	checkForeign(t, other, fs)

	// A weight edited behind havip's back is one write to repair.
	web := tab.Services[0].toKernel()
	if err := other.Write([]Write{{OpUpdateDest, web, Dest{Address: netip.MustParseAddrPort("10.10.0.11:80"), Weight: 9, Forward: "dr"}.toKernel()}})[0]; err != nil {
		t.Fatal(err)
	}
	ch, err = r.Reconcile(tab)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"update-dest tcp 10.10.0.210:80 (web) -> 10.10.0.11:80: weight 9->1"}, ops(ch)); diff != "" {
		t.Errorf("repair of a weight (-want +got):\n%s", diff)
	}

	// ipvsadm -C (or a flush through another handle) wipes everything.
	if path, err := exec.LookPath("ipvsadm"); err == nil {
		if out, err := exec.Command(path, "-C").CombinedOutput(); err != nil {
			t.Fatalf("ipvsadm -C: %v %s", err, out)
		}
	} else if err := other.Flush(); err != nil {
		t.Fatal(err)
	}
	if svcs, _ := k.Services(); len(svcs) != 0 {
		t.Fatalf("flush left %d services", len(svcs))
	}
	fs, _ = foreignService(t, other) // kube-proxy puts its own back
	ch, err = r.Reconcile(tab)
	if err != nil {
		t.Fatalf("repair reconcile: %v", err)
	}
	if len(ch) != 9 {
		t.Errorf("repair made %d changes, want 9: %v", len(ch), ops(ch))
	}
	checkForeign(t, other, fs)

	rows := r.Published().Rows
	for _, s := range rows {
		if !s.InKernel {
			t.Errorf("snapshot: %s not in kernel", s.Key)
		}
		for _, d := range s.Dests {
			if !d.InKernel || d.Health != "up" {
				t.Errorf("snapshot: %s -> %+v", s.Key, d)
			}
		}
	}
	var b strings.Builder
	Format(&b, rows)
	t.Logf("status:\n%s", b.String())

	// The site drops everything: havip removes its services only.
	if _, err := r.Reconcile(Table{}); err != nil {
		t.Fatal(err)
	}
	svcs, err := k.Services()
	if err != nil {
		t.Fatal(err)
	}
	if len(svcs) != 1 || keyOf(svcs[0]) != keyOf(fs) {
		t.Errorf("after dropping the site, kernel has %d services: %v", len(svcs), svcs)
	}
	checkForeign(t, other, fs)
}

func TestVMRunRepairsFlush(t *testing.T) {
	inNewNetns(t)
	k := openKernel(t)
	other := openKernel(t)
	tab := Desired(vmSite()[:1], nil)
	r, err := NewReconciler(k, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	changes := make(chan Changes, 8)
	tables := make(chan Update, 1)
	tables <- Update{Table: &tab}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	defer func() { cancel(); <-done }()
	// The socket was opened in the test's namespace, so Run may use it
	// from any thread.
	go func() {
		defer close(done)
		r.Run(ctx, tables, 100*time.Millisecond, func(c Changes) { changes <- c })
	}()
	wait := func(what string) Changes {
		select {
		case c := <-changes:
			return c
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no reconcile within 10s", what)
		}
		return nil
	}
	if c := wait("initial"); len(c) != 4 {
		t.Fatalf("initial changes: %v", ops(c))
	}
	if err := other.Flush(); err != nil {
		t.Fatal(err)
	}
	if c := wait("after flush"); len(c) != 4 {
		t.Fatalf("repair changes: %v", ops(c))
	}
}

func TestVMSyncDaemons(t *testing.T) {
	inNewNetns(t)
	// The master's sender binds to the interface's IPv4 address, so the
	// interface needs one (and multicast: a veth has it, a dummy not).
	la := netlink.NewLinkAttrs()
	la.Name = "hvsync0"
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "hvsync1"}); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	for _, n := range []string{"lo", "hvsync0", "hvsync1"} {
		l, err := netlink.LinkByName(n)
		if err != nil {
			t.Fatal(err)
		}
		if n == "hvsync0" {
			a, _ := netlink.ParseAddr("10.77.0.1/24")
			if err := netlink.AddrAdd(l, a); err != nil {
				t.Fatal(err)
			}
		}
		if err := netlink.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}

	cfg := conf.Sync{Interface: "hvsync0", SyncID: 51, Group: netip.MustParseAddr("224.0.0.81"), Port: 8848, TTL: 1,
		MaxLen: 100, Version: 1, Threshold: 3, RefreshPeriod: 10 * time.Second, Flush: 20 * time.Millisecond}
	s, err := OpenSyncDaemons(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t.Cleanup(func() {
		s.Stop(RoleMaster)
		s.Stop(RoleBackup)
	})

	roles := func() []string {
		t.Helper()
		ds, err := s.Get()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, d := range ds {
			if d.Interface != "hvsync0" || d.SyncID != 51 || d.Port != 8848 || d.Group != cfg.Group || d.TTL != 1 {
				t.Errorf("daemon %+v does not carry the config", d)
			}
			out = append(out, d.Role.String())
		}
		return out
	}
	steps := []struct {
		master bool
		want   []string
	}{
		{false, []string{"backup"}},
		{true, []string{"master", "backup"}},
		{true, []string{"master", "backup"}},
		{false, []string{"backup"}},
	}
	for i, st := range steps {
		if err := s.Follow(st.master); err != nil {
			t.Fatalf("step %d: Follow(%v): %v", i, st.master, err)
		}
		if diff := cmp.Diff(st.want, roles()); diff != "" {
			t.Errorf("step %d: running daemons (-want +got):\n%s", i, diff)
		}
		// The flush service runs with the master daemon, and makes
		// connections the kernel counts.
		h, err := ipvs.New("")
		if err != nil {
			t.Fatal(err)
		}
		_, err = h.GetService(flushService(cfg.Port))
		if st.master != (err == nil) {
			t.Errorf("step %d: master %v, flush service lookup: %v", i, st.master, err)
		}
		if st.master {
			// Poll: a loaded VM may hold the flusher's first tick back.
			var ds []*ipvs.Destination
			deadline := time.Now().Add(5 * time.Second)
			for {
				svc, err := h.GetService(flushService(cfg.Port))
				if err != nil {
					t.Fatal(err)
				}
				ds, err = h.GetDestinations(svc)
				if err == nil && len(ds) == 1 && ds[0].ActiveConnections+ds[0].InactiveConnections > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Errorf("step %d: flush service's real server %+v %v: want connections within 5s", i, ds, err)
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		h.Close()
		for k, want := range map[string]string{"sync_threshold": "3\t0", "sync_refresh_period": "10"} {
			if b, err := os.ReadFile(filepath.Join(SysctlDir, k)); err != nil || strings.TrimSpace(string(b)) != want {
				t.Errorf("step %d: %s = %q %v, want %q", i, k, b, err, want)
			}
		}
	}
	if err := s.Stop(RoleBackup); err != nil {
		t.Fatal(err)
	}
	if got := roles(); len(got) != 0 {
		t.Errorf("after Stop: %v", got)
	}
}

// The targeted path against the real kernel: a service the kernel lacks
// reads as absent and is created; a weight change is one write; a full
// reconcile afterwards has nothing to do.
func TestVMReconcileChangesRealKernel(t *testing.T) {
	inNewNetns(t)
	k := openKernel(t)
	r, err := NewReconciler(k, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	site := vmSite()
	tab := Desired(site, nil)
	if _, err := r.Reconcile(Table{}); err != nil { // applied = empty table
		t.Fatal(err)
	}
	if ch, err := r.ReconcileChanges(tab); err != nil || len(ch) == 0 {
		t.Fatalf("targeted create: %v %v", ch, err)
	}
	site[0].RealServers[0].Weight += 5
	tab2 := Desired(site, nil)
	ch, err := r.ReconcileChanges(tab2)
	if err != nil || len(ch) != 1 || ch[0].Op != OpUpdateDest {
		t.Fatalf("targeted weight change: %v %v", ch, err)
	}
	if ch, err := r.Reconcile(tab2); err != nil || len(ch) != 0 {
		t.Fatalf("full reconcile after targeted ones: %v %v", ch, err)
	}
}

// A power cut left ipvs-owned.json empty. Against the real kernel the
// reconciler still starts: the file is moved aside, the declared services
// are programmed, and a service havip made before the cut that the site no
// longer declares is left alone, since nothing says it is havip's.
func TestVMEmptyOwnedFileAtStart(t *testing.T) {
	inNewNetns(t)
	k := openKernel(t)
	site := vmSite()
	before := Desired(site[:1], nil) // "web", made before the cut
	r0, err := NewReconciler(k, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r0.Reconcile(before); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, OwnedFile), nil, 0o644); err != nil {
		t.Fatal(err)
	}

	r, err := NewReconciler(k, dir, nil)
	if err != nil {
		t.Fatalf("NewReconciler over an empty state file: %v", err)
	}
	if aside, _ := filepath.Glob(filepath.Join(dir, OwnedFile+".corrupt-*")); len(aside) != 1 {
		t.Errorf("files moved aside: %v, want one", aside)
	}
	tab := Desired(site[1:], nil) // "mark" and "dns6"
	ch, err := r.Reconcile(tab)
	if err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	if len(ch) != 2+3 {
		t.Errorf("reconcile made %d changes, want 5: %v", len(ch), ops(ch))
	}
	if ch, err := r.Reconcile(tab); err != nil || len(ch) != 0 {
		t.Errorf("second reconcile: %v %v, want a no-op", ops(ch), err)
	}
	var st ownedState
	b, err := os.ReadFile(filepath.Join(dir, OwnedFile))
	if err != nil || json.Unmarshal(b, &st) != nil || len(st.Services) != 2 {
		t.Errorf("state file after reconcile: %q (%v), want the two declared services", b, err)
	}
	for _, row := range r.Published().Rows {
		if !row.InKernel || len(row.Dests) == 0 || !row.Dests[0].InKernel {
			t.Errorf("published row %+v, want it in the kernel", row)
		}
	}

	// The site drops everything: the declared services go, "web" stays.
	if _, err := r.Reconcile(Table{}); err != nil {
		t.Fatal(err)
	}
	svcs, err := k.Services()
	if err != nil {
		t.Fatal(err)
	}
	if len(svcs) != 1 || keyOf(svcs[0]) != before.Services[0].Key {
		t.Fatalf("kernel services after dropping the site: %v, want web alone", svcs)
	}
	if ds, err := k.Destinations(svcs[0]); err != nil || len(ds) != 3 {
		t.Errorf("web's real servers: %v %v, want its 3 untouched", ds, err)
	}
}

// A pipelined batch reports each write's own outcome: a refused write in
// the middle fails alone, and a batch larger than one sendmsg (several
// batches on the wire) lands whole. moby/ipvs, another program's library,
// reads back what the batch wrote.
func TestVMBatchWrites(t *testing.T) {
	inNewNetns(t)
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := netlink.ParseAddr("192.0.2.1/32")
	if err := netlink.AddrAdd(lo, a); err != nil {
		t.Fatalf("address on lo: %v", err)
	}
	k := openKernel(t)
	svc := func(i int) *ipvs.Service {
		return &ipvs.Service{AddressFamily: unix.AF_INET, Protocol: unix.IPPROTO_TCP, Address: net.IPv4(10, 20, byte(i/250), byte(i%250+1)).To4(),
			Port: 80, SchedName: "wrr", Netmask: 0xffffffff}
	}
	dst := func(i, j int) *ipvs.Destination {
		return &ipvs.Destination{Address: net.IPv4(172, 20+byte(j), byte(i/250), byte(i%250+1)).To4(), Port: 80, Weight: j + 1,
			ConnectionFlags: ipvs.ConnectionFlagDirectRoute, AddressFamily: unix.AF_INET}
	}
	// 1000 services x 3 destinations: well over one 64 KiB batch.
	var ws []Write
	for i := range 1000 {
		ws = append(ws, Write{OpAddService, svc(i), nil})
		for j := range 3 {
			ws = append(ws, Write{OpAddDest, svc(i), dst(i, j)})
		}
	}
	bad := len(ws) / 2
	ws = slices.Insert(ws, bad, Write{OpAddService, svc(0), nil}) // exists already: EEXIST
	errs := k.Write(ws)
	for i, err := range errs {
		switch {
		case i == bad && !errors.Is(err, unix.EEXIST):
			t.Errorf("write %d (a duplicate service): %v, want EEXIST", i, err)
		case i != bad && err != nil:
			t.Errorf("write %d (%s): %v", i, ws[i].Op, err)
		}
	}
	h, err := ipvs.New("")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	// moby/ipvs ignores an interrupted dump and returns what it read
	// (LAB-NOTES): a short read is read again; services really missing
	// stay missing.
	var got []*ipvs.Service
	for try := 0; try < 5 && (err != nil || len(got) != 1000); try++ {
		got, err = h.GetServices()
	}
	if err != nil || len(got) != 1000 {
		t.Fatalf("moby/ipvs reads %d services (%v) five times, want 1000", len(got), err)
	}
	ds, err := h.GetDestinations(svc(999))
	if err != nil || len(ds) != 3 {
		t.Fatalf("moby/ipvs reads %d destinations of the last service (%v), want 3", len(ds), err)
	}
	for _, d := range ds {
		if d.Weight < 1 || d.Weight > 3 || d.ConnectionFlags&ipvs.ConnectionFlagFwdMask != ipvs.ConnectionFlagDirectRoute {
			t.Errorf("destination as moby/ipvs reads it: %+v", d)
		}
	}
	// Our own reads agree.
	mine, err := k.Services()
	if err != nil || len(mine) != 1000 {
		t.Fatalf("Services: %d, %v", len(mine), err)
	}
	if err := k.Flush(); err != nil {
		t.Fatal(err)
	}
}

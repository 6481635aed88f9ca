package realserver

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
)

func sysctls(t *testing.T, names ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, n := range names {
		v, err := readSysctl(n)
		if err != nil {
			t.Fatal(err)
		}
		out[n] = v
	}
	return out
}

func setSysctls(t *testing.T, kv map[string]string) {
	t.Helper()
	for k, v := range kv {
		if err := writeSysctl(k, v); err != nil {
			t.Fatal(err)
		}
	}
}

func addrsOf(t *testing.T, link string) []string {
	t.Helper()
	l, err := netlink.LinkByName(link)
	if err != nil {
		t.Fatal(err)
	}
	as, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range as {
		out = append(out, a.IPNet.String())
	}
	slices.Sort(out)
	return out
}

var arpSysctls = []string{
	"net/ipv4/conf/all/arp_ignore", "net/ipv4/conf/all/arp_announce",
	"net/ipv4/conf/lo/arp_ignore", "net/ipv4/conf/lo/arp_announce",
}

func TestDRUpDownRestores(t *testing.T) {
	inNewNetns(t)
	dir := t.TempDir()
	// Originals that are not the kernel defaults, to prove Down restores
	// what was there rather than zeroes.
	setSysctls(t, map[string]string{"net/ipv4/conf/all/arp_announce": "1", "net/ipv4/conf/lo/arp_ignore": "1"})
	// An address the operator had on lo already and also names as a VIP:
	// Down must leave it.
	lo, _ := netlink.LinkByName("lo")
	pre, _ := netlink.ParseAddr("10.9.9.9/32")
	if err := netlink.AddrAdd(lo, pre); err != nil {
		t.Fatal(err)
	}
	before := sysctls(t, arpSysctls...)
	addrsBefore := addrsOf(t, "lo")

	vips := []netip.Prefix{
		netip.MustParsePrefix("192.168.0.210/24"), // goes on as /32
		netip.MustParsePrefix("2001:db8::210/128"),
		netip.MustParsePrefix("10.9.9.9/32"),
	}
	if err := Up("dr", vips, dir); err != nil {
		t.Fatalf("Up: %v", err)
	}
	want := map[string]string{
		"net/ipv4/conf/all/arp_ignore": "1", "net/ipv4/conf/all/arp_announce": "2",
		"net/ipv4/conf/lo/arp_ignore": "1", "net/ipv4/conf/lo/arp_announce": "2",
	}
	if diff := cmp.Diff(want, sysctls(t, arpSysctls...)); diff != "" {
		t.Errorf("sysctls after Up (-want +got):\n%s", diff)
	}
	got := addrsOf(t, "lo")
	for _, a := range []string{"192.168.0.210/32", "2001:db8::210/128", "10.9.9.9/32"} {
		if !slices.Contains(got, a) {
			t.Errorf("lo lacks %s after Up: %v", a, got)
		}
	}

	// A second Up is a no-op that keeps the recorded originals.
	st1, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := Up("dr", vips, dir); err != nil {
		t.Fatalf("second Up: %v", err)
	}
	st2, _ := os.ReadFile(filepath.Join(dir, StateFile))
	if diff := cmp.Diff(string(st1), string(st2)); diff != "" {
		t.Errorf("second Up changed the state file:\n%s", diff)
	}
	if err := Up("tun", vips[:1], dir); !errors.Is(err, ErrMode) {
		t.Errorf("Up in another mode while up: %v, want ErrMode", err)
	}

	if err := Down("dr", vips, dir); err != nil {
		t.Fatalf("Down: %v", err)
	}
	if diff := cmp.Diff(before, sysctls(t, arpSysctls...)); diff != "" {
		t.Errorf("sysctls after Down (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(addrsBefore, addrsOf(t, "lo")); diff != "" {
		t.Errorf("lo addresses after Down (-before +after):\n%s", diff)
	}
	if _, err := os.Stat(filepath.Join(dir, StateFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state file left after Down: %v", err)
	}
	if err := Down("dr", vips, dir); err != nil {
		t.Errorf("second Down: %v", err)
	}
}

func TestDRPartialDown(t *testing.T) {
	inNewNetns(t)
	dir := t.TempDir()
	a, b := netip.MustParsePrefix("10.1.0.1/32"), netip.MustParsePrefix("10.1.0.2/32")
	if err := Up("dr", []netip.Prefix{a, b}, dir); err != nil {
		t.Fatal(err)
	}
	if err := Down("dr", []netip.Prefix{a}, dir); err != nil {
		t.Fatal(err)
	}
	got := addrsOf(t, "lo")
	if slices.Contains(got, "10.1.0.1/32") || !slices.Contains(got, "10.1.0.2/32") {
		t.Errorf("after partial Down lo has %v", got)
	}
	// VIPs remain, so the ARP settings must stay.
	if v := sysctls(t, "net/ipv4/conf/all/arp_ignore")["net/ipv4/conf/all/arp_ignore"]; v != "1" {
		t.Errorf("arp_ignore = %s while a VIP is still up", v)
	}
	if err := Down("dr", nil, dir); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(addrsOf(t, "lo"), "10.1.0.2/32") {
		t.Error("Down with no VIPs left one behind")
	}
}

func TestRejects(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		mode string
		vips []netip.Prefix
	}{
		{"nat", []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32")}},
		{"dr", nil},
		{"tun", []netip.Prefix{netip.MustParsePrefix("2001:db8::1/128")}},
	} {
		if err := Up(tt.mode, tt.vips, dir); !errors.Is(err, ErrMode) {
			t.Errorf("Up(%q, %v) = %v, want ErrMode", tt.mode, tt.vips, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, StateFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused Up wrote state: %v", err)
	}
}

// tunAvailable reports whether this kernel can give a namespace a tunl0.
func tunAvailable(t *testing.T) bool {
	t.Helper()
	if _, err := netlink.LinkByName(tunl0); err == nil {
		return true
	}
	err := netlink.LinkAdd(&netlink.Iptun{LinkAttrs: netlink.LinkAttrs{Name: "hvprobe0"}})
	if err != nil {
		return false
	}
	l, _ := netlink.LinkByName("hvprobe0")
	netlink.LinkDel(l)
	return true
}

// TestTun runs the tun cycle where the kernel has ipip (the vmlab VM); on
// a kernel without it (the build host), it checks Up says so clearly and
// changes nothing.
func TestTun(t *testing.T) {
	inNewNetns(t)
	if tunAvailable(t) {
		testTunCycle(t)
		return
	}
	dir := t.TempDir()
	before := sysctls(t, arpSysctls...)
	err := Up("tun", []netip.Prefix{netip.MustParsePrefix("192.168.25.43/32")}, dir)
	if !errors.Is(err, ErrNoIPIP) {
		t.Fatalf("Up tun without ipip = %v, want ErrNoIPIP", err)
	}
	t.Logf("without ipip: %v", err)
	if diff := cmp.Diff(before, sysctls(t, arpSysctls...)); diff != "" {
		t.Errorf("failed Up changed sysctls:\n%s", diff)
	}
	if err := Down("tun", nil, dir); err != nil {
		t.Errorf("Down after failed Up: %v", err)
	}
}

func testTunCycle(t *testing.T) {
	dir := t.TempDir()
	names := append(slices.Clone(arpSysctls), "net/ipv4/conf/all/rp_filter")
	setSysctls(t, map[string]string{"net/ipv4/conf/all/rp_filter": "1"})
	before := sysctls(t, names...)
	_, hadTunl0 := netlink.LinkByName(tunl0)

	vip := netip.MustParsePrefix("192.168.25.43/24")
	if err := Up("tun", []netip.Prefix{vip}, dir); err != nil {
		t.Fatalf("Up tun: %v", err)
	}
	tn := append(slices.Clone(names), "net/ipv4/conf/tunl0/arp_ignore", "net/ipv4/conf/tunl0/arp_announce", "net/ipv4/conf/tunl0/rp_filter")
	want := map[string]string{
		"net/ipv4/conf/all/arp_ignore": "1", "net/ipv4/conf/all/arp_announce": "2",
		"net/ipv4/conf/lo/arp_ignore": "1", "net/ipv4/conf/lo/arp_announce": "2",
		"net/ipv4/conf/all/rp_filter":    "0",
		"net/ipv4/conf/tunl0/arp_ignore": "1", "net/ipv4/conf/tunl0/arp_announce": "2", "net/ipv4/conf/tunl0/rp_filter": "0",
	}
	if diff := cmp.Diff(want, sysctls(t, tn...)); diff != "" {
		t.Errorf("sysctls after Up tun (-want +got):\n%s", diff)
	}
	if got := addrsOf(t, tunl0); !slices.Contains(got, "192.168.25.43/32") {
		t.Errorf("tunl0 addresses: %v", got)
	}
	l, err := netlink.LinkByName(tunl0)
	if err != nil || l.Attrs().RawFlags&1 == 0 { // IFF_UP
		t.Errorf("tunl0 not up after Up: %v", err)
	}
	if err := Up("tun", []netip.Prefix{vip}, dir); err != nil {
		t.Fatalf("second Up tun: %v", err)
	}

	if err := Down("tun", nil, dir); err != nil {
		t.Fatalf("Down tun: %v", err)
	}
	if diff := cmp.Diff(before, sysctls(t, names...)); diff != "" {
		t.Errorf("sysctls after Down tun (-before +after):\n%s", diff)
	}
	l, err = netlink.LinkByName(tunl0)
	switch {
	case hadTunl0 != nil && err == nil:
		t.Errorf("tunl0 created by Up still exists after Down")
	case hadTunl0 == nil && err != nil:
		t.Errorf("pre-existing tunl0 gone after Down: %v", err)
	case hadTunl0 == nil && l.Attrs().RawFlags&1 != 0:
		t.Errorf("tunl0 left up after Down")
	}
	if err == nil && slices.Contains(addrsOf(t, tunl0), "192.168.25.43/32") {
		t.Errorf("VIP left on tunl0")
	}
}

// A state file a power cut left empty, or one garbled, does not stop Up:
// it is moved aside, Up records the current values as the originals and
// leaves a valid state file, and Down restores them.
func TestUpOverUnusableStateFile(t *testing.T) {
	for _, tt := range []struct{ name, content string }{
		{"empty", ""},
		{"garbage", "{\"mode\": \"dr\", \"sysctls\": [{\"name\": \"net/ipv4/co"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			inNewNetns(t)
			dir := t.TempDir()
			path := filepath.Join(dir, StateFile)
			if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			before := sysctls(t, arpSysctls...)
			vip := netip.MustParsePrefix("10.2.0.1/32")
			if err := Up("dr", []netip.Prefix{vip}, dir); err != nil {
				t.Fatalf("Up over a %s state file: %v", tt.name, err)
			}
			if !slices.Contains(addrsOf(t, "lo"), "10.2.0.1/32") {
				t.Errorf("lo lacks the VIP after Up")
			}
			s, err := load(dir)
			if err != nil || s.st == nil {
				t.Fatalf("state file after Up: %v, %+v", err, s)
			}
			if s.st.Mode != "dr" || len(s.st.Sysctls) == 0 || len(s.st.Addrs) != 1 {
				t.Errorf("state after Up = %+v, want dr with the sysctls and the VIP", s.st)
			}
			aside, _ := filepath.Glob(path + ".corrupt-*")
			if len(aside) != 1 {
				t.Fatalf("files moved aside: %v, want one", aside)
			}
			if b, _ := os.ReadFile(aside[0]); string(b) != tt.content {
				t.Errorf("aside file holds %q, want the old contents", b)
			}

			if err := Down("dr", nil, dir); err != nil {
				t.Fatalf("Down: %v", err)
			}
			if diff := cmp.Diff(before, sysctls(t, arpSysctls...)); diff != "" {
				t.Errorf("sysctls after Down (-before +after):\n%s", diff)
			}
		})
	}
}

// Down with only an unusable state file has nothing to undo.
func TestDownOverUnusableStateFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, StateFile)
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Down("dr", nil, dir); err != nil {
		t.Errorf("Down over an empty state file: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("empty state file still in place: %v", err)
	}
}

//go:build vmtest

package smoke

import (
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/moby/ipvs"
)

func TestVMEnvironment(t *testing.T) {
	if os.Getenv("HAVIP_VM") != "1" {
		t.Fatalf("HAVIP_VM=%q, want 1: this test runs only inside the vmlab VM", os.Getenv("HAVIP_VM"))
	}
	// HAVIP_BIN is unset under vmrun -no-havip; when set, the static
	// binary must run here.
	if bin := os.Getenv("HAVIP_BIN"); bin != "" {
		out, err := exec.Command(bin, "version").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "havip ") {
			t.Errorf("%s version: %v, output %q", bin, err, out)
		}
		t.Logf("HAVIP_BIN %s: %s", bin, strings.TrimSpace(string(out)))
	}
	// Requests from vmlab's host test, to prove the harness reports a
	// failing test and a VM that dies under a test.
	if fail := os.Getenv("VMLAB_SMOKE_FAIL"); fail != "" {
		t.Fatalf("VMLAB_SMOKE_FAIL=%s: failing on request", fail)
	}
	if os.Getenv("VMLAB_SMOKE_POWEROFF") == "1" {
		out, err := exec.Command("poweroff", "-f").CombinedOutput()
		t.Fatalf("poweroff -f returned: %v %s", err, out)
	}
	if os.Getenv("VMLAB_SMOKE_PANIC") == "1" {
		err := os.WriteFile("/proc/sysrq-trigger", []byte("c"), 0)
		t.Fatalf("sysrq crash returned: %v", err)
	}
}

func TestProcNetIPVS(t *testing.T) {
	b, err := os.ReadFile("/proc/net/ip_vs")
	if err != nil {
		t.Fatalf("IPVS missing in the VM kernel: %v", err)
	}
	if !strings.Contains(string(b), "IP Virtual Server version") {
		t.Fatalf("/proc/net/ip_vs = %q, want the IPVS header", b)
	}
}

func TestModulesLoaded(t *testing.T) {
	b, err := os.ReadFile("/proc/modules")
	if err != nil {
		t.Fatal(err)
	}
	loaded := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			loaded[f[0]] = true
		}
	}
	for _, m := range []string{"ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_sh", "ip_vs_mh", "nf_conntrack", "veth", "bridge", "ipip", "dummy"} {
		if !loaded[m] {
			t.Errorf("module %s not loaded", m)
		}
	}
}

// TestOnlyLoopback: the VM has no NIC, and module loading adds only ipip's
// fallback tunl0 (kept: LVS-TUN real servers in new namespaces rely on it),
// so tests start from a known slate.
func TestOnlyLoopback(t *testing.T) {
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, i := range ifs {
		names = append(names, i.Name)
	}
	if diff := cmp.Diff([]string{"lo", "tunl0"}, names); diff != "" {
		t.Errorf("interfaces (-want +got):\n%s", diff)
	}
}

func TestIPVSProgramAndReadBack(t *testing.T) {
	h, err := ipvs.New("")
	if err != nil {
		t.Fatalf("ipvs.New: %v", err)
	}
	defer h.Close()
	if err := h.Flush(); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	t.Cleanup(func() { h.Flush() })

	svc := &ipvs.Service{
		Address:       net.ParseIP("192.0.2.10").To4(),
		Protocol:      syscall.IPPROTO_TCP,
		Port:          80,
		AddressFamily: syscall.AF_INET,
		SchedName:     "wrr",
		Netmask:       0xffffffff, // LAB-NOTES: IPv4 needs the full mask
	}
	if err := h.NewService(svc); err != nil {
		t.Fatalf("NewService: %v", err)
	}
	for i, ip := range []string{"198.51.100.1", "198.51.100.2"} {
		d := &ipvs.Destination{
			Address:         net.ParseIP(ip).To4(),
			Port:            8080,
			Weight:          i + 1,
			ConnectionFlags: ipvs.ConnectionFlagDirectRoute,
			AddressFamily:   syscall.AF_INET,
		}
		if err := h.NewDestination(svc, d); err != nil {
			t.Fatalf("NewDestination %s: %v", ip, err)
		}
	}

	svcs, err := h.GetServices()
	if err != nil {
		t.Fatalf("GetServices: %v", err)
	}
	if len(svcs) != 1 {
		t.Fatalf("GetServices returned %d services, want 1", len(svcs))
	}
	type svcView struct {
		Addr  string
		Port  uint16
		Proto uint16
		Sched string
	}
	got := svcView{svcs[0].Address.String(), svcs[0].Port, svcs[0].Protocol, svcs[0].SchedName}
	want := svcView{"192.0.2.10", 80, syscall.IPPROTO_TCP, "wrr"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("service read back (-want +got):\n%s", diff)
	}
	dsts, err := h.GetDestinations(svcs[0])
	if err != nil {
		t.Fatalf("GetDestinations: %v", err)
	}
	gotDst := map[string]int{}
	for _, d := range dsts {
		gotDst[net.JoinHostPort(d.Address.String(), "8080")] = d.Weight
		if d.ConnectionFlags&ipvs.ConnectionFlagFwdMask != ipvs.ConnectionFlagDirectRoute {
			t.Errorf("destination %s: forwarding flags %#x, want direct route", d.Address, d.ConnectionFlags)
		}
	}
	if diff := cmp.Diff(map[string]int{"198.51.100.1:8080": 1, "198.51.100.2:8080": 2}, gotDst); diff != "" {
		t.Errorf("destinations read back (-want +got):\n%s", diff)
	}

	out, err := exec.Command("ipvsadm", "-Ln").CombinedOutput()
	if err != nil {
		t.Fatalf("ipvsadm -Ln: %v\n%s", err, out)
	}
	t.Logf("ipvsadm -Ln:\n%s", out)
	// Compare whitespace-normalized lines: ipvsadm pads columns.
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			lines = append(lines, strings.Join(f, " "))
		}
	}
	for _, wantLine := range []string{
		"TCP 192.0.2.10:80 wrr",
		"-> 198.51.100.1:8080 Route 1 0 0",
		"-> 198.51.100.2:8080 Route 2 0 0",
	} {
		if !slices.Contains(lines, wantLine) {
			t.Errorf("ipvsadm -Ln lacks %q", wantLine)
		}
	}
}

// TestIPVSAdmRestore checks the ipvsadm -R path that benchmarks use.
func TestIPVSAdmRestore(t *testing.T) {
	cmd := exec.Command("ipvsadm", "-R")
	cmd.Stdin = strings.NewReader("-C\n-A -u 192.0.2.20:53 -s rr\n-a -u 192.0.2.20:53 -r 198.51.100.3:53 -g -w 1\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ipvsadm -R: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("ipvsadm", "-C").Run() })
	b, err := os.ReadFile("/proc/net/ip_vs")
	if err != nil {
		t.Fatal(err)
	}
	// /proc/net/ip_vs shows addresses in hex: 192.0.2.20:53 = C0000214:0035.
	if !strings.Contains(string(b), "UDP  C0000214:0035 rr") {
		t.Errorf("/proc/net/ip_vs lacks the restored UDP service:\n%s", b)
	}
}

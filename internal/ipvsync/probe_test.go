package ipvsync

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// TestProbe cross-checks Probe (generic netlink) against /proc/net/ip_vs.
// On the project's build host the kernel has no IPVS, so this asserts the
// ErrNoIPVS path and its message; the vmtest suite asserts the other.
func TestProbe(t *testing.T) {
	_, statErr := os.Stat(procIPVS)
	err := Probe()
	if statErr == nil {
		if err != nil {
			t.Fatalf("%s exists but Probe() = %v", procIPVS, err)
		}
		return
	}
	if !errors.Is(err, ErrNoIPVS) {
		t.Fatalf("no %s, Probe() = %v, want ErrNoIPVS", procIPVS, err)
	}
	for _, s := range []string{"modprobe ip_vs", "CONFIG_IP_VS"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("Probe error %q does not mention %q", err, s)
		}
	}
	// OpenKernel must refuse too, instead of moby/ipvs's silent success.
	if _, err := OpenKernel(); !errors.Is(err, ErrNoIPVS) {
		t.Errorf("OpenKernel on a kernel without IPVS = %v, want ErrNoIPVS", err)
	}
}

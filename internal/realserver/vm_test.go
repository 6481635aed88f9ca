//go:build vmtest

package realserver

import (
	"os"
	"testing"

	"github.com/vishvananda/netlink"
)

// In the vmlab VM ipip is loaded, so TestTun runs the full cycle on the
// kernel's fallback tunl0; these add the cases only the VM can show.
//
//	go run ./test/vmlab/vmrun -pkg ./internal/realserver

func TestVMTunAvailable(t *testing.T) {
	inNewNetns(t)
	if !tunAvailable(t) {
		t.Fatal("the VM kernel should have ipip (vmlab loads it)")
	}
}

// TestVMTunCreatesTunl0: with fallback tunnels kept to the initial
// namespace, a new namespace has no tunl0; Up creates it and Down deletes it.
func TestVMTunCreatesTunl0(t *testing.T) {
	const fb = "/proc/sys/net/core/fb_tunnels_only_for_init_net"
	old, err := os.ReadFile(fb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fb, []byte("2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.WriteFile(fb, old, 0o644) })
	inNewNetns(t)
	if _, err := netlink.LinkByName(tunl0); err == nil {
		t.Fatal("tunl0 exists in a new namespace despite fb_tunnels_only_for_init_net=2")
	}
	testTunCycle(t)
}

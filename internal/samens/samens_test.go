package samens

import (
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netns"
)

// Do hands netlink no namespace for the thread's own (so nothing enters
// it) and the namespace itself for another one.
func TestDo(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short: needs root and network namespaces")
	}
	if os.Geteuid() != 0 {
		t.Fatalf("samens: this test needs root to create a network namespace (euid %d)", os.Geteuid())
	}
	here, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer here.Close()
	if err := Do(here, func(at *netns.NsHandle) error {
		if at != nil {
			t.Errorf("own namespace: got %v, want nil", *at)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	runtime.LockOSThread() // not unlocked: the thread ends in another namespace
	other, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := netns.Set(here); err != nil {
		t.Fatal(err)
	}
	if err := Do(other, func(at *netns.NsHandle) error {
		if at == nil || !at.Equal(other) {
			t.Errorf("another namespace: got %v, want it", at)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	h, err := Handle(here)
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	if err := Enter(other); err != nil {
		t.Fatal(err)
	}
	cur, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer cur.Close()
	if !cur.Equal(other) {
		t.Errorf("Enter did not move the thread")
	}
}

package lab

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

func TestUDPBetweenHosts(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short: needs root and network namespaces")
	}
	RequireRoot(t)
	sw := NewSwitch(t)
	a := sw.AddHost(t, "a", netip.MustParsePrefix("10.0.0.1/24"), netip.MustParsePrefix("fd00::1/64"))
	b := sw.AddHost(t, "b", netip.MustParsePrefix("10.0.0.2/24"), netip.MustParsePrefix("fd00::2/64"))

	for _, tc := range []struct{ listen, dst string }{
		{"10.0.0.2:4000", "10.0.0.2:4000"},
		{"[fd00::2]:4000", "[fd00::2]:4000"},
	} {
		var srv net.PacketConn
		if err := b.Do(func() (err error) {
			srv, err = net.ListenPacket("udp", tc.listen)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		var cli net.Conn
		if err := a.Do(func() (err error) {
			cli, err = net.Dial("udp", tc.dst)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Write([]byte("hello " + tc.dst)); err != nil {
			t.Fatal(err)
		}
		srv.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 100)
		n, from, err := srv.ReadFrom(buf)
		if err != nil {
			t.Fatalf("%s: %v", tc.dst, err)
		}
		if got, want := string(buf[:n]), "hello "+tc.dst; got != want {
			t.Errorf("got %q, want %q", got, want)
		}
		if got, want := from.(*net.UDPAddr).AddrPort().Addr().Unmap(), cli.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(); got != want {
			t.Errorf("datagram from %s, want %s", got, want)
		}
		srv.Close()
		cli.Close()
	}

	// The exchange above resolved each other's MAC.
	if got := a.Neigh(t, netip.MustParseAddr("10.0.0.2")); got.String() != b.MAC.String() {
		t.Errorf("a's neighbour entry for b: %v, want %v", got, b.MAC)
	}
	a.Ping(t, netip.MustParseAddr("fd00::2"))
	if got := a.Neigh(t, netip.MustParseAddr("fd00::2")); got.String() != b.MAC.String() {
		t.Errorf("a's neighbour entry for fd00::2: %v, want %v", got, b.MAC)
	}
}

func TestCommandSeesOnlyItsNamespace(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short: needs root and network namespaces")
	}
	RequireRoot(t)
	sw := NewSwitch(t)
	h := sw.AddHost(t, "cmd", netip.MustParsePrefix("10.0.0.1/24"))
	h.AddVethPair(t, "only-here", "and-here")

	// /proc/net/dev is the child's own namespace's view (sysfs would show
	// the mounting namespace's).
	out := h.Run(t, "cat", "/proc/net/dev")
	var got []string
	for _, line := range strings.Split(out, "\n") {
		if name, _, ok := strings.Cut(line, ":"); ok {
			got = append(got, strings.TrimSpace(name))
		}
	}
	want := map[string]bool{"lo": true, "eth0": true, "only-here": true, "and-here": true}
	if len(got) != len(want) {
		t.Errorf("links seen by the command: %q, want exactly lo, eth0, only-here, and-here", got)
	}
	for _, n := range got {
		if !want[n] {
			t.Errorf("command saw link %q outside its namespace", n)
		}
	}

	// The caller's thread is back in its own namespace.
	self, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	if self.Equal(h.NS) {
		t.Error("calling thread left in the host namespace")
	}

	if _, err := h.Output(context.Background(), "false"); err == nil {
		t.Error("Output(false) returned no error")
	}
}

func TestAttachSysctlCleanup(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short: needs root and network namespaces")
	}
	RequireRoot(t)
	var paths []string
	t.Run("topology", func(t *testing.T) {
		front, back := NewSwitch(t), NewSwitch(t)
		dir := front.AddHost(t, "dir", netip.MustParsePrefix("10.0.0.1/24"))
		mac := back.Attach(t, dir, "eth1", netip.MustParsePrefix("10.1.0.1/24"))
		rs := back.AddHost(t, "rs", netip.MustParsePrefix("10.1.0.2/24"))
		cl := front.AddHost(t, "client", netip.MustParsePrefix("10.0.0.9/24"))
		paths = append(paths, dir.NSPath, rs.NSPath, cl.NSPath)

		rs.Ping(t, netip.MustParseAddr("10.1.0.1"))
		if got := rs.Neigh(t, netip.MustParseAddr("10.1.0.1")); got.String() != mac.String() {
			t.Errorf("rs sees 10.1.0.1 at %v, want eth1's %v", got, mac)
		}
		// The two switches are separate segments.
		if err := cl.TryPing(netip.MustParseAddr("10.1.0.2"), 500*time.Millisecond); err == nil {
			t.Error("client reached the back segment without a route")
		}

		dir.Sysctl(t, "net.ipv4.ip_forward", "1")
		var v []byte
		if err := dir.Do(func() (err error) {
			v, err = os.ReadFile("/proc/sys/net/ipv4/ip_forward")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(string(v)) != "1" {
			t.Errorf("ip_forward in dir = %q, want 1", v)
		}
		if !dir.HasAddr(t, "eth1", netip.MustParseAddr("10.1.0.1")) {
			t.Error("eth1 lacks 10.1.0.1")
		}

		dir.SetLinkDown(t, "eth1")
		if err := rs.TryPing(netip.MustParseAddr("10.1.0.1"), 500*time.Millisecond); err == nil {
			t.Error("ping answered over a down link")
		}
		dir.SetLinkUp(t, "eth1")
		rs.Ping(t, netip.MustParseAddr("10.1.0.1"))
	})
	for _, p := range paths {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s still exists after cleanup (stat: %v)", p, err)
		}
	}
}

package vrrpnet

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"
)

// A datagram written to loopback comes back through ReadFrom whole and
// without its IP header, with the source, destination, TTL or hop limit
// and interface the kernel saw, for both families; reading and writing
// allocate nothing. Needs root (raw sockets): it fails, never skips,
// without it.
func TestLoopbackRoundTrip(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		v6   bool
		addr netip.Addr
	}{
		{"ipv4", false, netip.MustParseAddr("127.0.0.1")},
		{"ipv6", true, netip.MustParseAddr("::1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Listen(Options{Interface: "lo", IPv6: tc.v6})
			if errors.Is(err, os.ErrPermission) {
				t.Fatalf("raw sockets need root: %v", err)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// A VRRP-looking payload with a marker no other sender on lo
			// would put there.
			payload := append([]byte{0x31, 0xfe, 0x64, 0x01, 0x00, 0x64}, []byte("havip-vrrpnet-test")...)
			buf := make([]byte, 1500)
			read := func() (int, Meta) {
				for {
					n, m, err := c.ReadFrom(buf)
					if err != nil {
						t.Fatal(err)
					}
					if bytes.Contains(buf[:n], []byte("havip-vrrpnet-test")) {
						return n, m
					}
				}
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				for range 3 {
					if err := c.WriteTo(payload, tc.addr, tc.addr); err != nil {
						t.Error(err)
						return
					}
					time.Sleep(10 * time.Millisecond)
				}
			}()
			n, m := read()
			if !bytes.Equal(buf[:n], payload) {
				t.Errorf("read %x, wrote %x", buf[:n], payload)
			}
			if m.Src != tc.addr || m.Dst != tc.addr || m.TTL != 255 || m.IfIndex != lo.Index {
				t.Errorf("meta %+v, want src = dst = %s, TTL 255, ifindex %d", m, tc.addr, lo.Index)
			}
			<-done
			allocs := testing.AllocsPerRun(20, func() {
				if err := c.WriteTo(payload, tc.addr, tc.addr); err != nil {
					t.Fatal(err)
				}
				read()
			})
			if allocs > 0 {
				t.Errorf("a write and a read allocate %.1f times", allocs)
			}
		})
	}
}

// parseControl reads only whole control messages, whatever the bytes.
func FuzzParseControl(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, 64))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, 8, 0, 0, 0})
	f.Fuzz(func(t *testing.T, oob []byte) {
		var m Meta
		parseControl(oob, &m)
	})
}

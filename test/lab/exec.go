package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Command returns a command meant to be started with h.Start (or run with
// h.Run); started with cmd.Start it would run in the caller's namespace.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, name, args...)
}

// Start starts cmd inside h's namespace. The child is forked from a thread
// switched into the namespace and inherits it; the thread is restored
// before Start returns.
func (h *Host) Start(cmd *exec.Cmd) error {
	return onThread(func() error {
		if err := netns.Set(h.NS); err != nil {
			return fmt.Errorf("lab: enter %s: %w", h.Name, err)
		}
		return cmd.Start()
	})
}

// Run runs name with args inside h's namespace to completion and returns
// its combined output; a failure fails the test with that output.
func (h *Host) Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := h.Output(context.Background(), name, args...)
	if err != nil {
		t.Fatalf("lab: %s: %s %q: %v\n%s", h.Name, name, args, err, out)
	}
	return out
}

// Output runs name with args inside h's namespace and returns its combined
// output and error, for tests that expect a command to fail.
func (h *Host) Output(ctx context.Context, name string, args ...string) (string, error) {
	cmd := h.Command(ctx, name, args...)
	// One comparable writer for both: exec serialises the writes.
	var buf bytes.Buffer
	cmd.Stdout = &buf
	cmd.Stderr = &buf
	if err := h.Start(cmd); err != nil {
		return "", err
	}
	err := cmd.Wait()
	return buf.String(), err
}

// Ping sends ICMP echo requests from h to ip until one is answered, failing
// the test after 5 seconds. It resolves ip's link-layer address on the way,
// which is also what tests use it for.
func (h *Host) Ping(t testing.TB, ip netip.Addr) {
	t.Helper()
	if err := h.TryPing(ip, 5*time.Second); err != nil {
		t.Fatalf("lab: %s: %v", h.Name, err)
	}
}

// TryPing is Ping returning an error instead of failing the test.
func (h *Host) TryPing(ip netip.Addr, timeout time.Duration) error {
	network, addr := "ip4:icmp", "0.0.0.0"
	var typ, reply icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	proto := 1
	if ip.Is6() {
		network, addr = "ip6:ipv6-icmp", "::"
		typ, reply, proto = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply, 58
	}
	var c *icmp.PacketConn
	err := h.Do(func() error {
		var err error
		c, err = icmp.ListenPacket(network, addr)
		return err
	})
	if err != nil {
		return fmt.Errorf("ping %s: %w", ip, err)
	}
	defer c.Close()

	id := rand.IntN(0xffff) + 1
	deadline := time.Now().Add(timeout)
	dst := &net.IPAddr{IP: ip.AsSlice(), Zone: ip.Zone()}
	buf := make([]byte, 1500)
	for seq := 1; time.Now().Before(deadline); seq++ {
		msg := icmp.Message{Type: typ, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("havip-lab")}}
		b, err := msg.Marshal(nil) // the kernel fills the ICMPv6 checksum
		if err != nil {
			return fmt.Errorf("ping %s: %w", ip, err)
		}
		if _, err := c.WriteTo(b, dst); err != nil {
			return fmt.Errorf("ping %s: %w", ip, err)
		}
		wait := time.Now().Add(300 * time.Millisecond)
		if wait.After(deadline) {
			wait = deadline
		}
		c.SetReadDeadline(wait)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					break
				}
				return fmt.Errorf("ping %s: %w", ip, err)
			}
			m, err := icmp.ParseMessage(proto, buf[:n])
			if err != nil || m.Type != reply {
				continue
			}
			if e, ok := m.Body.(*icmp.Echo); ok && e.ID == id && e.Seq == seq && from.String() == dst.String() {
				return nil
			}
		}
	}
	return fmt.Errorf("ping %s: no reply within %v", ip, timeout)
}

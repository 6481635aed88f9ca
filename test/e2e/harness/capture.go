package harness

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/havip/havip/internal/vrrp"
	"github.com/havip/havip/test/lab"
)

// Advert is one VRRP packet seen on a wire, stamped by the kernel when it
// arrived.
type Advert struct {
	At  time.Time
	Src netip.Addr
	vrrp.Packet
}

// Capture records every VRRP packet (IP protocol 112, IPv4 or IPv6) that
// crosses one interface of a host, from an AF_PACKET socket in the host's
// namespace: what the wire carried, whatever the daemons' counters say.
type Capture struct {
	mu      sync.Mutex
	adverts []Advert
	err     error
	stop    chan struct{}
	done    chan struct{}
}

// CaptureAdverts starts capturing on ifname of h; it stops at the end of
// the test, or with Stop.
func CaptureAdverts(t testing.TB, h *lab.Host, ifname string) *Capture {
	t.Helper()
	link, err := h.Netlink().LinkByName(ifname)
	if err != nil {
		t.Fatalf("harness: capture on %s/%s: %v", h.Name, ifname, err)
	}
	var fd int
	err = h.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		for _, o := range []struct{ opt, v int }{{unix.SO_TIMESTAMPNS, 1}, {unix.SO_RCVBUF, 4 << 20}} {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, o.opt, o.v); err != nil {
				unix.Close(fd)
				return err
			}
		}
		// A read timeout lets the reader see Stop.
		tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			unix.Close(fd)
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: link.Attrs().Index})
	})
	if err != nil {
		t.Fatalf("harness: capture on %s/%s: packet socket: %v", h.Name, ifname, err)
	}
	c := &Capture{stop: make(chan struct{}), done: make(chan struct{})}
	go c.read(fd)
	t.Cleanup(c.Stop)
	return c
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (c *Capture) read(fd int) {
	defer close(c.done)
	defer unix.Close(fd)
	buf := make([]byte, 65536)
	oob := make([]byte, 128)
	for {
		select {
		case <-c.stop:
			return
		default:
		}
		n, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		at := time.Now()
		if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, m := range msgs {
				if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= 16 {
					sec := int64(binary.NativeEndian.Uint64(m.Data[0:8]))
					nsec := int64(binary.NativeEndian.Uint64(m.Data[8:16]))
					at = time.Unix(sec, nsec)
				}
			}
		}
		if a, ok := parseAdvert(buf[:n]); ok {
			a.At = at
			c.mu.Lock()
			c.adverts = append(c.adverts, a)
			c.mu.Unlock()
		}
	}
}

// parseAdvert decodes an IP packet carrying a valid VRRP message.
func parseAdvert(b []byte) (Advert, bool) {
	var src, dst netip.Addr
	var payload []byte
	switch {
	case len(b) >= 20 && b[0]>>4 == 4 && b[9] == 112:
		ihl := int(b[0]&0x0f) * 4
		if len(b) < ihl {
			return Advert{}, false
		}
		src, dst, payload = netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20])), b[ihl:]
	case len(b) >= 40 && b[0]>>4 == 6 && b[6] == 112:
		src, dst, payload = netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40])), b[40:]
	default:
		return Advert{}, false
	}
	p, drop := vrrp.Parse(payload, src, dst)
	if drop != vrrp.DropNone {
		return Advert{}, false
	}
	return Advert{Src: src, Packet: *p}, true
}

// Stop ends the capture (it may be called more than once).
func (c *Capture) Stop() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	<-c.done
}

// Adverts returns what was captured so far from src for vrid, in order,
// and the error that ended the capture early, if any.
func (c *Capture) Adverts(src netip.Addr, vrid uint8) ([]Advert, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Advert
	for _, a := range c.adverts {
		if a.Src == src && a.VRID == vrid {
			out = append(out, a)
		}
	}
	return out, c.err
}

// Gap is the longest silence between two consecutive adverts of a list.
type Gap struct {
	From, To time.Time
	Interval time.Duration // the larger interval the two adverts announce
}

func (g Gap) Len() time.Duration { return g.To.Sub(g.From) }

// Ratio is the gap in units of the advert interval around it.
func (g Gap) Ratio() float64 {
	if g.Interval == 0 {
		return 0
	}
	return float64(g.Len()) / float64(g.Interval)
}

func (g Gap) String() string {
	return fmt.Sprintf("%s (%.2f x the %s interval, at %s)", g.Len().Round(time.Microsecond), g.Ratio(), g.Interval, g.From.Format("15:04:05.000"))
}

// LongestGap returns the longest gap relative to the interval the adverts
// announce (an interval change makes the longer one the yardstick), and
// how many adverts there were.
func LongestGap(as []Advert) (Gap, int) {
	var worst Gap
	for i := 1; i < len(as); i++ {
		g := Gap{From: as[i-1].At, To: as[i].At, Interval: max(as[i-1].Interval, as[i].Interval)}
		if g.Ratio() > worst.Ratio() {
			worst = g
		}
	}
	return worst, len(as)
}

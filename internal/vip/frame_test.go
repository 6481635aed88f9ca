package vip

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

var testMAC = net.HardwareAddr{0x02, 0x00, 0x5e, 0x10, 0x20, 0x30}

// arpFields is what a GARP must carry, as gopacket decodes it.
type arpFields struct {
	EthDst, EthSrc   string
	EthType          layers.EthernetType
	HwType           layers.LinkType
	Proto            layers.EthernetType
	Op               uint16
	SenderMAC, SndIP string
	TargetMAC, TgtIP string
}

func decodeARP(t testing.TB, b []byte) (arpFields, bool) {
	t.Helper()
	p := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
	eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	a, _ := p.Layer(layers.LayerTypeARP).(*layers.ARP)
	if eth == nil || a == nil {
		return arpFields{}, false
	}
	return arpFields{
		EthDst: eth.DstMAC.String(), EthSrc: eth.SrcMAC.String(), EthType: eth.EthernetType,
		HwType: a.AddrType, Proto: a.Protocol, Op: a.Operation,
		SenderMAC: net.HardwareAddr(a.SourceHwAddress).String(), SndIP: net.IP(a.SourceProtAddress).String(),
		TargetMAC: net.HardwareAddr(a.DstHwAddress).String(), TgtIP: net.IP(a.DstProtAddress).String(),
	}, true
}

func wantARP(mac net.HardwareAddr, ip string) arpFields {
	return arpFields{
		EthDst: "ff:ff:ff:ff:ff:ff", EthSrc: mac.String(), EthType: layers.EthernetTypeARP,
		HwType: layers.LinkTypeEthernet, Proto: layers.EthernetTypeIPv4, Op: layers.ARPRequest,
		SenderMAC: mac.String(), SndIP: ip,
		TargetMAC: "00:00:00:00:00:00", TgtIP: ip,
	}
}

// naFields is what an unsolicited NA must carry.
type naFields struct {
	EthDst, EthSrc string
	HopLimit       uint8
	Src, Dst       string
	Type, Code     uint8
	ChecksumOK     bool
	Router, Solic  bool
	Override       bool
	Target         string
	TargetLLA      string
}

func decodeNA(t testing.TB, b []byte) (naFields, bool) {
	t.Helper()
	p := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
	eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	ip, _ := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	ic, _ := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
	na, _ := p.Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement)
	if eth == nil || ip == nil || ic == nil || na == nil {
		return naFields{}, false
	}
	f := naFields{
		EthDst: eth.DstMAC.String(), EthSrc: eth.SrcMAC.String(),
		HopLimit: ip.HopLimit, Src: ip.SrcIP.String(), Dst: ip.DstIP.String(),
		Type: ic.TypeCode.Type(), Code: ic.TypeCode.Code(),
		ChecksumOK: icmp6ChecksumOK(ip),
		Router:     na.Router(), Solic: na.Solicited(), Override: na.Override(),
		Target: na.TargetAddress.String(),
	}
	for _, o := range na.Options {
		if o.Type == layers.ICMPv6OptTargetAddress {
			f.TargetLLA = net.HardwareAddr(o.Data).String()
		}
	}
	return f, true
}

func wantNA(mac net.HardwareAddr, ip string) naFields {
	return naFields{
		EthDst: "33:33:00:00:00:01", EthSrc: mac.String(),
		HopLimit: 255, Src: ip, Dst: "ff02::1",
		Type: layers.ICMPv6TypeNeighborAdvertisement, Code: 0, ChecksumOK: true,
		Override: true, Target: ip, TargetLLA: mac.String(),
	}
}

// icmp6ChecksumOK verifies the ICMPv6 checksum over the pseudo-header.
func icmp6ChecksumOK(ip *layers.IPv6) bool {
	payload := ip.Payload
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(ip.SrcIP.To16())
	add(ip.DstIP.To16())
	var l [8]byte
	binary.BigEndian.PutUint32(l[:4], uint32(len(payload)))
	l[7] = 58
	add(l[:])
	add(payload)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return sum == 0xffff
}

func TestGARPFrame(t *testing.T) {
	f, err := garpFrame(testMAC, netip.MustParseAddr("192.0.2.10"))
	if err != nil {
		t.Fatal(err)
	}
	got, ok := decodeARP(t, f.b)
	if !ok {
		t.Fatalf("frame does not decode as Ethernet/ARP: % x", f.b)
	}
	if diff := cmp.Diff(wantARP(testMAC, "192.0.2.10"), got); diff != "" {
		t.Errorf("GARP (-want +got):\n%s", diff)
	}
	if f.dst.String() != "ff:ff:ff:ff:ff:ff" {
		t.Errorf("link-layer destination %v", f.dst)
	}
	if _, err := garpFrame(testMAC, netip.MustParseAddr("2001:db8::1")); err == nil {
		t.Error("GARP for an IPv6 address: no error")
	}
}

func TestNAFrame(t *testing.T) {
	f, err := naFrame(testMAC, netip.MustParseAddr("2001:db8::10"))
	if err != nil {
		t.Fatal(err)
	}
	got, ok := decodeNA(t, f.b)
	if !ok {
		t.Fatalf("frame does not decode as Ethernet/IPv6/ICMPv6 NA: % x", f.b)
	}
	if diff := cmp.Diff(wantNA(testMAC, "2001:db8::10"), got); diff != "" {
		t.Errorf("NA (-want +got):\n%s", diff)
	}
}

func TestFramesPerFamily(t *testing.T) {
	fs, err := frames(testMAC, []netip.Prefix{
		netip.MustParsePrefix("192.0.2.10/24"),
		netip.MustParsePrefix("2001:db8::10/64"),
		netip.MustParsePrefix("192.0.2.11/32"),
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range fs {
		got = append(got, fmt.Sprintf("%#04x", uint16(f.etherType)))
	}
	if diff := cmp.Diff([]string{"0x0806", "0x86dd", "0x0806"}, got); diff != "" {
		t.Errorf("EtherTypes (-want +got):\n%s", diff)
	}
}

func TestNewValidation(t *testing.T) {
	v4 := []netip.Prefix{netip.MustParsePrefix("192.0.2.10/24")}
	for _, tc := range []struct {
		name   string
		ifname string
		vips   []netip.Prefix
		opt    Options
		ok     bool
	}{
		{"ok", "eth0", v4, Options{}, true},
		{"no interface", "", v4, Options{}, false},
		{"long interface", "abcdefghijklmnop", v4, Options{}, false},
		{"no vips", "eth0", nil, Options{}, false},
		{"invalid vip", "eth0", []netip.Prefix{{}}, Options{}, false},
		{"duplicate", "eth0", []netip.Prefix{v4[0], netip.MustParsePrefix("192.0.2.10/32")}, Options{}, false},
		{"negative lifetime", "eth0", v4, Options{Lifetime: -time.Second}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(tc.ifname, tc.vips, tc.opt)
			if (err == nil) != tc.ok {
				t.Fatalf("New: err %v, want ok=%v", err, tc.ok)
			}
			if c != nil {
				c.Close()
			}
		})
	}
}

// fakeSender records frames and can fail.
type fakeSender struct {
	mu     sync.Mutex
	sent   []frame
	at     []time.Time
	fail   bool
	closed bool
}

func (f *fakeSender) send(fr frame) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return errors.New("boom")
	}
	f.sent = append(f.sent, fr)
	f.at = append(f.at, time.Now())
	return nil
}

func (f *fakeSender) close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

func TestBurst(t *testing.T) {
	vips := []netip.Prefix{netip.MustParsePrefix("192.0.2.10/24"), netip.MustParsePrefix("2001:db8::10/64")}
	fs, err := frames(testMAC, vips)
	if err != nil {
		t.Fatal(err)
	}
	c := &Claimer{opt: Options{GARPCount: 4, GARPInterval: 20 * time.Millisecond}, log: discard}

	s := &fakeSender{}
	start := time.Now()
	c.burst(context.Background(), s, fs)
	if len(s.sent) != 8 {
		t.Fatalf("sent %d frames, want 4 rounds x 2", len(s.sent))
	}
	if d := s.at[0].Sub(start); d > 10*time.Millisecond {
		t.Errorf("first round after %v, want at once", d)
	}
	if d := s.at[7].Sub(start); d < 60*time.Millisecond {
		t.Errorf("last round after %v, want >= 3 intervals", d)
	}
	garp, na, errs := c.Counters()
	if diff := cmp.Diff([3]uint64{4, 4, 0}, [3]uint64{garp, na, errs}); diff != "" {
		t.Errorf("counters garp/na/errors (-want +got):\n%s", diff)
	}

	// A cancelled burst sends its first round only.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s = &fakeSender{}
	c.burst(ctx, s, fs)
	if len(s.sent) != 2 {
		t.Errorf("cancelled burst sent %d frames, want 2", len(s.sent))
	}

	// Failures are counted per frame.
	s = &fakeSender{fail: true}
	c.burst(context.Background(), s, fs)
	if _, _, errs := c.Counters(); errs != 8 {
		t.Errorf("errors = %d, want 8", errs)
	}
}

func TestAnnounceCancelsRunningBurst(t *testing.T) {
	var senders []*fakeSender
	var mu sync.Mutex
	c := &Claimer{
		vips: []netip.Prefix{netip.MustParsePrefix("192.0.2.10/24")},
		opt:  Options{GARPCount: 1000, GARPInterval: 5 * time.Millisecond},
		log:  discard,
		open: func(*net.Interface) (sender, error) {
			mu.Lock()
			defer mu.Unlock()
			s := &fakeSender{}
			senders = append(senders, s)
			return s, nil
		},
	}
	link := fakeLink(testMAC)
	c.announce(context.Background(), link, c.vips)
	time.Sleep(20 * time.Millisecond)
	c.mu.Lock()
	firstDone := c.done
	c.mu.Unlock()
	c.announce(context.Background(), link, c.vips)
	select {
	case <-firstDone:
	default:
		t.Error("first burst still running after a new Announce")
	}
	c.mu.Lock()
	c.stopBurstLocked()
	c.mu.Unlock()
	mu.Lock()
	defer mu.Unlock()
	if len(senders) != 1 {
		t.Fatalf("opened %d senders, want one kept across bursts", len(senders))
	}
	s := senders[0]
	s.mu.Lock()
	n, closed := len(s.sent), s.closed
	s.mu.Unlock()
	time.Sleep(20 * time.Millisecond)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.sent) != n {
		t.Errorf("%d frames sent after the bursts were stopped", len(s.sent)-n)
	}
	if closed {
		t.Error("the sender was closed between bursts (that costs an RCU grace period)")
	}
}

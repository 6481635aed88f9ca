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
	"github.com/google/go-cmp/cmp/cmpopts"
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
		{"no announcements", "eth0", v4, Options{GARPCount: 0}, true},
		{"one round needs no interval", "eth0", v4, Options{GARPCount: 1}, true},
		{"rounds need an interval", "eth0", v4, Options{GARPCount: 2}, false},
		{"negative interval", "eth0", v4, Options{GARPCount: 1, GARPInterval: -time.Millisecond}, false},
		{"negative count", "eth0", v4, Options{GARPCount: -1, GARPInterval: time.Second}, false},
		{"owner", "eth0", v4, Options{Owner: netip.MustParseAddr("192.0.2.10")}, true},
		{"4-in-6 owner", "eth0", v4, Options{Owner: netip.MustParseAddr("::ffff:192.0.2.10")}, false},
		{"zoned owner", "eth0", v4, Options{Owner: netip.MustParseAddr("fe80::1%eth0")}, false},
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

var cmpPrefix = cmpopts.EquateComparable(netip.Prefix{})

// fakeClaimer is a Claimer without namespace or netlink handle, sending
// through the senders open returns.
func fakeClaimer(t *testing.T, vips []netip.Prefix, opt Options, open func(*net.Interface) (sender, error)) *Claimer {
	t.Helper()
	cfg, err := newConfig("eth0", vips, opt)
	if err != nil {
		t.Fatal(err)
	}
	c := &Claimer{ifname: "eth0", open: open}
	c.cfg.Store(cfg)
	return c
}

// senders is an open function that records the fakeSenders it opens.
type senders struct {
	mu  sync.Mutex
	all []*fakeSender
}

func (ss *senders) open(*net.Interface) (sender, error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := &fakeSender{}
	ss.all = append(ss.all, s)
	return s, nil
}

// sentFor counts the frames s sent for each address.
func (f *fakeSender) sentFor() map[netip.Addr]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := map[netip.Addr]int{}
	for _, fr := range f.sent {
		n[fr.vip]++
	}
	return n
}

func TestBurst(t *testing.T) {
	vips := []netip.Prefix{netip.MustParsePrefix("192.0.2.10/24"), netip.MustParsePrefix("2001:db8::10/64")}
	fs, err := frames(testMAC, vips)
	if err != nil {
		t.Fatal(err)
	}
	c := fakeClaimer(t, vips, Options{GARPCount: 4, GARPInterval: 20 * time.Millisecond}, nil)
	cfg := c.cfg.Load()

	s := &fakeSender{}
	start := time.Now()
	c.burst(context.Background(), s, fs, cfg)
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
	c.burst(ctx, s, fs, cfg)
	if len(s.sent) != 2 {
		t.Errorf("cancelled burst sent %d frames, want 2", len(s.sent))
	}

	// Failures are counted per frame.
	s = &fakeSender{fail: true}
	c.burst(context.Background(), s, fs, cfg)
	if _, _, errs := c.Counters(); errs != 8 {
		t.Errorf("errors = %d, want 8", errs)
	}

	// One round needs no interval.
	c = fakeClaimer(t, vips, Options{GARPCount: 1}, nil)
	s = &fakeSender{}
	c.burst(context.Background(), s, fs, c.cfg.Load())
	if len(s.sent) != 2 {
		t.Errorf("one-round burst sent %d frames, want 2", len(s.sent))
	}
}

func TestGARPCountZeroSendsNothing(t *testing.T) {
	var ss senders
	vips := []netip.Prefix{netip.MustParsePrefix("192.0.2.10/24")}
	c := fakeClaimer(t, vips, Options{GARPCount: 0}, ss.open)
	c.announce(context.Background(), fakeLink(testMAC), c.cfg.Load(), vips, true)
	c.announce(context.Background(), fakeLink(testMAC), c.cfg.Load(), vips, false)
	if len(ss.all) != 0 || len(c.bursts) != 0 {
		t.Errorf("GARPCount 0: opened %d senders, started %d bursts; want none", len(ss.all), len(c.bursts))
	}
}

func TestAnnounceCancelsRunningBurst(t *testing.T) {
	var ss senders
	vips := []netip.Prefix{netip.MustParsePrefix("192.0.2.10/24")}
	c := fakeClaimer(t, vips, Options{GARPCount: 1000, GARPInterval: 5 * time.Millisecond}, ss.open)
	link := fakeLink(testMAC)
	c.announce(context.Background(), link, c.cfg.Load(), vips, true)
	time.Sleep(20 * time.Millisecond)
	c.mu.Lock()
	firstDone := c.bursts[0].done
	c.mu.Unlock()
	c.announce(context.Background(), link, c.cfg.Load(), vips, true)
	select {
	case <-firstDone:
	default:
		t.Error("first burst still running after a new Announce")
	}
	c.mu.Lock()
	c.stopBurstsLocked()
	c.mu.Unlock()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if len(ss.all) != 1 {
		t.Fatalf("opened %d senders, want one kept across bursts", len(ss.all))
	}
	s := ss.all[0]
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

// TestBurstFollowsSet: a running burst goes on for the VIPs still in the
// set; a burst for VIPs just added (ClaimSome) runs beside it.
func TestBurstFollowsSet(t *testing.T) {
	a, b, n := netip.MustParsePrefix("192.0.2.10/24"), netip.MustParsePrefix("2001:db8::10/64"), netip.MustParsePrefix("192.0.2.11/24")
	var ss senders
	opt := Options{GARPCount: 1000, GARPInterval: 5 * time.Millisecond}
	c := fakeClaimer(t, []netip.Prefix{a, b}, opt, ss.open)
	link := fakeLink(testMAC)
	c.announce(context.Background(), link, c.cfg.Load(), []netip.Prefix{a, b}, true)
	time.Sleep(20 * time.Millisecond)
	added, removed, err := c.Set([]netip.Prefix{a, n}, Options{GARPCount: 2, GARPInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([2][]netip.Prefix{{n}, {b}}, [2][]netip.Prefix{added, removed}, cmpPrefix); diff != "" {
		t.Fatalf("Set added, removed (-want +got):\n%s", diff)
	}
	time.Sleep(10 * time.Millisecond) // the round under way when Set came
	s := ss.all[0]
	before := s.sentFor()
	c.announce(context.Background(), link, c.cfg.Load(), added, false)
	time.Sleep(30 * time.Millisecond)
	c.mu.Lock()
	running := len(c.bursts)
	first := c.bursts[0]
	c.mu.Unlock()
	if first.ended() {
		t.Error("the first burst ended when VIPs were added")
	}
	after := s.sentFor()
	if after[b.Addr()] != before[b.Addr()] {
		t.Errorf("%d frames for %s after Set removed it", after[b.Addr()]-before[b.Addr()], b.Addr())
	}
	// The first burst keeps its own options (1000 rounds, 5ms apart).
	if after[a.Addr()] == before[a.Addr()] {
		t.Errorf("%d frames for %s in 30ms, want the running burst to go on", after[a.Addr()]-before[a.Addr()], a.Addr())
	}
	// The new one has the new options: one round now, the next in an hour.
	if after[n.Addr()] != 1 {
		t.Errorf("%d frames for the added %s, want 1", after[n.Addr()], n.Addr())
	}
	if running != 2 || len(ss.all) != 1 {
		t.Errorf("%d bursts on %d senders, want 2 on 1", running, len(ss.all))
	}
	// Announce replaces both.
	c.announce(context.Background(), link, c.cfg.Load(), c.cfg.Load().vips, true)
	if !first.ended() {
		t.Error("the first burst still runs after Announce")
	}
	c.mu.Lock()
	c.stopBurstsLocked()
	c.mu.Unlock()
}

func TestSet(t *testing.T) {
	a, b := netip.MustParsePrefix("192.0.2.10/24"), netip.MustParsePrefix("192.0.2.11/24")
	c, err := New("eth0", []netip.Prefix{a, b}, Options{GARPCount: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg := c.cfg.Load()
	for _, bad := range []struct {
		vips []netip.Prefix
		opt  Options
	}{
		{nil, Options{}},
		{[]netip.Prefix{a, a}, Options{}},
		{[]netip.Prefix{a}, Options{GARPCount: 3}},
		{[]netip.Prefix{a}, Options{Lifetime: -1}},
	} {
		if _, _, err := c.Set(bad.vips, bad.opt); err == nil {
			t.Errorf("Set(%v, %+v): no error", bad.vips, bad.opt)
		}
	}
	if c.cfg.Load() != cfg {
		t.Fatal("a refused Set changed the Claimer")
	}
	if err := c.ClaimSome(context.Background(), []netip.Prefix{netip.MustParsePrefix("192.0.2.12/24")}); err == nil {
		t.Error("ClaimSome of an address that is not a VIP: no error")
	}

	// A new prefix length is a new VIP.
	b25 := netip.MustParsePrefix("192.0.2.11/25")
	added, removed, err := c.Set([]netip.Prefix{b25, a}, Options{Lifetime: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([2][]netip.Prefix{{b25}, {b}}, [2][]netip.Prefix{added, removed}, cmpPrefix); diff != "" {
		t.Errorf("added, removed (-want +got):\n%s", diff)
	}
	if got := c.cfg.Load().opt.Lifetime; got != time.Minute {
		t.Errorf("options not replaced: lifetime %v", got)
	}
	added, removed, err = c.Set([]netip.Prefix{a, b25}, Options{})
	if err != nil || added != nil || removed != nil {
		t.Errorf("same set in another order: added %v removed %v err %v", added, removed, err)
	}
}

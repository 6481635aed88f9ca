package e2e

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/havip/havip/internal/vrrp"
	"github.com/havip/havip/internal/vrrpnet"
	h "github.com/havip/havip/test/e2e/harness"
)

// strangerAddr is a host on the directors' segment that is no [[node]]
// of the site.
var strangerAddr = netip.MustParseAddr("198.18.0.66")

// A stranger on the segment (no [[node]] of the site) sends twelve VRRP
// adverts of priority 255 for the group's VRID, 250 ms apart, in the
// group's own mode: multicast to 224.0.0.18, or in unicast mode straight
// to both directors. Before the source filter, the first made the master
// release its VIP, and the train left the VIP with no owner for about
// 3 s. Now each is a drop counted as unknown_source on both directors
// (status and metrics), the VIP never leaves the master and no director
// changes state.
func TestStrangerAdverts(t *testing.T) {
	for _, unicast := range []bool{false, true} {
		t.Run(map[bool]string{false: "multicast", true: "unicast"}[unicast], func(t *testing.T) {
			p := h.NewPair(t, h.Site{Unicast: unicast})
			stranger := p.Switch.AddHost(t, "strg", netip.PrefixFrom(strangerAddr, 24))
			p.Nodes[0].Metrics = "127.0.0.1:9110"
			startNodes(t, p)
			dsts := []netip.Addr{vrrpnet.Group4}
			if unicast {
				dsts = []netip.Addr{p.Nodes[0].Addr, p.Nodes[1].Addr}
			}
			strangerTrain(t, p, stranger.Do, strangerAddr, dsts)
		})
	}
}

// The same over IPv6, where adverts come from link-local addresses: once
// the site lists each director's (`link_local`, here added by a reload of
// both), a stranger's link-local is dropped too.
func TestStrangerAdvertsIPv6(t *testing.T) {
	p := h.NewPair(t, h.Site{VIPs: []string{"2001:db8:51::100/64"}})
	p.Client.AddAddr(t, "eth0", netip.MustParsePrefix("2001:db8:51::50/64"))
	stranger := p.Switch.AddHost(t, "strg", netip.PrefixFrom(strangerAddr, 24))
	for _, n := range p.Nodes {
		h.WaitLinkLocal(t, n.Host, "eth0")
	}
	h.WaitLinkLocal(t, stranger, "eth0")
	p.Nodes[0].Metrics = "127.0.0.1:9110"
	startNodes(t, p)
	cfg := p.Nodes[0].ReadConfig()
	for _, n := range p.Nodes {
		line := fmt.Sprintf("address = %q\n", n.Addr)
		cfg = strings.Replace(cfg, line, line+fmt.Sprintf("link_local = %q\n", linkLocal(t, n.Host.Do)), 1)
	}
	p.WriteConfig(cfg)
	for _, n := range p.Nodes {
		out, code := n.Reload()
		if code != 0 || !strings.Contains(out, "group front: updated in place (advert sources)") {
			t.Fatalf("%s: reload adding link_local: exit %d:\n%s", n.Name, code, out)
		}
	}
	strangerTrain(t, p, stranger.Do, linkLocal(t, stranger.Do), []netip.Addr{vrrpnet.Group6})
}

// linkLocal is the link-local address of eth0 in a namespace.
func linkLocal(t *testing.T, in func(func() error) error) netip.Addr {
	t.Helper()
	var ll netip.Addr
	if err := in(func() error {
		var err error
		ll, err = vrrpnet.LinkLocal("eth0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return ll
}

// strangerTrain sends twelve priority-255 adverts for the group from src
// (inside a namespace, by in) to each of dsts, 250 ms apart, and checks
// that they changed nothing and were each counted as unknown_source.
func strangerTrain(t *testing.T, p *h.Pair, in func(func() error) error, src netip.Addr, dsts []netip.Addr) {
	t.Helper()
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	var conn vrrpnet.Conn
	if err := in(func() error {
		var err error
		conn, err = vrrpnet.Listen(vrrpnet.Options{Interface: "eth0", IPv6: src.Is6(), Multicast: dsts[0].IsMulticast()})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	watch := h.WatchVIPs(t, []netip.Addr{p.VIP}, lb1.Host, lb2.Host)
	h.WaitUntil(t, time.Second, "the watch sees the VIP on lb1", func() bool {
		return slices.Equal(watch.Holders(p.VIP), []string{lb1.Host.Name})
	})
	seen := len(watch.Events()) // the VIP as it was listed at the start
	before := map[string]uint64{}
	trans := map[string]uint64{}
	for _, n := range p.Nodes {
		g := groupOf(t, n)
		before[n.Name], trans[n.Name] = g.Drops["unknown_source"], g.Transitions
	}
	pk := vrrp.Packet{Version: 3, VRID: uint8(p.Site.VRID), Priority: vrrp.OwnerPriority, Interval: p.Site.Advert, Addrs: []netip.Addr{p.VIP}}
	const sent = 12
	t0 := time.Now()
	for i := range sent {
		if i > 0 {
			time.Sleep(250 * time.Millisecond)
		}
		for _, dst := range dsts {
			b, err := pk.Marshal(src, dst)
			if err != nil {
				t.Fatal(err)
			}
			// In the namespace: an IPv6 destination's zone names its eth0.
			if err := in(func() error { return conn.WriteTo(b, src, dst) }); err != nil {
				t.Fatalf("advert %d to %s: %v", i, dst, err)
			}
		}
	}
	// Past Master_Down_Interval after the last one: a backup that had
	// believed the stranger would have taken over by now.
	time.Sleep(h.MasterDown(p.Site.Advert, 100) + 200*time.Millisecond)
	t.Logf("%d adverts of priority 255 from %s to %v over %s", sent, src, dsts, time.Since(t0).Round(time.Millisecond))

	if got := watch.Holders(p.VIP); !slices.Equal(got, []string{lb1.Host.Name}) {
		t.Errorf("VIP %s held by %v after the stranger's adverts, want only %s", p.VIP, got, lb1.Host.Name)
	}
	for _, e := range watch.Events()[seen:] {
		t.Errorf("VIP moved while the stranger sent: %s", e)
	}
	for _, err := range watch.Errors() {
		t.Errorf("VIP watch: %v", err)
	}
	want := map[string]string{lb1.Name: "MASTER", lb2.Name: "BACKUP"}
	for _, n := range p.Nodes {
		g := groupOf(t, n)
		if g.State != want[n.Name] || g.Transitions != trans[n.Name] {
			t.Errorf("%s: %s after %d transitions, want %s after %d", n.Name, g.State, g.Transitions, want[n.Name], trans[n.Name])
		}
		if d := g.Drops["unknown_source"] - before[n.Name]; d != sent {
			t.Errorf("%s: %d adverts dropped as unknown_source, want %d (drops %v)", n.Name, d, sent, g.Drops)
		}
		if n == lb2 && g.MasterAddr != "" && netip.MustParseAddr(g.MasterAddr) == src {
			t.Errorf("%s takes the stranger %s for its master", n.Name, src)
		}
		t.Logf("%s: %s, master %s, drops %v", n.Name, g.State, g.MasterAddr, g.Drops)
	}
	body, err := lb1.Scrape()
	if err != nil {
		t.Fatal(err)
	}
	metric := fmt.Sprintf(`havip_vrrp_dropped_total{group=%q,reason="unknown_source"} %d`, group, before[lb1.Name]+sent)
	if !strings.Contains(body, metric+"\n") {
		t.Errorf("metrics of %s lack %s", lb1.Name, metric)
	}
	if !strings.Contains(lb1.Log(), "unknown_source") {
		t.Errorf("%s did not log the drop", lb1.Name)
	}
}

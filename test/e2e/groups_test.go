package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/havip/havip/internal/ctl"
	"github.com/havip/havip/internal/vrrp"
	"github.com/havip/havip/internal/vrrpnet"
	h "github.com/havip/havip/test/e2e/harness"
)

// Many VRRP groups on one interface (issue 8 part 6): an active/active
// site splits its VIPs over groups, each VRID one group, all on eth0.

// manyGroup is one of the groups the tests add next to the harness's
// "front" (VRID 51).
type manyGroup struct {
	name string
	vrid int
	vip  netip.Addr
	lb2  bool // lb2 has the higher priority (the active/active split)
}

// manyGroups are n groups besides front, on VRIDs other than 51, every
// other one won by lb2.
func manyGroups(n int) []manyGroup {
	var out []manyGroup
	for vrid := 1; len(out) < n; vrid++ {
		if vrid == 51 {
			continue
		}
		out = append(out, manyGroup{name: fmt.Sprintf("g%d", vrid), vrid: vrid,
			vip: netip.AddrFrom4([4]byte{198, 19, byte(vrid >> 8), byte(vrid)}), lb2: vrid%2 == 0})
	}
	return out
}

// groupsTOML is gs as [[vrrp]] tables of the harness's site (its advert
// and version); track, when not "", is appended to the table of group
// trackIn.
func groupsTOML(gs []manyGroup, advert time.Duration, trackIn, track string) string {
	var b strings.Builder
	for _, g := range gs {
		fmt.Fprintf(&b, "\n[[vrrp]]\nname = %q\ninterface = \"eth0\"\nvrid = %d\nadvert = %q\nvips = [\"%s/32\"]\n", g.name, g.vrid, advert, g.vip)
		if g.lb2 {
			b.WriteString("priorities = { lb2 = 200 }\n")
		}
		if g.name == trackIn {
			b.WriteString(track)
		}
	}
	return b.String()
}

// masterOf is the node that must be master of g.
func (g manyGroup) masterOf(p *h.Pair) *h.Node {
	if g.lb2 {
		return p.Nodes[1]
	}
	return p.Nodes[0]
}

// socketOf is n's status of the advert socket of iface and family; the
// test fails without one.
func socketOf(t testing.TB, n *h.Node, iface, family string) ctl.SocketStatus {
	t.Helper()
	st, err := n.Status()
	if err != nil {
		t.Fatalf("%s: status: %v", n.Name, err)
	}
	for _, s := range st.Sockets {
		if s.Interface == iface && s.Family == family {
			return s
		}
	}
	t.Fatalf("%s: no advert socket of %s %s in status (sockets %+v)", n.Name, iface, family, st.Sockets)
	return ctl.SocketStatus{}
}

// vrrpSockets counts the raw IPv4 and IPv6 sockets of protocol 112 that
// process pid holds, from /proc/PID/net/raw{,6} (its namespace's) and its
// descriptors.
func vrrpSockets(t testing.TB, pid int) (v4, v6 int) {
	t.Helper()
	inodes := map[string]int{} // socket inode -> 4 or 6
	for _, f := range []struct {
		file string
		fam  int
	}{{"raw", 4}, {"raw6", 6}} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f.file))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(l)
			if len(fs) < 10 {
				continue
			}
			// local_address is ADDR:PORT, the port being the protocol.
			if strings.HasSuffix(fs[1], ":0070") {
				inodes[fs[9]] = f.fam
			}
		}
	}
	fds, err := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		l, err := os.Readlink(fd)
		if err != nil || !strings.HasPrefix(l, "socket:[") {
			continue
		}
		switch inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] {
		case 4:
			v4++
		case 6:
			v6++
		}
	}
	return v4, v6
}

// Twenty groups on eth0, split between the directors: each elects the
// director its priorities say, the daemon holds one VRRP socket for them
// all (not one per group), adverts for a VRID no group runs are counted
// on that socket, and one group's failover moves only its VIP.
func TestManyGroupsOneInterface(t *testing.T) {
	gs := manyGroups(19) // and front: 20 groups
	tracked := gs[6]     // lb1's (odd VRID): its uplink goes down
	if tracked.lb2 {
		t.Fatalf("test bug: %s is lb2's", tracked.name)
	}
	site := h.Site{}
	site.Advert = 100 * time.Millisecond
	site.Extra = groupsTOML(gs, site.Advert, tracked.name, "[[vrrp.track]]\ninterface = \"up0\"\nweight = 0\n")
	p := h.NewPair(t, site)
	for _, n := range p.Nodes {
		addUplink(t, n)
	}
	startNodes(t, p)
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	all := append([]manyGroup{{name: group, vrid: 51, vip: p.VIP}}, gs...)
	var vips []netip.Addr
	for _, g := range all {
		vips = append(vips, g.vip)
	}

	// Each group elects its director, which alone holds its VIP; the
	// other receives its adverts.
	rx := map[string]uint64{}
	for _, g := range all {
		m, b := g.masterOf(p), other(p, g.masterOf(p))
		m.WaitState(g.name, "MASTER", 5*time.Second)
		b.WaitState(g.name, "BACKUP", 5*time.Second)
		h.WaitUntil(t, 5*time.Second, g.name+"'s VIP only on "+m.Name, func() bool { return m.HasVIP(g.vip) && !b.HasVIP(g.vip) })
		rx[g.name] = groupNamed(t, b, g.name).RxAdverts
	}
	time.Sleep(10 * site.Advert)
	for _, g := range all {
		b := other(p, g.masterOf(p))
		st := groupNamed(t, b, g.name)
		if got := st.RxAdverts - rx[g.name]; got < 5 || st.MasterPriority != groupNamed(t, g.masterOf(p), g.name).Priority {
			t.Errorf("%s on %s: %d adverts in %s, hears master priority %d", g.name, b.Name, got, 10*site.Advert, st.MasterPriority)
		}
		if len(st.Drops) != 0 {
			t.Errorf("%s on %s dropped adverts: %v (each group must get only its own VRID's)", g.name, b.Name, st.Drops)
		}
	}

	// One VRRP socket per director for the 20 groups.
	for _, n := range p.Nodes {
		v4, v6 := vrrpSockets(t, n.Pid())
		s := socketOf(t, n, "eth0", "inet")
		t.Logf("%s: %d IPv4 and %d IPv6 VRRP raw sockets for %d groups; status: %+v", n.Name, v4, v6, len(all), s)
		if v4 != 1 || v6 != 0 {
			t.Errorf("%s holds %d IPv4 and %d IPv6 VRRP sockets, want one IPv4 socket for eth0", n.Name, v4, v6)
		}
		if s.Groups != len(all) || s.Open != 1 || s.Opens != 1 || !s.Multicast {
			t.Errorf("%s: eth0's socket: %d groups, %d open, %d opened, multicast %t; want %d, 1, 1, true",
				n.Name, s.Groups, s.Open, s.Opens, s.Multicast, len(all))
		}
	}

	// Adverts for VRIDs no group runs: counted on the interface's socket,
	// seen by no group.
	before := map[string]uint64{}
	for _, n := range p.Nodes {
		before[n.Name] = socketOf(t, n, "eth0", "inet").Drops["vrid"]
	}
	var conn vrrpnet.Conn
	if err := p.Client.Do(func() error {
		var err error
		conn, err = vrrpnet.Listen(vrrpnet.Options{Interface: "eth0", Multicast: true})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const strangers = 6
	for i := range strangers {
		pk := vrrp.Packet{Version: 3, VRID: uint8(200 + i%2), Priority: 254, Interval: site.Advert, Addrs: []netip.Addr{p.VIP}}
		b, err := pk.Marshal(h.ClientAddr, vrrpnet.Group4)
		if err != nil {
			t.Fatal(err)
		}
		if err := conn.WriteTo(b, h.ClientAddr, vrrpnet.Group4); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range p.Nodes {
		h.WaitUntil(t, 2*time.Second, n.Name+" counting the adverts for VRIDs 200 and 201", func() bool {
			return socketOf(t, n, "eth0", "inet").Drops["vrid"]-before[n.Name] >= strangers
		})
		if d := socketOf(t, n, "eth0", "inet").Drops["vrid"] - before[n.Name]; d != strangers {
			t.Errorf("%s: %d adverts for unknown VRIDs counted, want %d", n.Name, d, strangers)
		}
		if st, _ := n.Status(); st != nil {
			for _, g := range st.Groups {
				if len(g.Drops) != 0 {
					t.Errorf("%s: group %s counted drops %v: an advert for another VRID reached it", n.Name, g.Name, g.Drops)
				}
			}
		}
	}

	// One group's failover moves its VIP alone.
	watch := h.WatchVIPs(t, vips, lb1.Host, lb2.Host)
	h.WaitUntil(t, time.Second, "the watch sees every VIP", func() bool {
		for _, g := range all {
			if !slices.Equal(watch.Holders(g.vip), []string{g.masterOf(p).Host.Name}) {
				return false
			}
		}
		return true
	})
	seen := len(watch.Events())
	lb1.Host.SetLinkDown(t, "up0")
	lb1.WaitState(tracked.name, "FAULT", 2*time.Second)
	lb2.WaitState(tracked.name, "MASTER", 2*time.Second)
	h.WaitUntil(t, 2*time.Second, tracked.name+"'s VIP on lb2 only", func() bool {
		return slices.Equal(watch.Holders(tracked.vip), []string{lb2.Host.Name})
	})
	time.Sleep(5 * site.Advert)
	for _, e := range watch.Events()[seen:] {
		if !strings.HasSuffix(e, tracked.vip.String()) {
			t.Errorf("another group's VIP moved: %s", e)
		}
	}
	for _, g := range all {
		if g.name == tracked.name {
			continue
		}
		if m := g.masterOf(p); m.State(g.name) != "MASTER" || other(p, m).State(g.name) != "BACKUP" {
			t.Errorf("%s: %s is %s, %s is %s after %s's failover", g.name, m.Name, m.State(g.name), other(p, m).Name, other(p, m).State(g.name), tracked.name)
		}
	}
	t.Logf("%s failed over: VIP events %v", tracked.name, watch.Events()[seen:])
}

// A reload that adds a group on the interface and removes another: both
// attach to or detach from the interface's socket, which stays the one
// opened at start, and the other groups keep their state and VIPs.
func TestManyGroupsReload(t *testing.T) {
	gs := manyGroups(5)
	site := h.Site{}
	site.Advert = 100 * time.Millisecond
	site.Extra = groupsTOML(gs, site.Advert, "", "")
	p := startPair(t, site)
	all := append([]manyGroup{{name: group, vrid: 51, vip: p.VIP}}, gs...)
	for _, g := range all {
		g.masterOf(p).WaitState(g.name, "MASTER", 5*time.Second)
		other(p, g.masterOf(p)).WaitState(g.name, "BACKUP", 5*time.Second)
	}
	var vips []netip.Addr
	for _, g := range all {
		vips = append(vips, g.vip)
	}
	added := manyGroup{name: "g30", vrid: 30, vip: netip.MustParseAddr("198.19.0.30"), lb2: true}
	removed := gs[1]
	watch := h.WatchVIPs(t, append(slices.Clone(vips), added.vip), p.Nodes[0].Host, p.Nodes[1].Host)
	h.WaitUntil(t, time.Second, "the watch sees every VIP", func() bool {
		return len(watch.Holders(p.VIP)) == 1
	})
	seen := len(watch.Events())
	trans := map[string]uint64{}
	for _, n := range p.Nodes {
		for _, g := range all {
			trans[n.Name+g.name] = groupNamed(t, n, g.name).Transitions
		}
	}
	kept := slices.DeleteFunc(slices.Clone(gs), func(g manyGroup) bool { return g.name == removed.name })
	cfg := strings.Replace(p.Nodes[0].ReadConfig(), site.Extra, groupsTOML(append(kept, added), site.Advert, "", ""), 1)
	for _, n := range p.Nodes {
		n.WriteConfig(cfg)
		if out, code := n.Reload(); code != 0 || !strings.Contains(out, "group g30: added") || !strings.Contains(out, "group "+removed.name+": removed") {
			t.Fatalf("%s: havip reload exit %d:\n%s", n.Name, code, out)
		}
	}
	added.masterOf(p).WaitState(added.name, "MASTER", 5*time.Second)
	other(p, added.masterOf(p)).WaitState(added.name, "BACKUP", 5*time.Second)
	h.WaitUntil(t, 2*time.Second, "g30's VIP on lb2 only, the removed group's VIP nowhere", func() bool {
		return slices.Equal(watch.Holders(added.vip), []string{p.Nodes[1].Host.Name}) && len(watch.Holders(removed.vip)) == 0
	})
	time.Sleep(5 * site.Advert)
	for _, e := range watch.Events()[seen:] {
		if !strings.HasSuffix(e, added.vip.String()) && !strings.HasSuffix(e, removed.vip.String()) {
			t.Errorf("a VIP of a group the reload kept moved: %s", e)
		}
	}
	for _, n := range p.Nodes {
		for _, g := range append([]manyGroup{all[0]}, kept...) {
			if st := groupNamed(t, n, g.name); st.Transitions != trans[n.Name+g.name] {
				t.Errorf("%s: group %s changed state %d times during the reload", n.Name, g.name, st.Transitions-trans[n.Name+g.name])
			}
		}
		s := socketOf(t, n, "eth0", "inet")
		if s.Opens != 1 || s.Open != 1 || s.Groups != len(all) {
			t.Errorf("%s: eth0's socket after the reload: %d opened, %d open, %d groups; want the first one still, with %d groups",
				n.Name, s.Opens, s.Open, s.Groups, len(all))
		}
	}
}

package e2e

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	h "github.com/havip/havip/test/e2e/harness"
)

// udpBound reports whether something in n's namespace holds addr.
func udpBound(t *testing.T, n *h.Node, addr netip.AddrPort) bool {
	t.Helper()
	var bound bool
	if err := n.Host.Do(func() error {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		if errors.Is(err, syscall.EADDRINUSE) {
			bound = true
			return nil
		}
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		t.Fatalf("%s: binding %s: %v", n.Name, addr, err)
	}
	return bound
}

// reloadOK reloads n (through sock when not "": the socket the daemon
// runs, when the file names another) and returns its changes.
func reloadOK(t *testing.T, n *h.Node, sock string) string {
	t.Helper()
	args := []string{"reload", "-c", n.Config}
	if sock != "" {
		args = append(args, "--socket", sock)
	}
	out, code := n.Run(args...)
	if code != 0 {
		t.Fatalf("%s: havip reload: exit %d\n%s", n.Name, code, out)
	}
	t.Logf("%s: havip reload:\n%s", n.Name, out)
	return out
}

// peersAlive waits until each node hears the other on the pair link, at
// the address the site file gives it.
func peersAliveAt(t *testing.T, p *h.Pair, addrs map[string]netip.Addr) {
	t.Helper()
	for _, n := range p.Nodes {
		h.WaitUntil(t, 10*time.Second, n.Name+" hears its peer on the pair link", func() bool {
			st, err := n.Status()
			if err != nil || len(st.Peers) != 1 {
				return false
			}
			peer := st.Peers[0]
			return peer.Alive && peer.Address == addrs[peer.Node].String() && time.Since(peer.LastSeen) < time.Second
		})
	}
}

// Site-level keys a reload applies, each by restarting its component: the
// pair link's port (both nodes, one after the other) and a node's address,
// metrics (to another port, then another address on that port), the
// control socket and the state directory. No group changes state.
func TestReloadSiteKeys(t *testing.T) {
	p := h.NewPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	lb1.Metrics = "127.0.0.1:9110"
	dir1 := t.TempDir()
	lb1.UseSiteKeys(dir1)
	lb2.UseSiteKeys(t.TempDir())
	startNodes(t, p)
	before := map[string]uint64{}
	for _, n := range p.Nodes {
		before[n.Name] = groupNamed(t, n, group).Transitions
	}
	addrs := map[string]netip.Addr{"lb1": h.Addr1, "lb2": h.Addr2}
	peersAliveAt(t, p, addrs)

	// pair_port, lb1 first: the link is down until lb2 follows.
	for _, n := range p.Nodes {
		n.WriteConfig(h.SiteKey(n.ReadConfig(), "pair_port", "7600"))
		if out := reloadOK(t, n, ""); !strings.Contains(out, "pair link: 198.18.0.") || !strings.Contains(out, "port 7519 -> ") {
			t.Errorf("%s: the reload does not name the pair link's new port", n.Name)
		}
		if n == lb1 {
			h.WaitUntil(t, 5*time.Second, "lb1 stops hearing lb2 on the old port", func() bool {
				st, err := lb1.Status()
				return err == nil && !st.Peers[0].Alive
			})
		}
	}
	peersAliveAt(t, p, addrs)
	for i, n := range p.Nodes {
		a := []netip.Addr{h.Addr1, h.Addr2}[i]
		if udpBound(t, n, netip.AddrPortFrom(a, 7519)) || !udpBound(t, n, netip.AddrPortFrom(a, 7600)) {
			t.Errorf("%s: port 7519 bound %v, port 7600 bound %v; want only the new one",
				n.Name, udpBound(t, n, netip.AddrPortFrom(a, 7519)), udpBound(t, n, netip.AddrPortFrom(a, 7600)))
		}
	}

	// lb1's node address, in both files, lb1 first. The adverts come from
	// the new address, the pair link is bound to it.
	addr3 := netip.MustParseAddr("198.18.0.13")
	lb1.Host.AddAddr(t, "eth0", netip.PrefixFrom(addr3, 24))
	for _, n := range p.Nodes {
		n.WriteConfig(strings.Replace(n.ReadConfig(), `address = "198.18.0.11"`, `address = "198.18.0.13"`, 1))
		reloadOK(t, n, "")
	}
	addrs["lb1"] = addr3
	peersAliveAt(t, p, addrs)
	h.WaitUntil(t, 5*time.Second, "lb2 hears adverts from lb1's new address", func() bool {
		g := groupNamed(t, lb2, group)
		return g.MasterAddr == addr3.String()
	})
	if udpBound(t, lb1, netip.AddrPortFrom(h.Addr1, 7600)) {
		t.Errorf("lb1: the pair link still holds its old address")
	}

	// metrics: another port (the old one closes), then another address
	// on that port (the running listener must make way).
	for _, step := range []struct{ to, check, old string }{
		{"127.0.0.1:9120", "127.0.0.1:9120", "127.0.0.1:9110"},
		{"0.0.0.0:9120", "198.18.0.13:9120", ""},
	} {
		lb1.WriteConfig(h.SiteKey(lb1.ReadConfig(), "metrics", strconv.Quote(step.to)))
		if out := reloadOK(t, lb1, ""); !strings.Contains(out, "metrics: ") {
			t.Errorf("the reload does not name the metrics change")
		}
		if _, err := lb1.ScrapeAt(step.check); err != nil {
			t.Errorf("metrics at %s after the move: %v", step.check, err)
		}
		if step.old != "" {
			if _, err := lb1.ScrapeAt(step.old); err == nil {
				t.Errorf("metrics still answer at the old %s", step.old)
			}
		}
	}

	// control_socket: the file now names a socket the daemon does not
	// listen on yet. -c alone cannot reach the daemon (exit 2, nothing
	// changes); --pid, which the unit's ExecReload passes, finds the
	// socket the daemon runs.
	oldSock, newSock := lb1.Sock, filepath.Join(dir1, "moved", "ctl.sock")
	lb1.WriteConfig(h.SiteKey(lb1.ReadConfig(), "control_socket", strconv.Quote(newSock)))
	if out, code := lb1.Run("reload", "-c", lb1.Config); code != 2 || !strings.Contains(out, "not running") {
		t.Errorf("reload -c naming a socket not there yet: exit %d, want 2\n%s", code, out)
	}
	out, code := lb1.Run("reload", "-c", lb1.Config, "--pid", strconv.Itoa(lb1.Pid()))
	if code != 0 || !strings.Contains(out, "control socket: "+oldSock+" -> "+newSock) {
		t.Errorf("reload --pid: exit %d, want the control socket's move\n%s", code, out)
	}
	lb1.Sock = newSock
	if out, code := lb1.Run("status", "-c", lb1.Config); code != 0 || !strings.Contains(out, "MASTER") {
		t.Errorf("havip status -c through the moved socket: exit %d\n%s", code, out)
	}
	if _, err := os.Lstat(oldSock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the old control socket %s is still there: %v", oldSock, err)
	}

	// state_dir.
	newState := filepath.Join(dir1, "state2")
	lb1.WriteConfig(h.SiteKey(lb1.ReadConfig(), "state_dir", strconv.Quote(newState)))
	if out := reloadOK(t, lb1, ""); !strings.Contains(out, "state_dir: "+filepath.Join(dir1, "state")+" -> "+newState) {
		t.Errorf("the reload does not name the state directory's move")
	}
	if fi, err := os.Stat(newState); err != nil || !fi.IsDir() {
		t.Errorf("the new state directory: %v", err)
	}

	for _, n := range p.Nodes {
		g := groupNamed(t, n, group)
		if g.Transitions != before[n.Name] {
			t.Errorf("%s changed state: transitions %d -> %d (now %s)", n.Name, before[n.Name], g.Transitions, g.State)
		}
		st, _ := n.Status()
		if st.LastReload == nil || !st.LastReload.Applied {
			t.Errorf("%s: last reload %+v", n.Name, st.LastReload)
		}
	}
}

// A group added by the same reload that moves the node's address starts
// from the new address: no FAULT ("node address not configured") on the
// way, and its socket is opened before the reload commits.
func TestReloadNodeAddressAndNewGroup(t *testing.T) {
	p := startPair(t, h.Site{})
	lb1, lb2 := p.Nodes[0], p.Nodes[1]
	lb1.Host.AddAddr(t, "eth0", netip.MustParsePrefix("198.18.0.13/24"))
	before := map[string]uint64{}
	for _, n := range p.Nodes {
		before[n.Name] = groupNamed(t, n, group).Transitions
		n.WriteConfig(strings.Replace(n.ReadConfig(), `address = "198.18.0.11"`, `address = "198.18.0.13"`, 1) + secondGroup)
		if out := reloadOK(t, n, ""); !strings.Contains(out, "group second: added") {
			t.Errorf("%s: the reload does not add the group", n.Name)
		}
	}
	lb1.WaitState("second", "MASTER", 5*time.Second)
	lb2.WaitState("second", "BACKUP", time.Second)
	for _, n := range p.Nodes {
		if strings.Contains(n.Log(), "to=FAULT") {
			t.Errorf("%s: a group went to FAULT on the way", n.Name)
		}
		if g := groupNamed(t, n, group); g.Transitions != before[n.Name] {
			t.Errorf("%s: %s changed state: transitions %d -> %d", n.Name, group, before[n.Name], g.Transitions)
		}
	}
	if g := groupNamed(t, lb2, "second"); g.MasterAddr != "198.18.0.13" {
		t.Errorf("lb2 hears the new group's master at %q, want lb1's new address", g.MasterAddr)
	}
}

package e2e

import (
	"net/netip"
	"testing"
	"time"

	h "github.com/havip/havip/test/e2e/harness"
)

// An IPv6 group (VRRPv3 over IPv6, link-local sources, unsolicited NA):
// kill -9 the master and the client's neighbour entry follows the backup.
func TestIPv6KillMaster(t *testing.T) {
	vip := "2001:db8:51::100/64"
	p := h.NewPair(t, h.Site{VIPs: []string{vip}})
	p.Client.AddAddr(t, "eth0", netip.MustParsePrefix("2001:db8:51::50/64"))
	// v3 over IPv6 sends from the link-local address: wait for its DAD.
	for _, n := range p.Nodes {
		h.WaitLinkLocal(t, n.Host, "eth0")
	}
	p.Nodes[0].Start()
	p.Nodes[1].Start()
	p.Nodes[0].WaitState(group, "MASTER", 3*time.Second)
	p.Nodes[1].WaitState(group, "BACKUP", time.Second)
	p.Client.Ping(t, p.VIP)
	if got := p.Client.Neigh(t, p.VIP); got.String() != p.Nodes[0].Host.MAC.String() {
		t.Fatalf("client resolves %s to %s, want lb1 %s", p.VIP, got, p.Nodes[0].Host.MAC)
	}
	st, err := p.Nodes[1].Status()
	if err != nil {
		t.Fatal(err)
	}
	if g := st.Groups[0]; !netip.MustParseAddr(g.MasterAddr).IsLinkLocalUnicast() || len(g.Drops) != 0 {
		t.Fatalf("backup sees master %s (want lb1's link-local), drops %v", g.MasterAddr, g.Drops)
	}
	killTakeover(t, p)
	if err := p.Client.TryPing(p.VIP, 2*time.Second); err != nil {
		t.Fatalf("client cannot reach the IPv6 VIP after failover: %v", err)
	}
}

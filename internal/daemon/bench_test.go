package daemon

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/havip/havip/internal/checks"
	"github.com/havip/havip/internal/conf"
	"github.com/havip/havip/internal/conf/conftest"
	"github.com/havip/havip/internal/track"
)

// BenchmarkReloadLarge times what havip reload does between reading the
// file and handing the table to the IPVS reconciler, for issue 8's site
// of 10,000 virtual servers x 10 real servers with one weight changed:
// load (read, parse, cross checks, this node), plan (the diff against the
// running site) and derive (the table and the groups), every real server
// up. conf.Load of the same file, in the same run, is the baseline; the
// target is the whole under 1 s.
func BenchmarkReloadLarge(b *testing.B) {
	const vss, rss = 10000, 10
	dir := b.TempDir()
	before, after := filepath.Join(dir, "before.toml"), filepath.Join(dir, "after.toml")
	if err := os.WriteFile(before, conftest.Large(vss, rss, -1), 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(after, conftest.Large(vss, rss, vss*rss/2), 0o644); err != nil {
		b.Fatal(err)
	}
	running, err := load(Options{ConfigPath: before, Node: "lb1"})
	if err != nil {
		b.Fatal(err)
	}
	health := map[string]bool{}
	for _, vs := range running.site.VirtualServers {
		for _, rs := range vs.RealServers {
			health[checks.RealServerKey(vs.Name, rs.Address)] = true
		}
	}
	links := map[string]track.LinkState{"eth0": {Name: "eth0", Exists: true, Up: true, Index: 2, MTU: 1500}}
	addrs := map[netip.Addr]track.AddrState{running.node.Address: {Addr: running.node.Address, Present: true, Link: "eth0"}}
	first := derive(inputs{site: running.site, node: running.node, health: health, links: links, addrs: addrs})
	vsDown := map[string]bool{}
	for _, s := range first.table.Services {
		vsDown[s.Name] = s.Down
	}

	var base, loadT, planT, deriveT time.Duration
	for b.Loop() {
		start := time.Now()
		if _, ps, err := conf.Load(after); err != nil || conf.HasErrors(ps) {
			b.Fatal(err, ps)
		}
		base += time.Since(start)

		c := &controller{opts: Options{ConfigPath: after, Node: "lb1"}, site: running.site, target: running.site, node: running.node}
		start = time.Now()
		l, err := load(c.opts)
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		p := c.plan(l)
		t2 := time.Now()
		w := derive(inputs{site: p.effective, node: l.node, health: health, links: links, addrs: addrs, vsDown: vsDown})
		t3 := time.Now()
		loadT, planT, deriveT = loadT+t1.Sub(start), planT+t2.Sub(t1), deriveT+t3.Sub(t2)
		if len(p.lines) != 1 || p.lines[0] != fmt.Sprintf("virtual server vs%d: changed", vss/2) || w.table.Services[vss/2].Dests[0].Weight != 2 {
			b.Fatalf("plan %q, weight %d: want one virtual server changed to weight 2", p.lines, w.table.Services[vss/2].Dests[0].Weight)
		}
	}
	n := time.Duration(b.N)
	total := (loadT + planT + deriveT) / n
	b.Logf("reload of %d virtual servers x %d real servers, one weight changed:", vss, rss)
	b.Logf("  conf.Load alone (baseline): %v", (base / n).Round(time.Millisecond))
	b.Logf("  load %v, plan %v, derive %v", (loadT / n).Round(time.Millisecond), (planT / n).Round(time.Millisecond), (deriveT / n).Round(time.Millisecond))
	b.Logf("  total %v: %.2f x conf.Load; target < 1s: %.2f of it", total.Round(time.Millisecond), float64(total)/float64(base/n), total.Seconds())
}

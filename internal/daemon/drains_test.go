package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/havip/havip/internal/checks"
	"github.com/havip/havip/internal/ipvsync"
	"github.com/havip/havip/internal/pairwire"
)

var (
	rsA = netip.MustParseAddrPort("10.1.0.21:80")
	rsB = netip.MustParseAddrPort("10.1.0.22:80")
	t0  = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
)

func drainsOf(rev uint64, by string, es map[drainKey]drainEntry) *drainSet {
	return &drainSet{rev: rev, changed: t0.Add(time.Duration(rev) * time.Second), by: by, entries: es}
}

func destWeights(w wanted) string {
	var out []string
	for _, d := range w.table.Services[0].Dests {
		out = append(out, fmt.Sprintf("%s=%d", d.Address, d.Weight))
	}
	return strings.Join(out, " ")
}

// Drains are an input of derive: weight 0, or gone with remove; quorum and
// the sorry server do not move; a drain of a real server health already
// took out changes nothing; unknown drains are ignored.
func TestDeriveDrains(t *testing.T) {
	for _, tc := range []struct {
		name   string
		drains map[drainKey]drainEntry
		down   []netip.AddrPort
		want   string
		vsDown bool
	}{
		{name: "none", want: "10.1.0.21:80=1 10.1.0.22:80=1"},
		{name: "weight 0", drains: map[drainKey]drainEntry{{"web", rsA}: {}}, want: "10.1.0.21:80=0 10.1.0.22:80=1"},
		{name: "remove", drains: map[drainKey]drainEntry{{"web", rsB}: {remove: true}}, want: "10.1.0.21:80=1"},
		{name: "both drained: quorum 2 still met", drains: map[drainKey]drainEntry{{"web", rsA}: {}, {"web", rsB}: {}}, want: "10.1.0.21:80=0 10.1.0.22:80=0"},
		{name: "drained and down: the sorry server as without the drain", drains: map[drainKey]drainEntry{{"web", rsA}: {}}, down: []netip.AddrPort{rsB}, want: "10.1.0.99:80=1", vsDown: true},
		{name: "another virtual server's name, or a real server not in the file", drains: map[drainKey]drainEntry{{"other", rsA}: {}, {"web", netip.MustParseAddrPort("10.1.0.23:80")}: {}}, want: "10.1.0.21:80=1 10.1.0.22:80=1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := healthyInputs(t)
			if tc.drains != nil {
				in.drains = drainsOf(1, "lb1", tc.drains)
			}
			for _, d := range tc.down {
				in.health[checks.RealServerKey("web", d)] = false
			}
			w := derive(in)
			if got := destWeights(w); got != tc.want {
				t.Errorf("dests %q, want %q", got, tc.want)
			}
			if w.table.Services[0].Down != tc.vsDown {
				t.Errorf("down %t, want %t", w.table.Services[0].Down, tc.vsDown)
			}
			// The configured backends stay as configured, for status.
			if b := w.table.Services[0].Backends; len(b) != 2 || b[0].Weight != 1 {
				t.Errorf("backends %+v", b)
			}
		})
	}
	// A drained table has another digest, the same on any node deriving it.
	in := healthyInputs(t)
	plain := derive(in).table.Digest()
	in.drains = drainsOf(1, "lb1", map[drainKey]drainEntry{{"web", rsA}: {}})
	d1 := derive(in).table.Digest()
	in.drains = drainsOf(7, "lb2", map[drainKey]drainEntry{{"web", rsA}: {since: t0}})
	if d2 := derive(in).table.Digest(); d1 == plain || d1 != d2 {
		t.Errorf("digests: plain %s drained %s again %s", plain, d1, d2)
	}
}

func TestDrainsStateFile(t *testing.T) {
	dir := t.TempDir()
	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))

	s, err := loadDrains(dir, log)
	if err != nil || s.rev != 0 || len(s.entries) != 0 {
		t.Fatalf("no file: %+v %v", s, err)
	}
	want := emptyDrains().with(drainKey{"web", rsA}, &drainEntry{since: t0, by: "lb1"}, 3, t0, "lb1").
		with(drainKey{"web", rsB}, &drainEntry{remove: true, since: t0, by: "lb2"}, 4, t0.Add(time.Second), "lb2")
	if err := saveDrains(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := loadDrains(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	wj, _ := json.Marshal(want.wire())
	gj, _ := json.Marshal(got.wire())
	if diff := cmp.Diff(string(wj), string(gj)); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if fi, err := os.Stat(filepath.Join(dir, drainsFile)); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("file: %v %v", fi, err)
	}

	for name, content := range map[string]string{
		"empty":         "",
		"garbage":       "{not json",
		"unknown field": `{"version":1,"revision":1,"drains":[],"extra":1}`,
		"wrong version": `{"version":9,"revision":1,"drains":[]}`,
		"incomplete":    `{"version":1,"revision":1,"drains":[{"vs":"web"}]}`,
		"listed twice":  `{"version":1,"revision":1,"drains":[{"vs":"web","real":"10.1.0.21:80"},{"vs":"web","real":"10.1.0.21:80"}]}`,
		"bad address":   `{"version":1,"revision":1,"drains":[{"vs":"web","real":"10.1.0.21"}]}`,
		"too many":      tooMany(),
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, drainsFile)
			if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			logBuf.Reset()
			s, err := loadDrains(dir, log)
			if err != nil || s.rev != 0 || len(s.entries) != 0 {
				t.Errorf("got %+v %v, want an empty set", s, err)
			}
			aside, _ := filepath.Glob(path + ".corrupt-*")
			if len(aside) != 1 {
				t.Errorf("moved aside: %v", aside)
			}
			if !strings.Contains(logBuf.String(), "moved aside") {
				t.Errorf("log: %s", logBuf.String())
			}
		})
	}
}

func tooMany() string {
	w := drainsJSON{Version: drainsVersion, Revision: 1}
	for i := range maxDrains + 1 {
		w.Drains = append(w.Drains, drainJSON{VS: "web", Real: netip.AddrPortFrom(netip.MustParseAddr("10.2.0.1"), uint16(i+1))})
	}
	b, _ := json.Marshal(w)
	return string(b)
}

// The merge rule: the higher revision wins, then the later change, then
// the greater node name; exactly one of two different sets is newer, so
// both nodes pick the same one.
func TestDrainSetNewer(t *testing.T) {
	a := drainsOf(3, "lb1", nil)
	for _, tc := range []struct {
		name string
		b    *drainSet
		bNew bool
	}{
		{"higher revision", &drainSet{rev: 4, changed: t0, by: "lb1"}, true},
		{"lower revision, later time", &drainSet{rev: 2, changed: t0.Add(time.Hour), by: "lb2"}, false},
		{"same revision, later", &drainSet{rev: 3, changed: a.changed.Add(time.Millisecond), by: "lb1"}, true},
		{"same revision and time, greater node", &drainSet{rev: 3, changed: a.changed, by: "lb2"}, true},
		{"same revision and time, smaller node", &drainSet{rev: 3, changed: a.changed, by: "lb0"}, false},
	} {
		if got := tc.b.newer(a); got != tc.bNew {
			t.Errorf("%s: b.newer(a) = %t, want %t", tc.name, got, tc.bNew)
		}
		if got := a.newer(tc.b); got == tc.bNew {
			t.Errorf("%s: a.newer(b) = %t: not antisymmetric", tc.name, got)
		}
	}
	if a.newer(a) {
		t.Errorf("a set is newer than itself")
	}
}

// Two nodes that change their sets while the link is down converge on the
// latest change once they hear each other, whichever hears first; a node
// that lost its file adopts the peer's.
func TestDrainsConverge(t *testing.T) {
	type node struct {
		name   string
		set    *drainSet
		maxRev uint64
	}
	change := func(n *node, k drainKey, e *drainEntry, at time.Time) {
		n.maxRev = max(n.maxRev, n.set.rev) + 1
		n.set = n.set.with(k, e, n.maxRev, at, n.name)
	}
	hear := func(n, from *node) {
		n.maxRev = max(n.maxRev, from.set.rev)
		if from.set.newer(n.set) {
			n.set = from.set
		}
	}
	a, b := &node{name: "lb1", set: emptyDrains()}, &node{name: "lb2", set: emptyDrains()}
	change(a, drainKey{"web", rsA}, &drainEntry{}, t0)
	hear(b, a)
	if b.set != a.set {
		t.Fatalf("b did not adopt a's drain")
	}
	// Partition: a undrains rsA, b drains rsB later; b's is the latest.
	change(a, drainKey{"web", rsA}, nil, t0.Add(time.Second))
	change(b, drainKey{"web", rsB}, &drainEntry{}, t0.Add(2*time.Second))
	hear(a, b)
	hear(b, a)
	if a.set != b.set || len(a.set.entries) != 2 {
		t.Errorf("after the partition: a %v b %v", a.set.wire(), b.set.wire())
	}
	// The next change on either side is above every revision seen.
	change(a, drainKey{"web", rsB}, nil, t0.Add(3*time.Second))
	hear(b, a)
	if b.set != a.set || a.set.rev != 3 {
		t.Errorf("undrain after convergence: rev %d, b %v", a.set.rev, b.set.wire())
	}
	// b lost its state file: an empty set at revision 0 adopts a's.
	b.set = emptyDrains()
	hear(b, a)
	hear(a, b)
	if b.set != a.set {
		t.Errorf("a node without its file did not adopt the peer's set")
	}
}

func TestDrainsPruned(t *testing.T) {
	in := healthyInputs(t)
	s := drainsOf(5, "lb2", map[drainKey]drainEntry{{"web", rsA}: {}, {"web", netip.MustParseAddrPort("10.1.0.23:80")}: {}, {"gone", rsA}: {}})
	n, gone := s.pruned(in.site, 6, t0, "lb1")
	if n == nil || len(n.entries) != 1 || n.rev != 6 || n.by != "lb1" {
		t.Fatalf("pruned: %+v", n)
	}
	if len(gone) != 2 || gone[0].vs != "gone" {
		t.Errorf("gone: %v", gone)
	}
	if len(s.entries) != 3 {
		t.Errorf("pruned changed the original set")
	}
	if n2, _ := n.pruned(in.site, 7, t0, "lb1"); n2 != nil {
		t.Errorf("nothing to prune gave a new set")
	}
}

func TestTableDiff(t *testing.T) {
	in := healthyInputs(t)
	ours := summarizeTable(derive(in).table)
	if d := tableDiff(ours, ours); d != nil {
		t.Errorf("same table: %v", d)
	}
	in.drains = drainsOf(1, "lb1", map[drainKey]drainEntry{{"web", rsA}: {}})
	peer := summarizeTable(derive(in).table)
	got := tableDiff(ours, peer)
	want := []string{"virtual server web real server 10.1.0.21:80: weight 1 here, 0 on the peer"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("weight diff (-want +got):\n%s", diff)
	}
	in.drains = drainsOf(1, "lb1", map[drainKey]drainEntry{{"web", rsA}: {remove: true}})
	got = tableDiff(ours, summarizeTable(derive(in).table))
	if len(got) != 1 || !strings.Contains(got[0], "10.1.0.21:80: only here") {
		t.Errorf("removed: %v", got)
	}
	if got := tableDiff(ours, pairTable{Digest: "x"}); len(got) != 1 || !strings.Contains(got[0], "web: only here") {
		t.Errorf("empty peer: %v", got)
	}
}

// A huge table stays within the pair link's message size: details first,
// then digests only, then the rest marked as left out; the comparison says
// what it could not compare.
func TestSummarizeBounded(t *testing.T) {
	var tab ipvsync.Table
	for i := range 5000 {
		s := ipvsync.Service{Name: fmt.Sprintf("vs%04d", i), Scheduler: "rr",
			Key: ipvsync.ServiceKey{Family: 2, Protocol: 6, Address: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), uint16(i+1))}}
		for j := range 10 {
			s.Dests = append(s.Dests, ipvsync.Dest{Address: netip.AddrPortFrom(netip.MustParseAddr("10.1.0.1"), uint16(j+1)), Weight: 1, Forward: "dr"})
		}
		tab.Services = append(tab.Services, s)
	}
	sum := summarizeTable(tab)
	b, _ := json.Marshal(sum)
	if len(b) > tableBrief+1024 || !sum.Partial {
		t.Fatalf("summary %d bytes, partial %t", len(b), sum.Partial)
	}
	var full, brief int
	for _, s := range sum.Services {
		if s.Brief {
			brief++
		} else {
			full++
		}
	}
	t.Logf("5000 services x 10: %d bytes, %d with details, %d digests only, %d left out", len(b), full, brief, 5000-full-brief)
	if full == 0 || brief == 0 {
		t.Errorf("full %d brief %d", full, brief)
	}
	other := tab
	other.Services = append([]ipvsync.Service(nil), tab.Services...)
	other.Services[0].Dests = append([]ipvsync.Dest(nil), tab.Services[0].Dests...)
	other.Services[0].Dests[0].Weight = 0
	got := tableDiff(sum, summarizeTable(other))
	if len(got) != 1 || !strings.Contains(got[0], "vs0000 real server 10.1.0.1:1: weight 1 here, 0 on the peer") {
		t.Errorf("diff: %v", got)
	}
}

// The controller's side: a drain request is checked against the site,
// saved, and derived; the peer's newer set is adopted only from a trusted,
// live peer; a reload that drops the real server drops its drain.
func TestControllerDrains(t *testing.T) {
	in := healthyInputs(t)
	in.site.StateDir = t.TempDir()
	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	c := newController(Options{}, log, &loaded{site: in.site, node: in.node}, signals{})
	c.drains = emptyDrains()

	reply := func(req drainReq) drainReply { return c.drain(req) }
	for _, bad := range []drainReq{{vs: "nope", real: rsA.String()}, {vs: "web", real: "10.1.0.23:80"}, {vs: "web", real: "10.1.0.21"}} {
		if r := reply(bad); !errors.Is(r.err, errDrainInput) {
			t.Errorf("%+v: %v, want a bad-input error", bad, r.err)
		}
	}
	if r := reply(drainReq{vs: "web", real: rsA.String()}); r.err != nil || c.drains.rev != 1 {
		t.Fatalf("drain: %+v rev %d", r, c.drains.rev)
	}
	if got := destWeights(wanted{table: c.summedTable()}); got != "10.1.0.21:80=0 10.1.0.22:80=1" {
		t.Errorf("derived after the drain: %s", got)
	}
	saved, err := loadDrains(in.site.StateDir, log)
	if err != nil || saved.rev != 1 || len(saved.entries) != 1 {
		t.Errorf("saved: %+v %v", saved, err)
	}
	if r := reply(drainReq{vs: "web", real: rsA.String()}); r.err != nil || !strings.Contains(r.msg, "already drained") || c.drains.rev != 1 {
		t.Errorf("drain twice: %+v rev %d", r, c.drains.rev)
	}

	// The peer's set: revision 5, undrains rsA and drains rsB.
	peer := drainsOf(5, "lb2", map[drainKey]drainEntry{{"web", rsB}: {by: "lb2"}})
	c.adoptDrains(peerView{node: "lb2", alive: true, trusted: false, drains: peer})
	if c.drains.rev != 1 {
		t.Errorf("adopted from an untrusted peer")
	}
	c.adoptDrains(peerView{node: "lb2", alive: true, trusted: true, drains: peer})
	if c.drains != peer {
		t.Fatalf("did not adopt the trusted peer's newer set")
	}
	if got := destWeights(wanted{table: c.summedTable()}); got != "10.1.0.21:80=1 10.1.0.22:80=0" {
		t.Errorf("derived after adopting: %s", got)
	}
	if !strings.Contains(logBuf.String(), "adopted from the peer") {
		t.Errorf("adoption not logged:\n%s", logBuf.String())
	}
	// An older set is not adopted; our next change is above all seen.
	c.adoptDrains(peerView{node: "lb2", alive: true, trusted: true, drains: drainsOf(4, "lb2", nil)})
	if c.drains != peer {
		t.Errorf("adopted an older set")
	}
	if r := reply(drainReq{vs: "web", real: rsB.String(), undo: true}); r.err != nil || c.drains.rev != 6 {
		t.Errorf("undrain: %+v rev %d, want 6", r, c.drains.rev)
	}

	// A reload without rsA drops its drain and says so.
	reply(drainReq{vs: "web", real: rsA.String(), remove: true})
	src := strings.Replace(deriveSite, "[[virtual_server.real_server]]\naddress = \"10.1.0.21:80\"\n", "", 1)
	src = strings.Replace(src, "quorum = 2", "quorum = 1", 1)
	c.site = parseSite(t, src)
	c.site.StateDir = in.site.StateDir
	c.pruneDrains("reload")
	if len(c.drains.entries) != 0 || c.drains.rev != 8 || !strings.Contains(logBuf.String(), "drain dropped: the real server is no longer in the site file") {
		t.Errorf("after the reload: %+v\n%s", c.drains.wire(), logBuf.String())
	}
	if saved, _ := loadDrains(in.site.StateDir, log); saved.rev != 8 {
		t.Errorf("the pruned set was not saved: rev %d", saved.rev)
	}
}

func (c *controller) summedTable() ipvsync.Table { return *c.table }

// The largest drain set and a huge table fit in one pair-link message.
func TestPairMsgBounded(t *testing.T) {
	d := emptyDrains()
	long := strings.Repeat("v", 40)
	for i := range maxDrains {
		k := drainKey{fmt.Sprintf("%s%03d", long, i), netip.AddrPortFrom(netip.MustParseAddr("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"), uint16(60000+i))}
		d = d.with(k, &drainEntry{remove: true, since: t0, by: "director-with-a-long-name"}, uint64(i+1), t0, "director-with-a-long-name")
	}
	var tab ipvsync.Table
	for i := range 2000 {
		s := ipvsync.Service{Name: fmt.Sprintf("%s%04d", long, i), Scheduler: "wlc",
			Key: ipvsync.ServiceKey{Family: 10, Protocol: 6, Address: netip.AddrPortFrom(netip.MustParseAddr("2001:db8::1"), uint16(i+1))}}
		for j := range 20 {
			s.Dests = append(s.Dests, ipvsync.Dest{Address: netip.AddrPortFrom(netip.MustParseAddr("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"), uint16(j+1)), Weight: 100, Forward: "tun"})
		}
		tab.Services = append(tab.Services, s)
	}
	sum := summarizeTable(tab)
	groups := map[string]pairGroupMsg{}
	for i := range 8 {
		groups[fmt.Sprintf("group%d", i)] = pairGroupMsg{Cfg: []netip.Addr{netip.MustParseAddr("2001:db8::100")}, Adv: []netip.Addr{netip.MustParseAddr("2001:db8::100")}, Key: "eth0 vrid 51 v3 multicast inet6"}
	}
	b, err := json.Marshal(pairMsg{Site: "site", Node: "director-with-a-long-name", Seq: 1 << 40, Rev: "0123456789ab", Groups: groups, Drains: d.wire(), Table: &sum})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("largest message: %d bytes (cap %d)", len(b), pairwire.MaxFrame)
	if len(b) > pairwire.MaxFrame-100 { // IPv4/UDP headers
		t.Errorf("a pair message of %d bytes exceeds the cap %d", len(b), pairwire.MaxFrame)
	}
}

package conf

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// nested writes each form of nesting n levels deep.
var nested = []struct {
	form  string
	text  func(n int) string
	depth func(n int) int // of the deepest path
}{
	{"arrays", func(n int) string { return "a = " + strings.Repeat("[", n) + "1" + strings.Repeat("]", n) + "\n" },
		func(n int) int { return n + 1 }},
	{"inline tables", func(n int) string { return "a = " + strings.Repeat("{b = ", n) + "1" + strings.Repeat("}", n) + "\n" },
		func(n int) int { return n + 1 }},
	{"dotted keys", func(n int) string { return strings.Repeat("a.", n-1) + "a = 1\n" },
		func(n int) int { return n }},
	{"table headers", func(n int) string { return "[" + strings.Repeat("a.", n-1) + "a]\n" },
		func(n int) int { return n }},
}

// TestNestingCap feeds each form of nesting 30,000 deep: the file is
// refused where the nesting passes 10 levels, before it is decoded, and
// Parse stays small. (It once built every key path as a string, which
// for 30,000 levels took 2 GB.)
func TestNestingCap(t *testing.T) {
	const tooDeep = "nested more than 10 levels deep; a site file needs 5 at most (vrrp[0].track[0].weight)"
	wants := map[string]string{
		"arrays":        "t.toml:1:15: " + tooDeep,
		"inline tables": "t.toml:1:51: " + tooDeep,
		"dotted keys":   "t.toml:1:1: " + tooDeep,
		"table headers": "t.toml:1:1: " + tooDeep,
	}
	for _, tt := range nested {
		t.Run(tt.form, func(t *testing.T) {
			data := []byte(tt.text(30000))
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, ps := parseT("t.toml", data)
			runtime.ReadMemStats(&after)
			if diff := cmp.Diff([]string{wants[tt.form]}, strs(ps)); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
				t.Errorf("Parse of %d bytes allocated %d MB", len(data), alloc>>20)
			}
		})
	}
}

// TestNestingCapBoundary: 10 levels pass (to be refused for what they
// are, an unknown key), 11 do not.
func TestNestingCapBoundary(t *testing.T) {
	for _, tt := range nested {
		for n := 1; tt.depth(n) <= 11; n++ {
			_, ps := parseT("t.toml", []byte(tt.text(n)))
			refused := len(ps) == 1 && strings.HasPrefix(ps[0].Msg, "nested more than")
			if want := tt.depth(n) > maxDepth; refused != want {
				t.Errorf("%s %d deep: refused %v, want %v (%v)", tt.form, tt.depth(n), refused, want, ps)
			}
		}
	}
}

func TestKeyPathCap(t *testing.T) {
	long := strings.Repeat("k", 253) // the longest hostname
	tests := []struct {
		name, text string
		want       []string
	}{
		{"a node name as long as a hostname", strings.ReplaceAll(head, "lb2", long) + group + `priorities = { "` + long + `" = 90 }` + "\n", nil},
		{"a long table name", "[" + strings.Repeat("k", 300) + "." + strings.Repeat("k", 300) + "]\nx = 1\n", []string{
			"t.toml:1:1: key path longer than 512 bytes, with the names of the tables it is in",
		}},
		{"a long key in a table", "[a]\n" + strings.Repeat("k", 511) + " = 1\n", []string{
			"t.toml:2:1: key path longer than 512 bytes, with the names of the tables it is in",
		}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, problems("t.toml", tt.text), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, diff)
		}
	}
}

func TestSizeCap(t *testing.T) {
	comment := func(n int) []byte { return []byte("#" + strings.Repeat("x", n-2) + "\n") }
	if _, ps := parseT("t.toml", comment(MaxSize)); len(ps) == 0 || strings.Contains(ps[0].Msg, "limit") {
		t.Errorf("a file of exactly 16 MiB: %v", ps)
	}
	_, ps := parseT("t.toml", comment(MaxSize+1))
	if diff := cmp.Diff([]string{"t.toml:1: site file is 16777217 bytes; the limit is 16 MiB"}, strs(ps)); diff != "" {
		t.Errorf("Parse (-want +got):\n%s", diff)
	}

	path := filepath.Join(t.TempDir(), "big.toml")
	if err := os.WriteFile(path, comment(20<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	s, ps, err := loadT(path)
	if diff := cmp.Diff([]string{path + ":1: site file is 20971520 bytes; the limit is 16 MiB"}, strs(ps)); diff != "" || s != nil || err != nil {
		t.Errorf("Load = %v, %v (-want +got):\n%s", s, err, diff)
	}
}

// TestProblemCap: 100 problems, then one line that counts the rest, at
// the first of them.
func TestProblemCap(t *testing.T) {
	var b strings.Builder
	b.WriteString(head)
	for i := range 150 {
		fmt.Fprintf(&b, "[x%d]\n", i) // unknown keys at lines 10..159
	}
	// The same two lines as head's, with a pair key: its warning would count.
	text := strings.Replace(b.String(), "[site]\nname = \"t\"\n", "site = { name = \"t\", pair_key = \"/etc/havip/pair.key\" }\n#\n", 1)
	ps := problems("t.toml", text)
	if len(ps) != 101 || ps[99] != "t.toml:109:1: unknown key x99" || ps[100] != "t.toml:110: ... and 50 more problems" {
		t.Errorf("got %d problems, ending %q", len(ps), ps[max(0, len(ps)-2):])
	}

	warn := func(line int) Problem { return Problem{File: "f", Line: line, Msg: "w", Warning: true} }
	many := make([]Problem, 103)
	for i := range many {
		many[i] = warn(i + 1)
	}
	if got := capProblems(many); len(got) != 101 || got[100] != (Problem{File: "f", Line: 101, Msg: "... and 3 more problems", Warning: true}) {
		t.Errorf("only warnings past 100: %+v", got[100:])
	}
	many[102].Warning = false
	if got := capProblems(many); !HasErrors(got) {
		t.Errorf("an error past 100 must keep the capped list an error: %+v", got[100:])
	}
}

// manyVIPs decodes, as Parse would, a site with one group of n distinct
// VIPs (too many for one file of 16 MiB, so it bypasses the text) and a
// second group that repeats the first VIP; the last VIP of the first
// group repeats one too.
func manyVIPs(n int) (*Site, []Problem) {
	vips := make([]any, n+1)
	for i := range n {
		vips[i] = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String() + "/8"
	}
	vips[0] = "11.0.0.1/8"
	vips[n] = vips[1]
	group := func(name string, vrid int64, vips []any) map[string]any {
		return map[string]any{"name": name, "interface": "eth0", "vrid": vrid, "vips": vips}
	}
	p := &parser{file: "x", ix: newPositions(0)}
	s := p.site(p.newTable("", 0, pos{line: 1}, map[string]any{
		"site": map[string]any{"name": "t", "pair_key": "/etc/havip/pair.key"},
		"node": []map[string]any{{"name": "lb1", "address": "192.168.0.1", "priority": int64(150)}, {"name": "lb2", "address": "192.168.0.2"}},
		"vrrp": []map[string]any{group("big", 1, vips), group("other", 2, []any{vips[1]})},
	}))
	return s, p.probs
}

// TestManyVIPs: 200,000 VIPs in one group are one problem, not one a VIP,
// and finding the repeats among them is linear.
func TestManyVIPs(t *testing.T) {
	_, ps := manyVIPs(200000)
	want := []string{
		"x:1: vrrp[0].vips: 200001 VIPs are more than the 255 one advert carries; split them across groups",
		"x:1: vrrp[0].vips[200000]: VIP 10.0.0.1 is listed twice (also at line 1)",
		"x:1: vrrp[1].vips[0]: VIP 10.0.0.1 is also in vrrp group \"big\" (line 1)",
	}
	if diff := cmp.Diff(want, strs(ps)); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
}

func BenchmarkManyVIPs(b *testing.B) {
	for b.Loop() {
		manyVIPs(200000)
	}
}

// TestNodesTimesGroups: what every group needs from the nodes is
// computed once, so thousands of nodes and groups cost their sum, and a
// problem of the nodes is reported once, not once a group.
func TestNodesTimesGroups(t *testing.T) {
	const n = 4000
	var b strings.Builder
	b.WriteString("node = [\n") // node i at line i+2
	for i := range n {
		fmt.Fprintf(&b, "{ name = \"n%d\", address = \"10.0.%d.%d\", link_local = \"fe80::%x\" },\n", i, i>>8, i&255, i+1)
	}
	b.WriteString("]\nvrrp = [\n")
	for i := range n {
		fmt.Fprintf(&b, "{ name = \"g%d\", interface = \"e%d\", vrid = %d, vips = [\"2001:db8::%x/64\"], unicast = true, sync_group = \"s\" },\n",
			i, i/255, i%255+1, i+1)
	}
	b.WriteString("]\n[site]\nname = \"t\"\npair_key = \"/etc/havip/pair.key\"\n")
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	ps := problems("t.toml", b.String())
	runtime.ReadMemStats(&after)
	// n-1 equal priorities (nodes), n unicast families (groups).
	if len(ps) != 101 || ps[0] != "t.toml:3:1: warning: node[1].priority: nodes n0 and n1 both have priority 100; in a vrrp group that overrides neither, the higher address wins every election" ||
		ps[100] != fmt.Sprintf("t.toml:%d: ... and %d more problems", 101+2, 2*n-1-100) {
		t.Errorf("got %d problems: %q ... %q", len(ps), ps[:1], ps[max(0, len(ps)-1):])
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 256<<20 {
		t.Errorf("Parse of %d bytes allocated %d MB", b.Len(), alloc>>20)
	}
}

func strs(ps []Problem) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

// TestLoadNotRegular: a site file that is a FIFO (whose open would block
// until a writer comes), a device or a directory is refused at once,
// naming the file; a reload reads it on the daemon's controller, which
// must never hang on it.
func TestLoadNotRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.toml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{fifo, "/dev/zero", dir} {
		done := make(chan error, 1)
		go func() {
			_, _, err := loadT(path)
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("loadT(%s) = %v, want an error naming the file, not a regular file", path, err)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("loadT(%s) still blocks after 2 s", path)
		}
	}
}

package conf

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/havip/havip/internal/conf/conftest"
)

// samePlain fails t when decodePlain accepts data and the full decoder
// either refuses it or decodes it to something else, or scan indexes it
// otherwise; it says whether decodePlain accepted it.
func samePlain(t *testing.T, data []byte) bool {
	t.Helper()
	got, ix, ok := decodePlain(data)
	if !ok {
		return false
	}
	x := scan(data)
	if x.refused != "" {
		t.Fatalf("decodePlain accepted what scan refuses (%s):\n%s", x.refused, data)
	}
	if diff := cmp.Diff(x.ix.paths(), ix.paths(), cmp.AllowUnexported(pos{})); diff != "" {
		t.Fatalf("decodePlain's index (+) and scan's (-) differ:\n%s\nin:\n%s", diff, data)
	}
	var want map[string]any
	if _, err := toml.Decode(string(data), &want); err != nil {
		t.Fatalf("decodePlain accepted what the TOML decoder refuses (%v):\n%s", err, data)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("decodePlain (+) and the TOML decoder (-) differ:\n%s\nin:\n%s", diff, data)
	}
	return true
}

// plainFiles are the files decodePlain must read, by name: the examples
// havip ships, the file of many problems in testdata and a large site.
func plainFiles(t *testing.T) map[string][]byte {
	// 1,200 virtual servers: enough to be built by several workers.
	files := map[string][]byte{"the large site": conftest.Large(1200, 3, 7)}
	for _, path := range []string{
		filepath.Join("..", "..", "examples", "havip.toml"),
		filepath.Join("..", "..", "examples", "minimal.toml"),
		filepath.Join("..", "..", "examples", "dr.toml"),
		filepath.Join("..", "..", "examples", "tun.toml"),
		filepath.Join("..", "..", "examples", "nat.toml"),
		filepath.Join("..", "..", "packaging", "havip.toml"),
		filepath.Join("testdata", "broken.toml"),
	} {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		files[path] = data
	}
	return files
}

// plainTexts are in decodePlain's subset.
var plainTexts = []string{
	"",
	"# only a comment",
	"a = 1\r\nb = -9223372036854775808\nc = +0\nd = -0\ne = 9223372036854775807",
	"a = 0x1F\nb = 0o17\nc = 0b101\nd = 1_000\ne = -9_223_372_036_854_775_808\nf = 0xdead_BEEF\ng = 0x7FFFFFFFFFFFFFFF\nh = [0, 0x0, 0o0, 0b0]\n",
	"s = \"q\\\" b\\\\ n\\n t\\t r\\r b\\b f\\f\"\nl = 'c:\\x\\y'\n\"k.q\" = 1\n'l k' = 2\n",
	"a = [ ]\nb = [1, \"x\", true, [false], {c = 1}, ]\nc = [\n  1, # one\n  2\n]\n",
	"t = {}\nu = { a = 1, b = { c = [2] } }\n",
	"[a]\n[a.b]\nx = 1\n[a.c]\n[[d]]\n[d.e]\n[[d]]\n[[d.f]]\n[[d.f]]\ny = 2\n[ g . \"h\" ]\t# c\n",
	"[[vrrp]]\npriorities = { lb2 = 200 }\n[[vrrp.track]]\nweight = -10\n[[vrrp]]\n",
	"real_server = [{ address = \"10.0.0.5:80\", weight = 2 }, { address = \"10.0.0.6:80\" }]\n",
	"# Größe, 東京\na = \"é\\tü\"\nb = 'ß\\'\n\"c€\" = 1\n",
	"a.b = 1\n a . c . d = 2\na.\"e f\".g = [3]\n[t]\nx.y = 1\nz = { p.q = 1, p.r = { s = 2 } }\n[[u]]\nv.w = 1\n[[u]]\nv.w = 2\n",
}

// otherTexts are valid TOML outside decodePlain's subset, and invalid TOML.
var otherTexts = []string{
	"a = 1.5", "a = 1e3", "a = 01", "a = 1979-05-27", "a = 0x", "a = 0x_1", "a = 0x1_", "a = 1__0",
	"a = _1", "a = 1_", "a = +0x1", "a = -0b1", "a = 0X1", "a = 0o8", "a = 0b2", "a = 0x8000000000000000", "a = 0_1",
	"a = 00x1", "a = 0x1g", "a = 1_a", "a = 0xffffffffffffffffff", "a = 0o1.5",
	"a = inf", "a = nan", "a = \"\"\"x\"\"\"", "a = '''x'''", "a = \"\\u00e9\"", "é = 1", "a = \"\xff\"", "# \xc3",
	"a = \"\xef\xbf\xbd\"", "a = '\xe9'", "\"\" = 1", "a = { b = 1, }", "a = {\nb = 1 }", "a = 1\rb = 2", "[a.b]\n[a]",
	"[a]\n[a]", "[[a]]\n[a]", "[a]\n[[a]]", "a = 1\n[a]", "a = [{}]\n[[a]]", "a = {}\n[a.b]",
	"a = 1\na = 2", "a = { b = 1, b = 2 }", "a = 9223372036854775808", "a = -9223372036854775809",
	"a = 99999999999999999999", "a = truex", "a = 1x", "a = \"x\" y", "[a] b = 1", "[ [a] ]",
	"[[a] ]", "a = [1,,2]", "a = [,]", "a = \"x", "a = 'x\n'", "a = \"\\x\"", "a =", "= 1",
	"a.b = 1\na = 2", "a = 1\na.b = 2", "a = {}\na.b = 1", "a.b = 1\na.b = 2", "a.b = 1\n[a]",
	"a.b = 1\n[a.b.c]", "a.b = 1\n[a.c]", "a = { b = 1, b.c = 2 }", "a = { b = {}, b.c = 2 }", "a.b = {}\na.b.c = 1",
	"a. = 1", "a.\"\" = 1",
	"a = \"\x01\"", "a = \"\x7f\"", "# \x00", "a = 1 b = 2", "[]", "[a.]", "a = -", "a = +",
	"[a.b.c.d.e.f.g.h.i.j.k]", "a = [[[[[[[[[[1]]]]]]]]]]", "[" + strings.Repeat("k", 300) + "]\n'" + strings.Repeat("q", 300) + "' = 1\n",
}

// TestPlainDecode: the files havip ships and the large site are plain, and
// decode as the full decoder decodes them; what is outside the subset is
// left to it, valid or not.
func TestPlainDecode(t *testing.T) {
	for name, data := range plainFiles(t) {
		if !samePlain(t, data) {
			t.Errorf("%s: not decoded as plain", name)
		}
	}
	for _, s := range plainTexts {
		if !samePlain(t, []byte(s)) {
			t.Errorf("not decoded as plain:\n%s", s)
		}
	}
	for _, s := range otherTexts {
		if samePlain(t, []byte(s)) {
			t.Errorf("decoded as plain: %q", s)
		}
	}
}

// TestPlainSameSite: a file decodePlain reads gives the same site and the
// same problems, at the same places, as through the full decoder: the
// examples, testdata, the large site, and every problem case that is plain
// TOML.
func TestPlainSameSite(t *testing.T) {
	type file struct {
		name  string
		data  []byte
		plain bool // must be read by decodePlain
	}
	var files []file
	for name, data := range plainFiles(t) {
		files = append(files, file{name, data, true})
	}
	for _, c := range problemCases {
		files = append(files, file{c.name, []byte(c.text), false})
	}
	plain := 0
	for _, f := range files {
		name, data := f.name, f.data
		raw, ix, ok := decodePlain(data)
		if !ok {
			if f.plain {
				t.Errorf("%s: not decoded as plain", name)
			}
			continue
		}
		plain++
		s1, ps1 := build("t.toml", data, raw, ix, false)
		raw, ix, bad := decodeTOML("t.toml", data)
		if bad != nil {
			t.Fatalf("%s: %v", name, bad)
		}
		s2, ps2 := build("t.toml", data, raw, ix, false)
		if diff := cmp.Diff(strs(ps2), strs(ps1)); diff != "" {
			t.Errorf("%s: problems, full decoder (-) and plain (+):\n%s", name, diff)
		}
		if diff := cmp.Diff(s2, s1, cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{}, netip.Prefix{})); diff != "" {
			t.Errorf("%s: site, full decoder (-) and plain (+):\n%s", name, diff)
		}
	}
	t.Logf("%d of %d files plain", plain, len(files))
	if plain < len(files)/2 {
		t.Errorf("only %d of %d files plain", plain, len(files))
	}
}

// FuzzPlainDecode holds decodePlain to the full decoder and scan, faster
// than FuzzParse does (which also builds the site).
func FuzzPlainDecode(f *testing.F) {
	for _, s := range slices.Concat(plainTexts, otherTexts) {
		f.Add([]byte(s))
	}
	for _, c := range problemCases {
		f.Add([]byte(c.text))
	}
	f.Fuzz(func(t *testing.T, data []byte) { samePlain(t, data) })
}

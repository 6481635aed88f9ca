package conf

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzParse checks that Parse never panics, that it returns a Site exactly
// when there is no error, that every problem points inside the file, and
// that the same input always gives the same problems in the same order,
// and that what decodePlain accepts the TOML decoder decodes the same.
func FuzzParse(f *testing.F) {
	for _, path := range []string{
		filepath.Join("..", "..", "examples", "havip.toml"),
		filepath.Join("..", "..", "examples", "minimal.toml"),
		filepath.Join("testdata", "broken.toml"),
	} {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, c := range problemCases {
		f.Add([]byte(c.text))
	}
	for _, s := range []string{
		"",
		"[[",
		"a = [",
		"[site]\nname = \"x\"\n[[node]]\n",
		"x = '''\n[[y]]'''\n[[z]]\nq = {a.b = [1, {c = '}'}]}\n",
		"\"quoted.key\" = 1\n'lit' = \"\\\"\"\n[\"a\".b]\nc = 1979-05-27 07:32:00Z\n",
		"vrrp = [{ name = \"g\", track = [{ weight = 1 }] }]\n[site]\n",
		"[[a.b]]\n[a.b.c.d.e]\nf.g.h.i.j = [[{k = 1}]]\n",
		"[[vrrp]]\nsync_group = \"s\"\n[[vrrp]]\nsync_group = \"s\"\npriorities = { a = 1 }\n",
		"[" + strings.Repeat("k", 300) + "]\n'" + strings.Repeat("q", 300) + "' = 1\n",
	} {
		f.Add([]byte(s))
	}
	for _, n := range nested {
		f.Add([]byte(n.text(12)))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		indexPositions(data) // must not panic on text the decoder rejects either
		samePlain(t, data)
		s, ps := Parse("fuzz.toml", data)
		if (s != nil) == HasErrors(ps) {
			t.Fatalf("site %v with problems %v", s != nil, ps)
		}
		lines := bytes.Count(data, []byte("\n")) + 1
		for _, p := range ps {
			if p.File != "fuzz.toml" || p.Line < 1 || p.Line > lines || p.Col < 0 || p.Msg == "" {
				t.Fatalf("problem outside the file (%d lines): %+v", lines, p)
			}
		}
		_, again := Parse("fuzz.toml", data)
		if diff := cmp.Diff(ps, again); diff != "" {
			t.Fatalf("problems differ between two runs (-first +second):\n%s", diff)
		}
	})
}

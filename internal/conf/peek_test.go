package conf

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/BurntSushi/toml"
)

var peekCases = []struct {
	name   string
	broken bool // the TOML does not parse: the line scan answers
	text   string
	want   string // "" = not found
}{
	{"valid", false, "[site]\nname = \"x\"\ncontrol_socket = \"/run/a.sock\"\n", "/run/a.sock"},
	{"none named", false, "[site]\nname = \"x\"\n", ""},
	{"no [site]", false, "[[node]]\nname = \"a\"\n", ""},
	{"invalid inside", false, "[site]\nbogus = 1\ncontrol_socket = \"/run/b.sock\"\n[[node]]\npriority = 300\n", "/run/b.sock"},
	{"not a string", false, "[site]\ncontrol_socket = 7\n", ""},
	{"relative", false, "[site]\ncontrol_socket = \"run/x\"\n", ""},
	{"error after it", true, "[site]\ncontrol_socket = \"/run/c.sock\" # mine\n[[node]]\nname = \n", "/run/c.sock"},
	{"error before it, spaced header", true, "[[vrrp]\nx = [\n[ site ]  # the site\n  control_socket=\"/run/d.sock\"\n", "/run/d.sock"},
	{"literal string", true, "[site]\ncontrol_socket = '/run/e\\.sock'\nname = \"unterminated\n", "/run/e\\.sock"},
	{"escapes", true, "[site]\ncontrol_socket = \"/run/f\\\"g\\u0041.sock\"\n=\n", "/run/f\"gA.sock"},
	{"quoted key", true, "[site]\n\"control_socket\" = \"/run/h.sock\"\n=\n", "/run/h.sock"},
	{"in another table", true, "[site]\nname = \"x\"\n[[node]]\ncontrol_socket = \"/run/i.sock\"\n=\n", ""},
	{"at top level", true, "control_socket = \"/run/j.sock\"\n[site]\n=\n", ""},
	{"array of site tables", true, "[[site]]\ncontrol_socket = \"/run/k.sock\"\n=\n", ""},
	{"unterminated value", true, "[site]\ncontrol_socket = \"/run/l.sock\n", ""},
	{"multi-line string", true, "[site]\ncontrol_socket = \"\"\"\n/run/m.sock\"\"\"\n=\n", ""},
}

func TestPeekControlSocket(t *testing.T) {
	for _, tc := range peekCases {
		var raw map[string]any
		if _, err := toml.Decode(tc.text, &raw); (err != nil) != tc.broken {
			t.Errorf("%s: the case is meant to be broken=%v; decoding says %v", tc.name, tc.broken, err)
		}
		got, ok := PeekControlSocket([]byte(tc.text))
		if ok != (tc.want != "") || ok && got != tc.want {
			t.Errorf("%s: got %q, %v; want %q", tc.name, got, ok, tc.want)
		}
	}
}

// FuzzPeekControlSocket checks that PeekControlSocket never panics and
// agrees with Parse on every valid file.
func FuzzPeekControlSocket(f *testing.F) {
	for _, tc := range peekCases {
		f.Add([]byte(tc.text))
	}
	for _, name := range []string{"havip.toml", "minimal.toml"} {
		data, err := os.ReadFile(filepath.Join("..", "..", "examples", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, ok := PeekControlSocket(data)
		if s, _ := Parse("fuzz.toml", data); s != nil {
			if !ok {
				got = DefaultControlSocket
			}
			if got != s.ControlSocket {
				t.Fatalf("peek %q, Parse %q", got, s.ControlSocket)
			}
		}
	})
}

package importka

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/havip/havip/internal/siteout"
)

// writeFiles writes name -> content under a new directory and returns
// its path.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// dump writes statements one a line as "LINE: words" with their blocks
// indented, file names relative to dir.
func dump(dir string, ss []*Stmt, depth int, b *strings.Builder) {
	for _, s := range ss {
		rel, _ := filepath.Rel(dir, s.File)
		fmt.Fprintf(b, "%s%s:%d %q", strings.Repeat("  ", depth), rel, s.Line, s.Words)
		if s.HasBlock {
			b.WriteString(" {")
		}
		b.WriteString("\n")
		dump(dir, s.Block, depth+1, b)
	}
}

func TestParseSyntax(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"keepalived.conf": `! bang comment
# hash comment
$PRIO=150
$BLOCK= \
  weight 2 \
  TCP_CHECK { connect_timeout 1 }
global_defs {   # a comment after a brace
  router_id "lb one"  ! and after a value
}
vrrp_instance VI_1
{
  priority $PRIO
  virtual_ipaddress { 10.0.0.1/24 dev eth0 }
  virtual_router_id \
    51
  notify_master "/bin/echo \"quoted\" # not a comment"
}
virtual_server 10.0.0.1 80 {
  real_server 10.0.0.11 80 {
    $BLOCK
  }
  include rs/*.conf
}
`,
		"rs/a.conf": "real_server 10.0.0.12 80 {\n  weight 1\n}\n",
		"rs/b.conf": "real_server 10.0.0.13 80 { weight 3 }\n",
	})
	stmts, notes, err := Parse(filepath.Join(dir, "keepalived.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if len(notes) != 0 {
		t.Errorf("notes: %v", notes)
	}
	var b strings.Builder
	dump(dir, stmts, 0, &b)
	want := `keepalived.conf:7 ["global_defs"] {
  keepalived.conf:8 ["router_id" "lb one"]
keepalived.conf:10 ["vrrp_instance" "VI_1"] {
  keepalived.conf:12 ["priority" "150"]
  keepalived.conf:13 ["virtual_ipaddress"] {
    keepalived.conf:13 ["10.0.0.1/24" "dev" "eth0"]
  keepalived.conf:14 ["virtual_router_id" "51"]
  keepalived.conf:16 ["notify_master" "/bin/echo \"quoted\" # not a comment"]
keepalived.conf:18 ["virtual_server" "10.0.0.1" "80"] {
  keepalived.conf:19 ["real_server" "10.0.0.11" "80"] {
    keepalived.conf:20 ["weight" "2"]
    keepalived.conf:20 ["TCP_CHECK"] {
      keepalived.conf:20 ["connect_timeout" "1"]
  rs/a.conf:1 ["real_server" "10.0.0.12" "80"] {
    rs/a.conf:2 ["weight" "1"]
  rs/b.conf:1 ["real_server" "10.0.0.13" "80"] {
    rs/b.conf:1 ["weight" "3"]
`
	if b.String() != want {
		t.Errorf("parsed:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestParseProblems(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  []string // note strings, the directory cut off
	}{
		{"unclosed", map[string]string{"k.conf": "global_defs {\n  router_id a\nvrrp_instance X {\n}\n"},
			[]string{"k.conf:1: unsafe: this { is never closed; what follows it up to the end of the configuration is read as inside it"}},
		{"stray close", map[string]string{"k.conf": "global_defs {\n}\n}\n"},
			[]string{"k.conf:3: unsafe: a } that closes no block"}},
		{"open quote", map[string]string{"k.conf": "global_defs {\n  router_id \"a\n}\n"},
			[]string{"k.conf:2: unsafe: a quoted string is not closed on its line"}},
		{"cycle", map[string]string{"k.conf": "include other.conf\n", "other.conf": "include k.conf\n"},
			[]string{"other.conf:1: unsafe: include k.conf: DIR/k.conf includes itself (a cycle); not read again"}},
		{"no match", map[string]string{"k.conf": "include conf.d/*.conf\n"},
			[]string{"k.conf:1: not converted: include conf.d/*.conf matches no file"}},
		{"doubling parameter", map[string]string{"k.conf": "$A=$A $A $A $A\n$A\n"},
			[]string{"k.conf:2: unsafe: parameters expand into each other too deeply (16 levels) or too much (4194304 bytes); not expanded"}},
		{"conditional", map[string]string{"k.conf": "@lb1 global_defs {\n}\n"},
			[]string{"k.conf:1: not converted: @lb1: conditional configuration (@config_id) is not converted; the line is left out",
				"k.conf:2: unsafe: a } that closes no block"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeFiles(t, tc.files)
			_, notes, err := Parse(filepath.Join(dir, "k.conf"))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, n := range notes {
				got = append(got, strings.ReplaceAll(n.String(), dir, "DIR")[len("DIR/"):])
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("notes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestParseMissingFile(t *testing.T) {
	if _, _, err := Parse(filepath.Join(t.TempDir(), "none.conf")); err == nil || !strings.HasPrefix(err.Error(), "importka: ") {
		t.Fatalf("err = %v, want an importka error", err)
	}
}

// notesOf converts files written under a new directory and returns the
// notes with the directory cut off.
func notesOf(t *testing.T, files map[string]string, paths ...string) ([]string, bool) {
	t.Helper()
	dir := writeFiles(t, files)
	for i, p := range paths {
		paths[i] = filepath.Join(dir, p)
	}
	_, notes, err := Convert(paths, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range notes {
		out = append(out, strings.TrimPrefix(strings.ReplaceAll(n.String(), dir+"/", ""), ""))
	}
	return out, siteout.Unsafe(notes)
}

func TestConvertNotes(t *testing.T) {
	const pair = "global_defs {\n router_id %s\n}\nvrrp_instance VI_1 {\n interface eth0\n virtual_router_id 9\n unicast_src_ip %s\n unicast_peer {\n  %s\n }\n virtual_ipaddress {\n  10.0.0.100/24\n }\n}\n"
	const vsQuorum = "virtual_server 10.0.0.100 80 {\n lb_kind DR\n quorum 5\n real_server 10.0.0.11 80 {\n  weight 4\n }\n real_server 10.0.0.12 80 {\n  weight 1\n }\n real_server 10.0.0.13 80 {\n  weight 2\n }\n}\n"
	a := fmt.Sprintf(pair, "a", "10.0.0.2", "10.0.0.3")
	b := fmt.Sprintf(pair, "b", "10.0.0.3", "10.0.0.2")
	for _, tc := range []struct {
		name   string
		files  map[string]string
		paths  []string
		unsafe bool
		want   string // one of the notes
	}{
		{"safe pair", map[string]string{"a.conf": a, "b.conf": b}, []string{"a.conf", "b.conf"}, false, ""},
		{"no instance", map[string]string{"a.conf": "global_defs {\n router_id a\n}\n"}, []string{"a.conf"}, true,
			"a.conf: unsafe: no vrrp_instance converted: the site would hold no VIP"},
		{"VIP on another dev", map[string]string{"a.conf": strings.Replace(a, "10.0.0.100/24", "10.0.0.100/24\n  10.9.0.1/24 dev eth9", 1), "b.conf": b},
			[]string{"a.conf", "b.conf"}, true,
			"a.conf:13: unsafe: VIP 10.9.0.1/24 is on dev eth9, but instance VI_1 advertises on eth0: a havip group holds its VIPs on its own interface; this VIP is not placed (give it a [[vrrp]] group on eth9)"},
		{"no interface", map[string]string{"a.conf": strings.Replace(a, " interface eth0\n", "", 1), "b.conf": b}, []string{"a.conf", "b.conf"}, true,
			"a.conf:4: unsafe: vrrp_instance VI_1 has no interface; left out"},
		{"multicast, one file", map[string]string{"a.conf": strings.Replace(a, " unicast_peer {\n  10.0.0.3\n }\n", "", 1)}, []string{"a.conf"}, true,
			"a.conf: unsafe: no unicast_src_ip, mcast_src_ip or unicast_peer says node peer-REPLACE-ME's address: it is the placeholder 192.0.2.12, and havip drops adverts from any other address; give it with --address peer-REPLACE-ME=IP"},
		{"instance only in the backup", map[string]string{"a.conf": a, "b.conf": b + strings.ReplaceAll(strings.SplitN(b, "}\n", 2)[1], "VI_1 {\n interface eth0\n virtual_router_id 9", "VI_2 {\n interface eth0\n virtual_router_id 10")},
			[]string{"a.conf", "b.conf"}, true,
			"b.conf:15: unsafe: vrrp_instance VI_2 is only in this file, not in a.conf: not converted (run it on both nodes, or not at all)"},
		{"unknown keyword", map[string]string{"a.conf": strings.Replace(a, " interface eth0\n", " interface eth0\n frobnicate yes\n", 1), "b.conf": b},
			[]string{"a.conf", "b.conf"}, false,
			"a.conf:6: not converted: frobnicate (in vrrp_instance VI_1): no havip equivalent; left out"},
		{"quorum of unequal weights", map[string]string{"a.conf": a + vsQuorum, "b.conf": b + vsQuorum}, []string{"a.conf", "b.conf"}, false,
			"a.conf:17: not converted: quorum 5: keepalived sums the weights of live real servers, havip counts them; with unequal weights this is 3 real servers (the smallest weights first)"},
		{"track weight reverse", map[string]string{"a.conf": strings.Replace(a, " interface eth0\n", " interface eth0\n track_interface {\n  eth1 weight 10 reverse\n }\n", 1), "b.conf": b},
			[]string{"a.conf", "b.conf"}, false,
			"a.conf:7: not converted: eth1: weight ... reverse is not converted (havip tracks fail, they do not succeed into a penalty); the track is left out"},
		{"invalid after conversion", map[string]string{"a.conf": strings.Replace(a, "10.0.0.100/24", "10.0.0.0/24", 1), "b.conf": b},
			[]string{"a.conf", "b.conf"}, true,
			"unsafe: the converted site does not validate:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			notes, unsafe := notesOf(t, tc.files, tc.paths...)
			if unsafe != tc.unsafe {
				t.Errorf("unsafe = %t, want %t; notes:\n%s", unsafe, tc.unsafe, strings.Join(notes, "\n"))
			}
			found := tc.want == ""
			for _, n := range notes {
				found = found || strings.Contains(n, tc.want)
			}
			if !found {
				t.Errorf("no note %q in:\n%s", tc.want, strings.Join(notes, "\n"))
			}
		})
	}
}

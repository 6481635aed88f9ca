package conf

import (
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// TestHostChecks: Load refuses a control socket path or a state directory
// that is already something else; Parse never looks.
func TestHostChecks(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	missing := filepath.Join(dir, "missing")

	site := func(socket, state string) string {
		return strings.Replace(head, "[site]\n", "[site]\ncontrol_socket = \""+socket+"\"\nstate_dir = \""+state+"\"\n", 1)
	}
	tests := []struct {
		name, text string
		want       []string // as Load prints them, FILE being the site file
	}{
		{"a socket and a directory", site(sock, dir), nil},
		{"neither exists yet", site(missing, missing), nil},
		{"a file at both", site(file, file), []string{
			"FILE:2:1: site.control_socket: " + file + " exists and is not a socket; havip will not replace it",
			"FILE:3:1: site.state_dir: " + file + " exists and is not a directory",
		}},
		{"a directory as the socket", site(dir, sock), []string{
			"FILE:2:1: site.control_socket: " + dir + " exists and is not a socket; havip will not replace it",
			"FILE:3:1: site.state_dir: " + sock + " exists and is not a directory",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "site.toml")
			if err := os.WriteFile(path, []byte(tt.text), 0o644); err != nil {
				t.Fatal(err)
			}
			_, ps, err := loadT(path)
			if err != nil {
				t.Fatal(err)
			}
			got := strs(ps)
			for i := range got {
				got[i] = strings.Replace(got[i], path, "FILE", 1)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Load (-want +got):\n%s", diff)
			}
			if _, ps := parseT(path, []byte(tt.text)); len(ps) != 0 {
				t.Errorf("Parse looked at the machine: %v", ps)
			}
		})
	}
}

// TestHostChecksDefaulted: a default path that is something else is
// reported at [site], naming the key.
func TestHostChecksDefaulted(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p := &parser{file: "x", ix: newPositions(0)}
	st := p.newTable("site", noNode, pos{line: 3, col: 1}, map[string]any{})
	p.checkHost(st, &Site{ControlSocket: file, StateDir: file})
	want := []string{
		"x:3:1: site: control_socket " + file + " (the default) exists and is not a socket; havip will not replace it",
		"x:3:1: site: state_dir " + file + " (the default) exists and is not a directory",
	}
	if diff := cmp.Diff(want, strs(p.probs)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestPairKey: a site of two nodes without pair_key is valid with a
// warning; a key file is checked by Load, not by Parse.
func TestPairKey(t *testing.T) {
	dir := t.TempDir()
	two := "[site]\nname = \"t\"\n%s[[node]]\nname = \"a\"\naddress = \"10.0.0.1\"\n[[node]]\nname = \"b\"\naddress = \"10.0.0.2\"\npriority = 90\n"
	_, ps := Parse("t.toml", []byte(fmt.Sprintf(two, "")))
	if len(ps) != 1 || !ps[0].Warning || !strings.Contains(ps[0].String(), "t.toml:1:1: warning: site: no pair_key: the pair link between the directors is not authenticated") {
		t.Fatalf("without a key: %v", ps)
	}
	key := filepath.Join(dir, "pair.key")
	for _, tc := range []struct {
		name, content string
		mode          os.FileMode
		want          string // "" = valid
	}{
		{"missing", "", 0, "t.toml:3:1: site.pair_key: open " + key + ": no such file or directory"},
		{"good", strings.Repeat("0f", 32) + "\n", 0o600, ""},
		{"readable by others", strings.Repeat("0f", 32) + "\n", 0o644, "has mode 0644: group and others must have no access (chmod 600 " + key + ")"},
		{"not hex", strings.Repeat("zz", 32) + "\n", 0o600, "want 64 hex digits (write one with havip keygen)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(key)
			if tc.mode != 0 {
				if err := os.WriteFile(key, []byte(tc.content), tc.mode); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(key, tc.mode); err != nil {
					t.Fatal(err)
				}
			}
			path := filepath.Join(dir, "t.toml")
			if err := os.WriteFile(path, []byte(fmt.Sprintf(two, "pair_key = \""+key+"\"\n")), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, ps := Parse("t.toml", []byte(fmt.Sprintf(two, "pair_key = \""+key+"\"\n"))); len(ps) != 0 {
				t.Fatalf("Parse checked the key file: %v", ps)
			}
			_, ps, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range ps {
				got = append(got, p.String())
			}
			if tc.want == "" && len(got) != 0 || tc.want != "" && (len(got) != 1 || !strings.Contains(got[0], tc.want)) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestTLSCA: an https check's tls_ca is read and checked by Load (as the
// probe will read it), not by Parse.
func TestTLSCA(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	site := head + group + "[[check]]\nname = \"h\"\ntype = \"https\"\ntarget = \"10.0.0.80:443\"\ntls_verify = true\ntls_ca = \"" + ca + "\"\n"
	good, err := os.ReadFile(filepath.Join("testdata", "ca.pem")) // openssl req -x509, for 100 years
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		content []byte // nil: no file
		want    string // "" = valid
	}{
		{"missing", nil, "t.toml:20:1: check[0].tls_ca: " + ca + ": no such file or directory"},
		{"good", good, ""},
		{"not PEM", []byte("hello\n"), "t.toml:20:1: check[0].tls_ca: " + ca + " holds no PEM certificate"},
		{"a key, not a certificate", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}),
			"t.toml:20:1: check[0].tls_ca: " + ca + ": a PRIVATE KEY block, not a CERTIFICATE"},
		{"broken certificate", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}}),
			"t.toml:20:1: check[0].tls_ca: " + ca + ": certificate 1: x509: malformed certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(ca)
			if tc.content != nil {
				if err := os.WriteFile(ca, tc.content, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if _, ps := parseT("t.toml", []byte(site)); len(ps) != 0 {
				t.Fatalf("Parse checked the CA file: %v", ps)
			}
			path := filepath.Join(dir, "t.toml")
			if err := os.WriteFile(path, []byte(site), 0o644); err != nil {
				t.Fatal(err)
			}
			_, ps, err := loadT(path)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range ps {
				if !strings.Contains(p.Msg, "control_socket") && !strings.Contains(p.Msg, "state_dir") {
					got = append(got, strings.Replace(p.String(), path, "t.toml", 1))
				}
			}
			var want []string
			if tc.want != "" {
				want = []string{tc.want}
			}
			if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

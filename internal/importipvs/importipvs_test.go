package importipvs

import (
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/havip/havip/internal/conf"
	"github.com/havip/havip/internal/siteout"
)

var update = flag.Bool("update", false, "rewrite testdata/rules.toml and rules.notes")

func TestConvertGolden(t *testing.T) {
	f, err := os.Open("testdata/rules.save")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, notes, err := Convert("testdata/rules.save", f)
	if err != nil {
		t.Fatal(err)
	}
	var nb strings.Builder
	for _, n := range notes {
		nb.WriteString(n.String() + "\n")
	}
	got := map[string]string{"testdata/rules.toml": siteout.Render(s), "testdata/rules.notes": nb.String()}
	for path, text := range got {
		if *update {
			if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if text != string(want) {
			t.Errorf("%s differs (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", path, text, want)
		}
	}
	if siteout.Unsafe(notes) {
		t.Errorf("unsafe notes:\n%s", nb.String())
	}

	// The fragment, pasted into a site file, validates (cmd/havip's
	// TestImportIpvsadm runs havip check on it).
	site := "[site]\nname = \"pasted\"\n\n[[node]]\nname = \"lb1\"\naddress = \"192.168.0.11\"\n\n" + got["testdata/rules.toml"]
	parsed, problems := conf.Parse("pasted.toml", []byte(site))
	if conf.HasErrors(problems) {
		t.Fatalf("the pasted fragment does not validate: %v", problems)
	}
	if n := len(parsed.VirtualServers); n != 7 {
		t.Errorf("%d virtual servers, want the 7 of rules.save", n)
	}
}

func TestConvertProblems(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		unsafe   bool
	}{
		{"", "x: unsafe: no virtual service (-A line) found", true},
		{"-A -t www.example.com:http -s rr\n", "x:1: not converted: www.example.com:http is not address:port (run ipvsadm-save with -n); left out", true},
		{"-A -t 10.0.0.1:80\n-A -t 10.0.0.1:80\n", "x:2: not converted: service 10.0.0.1:80 is added twice; the first is kept", false},
		{"-A -t 10.0.0.1:80\n-a -t 10.0.0.1:80 -r 10.0.0.2:80 -w lots\n", "x:2: not converted: -w lots is not a weight 0..65535; weight 1 is used", false},
		{"-A -t 10.0.0.1:80 -s frob\n", "unsafe: the converted site does not validate:", true},
	} {
		_, notes, err := Convert("x", strings.NewReader(tc.in))
		if err != nil {
			t.Fatal(err)
		}
		var all []string
		for _, n := range notes {
			all = append(all, n.String())
		}
		if !strings.Contains(strings.Join(all, "\n"), tc.want) || siteout.Unsafe(notes) != tc.unsafe {
			t.Errorf("%q: notes %q (unsafe %t), want %q (unsafe %t)", tc.in, all, siteout.Unsafe(notes), tc.want, tc.unsafe)
		}
	}
}

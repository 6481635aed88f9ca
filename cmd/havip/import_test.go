package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const kaData = "../../internal/importka/testdata/"

// havip import writes a site that havip check accepts, lists what it
// did not convert with FILE:LINE, and exits 1 only for an unsafe result.
func TestImportKeepalived(t *testing.T) {
	out := filepath.Join(t.TempDir(), "havip.toml")
	code, stdout, stderr := runCLI("import", "keepalived", "-o", out, "--site", "nat-dc2", kaData+"nat/keepalived.conf")
	if code != 0 || stdout != "" {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
	}
	for _, want := range []string{
		kaData + "nat/keepalived.conf:13: not converted: notify_master:",
		kaData + "nat/keepalived.conf:67: not converted: digest:",
		kaData + "nat/keepalived.conf: not converted: only one keepalived configuration: the peer is a placeholder [[node]] \"peer-REPLACE-ME\"",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	site, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(site), "name = \"nat-dc2\"") {
		t.Errorf("no [site] name nat-dc2 in:\n%s", site)
	}
	code, stdout, stderr = runCLI("check", "-c", out)
	if code != 0 || !strings.Contains(stdout, "ok (2 nodes, 2 vrrp groups, 6 virtual servers)") {
		t.Errorf("havip check of the import: exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
	}

	// To stdout, the same file.
	code, stdout, _ = runCLI("import", "keepalived", "--site", "nat-dc2", kaData+"nat/keepalived.conf")
	if code != 0 || stdout != string(site) {
		t.Errorf("to stdout: exit %d, and the output differs from -o's:\n%s", code, stdout)
	}
}

func TestImportKeepalivedUnsafe(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"import", "keepalived", kaData + "odd/keepalived.conf"},
			kaData + "odd/keepalived.conf: unsafe: no unicast_src_ip, mcast_src_ip or unicast_peer says node peer-REPLACE-ME's address"},
		{[]string{"import", "keepalived", "--address", "peer-REPLACE-ME=192.168.50.3", kaData + "odd/keepalived.conf"},
			kaData + "odd/keepalived.conf:35: unsafe: virtual_ipaddress_excluded:"},
	} {
		code, stdout, stderr := runCLI(tc.args...)
		if code != 1 || !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, "havip import: the result is not safe to run") {
			t.Errorf("%q: exit %d, stderr:\n%s", tc.args, code, stderr)
		}
		// The site is still written, for the operator to finish.
		if !strings.Contains(stdout, "[[vrrp]]") {
			t.Errorf("%q: no site on stdout", tc.args)
		}
	}
}

func TestImportIpvsadm(t *testing.T) {
	out := filepath.Join(t.TempDir(), "vs.toml")
	code, _, stderr := runCLI("import", "ipvsadm", "-o", out, "../../internal/importipvs/testdata/rules.save")
	if code != 0 || !strings.Contains(stderr, "rules.save:6: not converted: -x 1000") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("../../internal/importipvs/testdata/rules.toml")
	if err != nil {
		t.Fatal(err)
	}
	if strings.ReplaceAll(string(got), "../../internal/importipvs/", "") != string(want) {
		t.Errorf("havip import ipvsadm wrote:\n%s\nwant:\n%s", got, want)
	}
	// Pasted into a site file, havip check accepts it.
	site := filepath.Join(filepath.Dir(out), "havip.toml")
	head := "[site]\nname = \"pasted\"\n\n[[node]]\nname = \"lb1\"\naddress = \"192.168.0.11\"\n\n[[node]]\nname = \"lb2\"\naddress = \"192.168.0.12\"\n\n"
	if err := os.WriteFile(site, append([]byte(head), got...), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, stdout, stderr := runCLI("check", "-c", site); code != 0 || !strings.Contains(stdout, "7 virtual servers") {
		t.Errorf("havip check of the pasted fragment: exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
	}
}

func TestImportArguments(t *testing.T) {
	for _, args := range [][]string{
		{"import"},
		{"import", "haproxy", "x.cfg"},
		{"import", "keepalived"},
		{"import", "keepalived", "a", "b", "c"},
		{"import", "keepalived", filepath.Join(t.TempDir(), "missing.conf")},
		{"import", "keepalived", "--address", "lb2", kaData + "nat/keepalived.conf"},
		{"import", "ipvsadm", "--site", "x", "rules"},
		{"import", "ipvsadm", "a", "b"},
		{"import", "ipvsadm", filepath.Join(t.TempDir(), "missing")},
	} {
		code, stdout, stderr := runCLI(args...)
		if code != 1 || stdout != "" || stderr == "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 1 and a message", args, code, stdout, stderr)
		}
	}
}

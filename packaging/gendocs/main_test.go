package main

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/havip/havip/internal/cli"
	"github.com/havip/havip/internal/conf"
)

// generate writes the three files into a new directory.
func generate(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	example, err := os.ReadFile(filepath.Join("..", "..", "examples", "minimal.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := write(dir, page{Version: "1.2.3", Date: "2026-01-02", Example: string(example)}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// render formats a manual page as plain text with groff, and fails on any
// warning (-ww): what lintian's manpage check and man -l would complain of.
func render(t *testing.T, path string) string {
	t.Helper()
	var out, errs bytes.Buffer
	cmd := exec.Command("groff", "-man", "-Tascii", "-ww", "-P", "-cbou", "-rLL=200n", path)
	cmd.Stdout, cmd.Stderr = &out, &errs
	if err := cmd.Run(); err != nil || errs.Len() > 0 {
		t.Fatalf("groff %s: %v\n%s", filepath.Base(path), err, errs.String())
	}
	// Once more as man renders for a terminal, warnings only.
	cmd = exec.Command("groff", "-man", "-Tutf8", "-ww", "-z", path)
	errs.Reset()
	cmd.Stderr = &errs
	if err := cmd.Run(); err != nil || errs.Len() > 0 {
		t.Fatalf("groff -Tutf8 %s: %v\n%s", filepath.Base(path), err, errs.String())
	}
	return out.String()
}

// TestManHavip: havip(8) renders without a warning and shows every
// command with every flag the command's flag set has.
func TestManHavip(t *testing.T) {
	text := render(t, filepath.Join(generate(t), "havip.8"))
	for _, want := range []string{"SYNOPSIS", "EXIT STATUS", "SIGNALS", "FILES", "SEE ALSO", "SIGHUP", cli.DefaultConfig, "havip 1.2.3", "2026-01-02"} {
		if !strings.Contains(text, want) {
			t.Errorf("havip(8) lacks %q", want)
		}
	}
	n := 0
	for _, c := range cli.Commands() {
		// The command's section runs from its heading to the next one.
		head := "\n   " + synopsis(c) + "\n"
		i := strings.Index(text, head)
		if i < 0 {
			t.Errorf("havip(8) has no section %q", strings.TrimSpace(head))
			continue
		}
		sec := text[i+len(head):]
		if j := strings.Index(sec, "\n   havip "); j >= 0 {
			sec = sec[:j]
		}
		commandFlags(c).VisitAll(func(f *flag.Flag) {
			n++
			if !regexp.MustCompile(`(?m)^ +` + regexp.QuoteMeta(flagName(f)) + `( |$)`).MatchString(sec) {
				t.Errorf("havip(8), %s: no flag %s", c.Name, flagName(f))
			}
		})
	}
	if n < 30 {
		t.Errorf("only %d flags seen", n)
	}
}

// TestManSiteFile: havip.toml(5) renders without a warning, has every
// table and every key of conf.Keys with its default, and the example.
func TestManSiteFile(t *testing.T) {
	text := render(t, filepath.Join(generate(t), "havip.toml.5"))
	for _, want := range []string{"NODE SELECTION", "TABLES AND KEYS", "EXAMPLES", "/usr/share/doc/havip/examples", "--node"} {
		if !strings.Contains(text, want) {
			t.Errorf("havip.toml(5) lacks %q", want)
		}
	}
	secs := sections(conf.Keys())
	for _, k := range conf.Keys() {
		if secs[k.Path] {
			if !strings.Contains(text, "\n   "+tableHeader(k)+"\n") {
				t.Errorf("havip.toml(5) has no section %s", tableHeader(k))
			}
			continue
		}
		entry := regexp.MustCompile(`(?m)^       ` + regexp.QuoteMeta(conf.KeyName(k.Path)) + `( +|\n +)` + regexp.QuoteMeta(k.Type))
		if !entry.MatchString(text) {
			t.Errorf("havip.toml(5) has no entry for %s", k.Path)
		}
		if k.Default != "" && !strings.Contains(text, "default "+k.Default) {
			t.Errorf("havip.toml(5) does not show the default of %s, %s", k.Path, k.Default)
		}
	}
	if !strings.Contains(text, `address = "192.168.0.175:80"`) {
		t.Error("the example is not shown as written")
	}
}

// complete runs the completion function for the words typed so far (the
// last one being completed) and returns what it offers.
func complete(t *testing.T, script string, words ...string) []string {
	t.Helper()
	var quoted []string
	for _, w := range words {
		quoted = append(quoted, "'"+w+"'")
	}
	prog := "source " + script + "\nCOMP_WORDS=(" + strings.Join(quoted, " ") + ")\nCOMP_CWORD=" +
		strconv.Itoa(len(words)-1) + "\n_havip\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
	cmd := exec.Command("bash", "--norc", "--noprofile", "-c", prog)
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("completing %q: %v\n%s", words, err, out)
	}
	return strings.Fields(string(out))
}

// TestCompletion: the script parses, completes commands, each command's
// flags, files after -c, a flag's listed values, a command's first word
// and the names of groups and virtual servers.
func TestCompletion(t *testing.T) {
	script := filepath.Join(generate(t), "havip")
	if out, err := exec.Command("bash", "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v\n%s", err, out)
	}
	if got := complete(t, script, "havip", "ru"); strings.Join(got, " ") != "run" {
		t.Errorf("havip ru<TAB>: %q, want run", got)
	}
	if got := complete(t, script, "havip", "re"); strings.Join(got, " ") != "reload realserver" {
		t.Errorf("havip re<TAB>: %q", got)
	}
	for _, c := range cli.Commands() {
		var want []string
		commandFlags(c).VisitAll(func(f *flag.Flag) {
			if len(f.Name) > 1 {
				want = append(want, flagName(f))
			}
		})
		if got := complete(t, script, "havip", c.Name, "--"); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("havip %s --<TAB>: %q, want %q", c.Name, got, want)
		}
	}
	if got := complete(t, script, "havip", "realserver", "up", "--mode", ""); strings.Join(got, " ") != "dr tun" {
		t.Errorf("havip realserver up --mode <TAB>: %q", got)
	}
	if got := complete(t, script, "havip", "realserver", ""); strings.Join(got, " ") != "up down" {
		t.Errorf("havip realserver <TAB>: %q", got)
	}
	// -c completes file names: make one in a directory of our own.
	dir := t.TempDir()
	site := filepath.Join(dir, "site-a.toml")
	if err := os.WriteFile(site, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := complete(t, script, "havip", "check", "-c", filepath.Join(dir, "site-")); strings.Join(got, " ") != site {
		t.Errorf("havip check -c %s/site-<TAB>: %q", dir, got)
	}
	if got := complete(t, script, "havip", "realserver", "--mode", "dr", ""); strings.Join(got, " ") != "up down" {
		t.Errorf("havip realserver --mode dr <TAB>: %q (a flag's value is no argument)", got)
	}
	// Names from the site file -c names: groups for failover, virtual
	// servers for drain's first argument only.
	ref, err := filepath.Abs(filepath.Join("..", "..", "examples", "havip.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if got := complete(t, script, "havip", "failover", "-c", ref, "--force", "front", ""); strings.Join(got, " ") != "front front6 gateway6" {
		t.Errorf("havip failover -c %s --force front <TAB>: %q", ref, got)
	}
	if got := complete(t, script, "havip", "drain", "--timeout", "1m", "-c", ref, "a"); strings.Join(got, " ") != "api" {
		t.Errorf("havip drain --timeout 1m -c %s a<TAB>: %q", ref, got)
	}
	if got := complete(t, script, "havip", "drain", "-c", ref, "web", ""); len(got) != 0 {
		t.Errorf("havip drain -c %s web <TAB>: %q, want nothing", ref, got)
	}
	if got := complete(t, script, "havip", "status", "--json", "x"); len(got) != 0 {
		t.Errorf("havip status --json x<TAB>: %q, want nothing", got)
	}
}

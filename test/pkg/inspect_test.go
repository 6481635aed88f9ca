package pkg

import (
	"debug/elf"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// arches maps each GOARCH the packages are built for to its rpm name and ELF machine.
var arches = []struct {
	goarch, rpm string
	machine     elf.Machine
}{
	{"amd64", "x86_64", elf.EM_X86_64},
	{"arm64", "aarch64", elf.EM_AARCH64},
}

// TestLintian: no error and no warning from lintian on either .deb; the
// overrides shipped in the package (packaging/lintian-overrides, each with
// its reason) are the only exceptions, and one that no longer matches
// anything fails too.
func TestLintian(t *testing.T) {
	requireTools(t, "lintian")
	dist, _ := packages(t)
	for _, a := range arches {
		deb := filepath.Join(dist, "havip_"+versionA+"_"+a.goarch+".deb")
		out, errOut, err := runExit("lintian", "--pedantic", "--display-info", "--fail-on", "error,warning", deb)
		t.Logf("lintian %s:\n%s", filepath.Base(deb), out)
		if err != nil {
			t.Errorf("lintian %s: %v\n%s", filepath.Base(deb), err, errOut)
		}
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, "E: ") || strings.HasPrefix(line, "W: ") ||
				strings.Contains(line, "unused-override") || strings.Contains(line, "mismatched-override") {
				t.Errorf("lintian %s: %s", filepath.Base(deb), line)
			}
		}
	}
}

// TestDebContents: the .deb's files, modes, conffiles and control fields
// against the layout.
func TestDebContents(t *testing.T) {
	requireTools(t, "tar")
	dist, _ := packages(t)
	want := append(layout(t, "/lib/systemd/system"),
		"/usr/share/doc/havip/copyright", "/usr/share/lintian/overrides/havip")
	slices.Sort(want)
	for _, a := range arches {
		deb := filepath.Join(dist, "havip_"+versionA+"_"+a.goarch+".deb")
		var files []string
		for _, line := range strings.Split(strings.TrimSpace(run(t, "dpkg-deb", "--contents", deb)), "\n") {
			// -rw-r--r-- root/root 3074 2026-12-02 14:23 ./etc/havip/havip.toml
			f := strings.Fields(line)
			if len(f) != 6 {
				t.Fatalf("%s: unexpected dpkg-deb --contents line %q", deb, line)
			}
			if f[1] != "root/root" {
				t.Errorf("%s: %s owned by %s, want root/root", a.goarch, f[5], f[1])
			}
			if strings.HasPrefix(f[0], "d") {
				continue
			}
			name := strings.TrimPrefix(f[5], ".")
			if wantMode := modeOf(name); f[0] != wantMode {
				t.Errorf("%s: %s has mode %s, want %s", a.goarch, name, f[0], wantMode)
			}
			files = append(files, name)
		}
		slices.Sort(files)
		if !slices.Equal(files, want) {
			t.Errorf("%s .deb files:\n got %q\nwant %q", a.goarch, files, want)
		}

		if got := strings.TrimSpace(run(t, "dpkg-deb", "--info", deb, "conffiles")); got != "/etc/havip/havip.toml" {
			t.Errorf("%s conffiles = %q, want only /etc/havip/havip.toml", a.goarch, got)
		}
		fields := map[string]string{"Package": "havip", "Version": versionA, "Architecture": a.goarch, "Depends": "adduser"}
		for field, want := range fields {
			if got := strings.TrimSpace(run(t, "dpkg-deb", "--field", deb, field)); got != want {
				t.Errorf("%s .deb %s = %q, want %q", a.goarch, field, got, want)
			}
		}
		bin := filepath.Join(t.TempDir(), "havip")
		writeFile(t, bin, run(t, "sh", "-c", `dpkg-deb --fsys-tarfile "$1" | tar -xO ./usr/sbin/havip`, "sh", deb))
		checkBinary(t, bin, a.machine)
	}
}

// TestRPM: each .rpm's file list and flags (the config is
// %config(noreplace), the copyright %license), its directories, arch,
// requires and scriptlets.
func TestRPM(t *testing.T) {
	requireTools(t, "rpm", "rpm2cpio", "cpio")
	dist, _ := packages(t)
	want := append(layout(t, "/usr/lib/systemd/system"), "/usr/share/licenses/havip/copyright")
	slices.Sort(want)
	wantDirs := []string{"/etc/havip", "/usr/share/doc/havip", "/usr/share/doc/havip/examples", "/usr/share/licenses/havip"}
	for _, a := range arches {
		rpm := filepath.Join(dist, "havip-"+versionA+"-1."+a.rpm+".rpm")
		q := func(format string) string { return run(t, "rpm", "-qp", "--queryformat", format, rpm) }

		if got, want := q("%{NAME} %{VERSION} %{ARCH} %{OS}"), "havip "+versionA+" "+a.rpm+" linux"; got != want {
			t.Errorf("rpm %s: NAME VERSION ARCH OS = %q, want %q", a.rpm, got, want)
		}
		var files, dirs []string
		for _, line := range strings.Split(strings.TrimSpace(q(`[%{FILENAMES}\t%{FILEFLAGS:fflags}\t%{FILEMODES:perms}\t%{FILEUSERNAME}:%{FILEGROUPNAME}\n]`)), "\n") {
			f := strings.Split(line, "\t")
			name, flags, mode, owner := f[0], f[1], f[2], f[3]
			if owner != "root:root" {
				t.Errorf("rpm %s: %s owned by %s, want root:root", a.rpm, name, owner)
			}
			if strings.HasPrefix(mode, "d") {
				dirs = append(dirs, name)
				continue
			}
			files = append(files, name)
			if wantMode := modeOf(name); mode != wantMode {
				t.Errorf("rpm %s: %s has mode %s, want %s", a.rpm, name, mode, wantMode)
			}
			wantFlags := map[string]string{"/etc/havip/havip.toml": "cn", "/usr/share/licenses/havip/copyright": "l"}[name]
			if flags != wantFlags {
				t.Errorf("rpm %s: %s has flags %q, want %q (c config, n noreplace, l license)", a.rpm, name, flags, wantFlags)
			}
		}
		slices.Sort(files)
		if !slices.Equal(files, want) {
			t.Errorf("rpm %s files:\n got %q\nwant %q", a.rpm, files, want)
		}
		slices.Sort(dirs)
		if !slices.Equal(dirs, wantDirs) {
			t.Errorf("rpm %s directories = %q, want %q", a.rpm, dirs, wantDirs)
		}
		if got := strings.TrimSpace(run(t, "rpm", "-qp", "--configfiles", rpm)); got != "/etc/havip/havip.toml" {
			t.Errorf("rpm %s --configfiles = %q, want only /etc/havip/havip.toml", a.rpm, got)
		}
		// A static binary: no library, and nothing distribution-specific
		// beyond the tool the scriptlets' useradd comes from.
		if got := strings.Fields(run(t, "rpm", "-qp", "--requires", rpm)); !slices.Equal(got, []string{"shadow-utils"}) {
			t.Errorf("rpm %s requires %q, want only shadow-utils", a.rpm, got)
		}
		checkScriptlets(t, a.rpm, run(t, "rpm", "-qp", "--scripts", rpm))

		bin := filepath.Join(t.TempDir(), "havip")
		writeFile(t, bin, run(t, "sh", "-c", `rpm2cpio "$1" | cpio --quiet -i --to-stdout /usr/sbin/havip`, "sh", rpm))
		checkBinary(t, bin, a.machine)
	}
}

// checkScriptlets reads rpm --scripts: the user is made before files are
// installed, no scriptlet enables, presets or starts havip, an erase stops
// and disables it, and an upgrade restarts it only if it was running.
func checkScriptlets(t *testing.T, arch, scripts string) {
	t.Helper()
	parts := map[string]string{}
	var cur string
	for _, line := range strings.Split(scripts, "\n") {
		if m := regexp.MustCompile(`^(\w+) scriptlet \(using /bin/sh\):$`).FindStringSubmatch(line); m != nil {
			cur = m[1]
			continue
		}
		if cur != "" && !strings.HasPrefix(strings.TrimSpace(line), "#") {
			parts[cur] += line + "\n"
		}
	}
	want := map[string][]string{
		"preinstall":    {"groupadd -r havip", "useradd -r -g havip -d /nonexistent -M -s /sbin/nologin"},
		"postinstall":   {"systemctl daemon-reload"},
		"preuninstall":  {`if [ "$1" -eq 0 ]`, "systemctl --no-reload disable --now havip.service"},
		"postuninstall": {"systemctl daemon-reload", `if [ "$1" -ge 1 ]`, "systemctl try-restart havip.service"},
	}
	for part, needles := range want {
		body, ok := parts[part]
		if !ok {
			t.Errorf("rpm %s: no %s scriptlet in:\n%s", arch, part, scripts)
			continue
		}
		for _, n := range needles {
			if !strings.Contains(body, n) {
				t.Errorf("rpm %s %s: no %q in:\n%s", arch, part, n, body)
			}
		}
	}
	if len(parts) != len(want) {
		t.Errorf("rpm %s: scriptlets %v, want exactly %d", arch, slices.Sorted(maps.Keys(parts)), len(want))
	}
	forbidden := regexp.MustCompile(`systemctl[^\n]*\b(enable|preset|start|restart|reload-or-restart)\b`)
	for part, body := range parts {
		for _, m := range forbidden.FindAllString(body, -1) {
			if !strings.Contains(m, "try-restart") && !strings.Contains(m, "disable --now") {
				t.Errorf("rpm %s %s: %q could start or enable a director", arch, part, m)
			}
		}
	}
}

// modeOf is the mode the layout gives a packaged file.
func modeOf(name string) string {
	if name == "/usr/sbin/havip" {
		return "-rwxr-xr-x"
	}
	return "-rw-r--r--"
}

// checkBinary: the packaged havip is for the package's machine, static (no
// interpreter, no library) and stripped.
func checkBinary(t *testing.T, path string, machine elf.Machine) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("packaged havip: %v", err)
	}
	defer f.Close()
	if f.Machine != machine {
		t.Errorf("packaged havip is for %v, want %v", f.Machine, machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("packaged havip (%v) has an ELF interpreter: not static", machine)
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("packaged havip (%v) needs libraries %q (%v)", machine, libs, err)
	}
	if f.Section(".symtab") != nil {
		t.Errorf("packaged havip (%v) is not stripped: it has a .symtab", machine)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
}

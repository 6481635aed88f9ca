package vmlab

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// DefaultModules are loaded in every VM, in dependency order. A trailing "?"
// marks a module that may be absent from the kernel; a "*" is a glob over
// module names (ip_vs_* is every scheduler plus ftp and sip helpers).
var DefaultModules = []string{
	"libcrc32c", "nf_defrag_ipv4", "nf_defrag_ipv6", "nf_conntrack",
	"ip_vs", "ip_vs_*",
	"veth", "llc", "stp", "bridge", "macvlan?",
	"tunnel4", "ip_tunnel", "ipip", "dummy",
	"nf_tables?",
}

// moduleParams are insmod parameters for modules that would otherwise
// create devices no test asked for.
var moduleParams = map[string]string{
	"dummy": "numdummies=0",
}

// ErrModule reports a requested module that the kernel tree neither builds in
// nor ships.
var ErrModule = errors.New("vmlab: kernel module not found")

// kmod is one loadable module in a kernel tree.
type kmod struct {
	name    string // canonical: dashes replaced by underscores
	relPath string // under lib/modules/KVER, compression suffix kept
}

// moduleTree indexes the modules of one unpacked kernel package.
type moduleTree struct {
	dir     string // .../lib/modules/KVER
	release string // KVER
	mods    map[string]kmod
	builtin map[string]bool
	deps    map[string][]string // memoized modinfo "depends" (plus softdep pre)
}

// canonModName turns a file or module name into the kernel's canonical name.
func canonModName(s string) string {
	s = path.Base(s)
	for _, suf := range []string{".xz", ".zst", ".gz"} {
		s = strings.TrimSuffix(s, suf)
	}
	s = strings.TrimSuffix(s, ".ko")
	return strings.ReplaceAll(s, "-", "_")
}

func isModuleFile(name string) bool {
	for _, suf := range []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"} {
		if strings.HasSuffix(name, suf) {
			return true
		}
	}
	return false
}

// openModuleTree indexes lib/modules/*/ under an unpacked kernel package.
func openModuleTree(kernelTree string) (*moduleTree, error) {
	dirs, err := filepath.Glob(filepath.Join(kernelTree, "lib", "modules", "*"))
	if err != nil || len(dirs) != 1 {
		return nil, fmt.Errorf("vmlab: want exactly one lib/modules/* in %s, found %d", kernelTree, len(dirs))
	}
	t := &moduleTree{
		dir:     dirs[0],
		release: filepath.Base(dirs[0]),
		mods:    map[string]kmod{},
		builtin: map[string]bool{},
		deps:    map[string][]string{},
	}
	err = filepath.WalkDir(filepath.Join(t.dir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !isModuleFile(d.Name()) {
			return nil
		}
		rel, _ := filepath.Rel(t.dir, p)
		t.mods[canonModName(rel)] = kmod{name: canonModName(rel), relPath: filepath.ToSlash(rel)}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("vmlab: index modules: %w", err)
	}
	if b, err := os.ReadFile(filepath.Join(t.dir, "modules.builtin")); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if l := strings.TrimSpace(sc.Text()); l != "" {
				t.builtin[canonModName(l)] = true
			}
		}
	}
	return t, nil
}

// readKo returns the uncompressed bytes of a module.
func (t *moduleTree) readKo(m kmod) ([]byte, error) {
	p := filepath.Join(t.dir, filepath.FromSlash(m.relPath))
	switch {
	case strings.HasSuffix(p, ".ko"):
		return os.ReadFile(p)
	case strings.HasSuffix(p, ".ko.gz"):
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("vmlab: %s: %w", p, err)
		}
		return io.ReadAll(zr)
	case strings.HasSuffix(p, ".ko.xz"), strings.HasSuffix(p, ".ko.zst"):
		tool := "xz"
		if strings.HasSuffix(p, ".zst") {
			tool = "zstd"
		}
		out, err := exec.Command(tool, "-dc", p).Output()
		if err != nil {
			return nil, fmt.Errorf("vmlab: decompress %s with %s (install it): %w", p, tool, err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("vmlab: unknown module format %s", p)
}

// modinfo parses the .modinfo ELF section of a module: NUL-separated key=value.
func modinfo(ko []byte) (map[string][]string, error) {
	f, err := elf.NewFile(bytes.NewReader(ko))
	if err != nil {
		return nil, err
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, errors.New("no .modinfo section")
	}
	data, err := sec.Data()
	if err != nil {
		return nil, err
	}
	info := map[string][]string{}
	for _, kv := range bytes.Split(data, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if ok {
			info[k] = append(info[k], v)
		}
	}
	return info, nil
}

// depsOf lists the modules that must be loaded before name: modinfo
// "depends", plus "softdep pre:" entries that name a shipped module.
func (t *moduleTree) depsOf(name string) ([]string, error) {
	if d, ok := t.deps[name]; ok {
		return d, nil
	}
	ko, err := t.readKo(t.mods[name])
	if err != nil {
		return nil, err
	}
	info, err := modinfo(ko)
	if err != nil {
		return nil, fmt.Errorf("vmlab: modinfo %s: %w", name, err)
	}
	var deps []string
	for _, v := range info["depends"] {
		for _, d := range strings.Split(v, ",") {
			if d = strings.TrimSpace(d); d != "" {
				deps = append(deps, canonModName(d))
			}
		}
	}
	for _, v := range info["softdep"] {
		pre, _, _ := strings.Cut(v, "post:")
		if _, pre, ok := strings.Cut(pre, "pre:"); ok {
			for _, d := range strings.Fields(pre) {
				if _, shipped := t.mods[canonModName(d)]; shipped {
					deps = append(deps, canonModName(d))
				}
			}
		}
	}
	t.deps[name] = deps
	return deps, nil
}

// resolve expands the requested names (globs, optional "?") and returns the
// modules to load, every dependency before its users. Built-in modules are
// dropped; a missing non-optional module is ErrModule.
func (t *moduleTree) resolve(requested []string) ([]kmod, error) {
	var roots []string
	for _, r := range requested {
		optional := strings.HasSuffix(r, "?")
		r = canonModName(strings.TrimSuffix(r, "?"))
		if strings.ContainsAny(r, "*?[") {
			var matched []string
			for n := range t.mods {
				if ok, _ := path.Match(r, n); ok {
					matched = append(matched, n)
				}
			}
			if len(matched) == 0 && !optional {
				return nil, fmt.Errorf("%w: no module matches %q in %s", ErrModule, r, t.release)
			}
			sort.Strings(matched)
			roots = append(roots, matched...)
			continue
		}
		if _, ok := t.mods[r]; ok {
			roots = append(roots, r)
			continue
		}
		if !t.builtin[r] && !optional {
			return nil, fmt.Errorf("%w: %q in %s", ErrModule, r, t.release)
		}
	}

	var order []kmod
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(n string, chain []string) error
	visit = func(n string, chain []string) error {
		switch state[n] {
		case 2:
			return nil
		case 1:
			return fmt.Errorf("vmlab: module dependency cycle: %s", strings.Join(append(chain, n), " -> "))
		}
		if _, ok := t.mods[n]; !ok {
			if t.builtin[n] {
				state[n] = 2
				return nil
			}
			return fmt.Errorf("%w: %q (needed by %s)", ErrModule, n, strings.Join(chain, " -> "))
		}
		state[n] = 1
		deps, err := t.depsOf(n)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d, append(chain, n)); err != nil {
				return err
			}
		}
		state[n] = 2
		order = append(order, t.mods[n])
		return nil
	}
	for _, r := range roots {
		if err := visit(r, nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}

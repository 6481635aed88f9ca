package vmlab

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// cachedKernelTree is the tree setup.sh unpacked. Missing is a failure: the
// VM tests cannot run without it either.
func cachedKernelTree(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the kernel tree from test/vmlab/setup.sh; skipped with -short")
	}
	var c Config
	c.defaults()
	if _, err := os.Stat(filepath.Join(c.KernelTree, ".vmlab-complete")); err != nil {
		t.Fatalf("no kernel tree at %s (run test/vmlab/setup.sh): %v", c.KernelTree, err)
	}
	return c.KernelTree
}

func TestResolveDefaultModules(t *testing.T) {
	tree, err := openModuleTree(cachedKernelTree(t))
	if err != nil {
		t.Fatal(err)
	}
	order, err := tree.resolve(DefaultModules)
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, m := range order {
		if _, dup := pos[m.name]; dup {
			t.Errorf("%s loaded twice", m.name)
		}
		pos[m.name] = i
	}
	for _, m := range order {
		deps, err := tree.depsOf(m.name)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range deps {
			if dp, ok := pos[d]; ok && dp > pos[m.name] {
				t.Errorf("%s loaded before its dependency %s", m.name, d)
			} else if !ok && !tree.builtin[d] {
				t.Errorf("%s needs %s, which is neither loaded nor built in", m.name, d)
			}
		}
	}
	for _, want := range []string{"libcrc32c", "nf_conntrack", "ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_lc",
		"ip_vs_wlc", "ip_vs_sh", "ip_vs_dh", "ip_vs_mh", "ip_vs_fo", "ip_vs_ovf", "ip_vs_lblc", "ip_vs_lblcr",
		"ip_vs_sed", "ip_vs_nq", "veth", "bridge", "ipip", "dummy"} {
		if _, ok := pos[want]; !ok {
			t.Errorf("%s not in the load order", want)
		}
	}
	var names []string
	for _, m := range order {
		names = append(names, m.name)
	}
	t.Logf("load order: %s", strings.Join(names, " "))
}

func TestResolveErrors(t *testing.T) {
	tree, err := openModuleTree(cachedKernelTree(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tree.resolve([]string{"no_such_module"}); !errors.Is(err, ErrModule) {
		t.Errorf("missing module: err = %v, want ErrModule", err)
	}
	if _, err := tree.resolve([]string{"no_such_*"}); !errors.Is(err, ErrModule) {
		t.Errorf("glob matching nothing: err = %v, want ErrModule", err)
	}
	order, err := tree.resolve([]string{"no_such_module?", "crc32c_generic", "dummy"})
	if err != nil {
		t.Fatalf("optional and built-in modules: %v", err)
	}
	if len(order) != 1 || order[0].name != "dummy" {
		t.Errorf("order = %v, want just dummy (optional missing and built-in dropped)", order)
	}
	for in, want := range map[string]string{"kernel/x/ip-vs.ko.xz": "ip_vs", "nf_nat.ko": "nf_nat", "8021q.ko.zst": "8021q"} {
		if got := canonModName(in); got != want {
			t.Errorf("canonModName(%q) = %q, want %q", in, got, want)
		}
	}
}

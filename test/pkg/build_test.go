package pkg

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Two versions, so that the install test can upgrade from one to the other.
const (
	versionA = "1.0.0"
	versionB = "1.0.1"
)

var (
	buildOnce    sync.Once
	buildErr     error
	distA, distB string
	buildDir     string // removed by TestMain
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// repoRoot is the repository this test package lives in (test/pkg).
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "packaging", "nfpm.yaml")); err != nil {
		t.Fatalf("pkg: no packaging/nfpm.yaml above the test directory: %v", err)
	}
	return dir
}

// requireTools fails the test, never skips it, when it cannot run: a
// package test that passes by not running would hide a broken package.
func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	if testing.Short() {
		t.Skip("pkg: package tests left out by -short")
	}
	if os.Geteuid() != 0 {
		t.Fatalf("pkg: the package tests need root (euid %d); run them as root, or with -short to leave them out", os.Geteuid())
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("pkg: %s is not installed (make deps installs it): %v", tool, err)
		}
	}
}

// packages runs `make package` once per test binary: version A for every
// architecture and format, version B only for amd64 (the upgrades).
func packages(t *testing.T) (a, b string) {
	t.Helper()
	requireTools(t, "make", "go", "gzip", "dpkg-deb")
	root := repoRoot(t)
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "havip-pkgtest-dist-")
		if buildErr != nil {
			return
		}
		distA, distB = filepath.Join(buildDir, "a"), filepath.Join(buildDir, "b")
		start := time.Now()
		if buildErr = makePackage(root, distA, versionA, "amd64 arm64", "deb rpm"); buildErr != nil {
			return
		}
		buildErr = makePackage(root, distB, versionB, "amd64", "deb rpm")
		t.Logf("make package (%s: 2 arches x deb+rpm, %s: amd64 deb+rpm): %v", versionA, versionB, time.Since(start).Round(time.Second))
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return distA, distB
}

func makePackage(root, dist, version, arches, formats string) error {
	cmd := exec.Command("make", "-C", root, "package",
		"DIST="+dist, "PKG_VERSION="+version, "ARCHES="+arches, "PKG_FORMATS="+formats)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("pkg: make package %s: %w\n%s", version, err, out.String())
	}
	return nil
}

// run runs a command and returns its stdout; it fails the test on a
// non-zero exit, with stderr in the message.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, errOut, err := runExit(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// runExit runs a command and returns its stdout, stderr and exit error.
func runExit(name string, args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(name, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// layout is every file both formats install, from issue 9's package
// layout, with UNITS for the format's unit directory. The examples are the
// repository's examples/*.toml.
func layout(t *testing.T, unitDir string) []string {
	t.Helper()
	files := []string{
		"/usr/sbin/havip",
		"/etc/havip/havip.toml",
		unitDir + "/havip.service",
		unitDir + "/havip-realserver@.service",
		"/usr/share/man/man8/havip.8.gz",
		"/usr/share/man/man5/havip.toml.5.gz",
		"/usr/share/bash-completion/completions/havip",
		"/usr/lib/modules-load.d/havip.conf",
		"/usr/lib/sysusers.d/havip.conf",
		"/usr/share/doc/havip/changelog.gz",
	}
	examples, err := filepath.Glob(filepath.Join(repoRoot(t), "examples", "*.toml"))
	if err != nil || len(examples) == 0 {
		t.Fatalf("pkg: no examples/*.toml in the repository (%v)", err)
	}
	for _, e := range examples {
		files = append(files, "/usr/share/doc/havip/examples/"+filepath.Base(e))
	}
	return files
}

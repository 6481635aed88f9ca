package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	h "github.com/havip/havip/test/e2e/harness"
)

// The seed's three modes as examples pass `havip check` for each of their
// nodes, run as the operator runs it: the built binary, a key from
// `havip keygen`, and nothing on stderr (no problem, not even a warning).
// Only the pair key's path changes: /etc/havip/pair.key is a director's.
func TestModeExamplesCheck(t *testing.T) {
	bin := h.Binary(t)
	dir := t.TempDir()
	key := filepath.Join(dir, "pair.key")
	if out, err := exec.Command(bin, "keygen", key).CombinedOutput(); err != nil {
		t.Fatalf("havip keygen: %v\n%s", err, out)
	}
	for _, mode := range []string{"dr", "tun", "nat"} {
		example, err := os.ReadFile(filepath.Join("..", "..", "examples", mode+".toml"))
		if err != nil {
			t.Fatal(err)
		}
		const keyLine = `pair_key = "/etc/havip/pair.key"`
		if !bytes.Contains(example, []byte(keyLine)) {
			t.Fatalf("examples/%s.toml has no %s", mode, keyLine)
		}
		file := filepath.Join(dir, mode+".toml")
		if err := os.WriteFile(file, bytes.Replace(example, []byte(keyLine), []byte(`pair_key = "`+key+`"`), 1), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, node := range []string{"lb1", "lb2"} {
			cmd := exec.Command(bin, "check", "-c", file, "--node", node)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if err != nil || stderr.Len() > 0 || !strings.Contains(stdout.String(), ": ok (2 nodes") {
				t.Errorf("havip check examples/%s.toml --node %s: %v\nstdout: %s\nstderr: %s", mode, node, err, stdout.String(), stderr.String())
			}
		}
	}
}

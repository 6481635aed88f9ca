package conf

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/havip/havip/internal/pairwire"
)

// Checks that only this machine can answer, made by Load and never by
// Parse: paths havip creates that already hold something else.

// checkHost stats the control socket and the state directory; t is [site].
// A path that is not absolute already has its own problem.
func (p *parser) checkHost(t *table, s *Site) {
	// The daemon removes a stale socket before listening, so anything
	// else at that path would be deleted.
	if fi, err := os.Lstat(s.ControlSocket); err == nil && filepath.IsAbs(s.ControlSocket) && fi.Mode().Type() != fs.ModeSocket {
		p.hostErrorf(t, "control_socket", s.ControlSocket, "exists and is not a socket; havip will not replace it")
	}
	if s.PairKey != "" && filepath.IsAbs(s.PairKey) {
		if _, err := pairwire.LoadKey(s.PairKey); err != nil {
			t.errorf("pair_key", "%s", strings.TrimPrefix(err.Error(), "pairwire: pair key: "))
		}
	}
	if fi, err := os.Stat(s.StateDir); err == nil && filepath.IsAbs(s.StateDir) && !fi.IsDir() {
		p.hostErrorf(t, "state_dir", s.StateDir, "exists and is not a directory")
	}
}

// hostErrorf reports a problem with the path of key, at key, or at the
// table when the path is the default.
func (p *parser) hostErrorf(t *table, key, path, why string) {
	if t.has(key) {
		t.errorf(key, "%s %s", path, why)
		return
	}
	t.tableErrorf("%s %s (the default) %s", key, path, why)
}

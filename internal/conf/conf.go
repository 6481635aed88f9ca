// Package conf owns the havip site file: the one TOML file that both
// directors of a pair load. It decodes strictly (every unknown key is an
// error), validates in one pass that reports every problem at the line and
// column of the key it is about, and fills in defaults. It never touches
// the network or the kernel: choosing this node (SelectNode) is the only
// thing that asks the OS anything, and only for the hostname.
package conf

import (
	"errors"
	"fmt"
	"os"

	"github.com/BurntSushi/toml"
)

// Defaults that are not obvious from the key they belong to.
const (
	DefaultControlSocket = "/run/havip/havip.sock"
	DefaultMetrics       = "127.0.0.1:9110"
	DefaultStateDir      = "/var/lib/havip"
	DefaultPairPort      = 7519
	DefaultNodePriority  = 100
	DefaultSyncGroup     = "224.0.0.81"
	DefaultSyncPort      = 8848
)

// Load reads and validates the site file at path. The error is only for
// failing to read it; everything wrong inside the file is a Problem. The
// Site is nil when any problem is an error rather than a warning.
func Load(path string) (*Site, []Problem, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("conf: %w", err)
	}
	s, ps := Parse(path, data)
	return s, ps, nil
}

// Parse validates data as the site file named file (used in messages only).
// It returns every problem found, sorted by position; the Site is nil when
// any of them is an error.
func Parse(file string, data []byte) (*Site, []Problem) {
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		p := Problem{File: file, Line: 1, Msg: err.Error()}
		var pe toml.ParseError
		if errors.As(err, &pe) {
			// The decoder's Line can be one past the offending byte; its
			// byte offset is exact.
			at := (&indexer{src: data, lines: lineStarts(data)}).posAt(pe.Position.Start)
			if pe.Position.Start == 0 && pe.Position.Line > 1 {
				at = pos{line: pe.Position.Line}
			}
			p.Line, p.Col, p.Msg = at.line, at.col, pe.Message
		}
		return nil, []Problem{p}
	}
	p := &parser{file: file, ix: indexPositions(data)}
	s := p.site(p.newTable("", pos{line: 1}, raw))
	sortProblems(p.probs)
	if HasErrors(p.probs) {
		return nil, p.probs
	}
	s.File = file
	return s, p.probs
}

// Package conf owns the havip site file: the one TOML file that both
// directors of a pair load. It decodes strictly (every unknown key is an
// error), validates in one pass that reports every problem at the line and
// column of the key it is about, and fills in defaults. It is the only
// validator: the packages that take a Site rely on it being valid.
//
// It never touches the network or the kernel. Parse is pure; Load reads
// the file and stats two paths the file names, the control socket and the
// state directory, to refuse a file that would have havip replace
// something else; choosing this node (SelectNode) asks for the hostname.
// Input is capped (16 MiB, 10 levels of nesting, 512-byte key paths)
// before it is decoded, and every check is linear in the input.
package conf

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
	"time"

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

// Connection sync defaults ([sync]); README "Connection sync" explains each.
const (
	DefaultSyncMaxLen        = 100 // at most two connections a message
	DefaultSyncVersion       = 1
	DefaultSyncThreshold     = 3
	DefaultSyncPeriod        = 0 // 0 with a refresh period: sync on state changes
	DefaultSyncRefreshPeriod = 10 * time.Second
	DefaultSyncFlush         = 20 * time.Millisecond
)

// MaxSize is the largest site file Load and Parse accept: 16 MiB. The
// reference example is a few kilobytes; a site of 10,000 virtual servers
// with 10 real servers each, written out in tables, is about 8 MiB.
const MaxSize = 16 << 20

// maxProblems is how many problems Load and Parse report; the rest are
// counted in one final problem.
const maxProblems = 100

// Load reads and validates the site file at path. The error is only for
// failing to read it; everything wrong inside the file is a Problem. The
// Site is nil when any problem is an error rather than a warning.
//
// Unlike Parse, Load also looks at this machine: it stats the control
// socket and state directory paths (host.go).
func Load(path string) (*Site, []Problem, error) {
	data, size, err := read(path)
	if err != nil {
		return nil, nil, err
	}
	if size > MaxSize {
		return nil, []Problem{tooBig(path, size)}, nil
	}
	s, ps := parse(path, data, true)
	return s, ps, nil
}

// ReadFile reads the site file at path as Load does, for a client that
// only looks into it: at most one byte past MaxSize (Parse refuses that as
// too big), and only from a regular file.
func ReadFile(path string) ([]byte, error) {
	data, _, err := read(path)
	return data, err
}

// errNotRegular refuses a site file that is a FIFO, a device, a directory
// or a socket: opening a FIFO blocks until a writer comes, and the daemon
// reads the file on its controller, which must never hang on it.
var errNotRegular = errors.New("not a regular file")

// read reads at most MaxSize+1 bytes of the regular file at path and
// returns them with the file's size.
func read(path string) ([]byte, int64, error) {
	// O_NONBLOCK: a FIFO opens at once (to be refused below), where a
	// plain open would wait for a writer; a regular file ignores it.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("conf: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("conf: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, fmt.Errorf("conf: %w", &fs.PathError{Op: "open", Path: path, Err: errNotRegular})
	}
	// Read one byte past the limit, never the whole of an oversized file,
	// into a buffer of the file's size: io.ReadAll, growing its buffer
	// from 512 bytes, reallocated and copied a large site's 8 MiB about
	// 40 times.
	buf := bytes.NewBuffer(make([]byte, 0, min(fi.Size(), MaxSize)+bytes.MinRead))
	if _, err := buf.ReadFrom(io.LimitReader(f, MaxSize+1)); err != nil {
		return nil, 0, fmt.Errorf("conf: %w", err)
	}
	return buf.Bytes(), max(int64(buf.Len()), fi.Size()), nil
}

// Parse validates data as the site file named file (used in messages only).
// It returns every problem found, sorted by position, at most 100 and then
// one that counts the rest; the Site is nil when any of them is an error.
// It never looks at the machine it runs on.
func Parse(file string, data []byte) (*Site, []Problem) {
	return parse(file, data, false)
}

func parse(file string, data []byte, onHost bool) (*Site, []Problem) {
	// The caps come before decoding, so that the decoder's cost, and
	// the index's, stay linear in the file (see maxDepth). decodePlain
	// never spells a path out and stops at the same bounds, so that it
	// can come first.
	if len(data) > MaxSize {
		return nil, []Problem{tooBig(file, int64(len(data)))}
	}
	raw, ix, ok := decodePlain(data)
	if !ok {
		var bad *Problem
		if raw, ix, bad = decodeTOML(file, data); bad != nil {
			return nil, []Problem{*bad}
		}
	}
	return build(file, data, raw, ix, onHost)
}

// decodeTOML scans data for positions and decodes it with the full TOML
// decoder: what decodePlain leaves, and every file with a syntax error,
// which it reports.
func decodeTOML(file string, data []byte) (map[string]any, *positions, *Problem) {
	x := scan(data)
	if x.refused != "" {
		return nil, nil, &Problem{File: file, Line: x.refusedAt.line, Col: x.refusedAt.col, Msg: x.refused}
	}
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		p := Problem{File: file, Line: 1, Msg: err.Error()}
		var pe toml.ParseError
		if errors.As(err, &pe) {
			// The decoder's Line can be one past the offending byte; its
			// byte offset is exact.
			at := x.posAt(pe.Position.Start)
			if pe.Position.Start == 0 && pe.Position.Line > 1 {
				at = pos{line: pe.Position.Line}
			}
			p.Line, p.Col, p.Msg = at.line, at.col, pe.Message
		}
		return nil, nil, &p
	}
	return raw, x.ix, nil
}

// build validates the decoded file, raw, with ix where its keys are.
func build(file string, data []byte, raw map[string]any, ix *positions, onHost bool) (*Site, []Problem) {
	p := &parser{file: file, ix: ix, onHost: onHost}
	s := p.site(p.newTable("", 0, pos{line: 1}, raw))
	sortProblems(p.probs)
	if HasErrors(p.probs) {
		return nil, capProblems(p.probs)
	}
	s.File = file
	s.Revision = revision(data)
	return s, capProblems(p.probs)
}

func tooBig(file string, n int64) Problem {
	return Problem{File: file, Line: 1, Msg: fmt.Sprintf("site file is %d bytes; the limit is %d MiB", n, MaxSize>>20)}
}

// revision names the file's contents: the first 12 hex digits of their
// SHA-256, so an operator can see that both directors run the same file.
func revision(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:6])
}

// capProblems keeps the first maxProblems of the sorted ps and counts the
// rest in one more, placed where the first of them is. That one is an
// error when any of the rest is, so HasErrors still tells the truth.
func capProblems(ps []Problem) []Problem {
	if len(ps) <= maxProblems {
		return ps
	}
	rest := ps[maxProblems:]
	more := Problem{File: rest[0].File, Line: rest[0].Line, Warning: !HasErrors(rest),
		Msg: fmt.Sprintf("... and %d more problems", len(rest))}
	return append(ps[:maxProblems:maxProblems], more)
}

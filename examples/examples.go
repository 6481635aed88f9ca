// Package examples holds havip's example site files, embedded so that the
// tests that run where the source tree is not (the VM lab) load these very
// files. It has no code.
package examples

import "embed"

// Files is every *.toml of this directory.
//
//go:embed *.toml
var Files embed.FS

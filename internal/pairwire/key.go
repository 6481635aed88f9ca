// Package pairwire is the wire protocol of the pair link between two
// havip directors: the pre-shared key file, a mutual HMAC-SHA256
// handshake over a stream, and authenticated, sequenced frames.
//
// It owns only bytes on a net.Conn: it never dials, listens, decides who
// a peer is, or interprets a frame's payload. Without a key (Key(nil)) it
// speaks the same protocol with an empty HMAC key, which proves nothing:
// callers must treat such a session as unauthenticated.
package pairwire

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// KeySize is the length of a pair key in bytes.
const KeySize = 32

// Key is a pair key; nil means none (an unauthenticated link).
type Key []byte

// ErrKey is wrapped by every key-file problem.
var ErrKey = errors.New("pairwire: pair key")

// ParseKey reads a key file's content: 64 hex digits on one line;
// blank lines and lines starting with # are ignored.
func ParseKey(b []byte) (Key, error) {
	var hexes []string
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		hexes = append(hexes, line)
	}
	if len(hexes) != 1 {
		return nil, fmt.Errorf("%w: want one line of %d hex digits (write one with havip keygen), found %d lines", ErrKey, 2*KeySize, len(hexes))
	}
	k, err := hex.DecodeString(hexes[0])
	if err != nil || len(k) != KeySize {
		return nil, fmt.Errorf("%w: want %d hex digits (write one with havip keygen)", ErrKey, 2*KeySize)
	}
	if bytes.Equal(k, make([]byte, KeySize)) {
		return nil, fmt.Errorf("%w: the key is all zeros", ErrKey)
	}
	return Key(k), nil
}

// LoadKey reads the key file at path. It must be a regular file that
// neither group nor others can read or write.
func LoadKey(path string) (Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrKey, path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %04o: group and others must have no access (chmod 600 %s)", ErrKey, path, perm, path)
	}
	b := make([]byte, 4096)
	n, err := f.Read(b)
	if err != nil && n == 0 {
		return nil, fmt.Errorf("%w: %s: %w", ErrKey, path, err)
	}
	if n == len(b) {
		return nil, fmt.Errorf("%w: %s is too large for a key file", ErrKey, path)
	}
	k, err := ParseKey(b[:n])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// WriteNewKey writes a fresh random key to path with mode 0600. It
// refuses to replace an existing file: both directors must hold the same
// key, so a new one is a decision, not an accident.
func WriteNewKey(path string) error {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return fmt.Errorf("%w: random: %w", ErrKey, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: %s exists; remove it first to replace the key (both directors need the new one): %w", ErrKey, path, fs.ErrExist)
		}
		return fmt.Errorf("%w: %w", ErrKey, err)
	}
	content := "# havip pair key: copy this file to both directors (mode 0600)\n" + hex.EncodeToString(k) + "\n"
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("%w: %w", ErrKey, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("%w: %w", ErrKey, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("%w: %w", ErrKey, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

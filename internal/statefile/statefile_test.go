package statefile

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// logTo returns a logger writing text lines into b.
func logTo(b *bytes.Buffer) *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

// names lists the entries of dir.
func names(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

var when = time.Date(2026, 3, 4, 5, 6, 7, 0, time.FixedZone("CET", 3600))

const asideName = "owned.json.corrupt-20260304T040607Z" // in UTC

func TestReadMissing(t *testing.T) {
	var log bytes.Buffer
	found, err := Read(filepath.Join(t.TempDir(), "owned.json"), logTo(&log), func([]byte) error {
		t.Error("decode called for a missing file")
		return nil
	})
	if found || err != nil {
		t.Errorf("Read = %v, %v; want false, nil", found, err)
	}
	if log.Len() != 0 {
		t.Errorf("logged for a missing file: %s", log.String())
	}
}

func TestReadGood(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "owned.json")
	if err := os.WriteFile(path, []byte(`{"ok":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	var got string
	var log bytes.Buffer
	found, err := read(path, logTo(&log), func(b []byte) error { got = string(b); return nil }, when)
	if !found || err != nil {
		t.Fatalf("Read = %v, %v; want true, nil", found, err)
	}
	if got != `{"ok":1}` {
		t.Errorf("decode got %q", got)
	}
	if diff := cmp.Diff([]string{"owned.json"}, names(t, dir)); diff != "" || log.Len() != 0 {
		t.Errorf("a good file was moved or logged (-want +got):\n%s%s", diff, log.String())
	}
}

// An empty or undecodable file is moved aside, logged once, and reported
// as missing.
func TestReadUnusable(t *testing.T) {
	for _, tt := range []struct {
		name, content, why string
	}{
		{"empty", "", "reason=\"empty file\""},
		{"garbage", "\x00\x00{\"serv", "reason=\"bad json\""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "owned.json")
			if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			var log bytes.Buffer
			found, err := read(path, logTo(&log), func([]byte) error { return errors.New("bad json") }, when)
			if found || err != nil {
				t.Fatalf("Read = %v, %v; want false, nil", found, err)
			}
			if diff := cmp.Diff([]string{asideName}, names(t, dir)); diff != "" {
				t.Errorf("directory (-want +got):\n%s", diff)
			}
			if b, _ := os.ReadFile(filepath.Join(dir, asideName)); string(b) != tt.content {
				t.Errorf("aside file holds %q, want %q", b, tt.content)
			}
			lines := strings.Split(strings.TrimSpace(log.String()), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], tt.why) || !strings.Contains(lines[0], "moved_to="+filepath.Join(dir, asideName)) {
				t.Errorf("want one log line with %s and the new name, got:\n%s", tt.why, log.String())
			}
		})
	}
}

// Bad files moved aside in the same second keep their own names.
func TestReadAsideCollision(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "owned.json")
	bad := func([]byte) error { return errors.New("bad") }
	for _, content := range []string{"first", "second", "third"} {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if found, err := read(path, slog.New(slog.DiscardHandler), bad, when); found || err != nil {
			t.Fatalf("Read = %v, %v; want false, nil", found, err)
		}
	}
	got := map[string]string{}
	for _, n := range names(t, dir) {
		b, _ := os.ReadFile(filepath.Join(dir, n))
		got[n] = string(b)
	}
	want := map[string]string{asideName: "first", asideName + "-1": "second", asideName + "-2": "third"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("directory (-want +got):\n%s", diff)
	}
}

// dirAtPath returns a new directory and the path owned.json in it, where a
// directory stands instead of a file.
func dirAtPath(t *testing.T) (dir, path string) {
	t.Helper()
	dir = t.TempDir()
	path = filepath.Join(dir, "owned.json")
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir, path
}

// An error other than a missing file is the caller's to handle.
func TestReadOtherError(t *testing.T) {
	dir, path := dirAtPath(t)
	found, err := Read(path, slog.New(slog.DiscardHandler), func([]byte) error { return nil })
	if found || err == nil || !strings.HasPrefix(err.Error(), "statefile: ") {
		t.Errorf("Read of a directory = %v, %v; want an error prefixed statefile:", found, err)
	}
	if diff := cmp.Diff([]string{"owned.json"}, names(t, dir)); diff != "" {
		t.Errorf("directory (-want +got):\n%s", diff)
	}
}

// Write puts a new file in place of the old one rather than rewriting the
// old one: a reader holding the old file still sees all of it. Nothing but
// the file is left in the directory.
func TestWriteReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "owned.json")
	if err := Write(path, []byte("old contents"), 0o640); err != nil {
		t.Fatal(err)
	}
	old, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := Write(path, []byte("new"), 0o640); err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(old); string(b) != "old contents" {
		t.Errorf("the old file was changed in place: %q", b)
	}
	if b, _ := os.ReadFile(path); string(b) != "new" {
		t.Errorf("file holds %q, want %q", b, "new")
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v (%v), want 0640", fi.Mode(), err)
	}
	if diff := cmp.Diff([]string{"owned.json"}, names(t, dir)); diff != "" {
		t.Errorf("directory after Write (-want +got):\n%s", diff)
	}
}

func TestWriteMissingDir(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gone", "owned.json")
	err := Write(path, []byte("x"), 0o644)
	if !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), "statefile: ") {
		t.Errorf("Write into a missing directory = %v, want a statefile: error wrapping ErrNotExist", err)
	}
}

// A rename that fails (a directory stands at path) leaves no temporary
// file behind.
func TestWriteFailureLeavesNoTemp(t *testing.T) {
	dir, path := dirAtPath(t)
	if err := Write(path, []byte("x"), 0o644); err == nil {
		t.Fatal("Write over a directory succeeded")
	}
	if diff := cmp.Diff([]string{"owned.json"}, names(t, dir)); diff != "" {
		t.Errorf("directory after a failed Write (-want +got):\n%s", diff)
	}
}

package ipvsync

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// readOwnedFile returns the services listed in dir's state file.
func readOwnedFile(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, OwnedFile))
	if err != nil {
		t.Fatal(err)
	}
	var st struct{ Services []string }
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("state file %q: %v", b, err)
	}
	return st.Services
}

// A state file cut short by a power cut (empty) or garbled does not stop
// the reconciler: it is moved aside, and the reconciler owns nothing but
// what the site declares. A service havip made before the cut and the site
// no longer declares is then left alone, as if another program owned it.
func TestNewReconcilerUnusableStateFile(t *testing.T) {
	for _, tt := range []struct{ name, content string }{
		{"empty", ""},
		{"garbage", "{\"services\": [\"tcp 192.168.0.210:80\", \"tcp 192.16"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k := &FakeKernel{}
			reconcile(t, newRec(t, k, ""), desired(nil, web2())) // before the cut
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, OwnedFile), []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			var log bytes.Buffer
			r, err := NewReconciler(k, dir, slog.New(slog.NewTextHandler(&log, nil)))
			if err != nil {
				t.Fatalf("NewReconciler over a %s state file: %v", tt.name, err)
			}
			if got := r.Owned(); len(got) != 0 {
				t.Errorf("owned = %v, want nothing", got)
			}
			aside, _ := filepath.Glob(filepath.Join(dir, OwnedFile+".corrupt-*"))
			if len(aside) != 1 {
				t.Fatalf("files moved aside: %v, want one", aside)
			}
			if b, _ := os.ReadFile(aside[0]); string(b) != tt.content {
				t.Errorf("aside file holds %q, want the old contents", b)
			}
			if n := strings.Count(log.String(), "moved aside"); n != 1 {
				t.Errorf("want one log line about the move, got:\n%s", log.String())
			}

			k.ResetCounts()
			ch := reconcile(t, r, desired(nil, web()))
			if len(ch) != 3 || ch[0].Op != OpAddService {
				t.Errorf("changes = %v, want web created", ops(ch))
			}
			for _, c := range k.Calls {
				if strings.Contains(c, ":8080") {
					t.Errorf("touched the service no longer known to be ours: %s", c)
				}
			}
			if diff := cmp.Diff([]string{"tcp 192.168.0.210:80"}, readOwnedFile(t, dir)); diff != "" {
				t.Errorf("state file after reconcile (-want +got):\n%s", diff)
			}
			if e := r.StateError(); e != "" {
				t.Errorf("StateError = %q", e)
			}
		})
	}
}

// A state file that cannot be written never stops reconciling: the owned
// set is kept in memory, StateError says why, and every later reconcile
// (full or targeted, with changes or none) writes again until it works.
func TestStateWriteFailureKeepsReconciling(t *testing.T) {
	for _, tt := range []struct {
		name  string
		block func(dir string) error // makes the state file unwritable
		clear func(dir string) error
	}{
		{"a directory where the file goes",
			func(dir string) error { return os.MkdirAll(filepath.Join(dir, OwnedFile), 0o755) },
			func(dir string) error { return os.Remove(filepath.Join(dir, OwnedFile)) }},
		{"a regular file where the directory goes",
			func(dir string) error { return os.WriteFile(dir, nil, 0o644) },
			func(dir string) error { return os.Remove(dir) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "state")
			k := &FakeKernel{}
			r := newRec(t, k, dir)
			if err := tt.block(dir); err != nil {
				t.Fatal(err)
			}

			ch := reconcile(t, r, desired(nil, web(), web2()))
			if len(ch) != 6 {
				t.Fatalf("changes with an unwritable state file = %v, want both services created", ops(ch))
			}
			serr := r.StateError()
			if !strings.HasPrefix(serr, "ipvsync: save owned services: ") {
				t.Fatalf("StateError = %q", serr)
			}
			t.Logf("StateError: %s", serr)
			if p := r.Published(); p.StateError != serr || p.LastError != "" || len(p.Rows) != 2 {
				t.Errorf("Published: StateError %q, LastError %q, %d rows; want the state error, no reconcile error, 2 rows",
					p.StateError, p.LastError, len(p.Rows))
			}

			// The owned set lives on in memory: dropping web2 removes it.
			ch = reconcile(t, r, desired(nil, web()))
			if diff := cmp.Diff([]string{"del-service tcp 192.168.0.210:8080"}, ops(ch)); diff != "" {
				t.Errorf("dropping web2 (-want +got):\n%s", diff)
			}
			if r.StateError() == "" {
				t.Error("StateError cleared while the file is still unwritable")
			}

			// With the obstacle gone, a targeted reconcile with nothing
			// to change in the kernel writes the file.
			if err := tt.clear(dir); err != nil {
				t.Fatal(err)
			}
			k.ResetCounts()
			if ch, err := r.ReconcileChanges(desired(nil, web())); err != nil || len(ch) != 0 || k.Writes != 0 {
				t.Fatalf("ReconcileChanges of an applied table: %v %v, %d writes", ops(ch), err, k.Writes)
			}
			if e, p := r.StateError(), r.Published(); e != "" || p.StateError != "" {
				t.Errorf("after the obstacle went: StateError %q, published %q", e, p.StateError)
			}
			if diff := cmp.Diff([]string{"tcp 192.168.0.210:80"}, readOwnedFile(t, dir)); diff != "" {
				t.Errorf("state file (-want +got):\n%s", diff)
			}
			if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 1 {
				t.Errorf("state directory holds %v, want the state file alone", left)
			}
		})
	}
}

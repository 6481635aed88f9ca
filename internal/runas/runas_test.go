package runas

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// A script gets the clean environment and "/" whatever the daemon's
// environment and working directory are, and its program is looked up in
// Path, not in the daemon's PATH.
func TestCommandEnvironment(t *testing.T) {
	t.Setenv("PATH", "/nonexistent")
	t.Setenv("NOTIFY_SOCKET", "/run/systemd/notify")
	t.Chdir(t.TempDir())
	for _, tc := range []struct {
		name string
		u    *User
		home string
	}{
		{"no user", nil, "/"},
		{"a user without a home", &User{UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}, "/"},
		{"a user with a home", &User{UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), Home: "/var/empty"}, "/var/empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Command(context.Background(), tc.u, []string{"sh", "-c", "pwd; env | sort"}, "X_EXTRA=1").Output()
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			want := []string{"/", "HOME=" + tc.home, "LANG=C", "PATH=" + Path, "PWD=/", "X_EXTRA=1"}
			var got []string
			for _, l := range lines {
				if !strings.HasPrefix(l, "_=") && !strings.HasPrefix(l, "SHLVL=") { // what some shells set themselves
					got = append(got, l)
				}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("pwd and environment (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLook(t *testing.T) {
	if p, err := Look("sh"); err != nil || !strings.HasSuffix(p, "/sh") || !strings.HasPrefix(p, "/") {
		t.Errorf("Look(sh) = %q, %v", p, err)
	}
	if p, err := Look("./relative"); err != nil || p != "./relative" {
		t.Errorf("a name with a slash is taken as it is: %q, %v", p, err)
	}
	if _, err := Look("no-such-program-havip"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Look of a missing program: %v, want ErrNotFound", err)
	}
	err := Command(context.Background(), nil, []string{"no-such-program-havip"}).Run()
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("running a missing program: %v, want ErrNotFound", err)
	}
}

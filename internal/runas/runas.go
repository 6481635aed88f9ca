// Package runas starts an operator's program (an exec check, a notify
// hook) the way havip runs every script: as the site's script user (its
// uid and gid, no supplementary groups), in its own process group, with
// "/" as working directory and a clean environment: PATH (Path), HOME of
// the user (or /), LANG=C and what the caller adds, nothing of the
// daemon's own (no NOTIFY_SOCKET, no credentials). It never decides who
// the user is: conf resolves [site] script_user when it loads the site.
package runas

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// Path is the PATH every script gets, and where a program named without
// a slash is looked up (Look): not the daemon's own PATH.
const Path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// User is who scripts run as.
type User struct {
	Name string // for messages
	UID  uint32
	GID  uint32 // [site] script_group, else the user's primary group
	Home string // HOME; "" gives "/"
}

// Env is the environment of a script run as u: PATH, HOME, LANG and
// extra ("KEY=value") after them. A nil u gets HOME=/.
func (u *User) Env(extra ...string) []string {
	home := "/"
	if u != nil && u.Home != "" {
		home = u.Home
	}
	return append([]string{"PATH=" + Path, "HOME=" + home, "LANG=C"}, extra...)
}

// ErrNotFound is returned (wrapped) by Look for a program found nowhere in Path.
var ErrNotFound = errors.New("not found")

// Look resolves a program name as a script's argv[0]: a name with a
// slash is taken as it is, any other is searched for in Path, the first
// regular file with an execute bit wins.
func Look(name string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	for dir := range strings.SplitSeq(Path, ":") {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("runas: %q: %w in %s", name, ErrNotFound, Path)
}

// Command returns argv (non-empty) ready to run as u with the clean
// environment and extra added to it. A nil u runs as this process's own
// user (only tests and a site that was parsed but not loaded on this host
// have none). A program Look cannot find fails at Start with its error.
// Only root can drop supplementary groups: run by another user, the
// process keeps that user's groups (and can become no one else).
func Command(ctx context.Context, u *User, argv []string, extra ...string) *exec.Cmd {
	path, err := Look(argv[0])
	if err != nil {
		path = argv[0]
	}
	cmd := exec.CommandContext(ctx, path, argv[1:]...)
	if err != nil {
		cmd.Err = err
	}
	cmd.Args[0] = argv[0]
	cmd.Env = u.Env(extra...)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if u != nil {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: []uint32{}, NoSetGroups: os.Geteuid() != 0}
	}
	return cmd
}

// Unsafe says why the program at path must not run as uid when only root
// and uid may change it, or "" when it is safe: the file and every
// directory above it (following symbolic links: the path as written and
// the file it resolves to) must be owned by root or uid, writable by no
// group but root's (gid 0) and by no one else, except a directory with
// the sticky bit (like /tmp: no one else can replace what is in it).
func Unsafe(path string, uid uint32) string {
	paths := []string{path}
	if real, err := filepath.EvalSymlinks(path); err == nil && real != path {
		paths = append(paths, real)
	}
	for _, p := range paths {
		for q := filepath.Clean(p); ; q = filepath.Dir(q) {
			if why := unsafeOne(q, uid); why != "" {
				return why
			}
			if q == "/" || q == "." {
				break
			}
		}
	}
	return ""
}

func unsafeOne(p string, uid uint32) string {
	fi, err := os.Stat(p)
	if err != nil {
		return err.Error()
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Sprintf("%s: cannot read its owner", p)
	}
	what := "file"
	if fi.IsDir() {
		what = "directory"
	}
	sticky := fi.IsDir() && fi.Mode()&fs.ModeSticky != 0
	switch m := fi.Mode().Perm(); {
	case st.Uid != 0 && st.Uid != uid:
		return fmt.Sprintf("%s %s is owned by uid %d, neither root nor the script user", what, p, st.Uid)
	case m&0o002 != 0 && !sticky:
		return fmt.Sprintf("%s %s is writable by anyone (mode %04o)", what, p, m)
	case m&0o020 != 0 && st.Gid != 0 && !sticky:
		return fmt.Sprintf("%s %s is writable by group %d (mode %04o)", what, p, st.Gid, m)
	}
	return ""
}

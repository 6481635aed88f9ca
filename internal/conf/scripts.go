package conf

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"

	"github.com/havip/havip/internal/runas"
)

// Who runs scripts (exec checks, notify hooks): [site] script_user,
// script_group and script_security. Load resolves the user on this host
// and checks every script's program; Parse only reads the keys.
//
// The default user is "havip"; where it does not exist, "nobody", with a
// warning when the site has a script. A named user or group that does not
// exist is an error; script_user = "root" is allowed with a warning.
// script_security (default true) refuses a program that anyone but root
// and the script user could change: see runas.Unsafe for what is checked.

// DefaultScriptUser is who scripts run as unless [site] script_user says
// otherwise; FallbackScriptUser where that user does not exist.
const (
	DefaultScriptUser  = "havip"
	FallbackScriptUser = "nobody"
)

// defaultScriptUser is DefaultScriptUser; a test points it at a user that
// cannot exist, so the fallback is tested on any host.
var defaultScriptUser = DefaultScriptUser

// scriptState is what [site] says about scripts, and what Load found.
type scriptState struct {
	user     *runas.User // nil: not resolved (Parse, or an error)
	security bool
	site     *table // [site], where the fallback warning goes
	fallback bool   // the default user does not exist: user is nobody
	seen     bool   // the site has a script
	refusals map[string]string
}

// scriptKeys reads [site]'s script keys into s and, on this host,
// resolves the user.
func (p *parser) scriptKeys(t *table, s *Site) {
	st := &p.scripts
	st.site, st.security = t, true
	if v, ok := t.boolean("script_security"); ok {
		st.security = v
		if !v {
			t.warnf("script_security", "off: scripts run even when users other than root and the script user can change them")
		}
	}
	s.ScriptSecurity = st.security
	name, named := t.str("script_user")
	if named && name == "" {
		t.errorf("script_user", "must not be empty: name a user, or leave the key out for %q", DefaultScriptUser)
		return
	}
	group, grouped := t.str("script_group")
	if grouped && group == "" {
		t.errorf("script_group", "must not be empty: name a group, or leave the key out for the user's own")
		return
	}
	if !p.onHost {
		return
	}
	var u *user.User
	var err error
	if named {
		if u, err = user.Lookup(name); err != nil {
			t.errorf("script_user", "%s", lookupError("user", name, err))
			return
		}
	} else if u, err = user.Lookup(defaultScriptUser); errors.As(err, new(user.UnknownUserError)) {
		st.fallback = true
		if u, err = user.Lookup(FallbackScriptUser); err != nil {
			t.tableErrorf("neither user %s (the default script_user) nor %s exists on this host: create a system user %s, or name one in script_user",
				defaultScriptUser, FallbackScriptUser, defaultScriptUser)
			return
		}
	} else if err != nil {
		t.tableErrorf("script_user %s: %v", defaultScriptUser, err)
		return
	}
	ru := &runas.User{Name: u.Username, Home: u.HomeDir}
	uid, uerr := strconv.ParseUint(u.Uid, 10, 32)
	gid, gerr := strconv.ParseUint(u.Gid, 10, 32)
	if uerr != nil || gerr != nil {
		t.tableErrorf("user %s has uid %q, gid %q: not numbers", u.Username, u.Uid, u.Gid)
		return
	}
	if grouped {
		g, err := user.LookupGroup(group)
		if err != nil {
			t.errorf("script_group", "%s", lookupError("group", group, err))
			return
		}
		if gid, err = strconv.ParseUint(g.Gid, 10, 32); err != nil {
			t.errorf("script_group", "group %s has gid %q: not a number", group, g.Gid)
			return
		}
	}
	ru.UID, ru.GID = uint32(uid), uint32(gid)
	if ru.UID == 0 {
		t.warnf("script_user", "exec checks and notify hooks run as root (uid 0): a fault or a compromise of any script is one of the director")
	}
	st.user, s.ScriptUser = ru, ru
}

func lookupError(what, name string, err error) string {
	if errors.As(err, new(user.UnknownUserError)) || errors.As(err, new(user.UnknownGroupError)) {
		return fmt.Sprintf("no %s %q on this host", what, name)
	}
	return fmt.Sprintf("%s %q: %v", what, name, err)
}

// script notes that key of t names program prog, checks it on this host,
// and returns who runs it (nil when not resolved).
func (p *parser) script(t *table, key, prog string) *runas.User {
	st := &p.scripts
	st.seen = true
	if !p.onHost || st.user == nil {
		return st.user
	}
	why, done := st.refusals[prog]
	if !done {
		why = st.refuse(prog)
		if st.refusals == nil {
			st.refusals = map[string]string{}
		}
		st.refusals[prog] = why
	}
	if why != "" {
		t.errorf(key, "%s", why)
	}
	return st.user
}

// refuse says why prog must not run as the script user, or "".
func (st *scriptState) refuse(prog string) string {
	path, err := runas.Look(prog)
	if err != nil {
		return fmt.Sprintf("%q is no program in %s (the PATH scripts get; write the full path)", prog, runas.Path)
	}
	if _, err := os.Stat(path); err != nil {
		return fmt.Sprintf("%s: %v", prog, errors.Unwrap(err))
	}
	if !st.security {
		return ""
	}
	if why := runas.Unsafe(path, st.user.UID); why != "" {
		return fmt.Sprintf("%s is refused by script_security: %s; only root and the script user (%s) may be able to change a script and the directories above it (or set [site] script_security = false)",
			prog, why, st.user.Name)
	}
	return ""
}

// scriptsDone gives the fallback warning once, if the site has a script.
func (p *parser) scriptsDone() {
	if st := &p.scripts; st.seen && st.fallback && st.site != nil {
		st.site.tableWarnf("no user %s on this host: exec checks and notify hooks run as %s; create a system user %s (useradd --system %s) or name one in script_user",
			defaultScriptUser, FallbackScriptUser, defaultScriptUser, defaultScriptUser)
	}
}

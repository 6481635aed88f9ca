package conf

import (
	"path/filepath"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// PeekControlSocket finds the control socket a site file names, without
// validating the file: a client must reach the daemon even while the file
// is invalid (half edited, or just refused by a reload). When the TOML
// parses it reads site.control_socket; when it does not, it scans the
// lines of the [site] table for control_socket = "...". ok is false when
// no absolute path is found (the daemon refuses any other); the caller
// then uses DefaultControlSocket.
func PeekControlSocket(data []byte) (path string, ok bool) {
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err == nil {
		site, _ := raw["site"].(map[string]any)
		path, _ = site["control_socket"].(string)
	} else {
		path = scanControlSocket(string(data))
	}
	return path, filepath.IsAbs(path)
}

// scanControlSocket reads control_socket = "..." (or '...') inside [site],
// line by line, trusting nothing else in the file.
func scanControlSocket(data string) string {
	inSite := false
	for line := range strings.Lines(data) {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") {
			header, _, _ := strings.Cut(line, "#")
			header = strings.TrimSpace(header)
			inSite = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(header, "["), "]")) == "site"
			continue
		}
		key, val, found := strings.Cut(line, "=")
		if !inSite || !found || strings.Trim(strings.TrimSpace(key), `"'`) != "control_socket" {
			continue
		}
		if s, ok := scanString(strings.TrimSpace(val)); ok {
			return s
		}
	}
	return ""
}

// scanString reads the one-line TOML string that v begins with.
func scanString(v string) (string, bool) {
	switch {
	case strings.HasPrefix(v, `"`):
		for i := 1; i < len(v); i++ {
			switch v[i] {
			case '\\':
				i++
			case '"':
				s, err := strconv.Unquote(v[:i+1])
				return s, err == nil
			}
		}
	case strings.HasPrefix(v, "'"):
		s, _, found := strings.Cut(v[1:], "'")
		return s, found
	}
	return "", false
}

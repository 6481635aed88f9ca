package conf

import (
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/google/go-cmp/cmp"
)

// TestKeysAreWhatTheDecoderAsks holds the documented keys to exactly the
// keys the decoder asks for: a key added to the decoder and not to Keys
// (or left in Keys after the decoder dropped it) fails here.
func TestKeysAreWhatTheDecoderAsks(t *testing.T) {
	asked := askedKeys(t)
	documented := map[string]bool{}
	for _, k := range Keys() {
		if documented[k.Path] {
			t.Errorf("Keys lists %s twice", k.Path)
		}
		documented[k.Path] = true
		if k.Type == "" || k.Doc == "" {
			t.Errorf("%s: no type or no doc", k.Path)
		}
		if !asked[k.Path] {
			t.Errorf("Keys documents %s, which the decoder never asks for", k.Path)
		}
	}
	for k := range asked {
		if !documented[k] {
			t.Errorf("the decoder asks for %s, which Keys does not document", k)
		}
	}
}

// TestKeysTablesFirst: the manual lists a table's keys under it, so each
// key's table must come before it.
func TestKeysTablesFirst(t *testing.T) {
	seen := map[string]bool{"": true}
	for _, k := range Keys() {
		if !seen[KeyTable(k.Path)] {
			t.Errorf("%s comes before its table %s", k.Path, KeyTable(k.Path))
		}
		seen[k.Path] = true
		seen["check:"] = seen["check"] && seen["virtual_server[].check"]
	}
}

// defaultsBase is a valid site with every kind of table, to which
// TestKeyDefaults adds one key at a time.
func defaultsBase() map[string]any {
	return map[string]any{
		"site": map[string]any{"name": "s"},
		"node": []map[string]any{
			{"name": "lb1", "address": "192.168.0.11"},
			{"name": "lb2", "address": "192.168.0.12"},
		},
		"vrrp": []map[string]any{{
			"name": "front", "interface": "eth0", "vrid": int64(51), "vips": []any{"192.168.0.210/24"},
			"track": []map[string]any{{"check": "up"}},
		}},
		"virtual_server": []map[string]any{{
			"name": "web", "address": "192.168.0.210:80",
			"check":       map[string]any{},
			"real_server": []map[string]any{{"address": "192.168.0.175:80"}},
		}},
		"check": []map[string]any{{"name": "up", "target": "192.168.0.1:80"}},
		"sync":  map[string]any{"interface": "eth1"},
	}
}

// setKey sets the key at a Keys path in the base site; a check: key in
// both kinds of check.
func setKey(t *testing.T, site map[string]any, path string, v any) {
	t.Helper()
	if rest, ok := strings.CutPrefix(path, "check:"); ok {
		setKey(t, site, "virtual_server[].check."+rest, v)
		setKey(t, site, "check[]."+rest, v)
		return
	}
	parts := strings.Split(path, ".")
	m := site
	for _, p := range parts[:len(parts)-1] {
		switch sub := m[strings.TrimSuffix(p, "[]")].(type) {
		case map[string]any:
			m = sub
		case []map[string]any:
			m = sub[0]
		default:
			t.Fatalf("%s: the base site has no table %s", path, p)
		}
	}
	m[parts[len(parts)-1]] = v
}

func parseMap(t *testing.T, site map[string]any) (*Site, []Problem) {
	t.Helper()
	data, err := toml.Marshal(site)
	if err != nil {
		t.Fatal(err)
	}
	return parseT("defaults.toml", data)
}

// TestKeyDefaults: writing a key with its documented default gives the
// same site as leaving it out, so the documented defaults are the ones
// applied.
func TestKeyDefaults(t *testing.T) {
	want, ps := parseMap(t, defaultsBase())
	if HasErrors(ps) {
		t.Fatalf("the base site is invalid: %v", ps)
	}
	n := 0
	for _, k := range Keys() {
		if k.Default == "" {
			continue
		}
		n++
		var doc map[string]any
		if _, err := toml.Decode("v = "+k.Default, &doc); err != nil {
			t.Errorf("%s: default %s is not a TOML value: %v", k.Path, k.Default, err)
			continue
		}
		site := defaultsBase()
		setKey(t, site, k.Path, doc["v"])
		got, ps := parseMap(t, site)
		if HasErrors(ps) {
			t.Errorf("%s = %s: %v", k.Path, k.Default, ps)
			continue
		}
		if diff := cmp.Diff(want, got, netipCmp, ignoreRevision); diff != "" {
			t.Errorf("%s = %s is not the default (-left out +written):\n%s", k.Path, k.Default, diff)
		}
	}
	if n < 40 {
		t.Errorf("only %d defaults compared", n)
	}
}

func TestKeyTable(t *testing.T) {
	for path, want := range map[string]string{
		"site":                     "",
		"site.name":                "site",
		"vrrp[].track[].weight":    "vrrp[].track",
		"check:interval":           "check:",
		"check[].name":             "check",
		"virtual_server[].check":   "virtual_server",
		"sync.sync_refresh_period": "sync",
	} {
		if got := KeyTable(path); got != want {
			t.Errorf("KeyTable(%q) = %q, want %q", path, got, want)
		}
	}
	if !slices.ContainsFunc(Keys(), func(k Key) bool { return KeyTable(k.Path) == "check:" }) {
		t.Error("no check: keys")
	}
	if got := KeyName("vrrp[].track[].weight") + " " + KeyName("check:interval") + " " + KeyName("site"); got != "weight interval site" {
		t.Errorf("KeyName: %q", got)
	}
}

package conf

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// parser collects problems while the typed Site is built from the generic
// decoded TOML tree.
type parser struct {
	file  string
	ix    *positions
	probs []Problem
	// onHost is set by Load: also check the paths [site] names on this
	// machine (host.go).
	onHost bool
	// tracer, when set, sees the path of every key the decoder asks for:
	// tests use it to keep the reference example complete.
	tracer func(path string)
	// scripts is what [site] says about running scripts (scripts.go).
	scripts scriptState
}

func (p *parser) report(at pos, warn bool, format string, args ...any) {
	p.probs = append(p.probs, Problem{File: p.file, Line: at.line, Col: at.col, Msg: fmt.Sprintf(format, args...), Warning: warn})
}

func (p *parser) errorf(at pos, format string, args ...any) { p.report(at, false, format, args...) }
func (p *parser) warnf(at pos, format string, args ...any)  { p.report(at, true, format, args...) }

// table is one decoded TOML table. Its accessors record every key they are
// asked for, so finish can report the keys nobody asked for as unknown; a
// wrongly typed value is reported at its key and treated as absent.
type table struct {
	p *parser
	// path names the table in messages; an element of an array of
	// tables has elem set instead (index+1 in the array at path), and
	// its path is written out only for a message (Path): 100,000 real
	// servers were 100,000 strings nobody read (issue 8).
	path string
	elem int
	node int // in p.ix; noNode when the table is not written in the file
	at   pos
	m    map[string]any
	// known are the keys asked for: a slice, not a map, because a table
	// has a few keys and a large site 100,000 tables (issue 8).
	known []string
}

func (p *parser) newTable(path string, node int, at pos, m map[string]any) *table {
	// Room for the keys a real server is asked for, in one allocation.
	return &table{p: p, path: path, node: node, at: at, m: m, known: make([]string, 0, 8)}
}

// name is how messages refer to the table.
func (t *table) name() string {
	if t.Path() == "" {
		return "top level"
	}
	return t.Path()
}

// Path is the table's key path: "" for the top level.
func (t *table) Path() string {
	if t.elem > 0 {
		t.path, t.elem = index(t.path, t.elem-1), 0
	}
	return t.path
}

func (t *table) keyPath(key string) string { return join(t.Path(), key) }

// pos is where key is written, else where its table starts.
func (t *table) pos(key string) pos {
	if n := t.p.ix.key(t.node, key); n != noNode {
		return t.p.ix.at(n)
	}
	return t.at
}

func (t *table) elemPos(key string, i int) pos {
	if n := t.p.ix.elem(t.p.ix.key(t.node, key), i); n != noNode {
		return t.p.ix.at(n)
	}
	return t.pos(key)
}

// errorf reports a problem with key's value, at key.
func (t *table) errorf(key, format string, args ...any) {
	t.p.errorf(t.pos(key), "%s: %s", t.keyPath(key), fmt.Sprintf(format, args...))
}

func (t *table) warnf(key, format string, args ...any) {
	t.p.warnf(t.pos(key), "%s: %s", t.keyPath(key), fmt.Sprintf(format, args...))
}

// elemErrorf reports a problem with element i of the array at key, at the element.
func (t *table) elemErrorf(key string, i int, format string, args ...any) {
	t.p.errorf(t.elemPos(key, i), "%s: %s", index(t.keyPath(key), i), fmt.Sprintf(format, args...))
}

// tableErrorf reports a problem with the table as a whole, at its header.
func (t *table) tableErrorf(format string, args ...any) {
	t.p.errorf(t.at, "%s: %s", t.name(), fmt.Sprintf(format, args...))
}

// tableWarnf is tableErrorf for a warning.
func (t *table) tableWarnf(format string, args ...any) {
	t.p.warnf(t.at, "%s: %s", t.name(), fmt.Sprintf(format, args...))
}

func (t *table) has(key string) bool {
	_, ok := t.m[key]
	return ok
}

func (t *table) lookup(key string) (any, bool) {
	t.mark(key)
	v, ok := t.m[key]
	return v, ok
}

func (t *table) mark(key string) {
	t.setKnown(key)
	if t.p.tracer != nil {
		t.p.tracer(t.keyPath(key))
	}
}

// require reports key as missing when it is absent.
func (t *table) require(key string) {
	t.mark(key)
	if !t.has(key) {
		t.tableErrorf("%s is required", key)
	}
}

func (t *table) typeErr(key string, want string, v any) {
	t.errorf(key, "expected %s, got %s", want, typeName(v))
}

func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	default:
		return "a date-time"
	}
}

func (t *table) str(key string) (string, bool) {
	v, ok := t.lookup(key)
	if !ok {
		return "", false
	}
	s, ok := v.(string)
	if !ok {
		t.typeErr(key, "a string", v)
	}
	return s, ok
}

func (t *table) integer(key string) (int64, bool) {
	v, ok := t.lookup(key)
	if !ok {
		return 0, false
	}
	n, ok := v.(int64)
	if !ok {
		t.typeErr(key, "an integer", v)
	}
	return n, ok
}

// intIn reads an integer that must lie within lo..hi.
func (t *table) intIn(key string, lo, hi int64) (int64, bool) {
	n, ok := t.integer(key)
	if ok && (n < lo || n > hi) {
		t.errorf(key, "%d is out of range %d..%d", n, lo, hi)
		return 0, false
	}
	return n, ok
}

func (t *table) boolean(key string) (bool, bool) {
	v, ok := t.lookup(key)
	if !ok {
		return false, false
	}
	b, ok := v.(bool)
	if !ok {
		t.typeErr(key, "a boolean", v)
	}
	return b, ok
}

// duration reads a time.ParseDuration string that must not be negative.
func (t *table) duration(key string) (time.Duration, bool) {
	s, ok := t.str(key)
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		t.errorf(key, "invalid duration %q (write e.g. \"1s\" or \"500ms\")", s)
		return 0, false
	}
	if d < 0 {
		t.errorf(key, "duration %s must not be negative", s)
		return 0, false
	}
	return d, true
}

// durationIn reads a duration that must lie within lo..hi.
func (t *table) durationIn(key string, lo, hi time.Duration) (time.Duration, bool) {
	d, ok := t.duration(key)
	if ok && (d < lo || d > hi) {
		t.errorf(key, "%s is out of range %s..%s", short(d), short(lo), short(hi))
		return 0, false
	}
	return d, ok
}

// durationUpTo reads a duration that must not be longer than hi.
func (t *table) durationUpTo(key string, hi time.Duration) (time.Duration, bool) {
	d, ok := t.duration(key)
	if ok && d > hi {
		t.errorf(key, "%s is too long: it must be at most %s", short(d), short(hi))
		return 0, false
	}
	return d, ok
}

// short writes d without the zero units Go adds: 24h, not 24h0m0s.
func short(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

func (t *table) array(key string) ([]any, bool) {
	v, ok := t.lookup(key)
	if !ok {
		return nil, false
	}
	switch a := v.(type) {
	case []any:
		return a, true
	case []map[string]any:
		out := make([]any, len(a))
		for i := range a {
			out[i] = a[i]
		}
		return out, true
	}
	t.typeErr(key, "an array", v)
	return nil, false
}

// stringList reads an array of strings; a wrongly typed element is reported at
// the element and the whole array is treated as absent.
func (t *table) stringList(key string) ([]string, bool) {
	a, ok := t.array(key)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(a))
	for i, v := range a {
		s, isStr := v.(string)
		if !isStr {
			t.elemErrorf(key, i, "expected a string, got %s", typeName(v))
			ok = false
		}
		out = append(out, s)
	}
	return out, ok
}

func (t *table) ints(key string) ([]int64, bool) {
	a, ok := t.array(key)
	if !ok {
		return nil, false
	}
	out := make([]int64, 0, len(a))
	for i, v := range a {
		n, isInt := v.(int64)
		if !isInt {
			t.elemErrorf(key, i, "expected an integer, got %s", typeName(v))
			ok = false
		}
		out = append(out, n)
	}
	return out, ok
}

// sub returns the sub-table at key, or nil.
func (t *table) sub(key string) *table {
	v, ok := t.lookup(key)
	if !ok {
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.typeErr(key, "a table", v)
		return nil
	}
	return t.p.newTable(t.keyPath(key), t.p.ix.key(t.node, key), t.pos(key), m)
}

// tables returns the array of tables at key.
func (t *table) tables(key string) []*table {
	a, ok := t.array(key)
	if !ok {
		return nil
	}
	out := make([]*table, 0, len(a))
	arr := t.p.ix.key(t.node, key)
	path := t.keyPath(key)
	for i, v := range a {
		m, ok := v.(map[string]any)
		if !ok {
			t.elemErrorf(key, i, "expected a table, got %s", typeName(v))
			continue
		}
		n := t.p.ix.elem(arr, i)
		at := t.at
		if n != noNode {
			at = t.p.ix.at(n)
		} else {
			at = t.pos(key)
		}
		et := t.p.newTable(path, n, at, m)
		et.elem = i + 1
		out = append(out, et)
	}
	return out
}

// keys returns the table's keys in the order they are written and marks
// them known: for tables whose keys are names, like priorities.
func (t *table) keys() []string {
	ks := make([]string, 0, len(t.m))
	for k := range t.m {
		t.setKnown(k)
		ks = append(ks, k)
	}
	t.sortByPos(ks)
	return ks
}

func (t *table) sortByPos(ks []string) {
	type keyAt struct {
		k  string
		at pos
	}
	kas := make([]keyAt, len(ks))
	for i, k := range ks {
		kas[i] = keyAt{k, t.pos(k)}
	}
	sort.Slice(kas, func(i, j int) bool {
		a, b := kas[i].at, kas[j].at
		if a != b {
			return a.line < b.line || a.line == b.line && a.col < b.col
		}
		return kas[i].k < kas[j].k
	})
	for i := range kas {
		ks[i] = kas[i].k
	}
}

func (t *table) setKnown(key string) {
	if !slices.Contains(t.known, key) {
		t.known = append(t.known, key)
	}
}

// finish reports every key of the table that no accessor asked for.
func (t *table) finish() {
	var unknown []string
	for k := range t.m {
		if !slices.Contains(t.known, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return
	}
	known := slices.Sorted(slices.Values(t.known))
	t.sortByPos(unknown)
	for _, k := range unknown {
		msg := fmt.Sprintf("unknown key %s", t.keyPath(k))
		if s := suggest(k, known); s != "" {
			msg += fmt.Sprintf(" (did you mean %s?)", s)
		} else if t.Path() != "" {
			msg += fmt.Sprintf(" (%s takes %s)", t.Path(), strings.Join(known, ", "))
		}
		t.p.errorf(t.pos(k), "%s", msg)
	}
}

// suggest returns the known key closest to k, if it is close enough to be
// a likely typo.
func suggest(k string, known []string) string {
	best, bestD := "", 3
	k = strings.ToLower(k)
	for _, c := range known {
		if abs(len(k)-len(c)) >= bestD {
			continue // the distance is at least the difference in length
		}
		if d := editDistance(k, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func abs(n int) int { return max(n, -n) }

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

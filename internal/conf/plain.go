package conf

import (
	"reflect"
	"strings"
	"unicode/utf8"
)

// decodePlain decodes src, in one pass and without a lexer, when it is
// written in the plain TOML that site files are made of: [table] and
// [[array]] headers, one key a line, one-line basic and literal strings
// with the common escapes, integers, booleans, arrays, inline tables and
// dotted keys. It says ok = false for anything else, valid TOML or not
// (multi-line strings, floats, dates, a table defined in two
// steps, a control character, invalid UTF-8, ...), and the caller
// decodes with the full TOML decoder, whose messages are the ones users
// see. The full decoder took 0.6 s of the 1.1 s that a site of 10,000
// virtual servers x 10 real servers cost to load (issue 8), and the scan
// for positions 0.2 s; this does the work of both in 0.1 s.
//
// What it accepts it decodes exactly as the full decoder does, to the same
// Go values (string, int64, bool, []any, map[string]any, and
// []map[string]any for an array of tables), with the same positions as
// scan: FuzzPlainDecode, FuzzParse, TestPlainDecode and TestPlainSameSite
// hold it to that.
func decodePlain(src []byte) (m map[string]any, ix *positions, ok bool) {
	d := &plainDecoder{src: string(src), root: map[string]any{}, line: 1, ok: true}
	// About one node a line, as scan sizes it.
	d.ix = newPositions(strings.Count(d.src, "\n") + 1)
	d.cur = d.root
	for d.blank(true); d.ok && d.i < len(d.src); d.blank(true) {
		if d.src[d.i] == '[' {
			d.header()
		} else {
			d.keyValue(d.cur, d.node)
		}
		d.lineEnd()
	}
	if !d.ok {
		return nil, nil, false
	}
	return d.root, d.ix, true
}

type plainDecoder struct {
	// src is the file as one string: keys and string values are slices
	// of it, as the full decoder's are, so they cost no copy.
	src  string
	i    int
	root map[string]any
	cur  map[string]any // the table key = value lines go into
	node int            // cur's node in ix
	// ix is where every key path is written, the same index scan builds
	// of the same file.
	ix              *positions
	line, lineStart int // of d.i
	// made says, by identity, which tables a key = value line made:
	// no header may reach into one, nor a dotted key into an inline one.
	made map[uintptr]madeBy
	path [maxDepth]string // a header's keys
	// ok is cleared at the first thing outside the subset; from then on
	// every step returns at once and the result is thrown away.
	ok bool
}

func (d *plainDecoder) fail() { d.ok, d.i = false, len(d.src) }

func (d *plainDecoder) pos() pos { return pos{line: d.line, col: d.i - d.lineStart + 1} }

// add is positions.add; a path past the index's bounds ends the subset,
// and the scan before the full decoder refuses it.
func (d *plainDecoder) add(s step, p pos) int {
	if !d.ok || s.parent == noNode {
		return noNode
	}
	n, refused := d.ix.add(s, p)
	if refused != "" {
		d.fail()
	}
	return n
}

// blank skips spaces and tabs and, with lines set, line breaks and
// comments.
func (d *plainDecoder) blank(lines bool) {
	for d.ok && d.i < len(d.src) {
		switch d.src[d.i] {
		case ' ', '\t':
			d.i++
		case '\n', '\r', '#':
			if !lines {
				return
			}
			d.lineEnd()
		default:
			return
		}
	}
}

// lineEnd reads what may end a line: blanks, a comment, and the line
// break or the end of the file.
func (d *plainDecoder) lineEnd() {
	d.blank(false)
	if d.i < len(d.src) && d.src[d.i] == '#' {
		for d.i++; d.i < len(d.src) && d.src[d.i] != '\n' && d.src[d.i] != '\r'; {
			w := d.char()
			if w == 0 {
				d.fail()
				return
			}
			d.i += w
		}
	}
	switch {
	case d.i == len(d.src):
	case d.src[d.i] == '\n':
		d.i++
		d.line, d.lineStart = d.line+1, d.i
	case strings.HasPrefix(d.src[d.i:], "\r\n"):
		d.i += 2
		d.line, d.lineStart = d.line+1, d.i
	default:
		d.fail()
	}
}

// key reads one key, bare or quoted.
func (d *plainDecoder) key() string {
	start := d.i
	for d.i < len(d.src) && isBareKeyChar(d.src[d.i]) {
		d.i++
	}
	if d.i > start {
		return d.src[start:d.i]
	}
	if d.i < len(d.src) && (d.src[d.i] == '"' || d.src[d.i] == '\'') {
		if k := d.str(); k != "" {
			return k
		}
	}
	d.fail() // also the empty key "", which the full decoder treats apart
	return ""
}

func isBareKeyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// header reads [a.b] or [[a.b]] and makes its table the current one. A
// path through an array of tables goes into its last element; a table
// already defined, even implicitly by an earlier header, ends the subset.
func (d *plainDecoder) header() {
	p := d.pos()
	array := strings.HasPrefix(d.src[d.i:], "[[")
	d.i++
	if array {
		d.i++
	}
	n := 0
	for d.ok {
		d.blank(false)
		if n == len(d.path) {
			d.fail()
			return
		}
		d.path[n] = d.key()
		n++
		d.blank(false)
		if d.i >= len(d.src) || d.src[d.i] != '.' {
			break
		}
		d.i++
	}
	end := "]"
	if array {
		end = "]]"
	}
	if !d.ok || !strings.HasPrefix(d.src[d.i:], end) {
		d.fail()
		return
	}
	d.i += len(end)
	t, node := d.root, 0
	for _, k := range d.path[:n-1] {
		node = d.add(step{parent: node, key: k}, p)
		switch v := t[k].(type) {
		case nil:
			m := map[string]any{}
			t[k] = m
			t = m
		case []map[string]any:
			t = v[len(v)-1]
			node = d.ix.elem(node, len(v)-1)
		case map[string]any:
			if _, ok := d.made[identity(v)]; ok {
				d.fail()
				return
			}
			t = v
		default:
			d.fail()
			return
		}
	}
	last := d.path[n-1]
	node = d.add(step{parent: node, key: last}, p)
	m := map[string]any{}
	switch v, ok := t[last]; {
	case !ok && array:
		t[last] = append(make([]map[string]any, 0, 4), m)
		node = d.add(step{parent: node, elem: 1}, p)
	case !ok:
		t[last] = m
	case array:
		aot, isAOT := v.([]map[string]any)
		if !isAOT {
			d.fail()
			return
		}
		t[last] = append(aot, m)
		node = d.add(step{parent: node, elem: len(aot) + 1}, p)
	default:
		d.fail()
		return
	}
	if !d.ok {
		return
	}
	d.ix.nodes[node].at = p
	d.cur, d.node = m, node
}

// madeBy is how a key = value line made a table.
type madeBy uint8

const (
	madeInline madeBy = iota // k = { ... }
	madeDotted               // k.x = ...
)

func identity(m map[string]any) uintptr { return reflect.ValueOf(m).Pointer() }

func (d *plainDecoder) mark(m map[string]any, by madeBy) {
	if d.made == nil {
		d.made = map[uintptr]madeBy{}
	}
	d.made[identity(m)] = by
}

// keyValue reads key = value into t, at node in ix. The key may be dotted:
// a.b = 1 is b = 1 in table a, made here or by an earlier a.c.
func (d *plainDecoder) keyValue(t map[string]any, node int) {
	p := d.pos()
	k := d.key()
	for {
		node = d.add(step{parent: node, key: k}, p)
		d.blank(false)
		if d.i >= len(d.src) || d.src[d.i] != '.' {
			break
		}
		d.i++
		d.blank(false)
		switch v, ok := t[k]; {
		case !ok:
			m := map[string]any{}
			d.mark(m, madeDotted)
			t[k] = m
			t = m
		case d.dotted(v):
			t = v.(map[string]any)
		default:
			d.fail()
			return
		}
		k = d.key()
	}
	if !d.ok || d.i >= len(d.src) || d.src[d.i] != '=' {
		d.fail()
		return
	}
	d.i++
	d.blank(false)
	if _, dup := t[k]; dup {
		d.fail()
		return
	}
	v := d.value(node)
	if m, ok := v.(map[string]any); ok {
		d.mark(m, madeInline)
	}
	t[k] = v
}

// dotted says whether v is a table that dotted keys made.
func (d *plainDecoder) dotted(v any) bool {
	m, ok := v.(map[string]any)
	if !ok {
		return false
	}
	by, ok := d.made[identity(m)]
	return ok && by == madeDotted
}

// value reads the value at node.
func (d *plainDecoder) value(node int) any {
	if d.i >= len(d.src) {
		d.fail()
		return nil
	}
	switch c := d.src[d.i]; {
	case c == '"' || c == '\'':
		return d.str()
	case c == '[':
		return d.array(node)
	case c == '{':
		return d.inlineTable(node)
	case c == 't' && strings.HasPrefix(d.src[d.i:], "true"):
		d.i += 4
		return d.ended(true)
	case c == 'f' && strings.HasPrefix(d.src[d.i:], "false"):
		d.i += 5
		return d.ended(false)
	default:
		return d.integer()
	}
}

// ended returns v when the value ends where it should; "truex" is not true.
func (d *plainDecoder) ended(v any) any {
	if d.i < len(d.src) && !strings.ContainsRune(" \t\r\n,]}#", rune(d.src[d.i])) {
		d.fail()
	}
	return v
}

// integer reads an integer as TOML writes it: decimal with an optional
// sign, or 0x, 0o or 0b without one; an underscore only between digits.
// Where a float or a date starts the same way, what follows the digits
// ends the subset.
func (d *plainDecoder) integer() any {
	base, neg := uint64(10), false
	switch c := d.src[d.i]; {
	case strings.HasPrefix(d.src[d.i:], "0x"):
		base = 16
	case strings.HasPrefix(d.src[d.i:], "0o"):
		base = 8
	case strings.HasPrefix(d.src[d.i:], "0b"):
		base = 2
	case c == '+' || c == '-':
		neg = c == '-'
		d.i++
	}
	if base != 10 {
		d.i += 2
	}
	start := d.i
	var n uint64
	digits, over, afterDigit := 0, false, false
	for ; d.i < len(d.src); d.i++ {
		c := d.src[d.i]
		if c == '_' {
			if !afterDigit {
				break
			}
			afterDigit = false
			continue
		}
		v := digitValue(c)
		if v >= base {
			break
		}
		// Past 1<<63 the value is refused below; stop before it wraps.
		if n > (1<<63)/base {
			over = true
		} else {
			n = n*base + v
		}
		digits, afterDigit = digits+1, true
	}
	limit := uint64(1<<63 - 1)
	if neg {
		limit++
	}
	if digits == 0 || !afterDigit || over || n > limit || base == 10 && digits > 1 && d.src[start] == '0' {
		d.fail()
		return nil
	}
	v := int64(n) // -1<<63 stays itself when negated
	if neg {
		v = -v
	}
	return d.ended(v)
}

// digitValue is c's value as a digit, 16 when it is none.
func digitValue(c byte) uint64 {
	switch {
	case c >= '0' && c <= '9':
		return uint64(c - '0')
	case c >= 'a' && c <= 'f':
		return uint64(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return uint64(c-'A') + 10
	}
	return 16
}

// str reads a one-line basic or literal string. Escapes other than \" \\
// \n \t \r \b \f, and what char refuses, end the subset.
func (d *plainDecoder) str() string {
	q := d.src[d.i]
	if strings.HasPrefix(d.src[d.i+1:], d.src[d.i:d.i+1]+d.src[d.i:d.i+1]) {
		d.fail() // multi-line
		return ""
	}
	d.i++
	start := d.i
	var esc []byte // the value so far, once it has an escape
	for d.i < len(d.src) {
		c := d.src[d.i]
		switch {
		case c == q:
			d.i++
			if esc != nil {
				return string(esc)
			}
			return d.src[start : d.i-1]
		case c == '\\' && q == '"':
			if esc == nil {
				esc = append([]byte{}, d.src[start:d.i]...)
			}
			if d.i++; d.i == len(d.src) {
				break
			}
			r := strings.IndexByte(`"\ntrbf`, d.src[d.i])
			if r < 0 {
				d.fail()
				return ""
			}
			esc = append(esc, "\"\\\n\t\r\b\f"[r])
			d.i++
		default:
			w := d.char()
			if w == 0 {
				d.fail()
				return ""
			}
			if esc != nil {
				esc = append(esc, d.src[d.i:d.i+w]...)
			}
			d.i += w
		}
	}
	d.fail() // unterminated
	return ""
}

// char returns the length of the character at d.i if a comment or a
// string may hold it, else 0: printable ASCII, a tab, or UTF-8 beyond
// ASCII. Not U+FFFD, which also stands for invalid bytes.
func (d *plainDecoder) char() int {
	switch c := d.src[d.i]; {
	case c >= ' ' && c < 0x7f || c == '\t':
		return 1
	case c < 0x80:
		return 0
	}
	r, w := utf8.DecodeRuneInString(d.src[d.i:])
	if r == utf8.RuneError {
		return 0
	}
	return w
}

// array reads [a, b, ...]: line breaks and comments may come between the
// elements, and a comma after the last.
func (d *plainDecoder) array(node int) any {
	d.i++
	a := make([]any, 0, 2) // as the full decoder makes it
	for d.ok {
		d.blank(true)
		if d.i < len(d.src) && d.src[d.i] == ']' {
			d.i++
			return a
		}
		a = append(a, d.value(d.add(step{parent: node, elem: len(a) + 1}, d.pos())))
		d.blank(true)
		switch {
		case d.i < len(d.src) && d.src[d.i] == ',':
			d.i++
		case d.i < len(d.src) && d.src[d.i] == ']':
		default:
			d.fail()
		}
	}
	return nil
}

// inlineTable reads { k = v, ... } on one line, with no comma after the
// last (TOML 1.0).
func (d *plainDecoder) inlineTable(node int) any {
	d.i++
	m := map[string]any{}
	d.blank(false)
	if d.i < len(d.src) && d.src[d.i] == '}' {
		d.i++
		return m
	}
	for d.ok {
		d.blank(false)
		d.keyValue(m, node)
		d.blank(false)
		switch {
		case d.i < len(d.src) && d.src[d.i] == ',':
			d.i++
		case d.i < len(d.src) && d.src[d.i] == '}':
			d.i++
			return m
		default:
			d.fail()
		}
	}
	return nil
}

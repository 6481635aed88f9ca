package conf

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
)

// pos is a 1-based line and byte column in the site file (the same
// convention as the TOML decoder's own errors); col 0 means "whole line".
type pos struct{ line, col int }

// join appends one key to a key path, quoting it when it is not a bare
// TOML key, so paths stay unambiguous: vrrp[1].priorities."lb.1".
func join(parent, key string) string {
	if !isBareKey(key) {
		key = strconv.Quote(key)
	}
	if parent == "" {
		return key
	}
	return parent + "." + key
}

func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

func isBareKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// indexPositions maps every key path written in src (tables, array-of-table
// elements, keys, dotted keys, inline-table keys and array elements) to
// where it is written. The TOML decoder does not expose key positions, so
// this is a small scanner over text the decoder has already accepted; on
// anything it does not understand it moves on, it never fails.
func indexPositions(src []byte) map[string]pos {
	x := &indexer{src: src, ix: map[string]pos{}, arrays: map[string]int{}, lines: lineStarts(src)}
	x.run()
	return x.ix
}

func lineStarts(src []byte) []int {
	lines := []int{0}
	for i, c := range src {
		if c == '\n' {
			lines = append(lines, i+1)
		}
	}
	return lines
}

type indexer struct {
	src    []byte
	i      int
	lines  []int          // byte offset of each line start
	ix     map[string]pos // key path -> position
	arrays map[string]int // array-of-tables path -> elements seen so far
	table  string         // path of the current [table]
}

func (x *indexer) posAt(off int) pos {
	off = min(off, len(x.src))
	l := sort.Search(len(x.lines), func(k int) bool { return x.lines[k] > off }) - 1
	l = max(l, 0)
	return pos{line: l + 1, col: off - x.lines[l] + 1}
}

func (x *indexer) more() bool { return x.i < len(x.src) }
func (x *indexer) peek() byte { return x.src[x.i] }

// mark records where path is first written.
func (x *indexer) mark(path string, p pos) {
	if _, ok := x.ix[path]; !ok {
		x.ix[path] = p
	}
}

func (x *indexer) run() {
	for x.more() {
		before := x.i
		x.skipSpace(true)
		if !x.more() {
			return
		}
		if x.peek() == '[' {
			x.header()
		} else {
			x.keyValue(x.table)
		}
		if x.i == before {
			x.i++
		}
	}
}

// skipSpace skips blanks and, when newlines is set, line breaks and comments.
func (x *indexer) skipSpace(newlines bool) {
	for x.more() {
		switch x.peek() {
		case ' ', '\t':
			x.i++
		case '\r', '\n':
			if !newlines {
				return
			}
			x.i++
		case '#':
			if !newlines {
				return
			}
			for x.more() && x.peek() != '\n' {
				x.i++
			}
		default:
			return
		}
	}
}

// key reads a possibly dotted key and returns its pieces and start offset.
func (x *indexer) key() (segs []string, at int) {
	x.skipSpace(false)
	at = x.i
	for x.more() {
		seg, ok := x.keySeg()
		if !ok {
			break
		}
		segs = append(segs, seg)
		x.skipSpace(false)
		if !x.more() || x.peek() != '.' {
			break
		}
		x.i++
		x.skipSpace(false)
	}
	return segs, at
}

func (x *indexer) keySeg() (string, bool) {
	switch q := x.peek(); q {
	case '"', '\'':
		start := x.i
		x.i++
		for x.more() && x.peek() != q && x.peek() != '\n' {
			if q == '"' && x.peek() == '\\' {
				x.i++
			}
			x.i++
		}
		if x.more() && x.peek() == q {
			x.i++
		}
		x.i = min(x.i, len(x.src))
		raw := string(x.src[start:x.i])
		if q == '"' {
			if s, err := strconv.Unquote(raw); err == nil {
				return s, true
			}
		}
		if len(raw) >= 2 {
			return raw[1 : len(raw)-1], true
		}
		return "", true
	default:
		start := x.i
		for x.more() && isBareKeyByte(x.peek()) {
			x.i++
		}
		return string(x.src[start:x.i]), x.i > start
	}
}

func isBareKeyByte(c byte) bool {
	switch c {
	case ' ', '\t', '\r', '\n', '=', '.', '[', ']', '{', '}', ',', '#', '"', '\'':
		return false
	}
	return true
}

// header handles [a.b] and [[a.b]]: a path through arrays of tables
// refers to their last element, and [[...]] opens a new element.
func (x *indexer) header() {
	p := x.posAt(x.i)
	array := x.i+1 < len(x.src) && x.src[x.i+1] == '['
	x.i++
	if array {
		x.i++
	}
	segs, _ := x.key()
	for x.more() && x.peek() == ']' {
		x.i++
	}
	if len(segs) == 0 {
		return
	}
	parent := ""
	for _, seg := range segs[:len(segs)-1] {
		parent = join(parent, seg)
		if n, ok := x.arrays[parent]; ok {
			parent = index(parent, n-1)
		}
		x.mark(parent, p)
	}
	path := join(parent, segs[len(segs)-1])
	if array {
		n := x.arrays[path]
		x.arrays[path] = n + 1
		x.mark(path, p)
		path = index(path, n)
	}
	x.ix[path] = p
	x.table = path
}

func (x *indexer) keyValue(base string) {
	segs, at := x.key()
	if len(segs) == 0 {
		return
	}
	p := x.posAt(at)
	path := base
	for _, seg := range segs {
		path = join(path, seg)
		x.mark(path, p)
	}
	x.skipSpace(false)
	if !x.more() || x.peek() != '=' {
		return
	}
	x.i++
	x.skipSpace(false)
	x.value(path)
}

func (x *indexer) value(path string) {
	if !x.more() {
		return
	}
	switch x.peek() {
	case '"', '\'':
		x.str()
	case '[':
		x.i++
		for n := 0; x.more(); {
			x.skipSpace(true)
			if !x.more() {
				return
			}
			switch x.peek() {
			case ']':
				x.i++
				return
			case ',':
				x.i++
				continue
			}
			before := x.i
			elem := index(path, n)
			x.mark(elem, x.posAt(x.i))
			x.value(elem)
			n++
			if x.i == before {
				x.i++
			}
		}
	case '{':
		x.i++
		for x.more() {
			x.skipSpace(true)
			if !x.more() {
				return
			}
			switch x.peek() {
			case '}':
				x.i++
				return
			case ',':
				x.i++
				continue
			}
			before := x.i
			x.keyValue(path)
			if x.i == before {
				x.i++
			}
		}
	default: // number, boolean, date-time (which may contain a space)
		for x.more() && bytes.IndexByte([]byte(",]}#\r\n"), x.peek()) < 0 {
			x.i++
		}
	}
}

// str skips one of the four TOML string forms.
func (x *indexer) str() {
	q := x.peek()
	triple := []byte{q, q, q}
	if bytes.HasPrefix(x.src[x.i:], triple) {
		x.i += 3
		for x.more() {
			if q == '"' && x.peek() == '\\' {
				x.i += 2
				continue
			}
			if bytes.HasPrefix(x.src[x.i:], triple) {
				x.i += 3
				// Up to two more quotes are still content: """a""""" is valid.
				for k := 0; k < 2 && x.more() && x.peek() == q; k++ {
					x.i++
				}
				return
			}
			x.i++
		}
		x.i = min(x.i, len(x.src))
		return
	}
	x.i++
	for x.more() && x.peek() != q && x.peek() != '\n' {
		if q == '"' && x.peek() == '\\' {
			x.i++
		}
		x.i++
	}
	if x.more() && x.peek() == q {
		x.i++
	}
	x.i = min(x.i, len(x.src))
}

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

// Bounds on key paths, checked before the file is decoded: the decoder
// spells out the whole path of every key it reads, so its cost is the
// number of keys times their depth and length.
const (
	// maxDepth counts every key and array index of a path:
	// vrrp[0].track[0].weight is 5 deep, the deepest the schema goes.
	maxDepth = 10
	// maxPathBytes counts the bytes of a path's keys and the dots
	// between them. The longest a site file needs is a node name (a
	// hostname, up to 253 bytes) under vrrp.priorities.
	maxPathBytes = 512
)

// positions maps every key path written in a site file (tables,
// array-of-table elements, keys, dotted keys, inline-table keys and array
// elements) to where it is first written. The paths are the nodes of a
// tree: node 0 is the top level and every other node is one key or array
// index below its parent, so no path is ever spelled out and building the
// index is linear in the file.
//
// A node finds its key children by walking them, and its elements by
// index: a large site has 400,000 nodes, and one map of them all was a
// cache miss at every step, a third of the CPU of loading the site (issue
// 8).
type positions struct {
	nodes []node
	// labels numbers the distinct keys, from 1 (names[label-1]): a
	// large site has a few dozen, written 400,000 times.
	labels map[string]int32
	names  []string
	lists  [][]int32 // the elements of the arrays, by node.elems-1
	// many has the key children of the nodes with more than fewKeys of
	// them, so that finding one stays cheap in a table of 100,000 keys.
	many map[edge]int32
}

// node is one path of the index.
type node struct {
	at    pos
	depth int16 // steps below the top level
	bytes int16 // length of the path's keys, with a dot after each
	label int32 // the step from its parent: see edge
	// first is its first key child, next its parent's next key child
	// after it; noNode ends the list.
	first, next int32
	keys        int32 // how many key children it has
	elems       int32 // 1 + its index in lists; 0: not an array
}

// fewKeys is how many key children of a node are found by walking them: a
// table of a site file has a handful.
const fewKeys = 8

// step is one key, or one array index, below a parent node.
type step struct {
	parent int
	key    string
	elem   int // index+1 for an array element; 0 for a key
}

// edge is a step as the index keeps it: label > 0 is the key
// names[label-1], label < 0 the array element -label-1.
type edge struct{ parent, label int32 }

// noNode is the node of a path that is not written in the file.
const noNode = -1

// newPositions returns an index with room for about n nodes.
func newPositions(n int) *positions {
	ix := &positions{nodes: make([]node, 1, n+1), labels: map[string]int32{}}
	ix.nodes[0].first, ix.nodes[0].next = noNode, noNode
	return ix
}

// at is where node n is first written.
func (ix *positions) at(n int) pos { return ix.nodes[n].at }

// key returns the node of key below n, or noNode.
func (ix *positions) key(n int, key string) int { return ix.lookup(step{parent: n, key: key}) }

// elem returns the node of element i of the array at n, or noNode.
func (ix *positions) elem(n, i int) int { return ix.lookup(step{parent: n, elem: i + 1}) }

func (ix *positions) lookup(s step) int {
	if s.parent == noNode {
		return noNode
	}
	if s.elem > 0 {
		if nd := ix.nodes[s.parent]; s.elem <= ix.elems(nd) {
			return int(ix.lists[nd.elems-1][s.elem-1])
		}
		return noNode
	}
	l, ok := ix.labels[s.key]
	if !ok {
		return noNode
	}
	return ix.keyChild(s.parent, l)
}

// elems is how many elements the array at nd has.
func (ix *positions) elems(nd node) int {
	if nd.elems == 0 {
		return 0
	}
	return len(ix.lists[nd.elems-1])
}

// keyChild returns the child of n by the key numbered l, or noNode.
func (ix *positions) keyChild(n int, l int32) int {
	if ix.nodes[n].keys > fewKeys {
		if c, ok := ix.many[edge{int32(n), l}]; ok {
			return int(c)
		}
		return noNode
	}
	for c := ix.nodes[n].first; c != noNode; c = ix.nodes[c].next {
		if ix.nodes[c].label == l {
			return int(c)
		}
	}
	return noNode
}

// add returns the node one step below s.parent, recording p as where it
// is first written. Past maxDepth or maxPathBytes it adds nothing and says
// why. Elements come in order: element k+1 is added once 1..k are.
func (ix *positions) add(s step, p pos) (n int, refused string) {
	l, known := ix.labels[s.key] // looked up once: a large site adds 400,000 nodes
	switch {
	case s.elem > 0:
		if c := ix.lookup(s); c != noNode {
			return c, ""
		}
	case known:
		if c := ix.keyChild(s.parent, l); c != noNode {
			return c, ""
		}
	}
	parent := ix.nodes[s.parent]
	depth, bytes := int(parent.depth)+1, int(parent.bytes)
	if s.elem == 0 {
		bytes += len(s.key) + 1
	}
	switch {
	case depth > maxDepth:
		return noNode, fmt.Sprintf("nested more than %d levels deep; a site file needs 5 at most (vrrp[0].track[0].weight)", maxDepth)
	case bytes > maxPathBytes:
		return noNode, fmt.Sprintf("key path longer than %d bytes, with the names of the tables it is in", maxPathBytes)
	case s.elem > ix.elems(parent)+1:
		return noNode, "" // out of order: never asked for
	}
	c := int32(len(ix.nodes))
	nd := node{at: p, depth: int16(depth), bytes: int16(bytes), first: noNode, next: noNode}
	pn := &ix.nodes[s.parent]
	if s.elem > 0 {
		nd.label = -int32(s.elem)
		if pn.elems == 0 {
			ix.lists = append(ix.lists, make([]int32, 0, 4))
			pn.elems = int32(len(ix.lists))
		}
		ix.lists[pn.elems-1] = append(ix.lists[pn.elems-1], c)
	} else {
		if !known {
			ix.names = append(ix.names, s.key)
			l = int32(len(ix.names))
			ix.labels[s.key] = l
		}
		nd.label, nd.next = l, pn.first
		pn.first = c
		pn.keys++
		switch {
		case pn.keys == fewKeys+1:
			// From now on found in many: the ones so far go there too.
			if ix.many == nil {
				ix.many = map[edge]int32{}
			}
			ix.many[edge{int32(s.parent), l}] = c
			for k := nd.next; k != noNode; k = ix.nodes[k].next {
				ix.many[edge{int32(s.parent), ix.nodes[k].label}] = k
			}
		case pn.keys > fewKeys:
			ix.many[edge{int32(s.parent), l}] = c
		}
	}
	ix.nodes = append(ix.nodes, nd)
	return int(c), ""
}

// indexPositions indexes src. The TOML decoder does not expose key
// positions, so this is a small scanner; on anything it does not
// understand it moves on, it never fails.
func indexPositions(src []byte) *positions { return scan(src).ix }

// scan indexes src and, at a path past maxDepth or maxPathBytes, stops
// there and says why.
func scan(src []byte) *indexer {
	lines := lineStarts(src)
	// About one node a line: sized once, the index of a large site is
	// not rehashed as it grows (issue 8).
	x := &indexer{src: src, ix: newPositions(len(lines)), arrays: map[int]int{}, lines: lines}
	x.run()
	return x
}

func lineStarts(src []byte) []int {
	lines := make([]int, 1, bytes.Count(src, []byte{'\n'})+1)
	for i := 0; ; {
		k := bytes.IndexByte(src[i:], '\n')
		if k < 0 {
			return lines
		}
		i += k + 1
		lines = append(lines, i)
	}
}

type indexer struct {
	src    []byte
	i      int
	lines  []int       // byte offset of each line start
	line   int         // index in lines of the last posAt, where the next one most likely is
	ix     *positions  // what has been read so far
	arrays map[int]int // array-of-tables node -> elements seen so far
	table  int         // node of the current [table]
	// refused says, when set, why the scan stopped at refusedAt: a path
	// past maxDepth or maxPathBytes.
	refused   string
	refusedAt pos
}

func (x *indexer) posAt(off int) pos {
	off = min(off, len(x.src))
	// The scan moves forward: the line is most likely the last one or a
	// few on; else a binary search (a walk of at most 8 lines keeps every
	// call logarithmic).
	l := x.line
	for k := 0; k < 8 && l+1 < len(x.lines) && x.lines[l+1] <= off; k++ {
		l++
	}
	if x.lines[l] > off || l+1 < len(x.lines) && x.lines[l+1] <= off {
		l = max(sort.Search(len(x.lines), func(k int) bool { return x.lines[k] > off })-1, 0)
	}
	x.line = l
	return pos{line: l + 1, col: off - x.lines[l] + 1}
}

func (x *indexer) more() bool { return x.i < len(x.src) }
func (x *indexer) peek() byte { return x.src[x.i] }

// enter returns the node one step below s.parent, recording p as where it
// is first written. Past maxDepth or maxPathBytes it ends the scan and
// returns noNode.
func (x *indexer) enter(s step, p pos) int {
	c, refused := x.ix.add(s, p)
	if refused != "" {
		x.refused, x.refusedAt = refused, p
		x.i = len(x.src)
	}
	return c
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
	n := 0
	for _, seg := range segs[:len(segs)-1] {
		if n = x.enter(step{parent: n, key: seg}, p); n == noNode {
			return
		}
		if k, ok := x.arrays[n]; ok {
			n = x.ix.elem(n, k-1)
		}
	}
	if n = x.enter(step{parent: n, key: segs[len(segs)-1]}, p); n == noNode {
		return
	}
	if array {
		k := x.arrays[n]
		x.arrays[n] = k + 1
		if n = x.enter(step{parent: n, elem: k + 1}, p); n == noNode {
			return
		}
	}
	x.ix.nodes[n].at = p
	x.table = n
}

func (x *indexer) keyValue(base int) {
	segs, at := x.key()
	if len(segs) == 0 {
		return
	}
	p := x.posAt(at)
	n := base
	for _, seg := range segs {
		if n = x.enter(step{parent: n, key: seg}, p); n == noNode {
			return
		}
	}
	x.skipSpace(false)
	if !x.more() || x.peek() != '=' {
		return
	}
	x.i++
	x.skipSpace(false)
	x.value(n)
}

func (x *indexer) value(n int) {
	if !x.more() {
		return
	}
	switch x.peek() {
	case '"', '\'':
		x.str()
	case '[':
		x.i++
		for k := 0; x.more(); {
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
			elem := x.enter(step{parent: n, elem: k + 1}, x.posAt(x.i))
			if elem == noNode {
				return
			}
			x.value(elem)
			k++
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
			x.keyValue(n)
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

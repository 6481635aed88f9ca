package importka

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/havip/havip/internal/siteout"
)

// Stmt is one keepalived statement: a keyword with its values, and the
// statements of its block when it has one.
type Stmt struct {
	File     string
	Line     int
	Words    []string
	HasBlock bool
	Block    []*Stmt
}

// Key is the statement's keyword.
func (s *Stmt) Key() string { return s.Words[0] }

// Args are the words after the keyword.
func (s *Stmt) Args() []string { return s.Words[1:] }

type tokKind int

const (
	tWord tokKind = iota
	tOpen
	tClose
	tEOL
)

type token struct {
	kind tokKind
	text string
	file string
	line int
}

// maxIncludeDepth bounds nested includes (keepalived's own limit is
// near this); a cycle is reported before it.
const maxIncludeDepth = 16

// lexer turns files into one token stream, expanding include and $NAME
// definitions as keepalived does before it parses.
type lexer struct {
	toks     []token
	notes    []siteout.Note
	vars     map[string]string
	active   map[string]bool // files being read: an include cycle
	expanded int             // bytes of text parameters made, against maxExpanded
}

// Parse reads the keepalived configuration at path, with its includes,
// into statements. Problems with the syntax or the includes are notes;
// an error is returned only when path itself cannot be read.
func Parse(path string) ([]*Stmt, []siteout.Note, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("importka: %w", err)
	}
	lx := &lexer{vars: map[string]string{}, active: map[string]bool{}}
	lx.file(path, data, 0)
	p := &stmtParser{toks: lx.toks}
	stmts := p.block(nil)
	return stmts, append(lx.notes, p.notes...), nil
}

func (lx *lexer) note(file string, line int, unsafe bool, format string, args ...any) {
	lx.notes = append(lx.notes, siteout.Note{File: file, Line: line, Msg: fmt.Sprintf(format, args...), Unsafe: unsafe})
}

func (lx *lexer) file(path string, data []byte, depth int) {
	abs, _ := filepath.Abs(path)
	lx.active[abs] = true
	defer delete(lx.active, abs)
	lines := strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n")
	at := make([]int, len(lines))
	for i := range at {
		at[i] = i + 1
	}
	lx.lines(path, lines, at, depth)
}

// maxExpand bounds how deep parameter definitions may expand into each
// other, and maxExpanded how much text they may make in all ($A=$A $A
// doubles with each level).
const (
	maxExpand   = 16
	maxExpanded = 4 << 20
)

// lines lexes lines of file path (at holds their line numbers): parameter
// definitions, includes and conditional lines are handled here, the rest
// becomes tokens.
func (lx *lexer) lines(path string, lines []string, at []int, depth int) {
	for i := 0; i < len(lines); i++ {
		n := at[i]
		text := lines[i]
		if name, val, ok := definition(text); ok {
			// A multiline definition ends each line but its last with \.
			vals := []string{}
			if strings.TrimSpace(val) != "\\" {
				vals = append(vals, strings.TrimSuffix(val, "\\"))
			}
			for strings.HasSuffix(strings.TrimSpace(lines[i]), "\\") && i+1 < len(lines) {
				i++
				vals = append(vals, strings.TrimSuffix(strings.TrimRight(lines[i], " \t"), "\\"))
			}
			lx.vars[name] = strings.Join(vals, "\n")
			continue
		}
		// A backslash at the end of a line continues it.
		for strings.HasSuffix(text, "\\") && i+1 < len(lines) {
			i++
			text = strings.TrimSuffix(text, "\\") + " " + lines[i]
		}
		if f := strings.Fields(text); len(f) > 0 && includeKeywords[f[0]] {
			lx.include(path, n, f[1:], depth)
			continue
		}
		if x := lx.expand(path, text); x != text {
			lx.expanded += len(x)
			if depth >= maxExpand+maxIncludeDepth || lx.expanded > maxExpanded {
				lx.note(path, n, true, "parameters expand into each other too deeply (%d levels) or too much (%d bytes); not expanded", maxExpand, maxExpanded)
				continue
			}
			sub := strings.Split(x, "\n")
			subAt := make([]int, len(sub))
			for k := range subAt {
				subAt[k] = n
			}
			lx.lines(path, sub, subAt, depth+1)
			continue
		}
		words, quoted := lx.words(path, n, text)
		if len(words) == 0 {
			continue
		}
		switch first := words[0].text; {
		case strings.HasPrefix(first, "@") && !quoted[0]:
			lx.note(path, n, false, "%s: conditional configuration (@config_id) is not converted; the line is left out", first)
			continue
		case strings.HasPrefix(first, "~") && !quoted[0]:
			lx.note(path, n, false, "%s: keepalived's ~SEQ expansion is not converted; the line is left out", first)
			continue
		}
		lx.toks = append(lx.toks, words...)
		lx.toks = append(lx.toks, token{kind: tEOL, file: path, line: n})
	}
}

// includeKeywords are include and its variants (which differ only in the
// errors keepalived reports).
var includeKeywords = map[string]bool{"include": true, "includer": true, "includem": true, "includew": true, "includeb": true, "includea": true}

// definition splits a parameter definition line, $NAME=VALUE.
func definition(line string) (name, val string, ok bool) {
	t := strings.TrimLeft(line, " \t")
	if !strings.HasPrefix(t, "$") {
		return "", "", false
	}
	name, val, ok = strings.Cut(t[1:], "=")
	if !ok || name == "" || !isParamName(name) {
		return "", "", false
	}
	return name, strings.TrimSpace(val), true
}

func isParamName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' && i > 0) {
			return false
		}
	}
	return s != ""
}

// words splits one line into words and braces: # and ! start a comment
// anywhere outside quotes, double quotes make one word, and a brace is a
// token of its own outside quotes.
func (lx *lexer) words(file string, line int, text string) ([]token, []bool) {
	var toks []token
	var quoted []bool
	add := func(k tokKind, s string, q bool) {
		toks = append(toks, token{kind: k, text: s, file: file, line: line})
		quoted = append(quoted, q)
	}
	var cur strings.Builder
	inWord, inQuote, wasQuoted := false, false, false
	flush := func() {
		if inWord {
			add(tWord, cur.String(), wasQuoted)
		}
		cur.Reset()
		inWord, wasQuoted = false, false
	}
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch {
		case inQuote && c == '\\' && i+1 < len(text) && (text[i+1] == '"' || text[i+1] == '\\'):
			i++
			cur.WriteByte(text[i])
		case inQuote && c == '"':
			inQuote = false
		case inQuote:
			cur.WriteByte(c)
		case c == '"':
			inQuote, inWord, wasQuoted = true, true, true
		case c == ' ' || c == '\t':
			flush()
		case c == '#' || c == '!':
			i = len(text)
		case c == '{' || c == '}':
			flush()
			k := tOpen
			if c == '}' {
				k = tClose
			}
			add(k, string(c), false)
		default:
			inWord = true
			cur.WriteByte(c)
		}
	}
	if inQuote {
		lx.note(file, line, true, "a quoted string is not closed on its line")
	}
	flush()
	return toks, quoted
}

// expand replaces $NAME and ${NAME} of defined parameters (and
// ${_PWD}, the file's directory); an undefined one stays as written, as
// in keepalived.
func (lx *lexer) expand(file, text string) string {
	if !strings.Contains(text, "$") {
		return text
	}
	var b strings.Builder
	for i := 0; i < len(text); i++ {
		if text[i] != '$' {
			b.WriteByte(text[i])
			continue
		}
		rest, name, width := text[i+1:], "", 0
		if strings.HasPrefix(rest, "{") {
			if end := strings.IndexByte(rest, '}'); end > 0 {
				name, width = rest[1:end], end+1
			}
		} else {
			for width < len(rest) && isParamName(rest[:width+1]) {
				width++
			}
			name = rest[:width]
		}
		v, ok := lx.vars[name]
		if name == "_PWD" {
			v, ok = filepath.Dir(file), true
		}
		if !ok {
			b.WriteByte('$')
			continue
		}
		b.WriteString(v)
		i += width
	}
	return b.String()
}

// include reads the files the patterns match, relative to the including
// file's directory, in sorted order as glob gives them.
func (lx *lexer) include(from string, line int, pats []string, depth int) {
	if len(pats) == 0 {
		lx.note(from, line, false, "include names no file")
		return
	}
	if depth >= maxIncludeDepth {
		lx.note(from, line, true, "includes nest deeper than %d files; not read", maxIncludeDepth)
		return
	}
	for _, pt := range pats {
		pat := pt
		if !filepath.IsAbs(pat) {
			pat = filepath.Join(filepath.Dir(from), pat)
		}
		matches, err := filepath.Glob(pat)
		if err != nil {
			lx.note(from, line, true, "include %s: %v", pt, err)
			continue
		}
		if len(matches) == 0 {
			lx.note(from, line, false, "include %s matches no file", pt)
			continue
		}
		sort.Strings(matches)
		for _, m := range matches {
			abs, _ := filepath.Abs(m)
			if lx.active[abs] {
				lx.note(from, line, true, "include %s: %s includes itself (a cycle); not read again", pt, m)
				continue
			}
			data, err := os.ReadFile(m)
			if err != nil {
				var pe *os.PathError
				if errors.As(err, &pe) {
					err = pe.Err
				}
				lx.note(from, line, true, "include %s: %s: %v", pt, m, err)
				continue
			}
			lx.file(m, data, depth+1)
		}
	}
}

// stmtParser builds statements from tokens: a statement runs to the end
// of its line or to a brace; a block opens on the same line or the next.
type stmtParser struct {
	toks  []token
	i     int
	notes []siteout.Note
}

func (p *stmtParser) peek() *token {
	if p.i < len(p.toks) {
		return &p.toks[p.i]
	}
	return nil
}

// block reads statements until the } closing the block opened at open
// (nil: until the end of the input).
func (p *stmtParser) block(open *token) []*Stmt {
	var out []*Stmt
	for {
		t := p.peek()
		if t == nil {
			if open != nil {
				p.notes = append(p.notes, siteout.Note{File: open.file, Line: open.line, Unsafe: true,
					Msg: "this { is never closed; what follows it up to the end of the configuration is read as inside it"})
			}
			return out
		}
		switch t.kind {
		case tEOL:
			p.i++
		case tClose:
			p.i++
			if open != nil {
				return out
			}
			p.notes = append(p.notes, siteout.Note{File: t.file, Line: t.line, Unsafe: true, Msg: "a } that closes no block"})
		case tOpen:
			p.i++
			p.notes = append(p.notes, siteout.Note{File: t.file, Line: t.line, Msg: "a block without a keyword; its contents are left out"})
			p.block(t)
		default:
			out = append(out, p.stmt())
		}
	}
}

func (p *stmtParser) stmt() *Stmt {
	first := p.peek()
	s := &Stmt{File: first.file, Line: first.line}
	for t := p.peek(); t != nil && t.kind == tWord; t = p.peek() {
		s.Words = append(s.Words, t.text)
		p.i++
	}
	// The block may open on the next line (blank lines between allowed).
	j := p.i
	for j < len(p.toks) && p.toks[j].kind == tEOL {
		j++
	}
	if j < len(p.toks) && p.toks[j].kind == tOpen {
		open := &p.toks[j]
		p.i = j + 1
		s.HasBlock = true
		s.Block = p.block(open)
	}
	return s
}

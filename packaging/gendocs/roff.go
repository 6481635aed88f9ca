package main

import (
	"bytes"
	"flag"
	"fmt"
	"strings"
)

// roffEscaper makes text safe for roff: a backslash is \e, and a dash that
// starts an option or a negative number is a minus (\-), so that it is
// copied from the rendered page as the ASCII dash a shell wants; a dash
// inside a word ("pre-shared") stays a hyphen.
func roffEscape(s string) string {
	var b strings.Builder
	prev := ' '
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\e`)
		case r == '-' && (prev == ' ' || prev == '-' || prev == '(' || prev == '[' || prev == '|' || prev == '"'):
			b.WriteString(`\-`)
		default:
			b.WriteRune(r)
		}
		prev = r
	}
	out := b.String()
	if strings.HasPrefix(out, ".") || strings.HasPrefix(out, "'") {
		out = `\&` + out // not a request
	}
	return out
}

// roff writes a manual page with the man(7) macros.
type roff struct{ b *bytes.Buffer }

// macro writes a request with its arguments quoted.
func (r roff) macro(name string, args ...string) {
	r.b.WriteString("." + name)
	for _, a := range args {
		r.b.WriteString(` "` + strings.ReplaceAll(roffEscape(a), `"`, `\(dq`) + `"`)
	}
	r.b.WriteString("\n")
}

// text writes a paragraph's text; each "\n" starts a new output line.
func (r roff) text(s string) {
	for _, l := range strings.Split(s, "\n") {
		r.b.WriteString(roffEscape(l) + "\n")
	}
}

// raw writes roff as it is (fonts already set with \fB...\fR).
func (r roff) raw(s string) { r.b.WriteString(s + "\n") }

func (r roff) para(s string) {
	r.macro("PP")
	r.text(s)
}

// tagged writes a .TP entry: the tag in bold, the body below it.
func (r roff) tagged(tag, body string) {
	r.macro("TP")
	r.raw(bold(tag))
	r.text(body)
}

// example writes lines as a literal, indented block.
func (r roff) example(lines string) {
	r.macro("PP")
	r.macro("RS", "4")
	r.macro("nf")
	for _, l := range strings.Split(strings.TrimRight(lines, "\n"), "\n") {
		r.raw(`\&` + roffEscape(l))
	}
	r.macro("fi")
	r.macro("RE")
}

func bold(s string) string   { return `\fB` + roffEscape(s) + `\fR` }
func italic(s string) string { return `\fI` + roffEscape(s) + `\fR` }

// flagName writes a flag as a user types it: -c, --node.
func flagName(f *flag.Flag) string {
	if len(f.Name) == 1 {
		return "-" + f.Name
	}
	return "--" + f.Name
}

// flagEntry writes one flag of a command: its name, its value's kind,
// what it does and its default, as -h shows them.
func (r roff) flagEntry(f *flag.Flag) {
	kind, usage := flag.UnquoteUsage(f)
	r.macro("TP")
	tag := bold(flagName(f))
	if kind != "" {
		tag += " " + italic(kind)
	}
	r.raw(tag)
	if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" {
		usage += fmt.Sprintf(" (default %q)", f.DefValue)
	}
	r.text(usage)
}

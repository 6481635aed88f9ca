package conf

import (
	"fmt"
	"sort"
)

// Problem is one thing wrong (or, with Warning, questionable) in a site
// file, located at the key it is about.
type Problem struct {
	File      string
	Line, Col int
	Msg       string
	Warning   bool
}

// String formats p as FILE:LINE:COL: message, leaving out :COL when it is
// unknown and marking warnings with "warning: ".
func (p Problem) String() string {
	s := fmt.Sprintf("%s:%d", p.File, p.Line)
	if p.Col > 0 {
		s += fmt.Sprintf(":%d", p.Col)
	}
	if p.Warning {
		return s + ": warning: " + p.Msg
	}
	return s + ": " + p.Msg
}

// HasErrors reports whether any of ps is an error rather than a warning.
func HasErrors(ps []Problem) bool {
	for _, p := range ps {
		if !p.Warning {
			return true
		}
	}
	return false
}

func sortProblems(ps []Problem) {
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].Line != ps[j].Line {
			return ps[i].Line < ps[j].Line
		}
		return ps[i].Col < ps[j].Col
	})
}

package conf

import "strings"

// Most test sites have no pair_key; the warning about that is tested on
// its own (TestPairKey), and left out everywhere else.
func withoutPairKeyWarning(ps []Problem) []Problem {
	out := ps[:0:0]
	for _, p := range ps {
		if !(p.Warning && strings.HasPrefix(p.Msg, "site: no pair_key")) {
			out = append(out, p)
		}
	}
	return out
}

func parseT(file string, b []byte) (*Site, []Problem) {
	s, ps := Parse(file, b)
	return s, withoutPairKeyWarning(ps)
}

func loadT(path string) (*Site, []Problem, error) {
	s, ps, err := Load(path)
	return s, withoutPairKeyWarning(ps), err
}

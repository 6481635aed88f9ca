package ipvsync

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"
)

// A table's digest is the SHA-256 of its canonical encoding: what the
// kernel is asked to hold and nothing else (health and the list of
// configured backends are status, not table). Two directors that want the
// same kernel table have the same digest whatever order their site files
// list services and real servers in.
//
// The canonical encoding of a service is one line
//
//	svc KEY|SCHEDULER|FLAGS|TIMEOUT|NETMASK
//
// followed by one line per destination, sorted by address,
//
//	dst ADDRESS|WEIGHT|FORWARD
//
// and a table is its services sorted by key, each encoding preceded by its
// length, so no two tables share one.

// Digest is the hex SHA-256 of the table's canonical encoding.
func (t Table) Digest() string {
	h := sha256.New()
	for _, s := range t.sorted() {
		e := s.canonical()
		fmt.Fprintf(h, "%d\n%s", len(e), e)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// Digest is the hex SHA-256 of the service's canonical encoding.
func (s *Service) Digest() string {
	return fmt.Sprintf("%x", sha256.Sum256([]byte(s.canonical())))
}

func (t Table) sorted() []*Service {
	type keyed struct {
		key string
		s   *Service
	}
	ks := make([]keyed, len(t.Services))
	for i := range t.Services {
		ks[i] = keyed{t.Services[i].Key.String(), &t.Services[i]}
	}
	slices.SortFunc(ks, func(a, b keyed) int { return strings.Compare(a.key, b.key) })
	out := make([]*Service, len(ks))
	for i, k := range ks {
		out[i] = k.s
	}
	return out
}

// Sorted returns the services ordered by key, the digest's order.
func (t Table) Sorted() []*Service { return t.sorted() }

func (s *Service) canonical() string {
	var b strings.Builder
	fmt.Fprintf(&b, "svc %s|%s|%d|%d|%d\n", s.Key, s.Scheduler, s.Flags&userFlags, s.Timeout, s.Netmask)
	ds := slices.Clone(s.Dests)
	slices.SortFunc(ds, func(a, b Dest) int { return a.Address.Compare(b.Address) })
	for _, d := range ds {
		fmt.Fprintf(&b, "dst %s|%d|%s\n", d.Address, d.Weight, d.Forward)
	}
	return b.String()
}

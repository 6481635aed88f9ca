package daemon

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/havip/havip/internal/conf"
	"github.com/havip/havip/internal/ipvsync"
	"github.com/havip/havip/internal/statefile"
)

// Drains are operator state: a real server drained by `havip drain` gets
// weight 0 in IPVS (its connections finish, new ones go elsewhere), or is
// removed with --remove. The set of drains is one value with a revision:
// every change made on a node (a drain, an undrain, a reload dropping the
// drain of a real server the site file no longer has) makes a new set
// whose revision is one more than the highest either node has used, with
// the time and the node that made it. The pair link carries each node's
// set; a node adopts the peer's set when it is newer (drainSet.newer) and
// the peer is authenticated, so after any sequence of changes on either
// side both hold the set of the latest change. The set is saved in
// state_dir/drains.json before it is used, so it survives restarts.

// drainsFile is the name of the drains' state file in state_dir.
const drainsFile = "drains.json"

// maxDrains bounds the set: it travels whole in every pair-link message.
const maxDrains = 128

// drainKey names one real server of one virtual server.
type drainKey struct {
	vs   string
	real netip.AddrPort
}

func (k drainKey) String() string { return k.vs + " " + k.real.String() }

func compareDrainKeys(a, b drainKey) int {
	return cmp.Or(cmp.Compare(a.vs, b.vs), a.real.Compare(b.real))
}

// drainEntry is one drain.
type drainEntry struct {
	remove bool      // removed from the table, not only weight 0
	since  time.Time // when the operator drained it
	by     string    // on which node
}

// drainSet is every drain with the set's revision. A set is never
// modified once built: changes make a new one, so it is shared freely
// (the status view, the pair link).
type drainSet struct {
	rev     uint64
	changed time.Time
	by      string
	entries map[drainKey]drainEntry
}

// newer reports whether s is a later change than o: a higher revision,
// else a later change time, else (a tie of two changes made in the same
// instant with the same revision, while the link was down) the greater
// node name. Both nodes decide alike, so they converge.
func (s *drainSet) newer(o *drainSet) bool {
	if s.rev != o.rev {
		return s.rev > o.rev
	}
	if !s.changed.Equal(o.changed) {
		return s.changed.After(o.changed)
	}
	return s.by > o.by
}

// keys returns the drained real servers in order.
func (s *drainSet) keys() []drainKey {
	return slices.SortedFunc(maps.Keys(s.entries), compareDrainKeys)
}

// with returns a copy of s with k set to e (or removed, e nil) under a new
// revision.
func (s *drainSet) with(k drainKey, e *drainEntry, rev uint64, now time.Time, node string) *drainSet {
	n := &drainSet{rev: rev, changed: now, by: node, entries: maps.Clone(s.entries)}
	if n.entries == nil {
		n.entries = map[drainKey]drainEntry{}
	}
	if e == nil {
		delete(n.entries, k)
	} else {
		n.entries[k] = *e
	}
	return n
}

// pruned returns the set without the drains of real servers site does not
// have (nil when there is none) and those it dropped.
func (s *drainSet) pruned(site *conf.Site, rev uint64, now time.Time, node string) (*drainSet, []drainKey) {
	var gone []drainKey
	for _, k := range s.keys() {
		if !hasRealServer(site, k) {
			gone = append(gone, k)
		}
	}
	if len(gone) == 0 {
		return nil, nil
	}
	n := &drainSet{rev: rev, changed: now, by: node, entries: maps.Clone(s.entries)}
	for _, k := range gone {
		delete(n.entries, k)
	}
	return n, gone
}

func hasRealServer(site *conf.Site, k drainKey) bool {
	for i := range site.VirtualServers {
		vs := &site.VirtualServers[i]
		if vs.Name == k.vs {
			return slices.ContainsFunc(vs.RealServers, func(rs conf.RealServer) bool { return rs.Address == k.real })
		}
	}
	return false
}

// applyDrains sets the drained destinations of t to weight 0, or drops
// them for a drain with remove. t is derive's own (Desired builds new
// slices), so it is changed in place. A drain does not change quorum or
// the sorry server: the drained real server still serves its connections.
func applyDrains(t *ipvsync.Table, d *drainSet) {
	for i := range t.Services {
		drainService(&t.Services[i], d)
	}
}

// drainService is applyDrains for one service.
func drainService(s *ipvsync.Service, d *drainSet) {
	if d == nil || len(d.entries) == 0 {
		return
	}
	kept := s.Dests[:0]
	for _, dst := range s.Dests {
		e, ok := d.entries[drainKey{s.Name, dst.Address}]
		switch {
		case !ok:
		case e.remove:
			continue
		default:
			dst.Weight = 0
		}
		kept = append(kept, dst)
	}
	s.Dests = kept
}

// drainsJSON is the set as the state file and the pair link carry it.
type drainsJSON struct {
	Version  int         `json:"version"`
	Revision uint64      `json:"revision"`
	Changed  time.Time   `json:"changed"`
	By       string      `json:"by"`
	Drains   []drainJSON `json:"drains"`
}

type drainJSON struct {
	VS     string         `json:"vs"`
	Real   netip.AddrPort `json:"real"`
	Remove bool           `json:"remove,omitempty"`
	Since  time.Time      `json:"since"`
	By     string         `json:"by"`
}

const drainsVersion = 1

func (s *drainSet) wire() *drainsJSON {
	w := &drainsJSON{Version: drainsVersion, Revision: s.rev, Changed: s.changed, By: s.by, Drains: []drainJSON{}}
	for _, k := range s.keys() {
		e := s.entries[k]
		w.Drains = append(w.Drains, drainJSON{VS: k.vs, Real: k.real, Remove: e.remove, Since: e.since, By: e.by})
	}
	return w
}

var errBadDrains = errors.New("drains")

// set checks w and builds the set it describes.
func (w *drainsJSON) set() (*drainSet, error) {
	if w.Version != drainsVersion {
		return nil, fmt.Errorf("%w: version %d, want %d", errBadDrains, w.Version, drainsVersion)
	}
	if len(w.Drains) > maxDrains {
		return nil, fmt.Errorf("%w: %d drains, at most %d", errBadDrains, len(w.Drains), maxDrains)
	}
	s := &drainSet{rev: w.Revision, changed: w.Changed, by: w.By, entries: make(map[drainKey]drainEntry, len(w.Drains))}
	for _, d := range w.Drains {
		if d.VS == "" || !d.Real.IsValid() {
			return nil, fmt.Errorf("%w: entry %q %v is incomplete", errBadDrains, d.VS, d.Real)
		}
		k := drainKey{d.VS, d.Real}
		if _, dup := s.entries[k]; dup {
			return nil, fmt.Errorf("%w: %s listed twice", errBadDrains, k)
		}
		s.entries[k] = drainEntry{remove: d.Remove, since: d.Since, by: d.By}
	}
	return s, nil
}

func emptyDrains() *drainSet { return &drainSet{entries: map[drainKey]drainEntry{}} }

// loadDrains reads dir's drains file: an empty set when there is none, and
// when it is empty or corrupt (statefile moves it aside and logs why).
func loadDrains(dir string, log *slog.Logger) (*drainSet, error) {
	s := emptyDrains()
	_, err := statefile.Read(filepath.Join(dir, drainsFile), log, func(b []byte) error {
		var w drainsJSON
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&w); err != nil {
			return fmt.Errorf("%w: %v", errBadDrains, err)
		}
		got, err := w.set()
		if err != nil {
			return err
		}
		s = got
		return nil
	})
	return s, err
}

// saveDrains writes s to dir durably (statefile.Write).
func saveDrains(dir string, s *drainSet) error {
	b, err := json.MarshalIndent(s.wire(), "", "  ")
	if err != nil {
		return err
	}
	return statefile.Write(filepath.Join(dir, drainsFile), append(b, '\n'), 0o644)
}

// drainChanges describes what adopting n in place of o changes, one line
// per drain, for the log.
func drainChanges(o, n *drainSet) []string {
	var out []string
	for _, k := range n.keys() {
		e := n.entries[k]
		if old, ok := o.entries[k]; !ok || old != e {
			what := "drained"
			if e.remove {
				what = "drained and removed"
			}
			out = append(out, fmt.Sprintf("%s %s (on %s)", k, what, e.by))
		}
	}
	for _, k := range o.keys() {
		if _, ok := n.entries[k]; !ok {
			out = append(out, k.String()+" undrained")
		}
	}
	return out
}

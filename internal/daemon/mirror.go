package daemon

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/havip/havip/internal/ipvsync"
)

// Each node tells the peer what IPVS table it wants: the digest of the
// whole table (ipvsync.Table.Digest) and, per service, its digest and its
// destinations, so either node can say not only whether the two tables
// match but where they differ. A pair-link message is bounded (maxPairMsg),
// so the destinations are sent while they fit in tableFull bytes, then
// only the services' digests while they fit in tableBrief; what is left
// out is marked, never silently dropped.
const (
	tableFull  = 20 << 10
	tableBrief = 32 << 10
)

// pairTable is a desired table as the pair link carries it.
type pairTable struct {
	Digest   string        `json:"digest"`
	Services []pairService `json:"services,omitempty"`
	Partial  bool          `json:"partial,omitempty"` // services beyond tableBrief left out
}

type pairService struct {
	Name   string     `json:"name"`
	Digest string     `json:"digest"`
	Svc    string     `json:"svc,omitempty"`   // key, scheduler, flags, persistence
	Dests  []pairDest `json:"dests,omitempty"` // sorted by address
	Brief  bool       `json:"brief,omitempty"` // Svc and Dests left out (budget)
}

type pairDest struct {
	Addr    netip.AddrPort `json:"a"`
	Weight  int            `json:"w"`
	Forward string         `json:"f"`
}

// summarizeTable is t as the pair link carries it.
func summarizeTable(t ipvsync.Table) pairTable {
	out := pairTable{Digest: t.Digest()}
	size := 0
	for _, s := range t.Sorted() {
		ps := pairService{Name: s.Name, Digest: s.Digest()[:16],
			Svc: fmt.Sprintf("%s %s flags=%d timeout=%d netmask=%d", s.Key, s.Scheduler, s.Flags, s.Timeout, s.Netmask)}
		for _, d := range s.Dests {
			ps.Dests = append(ps.Dests, pairDest{Addr: d.Address, Weight: d.Weight, Forward: d.Forward})
		}
		slices.SortFunc(ps.Dests, func(a, b pairDest) int { return a.Addr.Compare(b.Addr) })
		n := jsonSize(ps)
		if size+n > tableFull {
			ps = pairService{Name: s.Name, Digest: ps.Digest, Brief: true}
			n = jsonSize(ps)
		}
		if size+n > tableBrief {
			out.Partial = true
			break
		}
		size += n
		out.Services = append(out.Services, ps)
	}
	return out
}

func jsonSize(v any) int {
	b, _ := json.Marshal(v)
	return len(b) + 1
}

// tableDiff lists where the peer's table differs from ours, one line each;
// none when the digests match.
func tableDiff(ours, peer pairTable) []string {
	if ours.Digest == peer.Digest {
		return nil
	}
	var out []string
	theirs := map[string]pairService{}
	for _, s := range peer.Services {
		theirs[s.Name] = s
	}
	mine := map[string]bool{}
	for _, s := range ours.Services {
		mine[s.Name] = true
		p, ok := theirs[s.Name]
		switch {
		case !ok && !peer.Partial:
			out = append(out, fmt.Sprintf("virtual server %s: only here", s.Name))
		case !ok:
			out = append(out, fmt.Sprintf("virtual server %s: not in the peer's message (too large)", s.Name))
		case p.Digest == s.Digest:
		case p.Brief || s.Brief:
			out = append(out, fmt.Sprintf("virtual server %s differs (details left out: the table is too large for the pair link)", s.Name))
		default:
			out = append(out, serviceDiff(s, p)...)
		}
	}
	for _, p := range peer.Services {
		if !mine[p.Name] && !ours.Partial {
			out = append(out, fmt.Sprintf("virtual server %s: only on the peer", p.Name))
		}
	}
	if len(out) == 0 {
		out = append(out, "the digests differ in services left out of the comparison (tables too large for the pair link)")
	}
	return out
}

func serviceDiff(s, p pairService) []string {
	var out []string
	if s.Svc != p.Svc {
		out = append(out, fmt.Sprintf("virtual server %s: service %q here, %q on the peer", s.Name, s.Svc, p.Svc))
	}
	theirs := map[netip.AddrPort]pairDest{}
	for _, d := range p.Dests {
		theirs[d.Addr] = d
	}
	for _, d := range s.Dests {
		o, ok := theirs[d.Addr]
		delete(theirs, d.Addr)
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("virtual server %s real server %s: only here (weight %d)", s.Name, d.Addr, d.Weight))
		case o.Weight != d.Weight:
			out = append(out, fmt.Sprintf("virtual server %s real server %s: weight %d here, %d on the peer", s.Name, d.Addr, d.Weight, o.Weight))
		case o.Forward != d.Forward:
			out = append(out, fmt.Sprintf("virtual server %s real server %s: forward %s here, %s on the peer", s.Name, d.Addr, d.Forward, o.Forward))
		}
	}
	for _, a := range slices.SortedFunc(maps.Keys(theirs), netip.AddrPort.Compare) {
		out = append(out, fmt.Sprintf("virtual server %s real server %s: only on the peer (weight %d)", s.Name, a, theirs[a].Weight))
	}
	return out
}

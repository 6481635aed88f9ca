package daemon

// DELETE AT MERGE. Stand-ins, under the names the lead's authenticated
// pair link provides, so that the drill compiles and its unit tests run
// before that link lands: the request/answer call over the link and the
// event it hands the controller. At merge: delete this file, move
// peerFactsOf to drill.go and have it read pairGroupMsg.Prio.

import (
	"context"
	"errors"
)

// pairCall is a request over the pair link.
type pairCall struct {
	ID     uint64
	Kind   string
	Groups []string
}

// pairAnswer answers a pairCall: per group "" when done, else the error.
type pairAnswer struct {
	ID     uint64
	Err    string
	Groups map[string]string
}

// peerCall is a pairCall from the peer for the controller, which must
// answer it exactly once (reply is safe from any goroutine).
type peerCall struct {
	from  string
	call  pairCall
	reply func(pairAnswer)
}

var errNoCalls = errors.New("pair link: calls need the authenticated pair link")

func (p *pairLink) call(ctx context.Context, peer string, c pairCall) (pairAnswer, error) {
	return pairAnswer{}, errNoCalls
}

// peerFactsOf is what the drill's pre-checks need of the peer.
func peerFactsOf(v peerView) peerFacts {
	f := peerFacts{node: v.node, alive: v.alive, trusted: v.trusted, groups: map[string]peerGroupFacts{}}
	if v.table != nil {
		f.digest = v.table.Digest
	}
	for name, m := range v.groups {
		f.groups[name] = peerGroupFacts{state: m.State} // at merge: prio: m.Prio
	}
	return f
}

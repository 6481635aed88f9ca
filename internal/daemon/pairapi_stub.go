package daemon

// DELETE AT MERGE. Stand-ins, under the names the lead's authenticated
// pair link provides, so that the drill compiles and its unit tests run
// before that link lands: the request/answer call over the link, the
// event it hands the controller, and what a peerView says about trust,
// priority and the table digest. At merge: delete this file and make
// peerFactsOf (the only reader of those fields) read peerView.trusted,
// peerView.digest and pairGroupMsg.Prio; ownDigest reads this node's
// table digest (from the drains work).

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
	f := peerFacts{node: v.node, alive: v.alive, groups: map[string]peerGroupFacts{}}
	for name, m := range v.groups {
		f.groups[name] = peerGroupFacts{state: m.State}
	}
	return f
}

// ownDigest is this node's table digest; "" while unknown.
func (c *controller) ownDigest() string { return "" }

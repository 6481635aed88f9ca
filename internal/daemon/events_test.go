package daemon

import (
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/havip/havip/internal/checks"
)

// Health results become health events (unchanged ones and the optimistic
// start confirmed do not), and the quorum they move becomes a quorum
// event, in that order.
func TestControllerHealthAndQuorumEvents(t *testing.T) {
	s := parseSite(t, deriveSite)
	n, err := s.SelectNode("lb1")
	if err != nil {
		t.Fatal(err)
	}
	c := newController(Options{}, slog.New(slog.NewTextHandler(io.Discard, nil)), &loaded{site: s, node: n}, signals{})
	c.update() // the start: every service has its quorum, nothing to say
	for _, r := range []checks.Result{
		{Key: "web/10.1.0.21:80", Up: true},                      // the optimistic start confirmed
		{Key: "web/10.1.0.21:80", Up: false, Reason: "refused"},  // quorum 2 of 2: lost
		{Key: "web/10.1.0.21:80", Up: false, Reason: "refused"},  // unchanged
		{Key: "check/upstream", Up: false, Reason: "timeout"},    // a named check
		{Key: "web/10.1.0.21:80", Up: true, Reason: "connected"}, // quorum back
	} {
		c.handle(r)
	}
	evs, _, _ := c.journal.Since(0)
	var got []string
	for _, e := range evs {
		got = append(got, fmt.Sprintf("%d %s %v", e.Seq, e.Kind, e.Fields))
	}
	want := []string{
		"1 health map[real_server:10.1.0.21:80 reason:refused target:web/10.1.0.21:80 up:false virtual_server:web]",
		"2 quorum map[up:false virtual_server:web]",
		"3 health map[check:upstream reason:timeout target:check/upstream up:false]",
		"4 health map[real_server:10.1.0.21:80 reason:connected target:web/10.1.0.21:80 up:true virtual_server:web]",
		"5 quorum map[up:true virtual_server:web]",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("events (-want +got):\n%s", d)
	}
}

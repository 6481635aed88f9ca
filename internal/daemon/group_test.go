package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/havip/havip/internal/conf"
	"github.com/havip/havip/internal/track"
	"github.com/havip/havip/internal/vip"
	"github.com/havip/havip/internal/vrrp"
	"github.com/havip/havip/internal/vrrpnet"
)

// fakeNet hands out fakeConns and keeps every advert they send; the first
// refuse attempts to open one fail.
type fakeNet struct {
	mu     sync.Mutex
	sent   []sentAdvert
	refuse int
}

type sentAdvert struct {
	b   []byte
	dst netip.Addr
}

func (n *fakeNet) listen(vrrpnet.Options) (vrrpnet.Conn, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.refuse > 0 {
		n.refuse--
		return nil, errRefused
	}
	return &fakeConn{net: n, closed: make(chan struct{})}, nil
}

func (n *fakeNet) adverts() []sentAdvert {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]sentAdvert(nil), n.sent...)
}

// fakeConn is a socket on which nothing arrives.
type fakeConn struct {
	net    *fakeNet
	once   sync.Once
	closed chan struct{}
}

var _ vrrpnet.Conn = (*fakeConn)(nil)

func (c *fakeConn) ReadFrom([]byte) (int, vrrpnet.Meta, error) {
	<-c.closed
	return 0, vrrpnet.Meta{}, net.ErrClosed
}

func (c *fakeConn) Join() error { return nil }

func (c *fakeConn) WriteTo(b []byte, _, dst netip.Addr) error {
	c.net.mu.Lock()
	defer c.net.mu.Unlock()
	c.net.sent = append(c.net.sent, sentAdvert{b: append([]byte(nil), b...), dst: dst})
	return nil
}

func (c *fakeConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

var errRefused = errors.New("refused by the test")

// fakeClaimer fails the next `failures` calls of Claim and Refresh, and
// records when each was made.
type fakeClaimer struct {
	mu       sync.Mutex
	failures int
	calls    []claimCall
	held     bool
}

type claimCall struct {
	what string // "claim" or "refresh"
	at   time.Time
	ok   bool
}

var _ claimer = (*fakeClaimer)(nil)

func (f *fakeClaimer) try(what string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	ok := f.failures == 0
	f.calls = append(f.calls, claimCall{what: what, at: time.Now(), ok: ok})
	if !ok {
		f.failures--
		return errRefused
	}
	f.held = true
	return nil
}

func (f *fakeClaimer) fail(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failures = n
}

func (f *fakeClaimer) log() []claimCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]claimCall(nil), f.calls...)
}

func (f *fakeClaimer) Claim(context.Context) error                     { return f.try("claim") }
func (f *fakeClaimer) ClaimSome(context.Context, []netip.Prefix) error { return f.try("claim") }
func (f *fakeClaimer) Refresh() error                                  { return f.try("refresh") }
func (f *fakeClaimer) Announce(context.Context)                        {}
func (f *fakeClaimer) ReleaseSome([]netip.Prefix) error                { return nil }
func (f *fakeClaimer) RemoveStale() (int, error)                       { return 0, nil }
func (f *fakeClaimer) Counters() (uint64, uint64, uint64)              { return 0, 0, 0 }
func (f *fakeClaimer) Close() error                                    { return nil }

func (f *fakeClaimer) Release() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.held = false
	return nil
}

func (f *fakeClaimer) Set(vips []netip.Prefix, _ vip.Options) (added, removed []netip.Prefix, err error) {
	return nil, nil, nil
}

// runGroup runs a group over fakes until the test ends: one director of a
// pair whose peer is silent, so it becomes master by itself.
func runGroup(t *testing.T, cl *fakeClaimer, fn *fakeNet) *group {
	t.Helper()
	return runGroupEvents(t, cl, fn, func(any) {})
}

// runGroupEvents is runGroup handing what the group tells the controller
// to events.
func runGroupEvents(t *testing.T, cl *fakeClaimer, fn *fakeNet, events func(any)) *group {
	t.Helper()
	self := netip.MustParseAddr("198.18.0.11")
	cfg := &conf.Group{
		Name: "front", Interface: "eth0", VRID: 51, Advert: 100 * time.Millisecond, Version: 3, Preempt: true,
		VIPs: []netip.Prefix{netip.MustParsePrefix("198.18.0.100/24")}, VIPLifetime: 600 * time.Millisecond,
		NotifyTimeout: time.Second,
	}
	in := groupInput{
		cfg: cfg, node: conf.Node{Name: "lb1", Address: self, Priority: 150},
		peers: []netip.Addr{netip.MustParseAddr("198.18.0.12")}, twoNode: true, rev: "test",
		want: groupWant{base: 150, prio: 150, source: self,
			link: track.LinkState{Name: "eth0", Exists: true, Up: true, Index: 2, MTU: 1500}},
	}
	deps := groupDeps{
		socks:       newAdvertSockets(fn.listen, slog.New(slog.DiscardHandler)),
		newClaimer:  func(string, []netip.Prefix, vip.Options) (claimer, error) { return cl, nil },
		acceptLocal: func(string) (bool, error) { return false, nil },
	}
	g, err := newGroup(in, slog.New(slog.DiscardHandler), nil, events, deps)
	if err != nil {
		t.Fatal(err)
	}
	g.prepare()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("group Run: %v", err)
		}
	})
	return g
}

// waitSnap waits until the group's snapshot satisfies cond.
func waitSnap(t *testing.T, g *group, timeout time.Duration, what string, cond func(*groupSnap) bool) *groupSnap {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := g.snap.Load()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s (state %s, fault %q, claim error %q)", what, timeout, s.status.State, s.fault, s.claimErr)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func inState(st vrrp.State) func(*groupSnap) bool {
	return func(s *groupSnap) bool { return s.status.State == st }
}

// A master whose VIPs cannot be claimed tries 3 times, then goes to FAULT
// (reporting why, and sending a priority-0 advert so the peer takes over
// at once); after the pause it tries again and, once the claim works,
// stays MASTER. A failing refresh takes the same way.
func TestGroupClaimFailure(t *testing.T) {
	cl, fn := &fakeClaimer{failures: 4}, &fakeNet{}
	g := runGroup(t, cl, fn)

	s := waitSnap(t, g, 5*time.Second, "FAULT after failed claims", inState(vrrp.Fault))
	calls := cl.log()
	if len(calls) != claimAttempts {
		t.Fatalf("%d claim attempts before FAULT, want %d: %+v", len(calls), claimAttempts, calls)
	}
	if !strings.Contains(s.fault, "VIPs could not be claimed") || !strings.Contains(s.claimErr, errRefused.Error()) {
		t.Errorf("snapshot fault %q, claim error %q: want both to say the claim failed", s.fault, s.claimErr)
	}
	if got := groupStatus(s, pairSnap{}); got.ClaimError == "" || got.State != "FAULT" {
		t.Errorf("status: state %s, claim_error %q", got.State, got.ClaimError)
	}
	if prio, ok := lastPriority(t, fn); !ok || prio != 0 {
		t.Errorf("last advert before FAULT has priority %d (sent: %v), want 0", prio, ok)
	}
	if cl.held {
		t.Errorf("a group in FAULT still holds its VIPs")
	}

	// The fourth attempt fails too, the fifth works. The claimer logs a
	// call before the group publishes its result, so wait for the
	// snapshot that has taken the working claim in (claim error cleared).
	s = waitSnap(t, g, 2*minClaimPause+5*time.Second, "MASTER after the pause", func(s *groupSnap) bool {
		return s.status.State == vrrp.Master && len(cl.log()) >= claimAttempts+2 && s.claimErr == "" && s.fault == ""
	})
	calls = cl.log()
	if pause := calls[claimAttempts].at.Sub(calls[claimAttempts-1].at); pause < minClaimPause {
		t.Errorf("tried again %s after going to FAULT, want the %s pause", pause, minClaimPause)
	}
	t.Logf("3 failed claims, FAULT, tried again %s later, MASTER after attempt %d",
		calls[claimAttempts].at.Sub(calls[claimAttempts-1].at).Round(time.Millisecond), len(calls))
	if !calls[claimAttempts+1].ok || s.claimErr != "" || s.fault != "" {
		t.Errorf("after a claim that worked: calls %+v, claim error %q, fault %q", calls, s.claimErr, s.fault)
	}
	time.Sleep(10 * cfgAdvert(g))
	if s := g.snap.Load(); s.status.State != vrrp.Master || s.fault != "" {
		t.Fatalf("with a working claimer the group left MASTER: %s (%q)", s.status.State, s.fault)
	}

	// Refreshes fail now: the first failure is a refresh, the retries
	// claim again, and after 3 failures the group is in FAULT again.
	before := len(cl.log())
	cl.fail(claimAttempts)
	s = waitSnap(t, g, 5*time.Second, "FAULT after failed refreshes", inState(vrrp.Fault))
	calls = cl.log()[before:]
	if len(calls) != claimAttempts || calls[0].what != "refresh" {
		t.Errorf("calls after the refresh failed: %+v, want %d failures starting with a refresh", calls, claimAttempts)
	}
	if !strings.Contains(s.fault, "VIPs could not be claimed") {
		t.Errorf("fault %q after failed refreshes", s.fault)
	}
	if prio, ok := lastPriority(t, fn); !ok || prio != 0 {
		t.Errorf("last advert before FAULT has priority %d, want 0", prio)
	}
}

func cfgAdvert(g *group) time.Duration { return g.snap.Load().cfg.Advert }

// lastPriority decodes the last advert sent.
func lastPriority(t *testing.T, fn *fakeNet) (uint8, bool) {
	t.Helper()
	sent := fn.adverts()
	if len(sent) == 0 {
		return 0, false
	}
	last := sent[len(sent)-1]
	p, drop := vrrp.Parse(last.b, netip.MustParseAddr("198.18.0.11"), last.dst)
	if drop != vrrp.DropNone {
		t.Fatalf("the group sent an advert that does not parse: %s", drop)
	}
	return p.Priority, true
}

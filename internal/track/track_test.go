package track

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/havip/havip/test/lab"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

var discard = slog.New(slog.DiscardHandler)

const (
	upRunning = unix.IFF_UP | unix.IFF_RUNNING
	upNoCarr  = unix.IFF_UP
)

func link(name string, index int, flags uint32) netlink.Link {
	return &netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: name, Index: index, RawFlags: flags}}
}

func update(typ uint16, l netlink.Link) netlink.LinkUpdate {
	u := netlink.LinkUpdate{Link: l}
	u.Header.Type = typ
	u.IfInfomsg = *nl.NewIfInfomsg(unix.AF_UNSPEC)
	return u
}

func TestApply(t *testing.T) {
	bridgeDel := update(unix.RTM_DELLINK, link("eth0", 2, upRunning))
	bridgeDel.IfInfomsg.Family = unix.AF_BRIDGE

	steps := []struct {
		name string
		u    netlink.LinkUpdate
		want []LinkState
	}{
		{"untracked link ignored", update(unix.RTM_NEWLINK, link("other", 9, upRunning)), nil},
		{"eth0 up", update(unix.RTM_NEWLINK, link("eth0", 2, upRunning)), []LinkState{{"eth0", true, true}}},
		{"same state again", update(unix.RTM_NEWLINK, link("eth0", 2, upRunning)), nil},
		{"carrier lost", update(unix.RTM_NEWLINK, link("eth0", 2, upNoCarr)), []LinkState{{"eth0", false, true}}},
		{"admin down", update(unix.RTM_NEWLINK, link("eth0", 2, 0)), nil},
		{"running but admin down", update(unix.RTM_NEWLINK, link("eth0", 2, unix.IFF_RUNNING)), nil},
		{"back up", update(unix.RTM_NEWLINK, link("eth0", 2, upRunning)), []LinkState{{"eth0", true, true}}},
		{"bridge port event ignored", bridgeDel, nil},
		{"deleted", update(unix.RTM_DELLINK, link("eth0", 2, upRunning)), []LinkState{{"eth0", false, false}}},
		{"recreated down", update(unix.RTM_NEWLINK, link("eth0", 7, 0)), []LinkState{{"eth0", false, true}}},
		{"recreated up", update(unix.RTM_NEWLINK, link("eth0", 7, upRunning)), []LinkState{{"eth0", true, true}}},
		{"renamed eth0 -> wan1", update(unix.RTM_NEWLINK, link("wan1", 7, upRunning)), []LinkState{{"eth0", false, false}, {"wan1", true, true}}},
		{"wan1 deleted by index", update(unix.RTM_DELLINK, link("wan1", 7, 0)), []LinkState{{"wan1", false, false}}},
		{"untracked deleted", update(unix.RTM_DELLINK, link("other", 9, 0)), nil},
	}
	w := &watcher{log: discard, last: map[string]LinkState{}, byIdx: map[int]string{}}
	for _, n := range []string{"eth0", "wan1"} {
		w.last[n] = LinkState{Name: n}
	}
	for _, s := range steps {
		if diff := cmp.Diff(s.want, w.apply(s.u)); diff != "" {
			t.Errorf("%s: changes (-want +got):\n%s", s.name, diff)
		}
	}
}

// fakeSource is a kernel whose subscriptions the test can break.
type fakeSource struct {
	mu       sync.Mutex
	links    []netlink.Link
	failNext int // subscribe attempts to fail
	subs     []*fakeSub
	subbed   chan *fakeSub
}

type fakeSub struct {
	ch    chan<- netlink.LinkUpdate
	once  sync.Once
	onErr func(error)
}

func (s *fakeSub) close() { s.once.Do(func() { close(s.ch) }) }

func (f *fakeSource) subscribe(ch chan<- netlink.LinkUpdate, done <-chan struct{}, onErr func(error)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failNext > 0 {
		f.failNext--
		return errors.New("no buffer space")
	}
	s := &fakeSub{ch: ch, onErr: onErr}
	f.subs = append(f.subs, s)
	go func() { <-done; s.close() }()
	f.subbed <- s
	return nil
}

func (f *fakeSource) list() ([]netlink.Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]netlink.Link(nil), f.links...), nil
}

func (f *fakeSource) setLinks(ls ...netlink.Link) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.links = ls
}

func recv(t *testing.T, ch <-chan LinkState) LinkState {
	t.Helper()
	select {
	case st, ok := <-ch:
		if !ok {
			t.Fatal("channel closed")
		}
		return st
	case <-time.After(5 * time.Second):
		t.Fatal("no state within 5s")
	}
	return LinkState{}
}

func recvN(t *testing.T, ch <-chan LinkState, n int) []LinkState {
	t.Helper()
	var got []LinkState
	for range n {
		got = append(got, recv(t, ch))
	}
	sort.Slice(got, func(i, j int) bool { return got[i].Name < got[j].Name })
	return got
}

func noMore(t *testing.T, ch <-chan LinkState) {
	t.Helper()
	select {
	case st := <-ch:
		t.Errorf("unexpected state %+v", st)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestResubscribeMissesNothing(t *testing.T) {
	src := &fakeSource{subbed: make(chan *fakeSub, 10)}
	src.setLinks(link("eth0", 2, upRunning), link("eth1", 3, upRunning))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := watch(ctx, []string{"eth0", "eth1", "eth2"}, discard, src)
	if err != nil {
		t.Fatal(err)
	}
	want := []LinkState{{"eth0", true, true}, {"eth1", true, true}, {"eth2", false, false}}
	if diff := cmp.Diff(want, recvN(t, ch, 3)); diff != "" {
		t.Fatalf("initial states (-want +got):\n%s", diff)
	}
	first := <-src.subbed

	// The subscription dies; meanwhile eth0 loses carrier and eth2
	// appears. The first resubscription attempt fails too.
	src.mu.Lock()
	src.failNext = 1
	src.mu.Unlock()
	src.setLinks(link("eth0", 2, upNoCarr), link("eth1", 3, upRunning), link("eth2", 4, upRunning))
	first.onErr(errors.New("Receive failed: no buffer space available"))
	first.close()
	want = []LinkState{{"eth0", false, true}, {"eth2", true, true}}
	if diff := cmp.Diff(want, recvN(t, ch, 2)); diff != "" {
		t.Fatalf("after resubscribing (-want +got):\n%s", diff)
	}
	second := <-src.subbed
	noMore(t, ch)

	// The new subscription delivers changes.
	second.ch <- update(unix.RTM_DELLINK, link("eth1", 3, 0))
	if diff := cmp.Diff(LinkState{"eth1", false, false}, recv(t, ch)); diff != "" {
		t.Errorf("after delete (-want +got):\n%s", diff)
	}

	// An error that leaves the subscription open also triggers a
	// comparison with a dump.
	src.setLinks(link("eth0", 2, upRunning), link("eth2", 4, upRunning))
	second.onErr(errors.New("error message: ENOBUFS"))
	if diff := cmp.Diff(LinkState{"eth0", true, true}, recv(t, ch)); diff != "" {
		t.Errorf("after resync (-want +got):\n%s", diff)
	}

	cancel()
	for range ch {
	}
}

func TestWatchNoNames(t *testing.T) {
	if _, err := Watch(context.Background(), nil, nil); err == nil {
		t.Error("Watch with no names: no error")
	}
}

// TestWatchNamespace flaps, deletes and recreates real links.
func TestWatchNamespace(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short: needs root and network namespaces")
	}
	lab.RequireRoot(t)
	sw := lab.NewSwitch(t)
	h := sw.AddHost(t, "trk", netip.MustParsePrefix("10.0.0.1/24"))
	h.AddVethPair(t, "trk0", "trk1")
	h.WaitCarrier(t, "trk0")
	h.WaitCarrier(t, "eth0")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ch <-chan LinkState
	if err := h.Do(func() (err error) {
		ch, err = Watch(ctx, []string{"trk0", "eth0", "late0"}, discard)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	want := []LinkState{{"eth0", true, true}, {"late0", false, false}, {"trk0", true, true}}
	if diff := cmp.Diff(want, recvN(t, ch, 3)); diff != "" {
		t.Fatalf("initial states (-want +got):\n%s", diff)
	}

	last := map[string]LinkState{}
	for _, st := range want {
		last[st.Name] = st
	}
	// expect reads until want arrives; every state read must differ from
	// the previous one for its name (only changes are emitted).
	expect := func(step string, want LinkState) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case st := <-ch:
				if st == last[st.Name] {
					t.Errorf("%s: repeated state %+v", step, st)
				}
				last[st.Name] = st
				if st == want {
					return
				}
			case <-deadline:
				t.Fatalf("%s: no %+v within 5s (last %+v)", step, want, last[want.Name])
			}
		}
	}

	h.SetLinkDown(t, "trk0")
	expect("admin down", LinkState{"trk0", false, true})
	h.SetLinkUp(t, "trk0")
	expect("admin up", LinkState{"trk0", true, true})
	h.SetLinkDown(t, "trk1")
	expect("peer down (no carrier)", LinkState{"trk0", false, true})
	h.SetLinkUp(t, "trk1")
	expect("peer up", LinkState{"trk0", true, true})
	h.DelLink(t, "trk0")
	expect("deleted", LinkState{"trk0", false, false})
	h.AddVethPair(t, "trk0", "trk1")
	expect("recreated", LinkState{"trk0", true, true})
	h.AddVethPair(t, "late0", "late1")
	expect("late link appears", LinkState{"late0", true, true})
	h.SetLinkDown(t, "eth0")
	expect("eth0 down", LinkState{"eth0", false, true})
	noMore(t, ch)

	cancel()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("channel not closed after cancel")
		}
	}
}

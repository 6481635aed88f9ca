// Package track reports the state of the network interfaces named by
// [[vrrp.track]] interface entries: whether each exists and is up.
//
// It reads link state from a netlink subscription in the network namespace
// of the thread that called Watch, and never changes anything. What a state
// means for VRRP priority is the caller's business.
//
// A link counts as up when it is administratively up (IFF_UP) and the
// kernel reports it running (IFF_RUNNING, which Linux sets exactly when the
// operational state is "up" or "unknown", i.e. there is carrier). A link
// whose veth peer or cable is gone is therefore down even though it is
// still configured up.
package track

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// LinkState is the state of one tracked interface name.
type LinkState struct {
	Name   string
	Up     bool
	Exists bool
}

// Resubscription backoff bounds.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// source is the kernel side of Watch: a link subscription and a link dump.
type source interface {
	subscribe(ch chan<- netlink.LinkUpdate, done <-chan struct{}, onErr func(error)) error
	list() ([]netlink.Link, error)
}

// Watch emits the state of every name once, then each change, until ctx
// is done; then it closes the channel. If the netlink subscription fails
// (for instance its socket buffer overflowed) Watch subscribes again and
// compares a fresh dump with what it last emitted, so no change is lost.
// Only changes are emitted.
func Watch(ctx context.Context, names []string, logger *slog.Logger) (<-chan LinkState, error) {
	if len(names) == 0 {
		return nil, errors.New("track: no interface names")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ns, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("track: current netns: %w", err)
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("track: netlink: %w", err)
	}
	src := &netlinkSource{ns: ns, h: h}
	out, err := watch(ctx, names, logger, src)
	if err != nil {
		src.close()
		return nil, err
	}
	return out, nil
}

// watch runs the watcher over src; src is closed when watching ends if it
// has a close method.
func watch(ctx context.Context, names []string, log *slog.Logger, src source) (<-chan LinkState, error) {
	w := &watcher{
		log:    log,
		src:    src,
		last:   make(map[string]LinkState, len(names)),
		byIdx:  make(map[int]string),
		resync: make(chan struct{}, 1),
		out:    make(chan LinkState, 2*len(names)),
	}
	for _, n := range names {
		w.last[n] = LinkState{Name: n}
	}
	sub, err := w.subscribe()
	if err != nil {
		return nil, err
	}
	links, err := src.list()
	if err != nil {
		close(sub.done)
		return nil, fmt.Errorf("track: list links: %w", err)
	}
	initial := w.fromDump(links)
	go w.run(ctx, sub, initial)
	return w.out, nil
}

type watcher struct {
	log    *slog.Logger
	src    source
	last   map[string]LinkState // last emitted (or, before the first emit, absent)
	byIdx  map[int]string       // ifindex -> tracked name, for renames and deletes
	resync chan struct{}
	out    chan LinkState
}

type subscription struct {
	ch   chan netlink.LinkUpdate
	done chan struct{}
}

func (w *watcher) subscribe() (subscription, error) {
	s := subscription{ch: make(chan netlink.LinkUpdate, 64), done: make(chan struct{})}
	err := w.src.subscribe(s.ch, s.done, func(err error) {
		// Called from the subscription's goroutine: never block. Any
		// error may mean a lost message, so compare with a dump.
		w.log.Debug("link subscription error", "err", err)
		select {
		case w.resync <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return subscription{}, fmt.Errorf("track: subscribe to link changes: %w", err)
	}
	return s, nil
}

// stop ends a subscription and drains it, so its goroutine can exit.
func (s subscription) stop() {
	close(s.done)
	for range s.ch {
	}
}

func (w *watcher) run(ctx context.Context, sub subscription, initial []LinkState) {
	defer close(w.out)
	if c, ok := w.src.(interface{ close() }); ok {
		defer c.close()
	}
	for _, st := range initial {
		w.last[st.Name] = st
		if !w.emit(ctx, st) {
			sub.stop()
			return
		}
	}
	for {
		select {
		case <-ctx.Done():
			sub.stop()
			return
		case u, ok := <-sub.ch:
			if ok {
				if !w.emitAll(ctx, w.apply(u)) {
					sub.stop()
					return
				}
				continue
			}
			w.log.Warn("link subscription closed; subscribing again")
			close(sub.done)
			var err error
			if sub, err = w.resubscribe(ctx); err != nil {
				return // ctx done
			}
			if !w.emitAll(ctx, w.sync()) {
				sub.stop()
				return
			}
		case <-w.resync:
			if !w.emitAll(ctx, w.sync()) {
				sub.stop()
				return
			}
		}
	}
}

// resubscribe retries with backoff until it succeeds or ctx is done.
func (w *watcher) resubscribe(ctx context.Context) (subscription, error) {
	backoff := minBackoff
	for {
		sub, err := w.subscribe()
		if err == nil {
			return sub, nil
		}
		w.log.Warn("link subscription failed", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return subscription{}, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// sync compares a fresh dump with what was last emitted and returns the
// differences. A failed dump is retried on the next resync.
func (w *watcher) sync() []LinkState {
	links, err := w.src.list()
	if err != nil {
		w.log.Warn("link dump failed", "err", err)
		select {
		case w.resync <- struct{}{}:
		default:
		}
		return nil
	}
	var changed []LinkState
	for _, st := range w.fromDump(links) {
		if st != w.last[st.Name] {
			w.last[st.Name] = st
			changed = append(changed, st)
		}
	}
	return changed
}

// fromDump rebuilds the index map and returns the state of every tracked
// name, in no particular order.
func (w *watcher) fromDump(links []netlink.Link) []LinkState {
	clear(w.byIdx)
	states := make(map[string]LinkState, len(w.last))
	for n := range w.last {
		states[n] = LinkState{Name: n}
	}
	for _, l := range links {
		a := l.Attrs()
		if _, tracked := states[a.Name]; tracked {
			states[a.Name] = stateOf(a)
			w.byIdx[a.Index] = a.Name
		}
	}
	out := make([]LinkState, 0, len(states))
	for _, st := range states {
		out = append(out, st)
	}
	return out
}

func stateOf(a *netlink.LinkAttrs) LinkState {
	return LinkState{
		Name:   a.Name,
		Exists: true,
		Up:     a.RawFlags&unix.IFF_UP != 0 && a.RawFlags&unix.IFF_RUNNING != 0,
	}
}

// apply folds one update into the state and returns the changes.
func (w *watcher) apply(u netlink.LinkUpdate) []LinkState {
	// Bridge port events (AF_BRIDGE) describe the port, not the link:
	// RTM_DELLINK there means "left the bridge".
	if u.IfInfomsg.Family == unix.AF_BRIDGE || u.Link == nil {
		return nil
	}
	a := u.Link.Attrs()
	_, tracked := w.last[a.Name]
	var next []LinkState
	switch u.Header.Type {
	case unix.RTM_DELLINK: // deleted, or moved to another namespace
		name := a.Name
		if old, ok := w.byIdx[a.Index]; ok {
			delete(w.byIdx, a.Index)
			name, tracked = old, true
		}
		if tracked {
			next = append(next, LinkState{Name: name})
		}
	case unix.RTM_NEWLINK:
		if old, ok := w.byIdx[a.Index]; ok && old != a.Name { // renamed away
			delete(w.byIdx, a.Index)
			next = append(next, LinkState{Name: old})
		}
		if tracked {
			w.byIdx[a.Index] = a.Name
			next = append(next, stateOf(a))
		}
	}
	var changed []LinkState
	for _, st := range next {
		if st != w.last[st.Name] {
			w.last[st.Name] = st
			changed = append(changed, st)
		}
	}
	return changed
}

func (w *watcher) emitAll(ctx context.Context, sts []LinkState) bool {
	for _, st := range sts {
		if !w.emit(ctx, st) {
			return false
		}
	}
	return true
}

func (w *watcher) emit(ctx context.Context, st LinkState) bool {
	w.log.Debug("link state", "name", st.Name, "exists", st.Exists, "up", st.Up)
	select {
	case w.out <- st:
		return true
	case <-ctx.Done():
		return false
	}
}

// netlinkSource is the real kernel, in one namespace.
type netlinkSource struct {
	ns netns.NsHandle
	h  *netlink.Handle
}

func (s *netlinkSource) subscribe(ch chan<- netlink.LinkUpdate, done <-chan struct{}, onErr func(error)) error {
	return netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{
		Namespace:         &s.ns,
		ErrorCallback:     onErr,
		ReceiveBufferSize: 1 << 20,
	})
}

func (s *netlinkSource) list() ([]netlink.Link, error) { return s.h.LinkList() }

func (s *netlinkSource) close() {
	s.h.Close()
	s.ns.Close()
}

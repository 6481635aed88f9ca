package checks

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// loop is one of the engine's scheduling goroutines: a heap of its
// probes by the time it must act on them, and one epoll instance that
// completes the fast path's non-blocking connects and http exchanges. Blocking probes go to the
// pool and come back through post. Nothing else touches its heap, its
// fd table or its probes' scheduling fields.
type loop struct {
	r    *Runner
	epfd int
	// ef and rc wrap epfd for Go's own poller: the loop waits for its
	// epoll set to become readable there, not in a blocking epoll_wait,
	// which the runtime would take for a stuck thread (handing its
	// processor to another thread and waking threads at every wait).
	ef     *os.File
	rc     syscall.RawConn
	wakefd int // eventfd: post wakes epoll_wait through it
	base   time.Time

	mu     sync.Mutex
	inbox  []op
	woken  bool
	closed bool // the loop has returned: post drops

	heap   []entry
	byFD   []*probe // in-flight fast-path probes by socket
	idle   [2][]int // unconnected sockets for the next probes, IPv4 and IPv6 (see release)
	events []unix.EpollEvent
	ev     unix.EpollEvent // for epoll_ctl, kept here so that it does not escape per call
	spare  []op
	done   chan struct{}
}

type opKind int

const (
	opAdd    opKind = iota // schedule p at due
	opRemove               // stop p
	opDone                 // p's blocking probe finished: schedule the next
	opStop                 // stop everything and return
)

type op struct {
	kind opKind
	p    *probe
	due  time.Duration
}

func newLoop(r *Runner) (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("checks: epoll: %w", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("checks: eventfd: %w", err)
	}
	l := &loop{r: r, epfd: epfd, wakefd: wakefd, base: time.Now(), events: make([]unix.EpollEvent, 1024), done: make(chan struct{})}
	l.ev = unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wakefd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &l.ev); err != nil {
		unix.Close(epfd)
		unix.Close(wakefd)
		return nil, fmt.Errorf("checks: epoll add eventfd: %w", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		unix.Close(wakefd)
		return nil, fmt.Errorf("checks: epoll non-blocking: %w", err)
	}
	l.ef = os.NewFile(uintptr(epfd), "checks-epoll")
	if l.rc, err = l.ef.SyscallConn(); err != nil {
		l.ef.Close()
		unix.Close(wakefd)
		return nil, fmt.Errorf("checks: epoll in the runtime's poller: %w", err)
	}
	return l, nil
}

// now is the loop's monotonic clock.
func (l *loop) now() time.Duration { return time.Since(l.base) }

// post hands o to the loop and wakes it.
func (l *loop) post(o op) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.inbox = append(l.inbox, o)
	wake := !l.woken
	l.woken = true
	l.mu.Unlock()
	if wake {
		var one = [8]byte{1}
		_, _ = unix.Write(l.wakefd, one[:])
	}
}

func (l *loop) run() {
	defer close(l.done)
	defer l.close()
	for {
		wait := time.Duration(-1)
		if len(l.heap) > 0 {
			// The loop wakes on ticks: what falls due within one runs
			// together, at most a tick late, so that a loop of thousands
			// of probes a second does not park and wake for each.
			wait = max(0, (l.heap[0].at+tick-1)/tick*tick-l.now())
		}
		// Every completion ready is taken before any deadline is judged:
		// a connect that finished while the loop was busy is not a timeout.
		for l.poll(wait) == len(l.events) {
			wait = 0
		}
		if l.drain() {
			return
		}
		now := l.now()
		for len(l.heap) > 0 && l.heap[0].at <= now {
			l.fire(l.heap[0].p, now) // moves it on in the heap, or out
		}
	}
}

// poll waits up to wait (< 0: until something happens) for events and
// handles them; it returns how many there were.
func (l *loop) poll(wait time.Duration) int {
	n, err := l.epollWait(wait)
	if err != nil && !errors.Is(err, unix.EINTR) {
		l.r.log.Error("checks: epoll_wait failed", "err", err)
		time.Sleep(10 * time.Millisecond)
	}
	for _, ev := range l.events[:max(n, 0)] {
		fd := int(ev.Fd)
		if fd == l.wakefd {
			var b [8]byte
			_, _ = unix.Read(l.wakefd, b[:])
			continue
		}
		if fd < len(l.byFD) && l.byFD[fd] != nil {
			l.ready(l.byFD[fd], ev.Events)
		}
	}
	return n
}

// epollWait takes the ready events, waiting for them in the runtime's
// poller up to wait.
func (l *loop) epollWait(wait time.Duration) (n int, err error) {
	if wait == 0 {
		return unix.EpollWait(l.epfd, l.events, 0)
	}
	var dl time.Time
	if wait > 0 {
		dl = time.Now().Add(wait)
	}
	if err := l.ef.SetReadDeadline(dl); err != nil {
		return 0, err
	}
	rerr := l.rc.Read(func(uintptr) bool {
		n, err = unix.EpollWait(l.epfd, l.events, 0)
		return n != 0 || err != nil && !errors.Is(err, unix.EINTR)
	})
	if errors.Is(rerr, os.ErrDeadlineExceeded) {
		return 0, nil
	}
	if rerr != nil {
		return 0, rerr
	}
	return n, err
}

// drain applies the posted ops; it reports whether to stop.
func (l *loop) drain() bool {
	l.mu.Lock()
	ops := l.inbox
	l.inbox, l.spare = l.spare[:0], ops
	l.woken = false
	l.mu.Unlock()
	for i, o := range ops {
		ops[i] = op{}
		switch o.kind {
		case opAdd:
			o.p.due = o.due
			l.schedule(o.p, o.due)
		case opRemove:
			l.drop(o.p)
		case opDone:
			if !o.p.gone {
				l.next(o.p)
			}
		case opStop:
			return true
		}
	}
	return false
}

// fire acts on p at its time: a fast-path probe past its deadline times
// out, any other probe starts.
func (l *loop) fire(p *probe, now time.Duration) {
	if p.gone || p.ctx.Err() != nil {
		l.drop(p)
		return
	}
	if p.fd >= 0 {
		l.finish(p, "", p.deadlineError())
		return
	}
	if p.tcp != nil {
		l.tcpStart(p, now)
		return
	}
	l.heapRemove(p) // back with opDone
	l.r.pool.submit(p)
}

// next schedules p's next start, an interval after the planned start of
// the last one (start to start), or at once when that has passed.
func (l *loop) next(p *probe) {
	p.due = max(p.due+p.interval, l.now())
	l.schedule(p, p.due)
}

// drop stops p for good: an in-flight socket is closed.
func (l *loop) drop(p *probe) {
	p.gone = true
	l.heapRemove(p)
	if p.fd >= 0 {
		l.release(p, false)
	}
	p.endFlight()
}

func (l *loop) close() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	for _, p := range l.byFD {
		if p != nil {
			l.drop(p)
		}
	}
	for _, idle := range l.idle {
		for _, fd := range idle {
			unix.Close(fd)
		}
	}
	l.ef.Close() // closes epfd
	unix.Close(l.wakefd)
}

// entry is one probe in the heap with its time inline: a sift compares
// times side by side in the heap's array, not in probes spread over
// memory.
type entry struct {
	at time.Duration // when the loop must act: p's due start, or its in-flight probe's deadline
	p  *probe
}

// schedule puts p in the heap at at, or moves it there: a probe moves
// from its start to its deadline and on to its next start without
// leaving the heap and coming back.
func (l *loop) schedule(p *probe, at time.Duration) {
	if i := p.index; i >= 0 {
		l.heap[i].at = at
		l.down(i)
		l.up(p.index)
		return
	}
	p.index = len(l.heap)
	l.heap = append(l.heap, entry{at, p})
	l.up(p.index)
}

func (l *loop) heapRemove(p *probe) {
	i := p.index
	if i < 0 {
		return
	}
	last := len(l.heap) - 1
	l.swap(i, last)
	l.heap[last] = entry{}
	l.heap = l.heap[:last]
	p.index = -1
	if i < last {
		l.down(i)
		l.up(i)
	}
}

func (l *loop) swap(i, j int) {
	l.heap[i], l.heap[j] = l.heap[j], l.heap[i]
	l.heap[i].p.index, l.heap[j].p.index = i, j
}

func (l *loop) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if l.heap[parent].at <= l.heap[i].at {
			return
		}
		l.swap(i, parent)
		i = parent
	}
}

func (l *loop) down(i int) {
	for {
		least := i
		for _, c := range [2]int{2*i + 1, 2*i + 2} {
			if c < len(l.heap) && l.heap[c].at < l.heap[least].at {
				least = c
			}
		}
		if least == i {
			return
		}
		l.swap(i, least)
		i = least
	}
}

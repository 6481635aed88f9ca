package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/havip/havip/internal/ctl"
	"github.com/havip/havip/internal/events"
)

// controlTask serves the root-only control socket: one JSON request and one
// JSON response per connection, except events with follow, which streams
// (see serveEvents). Status and events are built from published snapshots
// and the journal; reload and failover are requests to the controller.
type controlTask struct {
	path string
	l    *net.UnixListener
	c    *controller
	ino  uint64 // of the socket file we created, so we remove only ours
}

// errNotSocket refuses a control_socket path that is some other file.
var errNotSocket = errors.New("exists and is not a socket; havip will not replace it")

// listenControl opens the control socket at path. An existing file that
// is not a socket is refused and left alone; a socket someone answers on
// means another havip runs; a dead one is left over from a crash and is
// replaced.
func listenControl(path string, c *controller) (*controlTask, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("%w: control socket %s %w", ErrBadInput, path, errNotSocket)
		}
		if conn, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
			conn.Close()
			return nil, fmt.Errorf("control socket %s: another havip is already running", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("control socket: removing the stale %s: %w", path, err)
		}
	}
	old := syscall.Umask(0o077)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	l.SetUnlinkOnClose(false) // we remove it ourselves, if it is still ours
	t := &controlTask{path: path, l: l, c: c}
	if fi, err := os.Stat(path); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			t.ino = st.Ino
		}
	}
	return t, nil
}

// Run accepts connections until ctx ends, then waits for the handlers.
func (t *controlTask) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	go func() { <-ctx.Done(); t.l.Close() }()
	for {
		conn, err := t.l.Accept()
		if err != nil {
			if ctx.Err() == nil {
				t.c.log.Error("control socket: accept", "err", err)
				select {
				case <-ctx.Done():
				case <-time.After(minBackoff):
					continue
				}
			}
			break
		}
		wg.Add(1)
		go func() { defer wg.Done(); t.handle(ctx, conn) }()
	}
	wg.Wait()
	t.remove()
	return nil
}

// close stops listening without Run (a reload that prepared a new socket
// and then refused).
func (t *controlTask) close() {
	t.l.Close()
	t.remove()
}

func (t *controlTask) remove() {
	fi, err := os.Stat(t.path)
	if err != nil {
		return
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Ino == t.ino {
		_ = os.Remove(t.path)
	}
}

func (t *controlTask) handle(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	// Run waits for the handlers, so a client that hangs (silent, or not
	// reading its answer) held up the shutdown for the 90 s deadline
	// below: once ctx ends, the connection has closeGrace left.
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(closeGrace, func() { conn.Close() }) })
	defer stop()
	if uc, ok := conn.(*net.UnixConn); ok && !peerIsRoot(uc) {
		_ = json.NewEncoder(conn).Encode(ctl.Response{Error: "permission denied: root only"})
		return
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var req ctl.Request
	if err := json.NewDecoder(&capped{r: conn, n: maxRequest}).Decode(&req); err != nil {
		_ = json.NewEncoder(conn).Encode(ctl.Response{Error: "bad request: " + err.Error()})
		return
	}
	if req.Cmd == ctl.CmdEvents {
		t.serveEvents(ctx, conn, req)
		return
	}
	_ = conn.SetDeadline(time.Now().Add(90 * time.Second))
	rctx, cancel := context.WithTimeout(ctx, 80*time.Second)
	defer cancel()
	resp := ctl.Response{OK: true}
	switch req.Cmd {
	case ctl.CmdPing:
	case ctl.CmdStatus:
		resp.Status = t.c.status()
	case ctl.CmdFailover:
		rep, err := ask(rctx, t.c, func(r chan failoverReply) any {
			return failoverReq{groups: req.Groups, force: req.Force, back: req.Back, reply: r}
		})
		if err == nil {
			err = rep.err
		}
		for _, r := range rep.results {
			resp.Failover = append(resp.Failover, failoverResult(r))
		}
		if err != nil {
			resp.OK, resp.Error = false, err.Error()
		}
	case ctl.CmdReload:
		res, err := ask(rctx, t.c, func(r chan *reloadResult) any { return reloadReq{at: time.Now(), reply: r} })
		switch {
		case err != nil:
			resp.OK, resp.Error = false, err.Error()
		case !res.applied:
			resp.OK, resp.Error, resp.Reload = false, "reload refused", res.wire()
		default:
			resp.Reload = res.wire()
		}
	case ctl.CmdDrain, ctl.CmdUndrain:
		rep, err := ask(rctx, t.c, func(r chan drainReply) any {
			return drainReq{vs: req.VirtualServer, real: req.RealServer, remove: req.Remove, undo: req.Cmd == ctl.CmdUndrain, reply: r}
		})
		if err == nil {
			err = rep.err
		}
		if err != nil {
			resp.OK, resp.Error, resp.BadInput = false, err.Error(), errors.Is(err, errDrainInput)
		} else {
			resp.Drain = &ctl.DrainResult{Message: rep.msg, At: rep.at}
		}
	default:
		resp = ctl.Response{Error: fmt.Sprintf("unknown command %q", req.Cmd)}
	}
	_ = json.NewEncoder(conn).Encode(resp)
}

// serveEvents answers an events request from the journal: one response
// with the events after req.After, and with req.Follow one more for each
// new batch until the client closes, the connection has been unwritable
// for eventWriteTimeout (a client that does not read: it alone misses
// events, nobody waits on it), or ctx ends (the socket stops: a last
// response says so). A follower that falls more than the ring behind gets
// an events_lost event in place of what it missed.
func (t *controlTask) serveEvents(ctx context.Context, conn net.Conn, req ctl.Request) {
	enc := json.NewEncoder(conn)
	var (
		mu       sync.Mutex // orders the deadlines below
		stopping bool
	)
	write := func(r ctl.Response) error {
		mu.Lock()
		if !stopping {
			_ = conn.SetWriteDeadline(time.Now().Add(eventWriteTimeout))
		}
		mu.Unlock()
		return enc.Encode(r)
	}
	evs, next, wake := t.c.journal.Since(req.After)
	resp := ctl.Response{OK: true, Events: wireEvents(evs)}
	if !req.Follow {
		_ = write(resp)
		return
	}
	// The client sends nothing more: a read returns when it goes away.
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// At shutdown a write the client is not reading fails at once, and
	// the last word gets as long: the stop does not wait for closeGrace.
	defer context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		stopping = true
		_ = conn.SetWriteDeadline(time.Now().Add(stopWrite))
	})()
	_ = conn.SetReadDeadline(time.Time{})
	go func() { _, _ = io.Copy(io.Discard, conn); cancel() }()
	warned := false
	for {
		for _, e := range evs {
			if e.Kind == events.Lost && !warned {
				warned = true
				t.c.log.Warn("havip events: a follower fell behind and lost events; further losses are only counted", "lost", e.Fields["count"])
			}
		}
		if err := write(resp); err != nil {
			return
		}
		select {
		case <-fctx.Done():
			if ctx.Err() != nil {
				_ = write(ctl.Response{Error: "the control socket is closing (the daemon stops, or a reload moved it)"})
			}
			return
		case <-wake:
		}
		evs, next, wake = t.c.journal.Since(next)
		resp = ctl.Response{OK: true, Events: wireEvents(evs)}
	}
}

// eventWriteTimeout bounds how long a follower may leave its stream
// unread; stopWrite how long the last word may take at shutdown.
const (
	eventWriteTimeout = 10 * time.Second
	stopWrite         = 100 * time.Millisecond
)

func wireEvents(evs []events.Event) []ctl.Event {
	out := make([]ctl.Event, 0, len(evs))
	for _, e := range evs {
		out = append(out, ctl.Event{Seq: e.Seq, Time: e.Time, Kind: string(e.Kind), Fields: e.Fields})
	}
	return out
}

// closeGrace is how long a connection may still take once the control
// socket stops: enough to write an answer a client is reading (a reload
// that moved the socket answers through the old one as it stops).
const closeGrace = time.Second

// maxRequest bounds a request: a command and some group names. Decoding
// buffers the whole value, and four 100 MB requests took the daemon to
// 780 MB and stalled its adverts for a second.
const maxRequest = 64 << 10

var errTooLarge = fmt.Errorf("larger than %d KiB", maxRequest>>10)

// capped reads at most n bytes from r, then fails with errTooLarge.
type capped struct {
	r io.Reader
	n int64
}

func (c *capped) Read(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, errTooLarge
	}
	if int64(len(p)) > c.n {
		p = p[:c.n]
	}
	n, err := c.r.Read(p)
	c.n -= int64(n)
	return n, err
}

// failoverResult is a drill's result on the wire.
func failoverResult(r drillResult) ctl.FailoverResult {
	out := ctl.FailoverResult{Group: r.group, From: r.from, To: r.to, Mode: r.mode, Refused: r.refused, Error: r.err}
	if r.handover > 0 {
		out.Handover = r.handover.Round(10 * time.Microsecond).String()
	}
	if r.firstAdvert > 0 {
		out.FirstAdvert = r.firstAdvert.Round(10 * time.Microsecond).String()
	}
	return out
}

func peerIsRoot(c *net.UnixConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var uid uint32 = 1
	_ = rc.Control(func(fd uintptr) {
		if cred, err := syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED); err == nil {
			uid = cred.Uid
		}
	})
	return uid == 0
}

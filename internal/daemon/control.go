package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/havip/havip/internal/ctl"
	"github.com/havip/havip/internal/vrrp"
)

// serveControl listens on the root-only control socket.
func (d *Daemon) serveControl(ctx context.Context) (net.Listener, error) {
	d.mu.Lock()
	path := d.site.ControlSocket
	d.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	// A socket file nobody answers on is left over from a crash.
	if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: another havip is already running", path)
	}
	_ = os.Remove(path)
	old := syscall.Umask(0o077)
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go d.handle(ctx, c)
		}
	}()
	go func() { <-ctx.Done(); l.Close() }()
	return l, nil
}

func (d *Daemon) handle(ctx context.Context, c net.Conn) {
	defer c.Close()
	if uc, ok := c.(*net.UnixConn); ok && !peerIsRoot(uc) {
		_ = json.NewEncoder(c).Encode(ctl.Response{Error: "permission denied: root only"})
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var req ctl.Request
	if err := json.NewDecoder(c).Decode(&req); err != nil {
		_ = json.NewEncoder(c).Encode(ctl.Response{Error: "bad request: " + err.Error()})
		return
	}
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	resp := ctl.Response{OK: true}
	switch req.Cmd {
	case ctl.CmdPing:
	case ctl.CmdStatus:
		resp.Status = d.status()
	case ctl.CmdFailover:
		res, err := d.failover(ctx, req.Groups)
		resp.Failover = res
		if err != nil {
			resp.OK, resp.Error = false, err.Error()
		}
	default:
		resp = ctl.Response{Error: fmt.Sprintf("unknown command %q", req.Cmd)}
	}
	_ = json.NewEncoder(c).Encode(resp)
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

// failover is the planned-handover drill: every named group (all groups
// this node is master of when none are named) resigns, and the peer's
// takeover is timed from the resign to its first advert as master.
func (d *Daemon) failover(ctx context.Context, names []string) ([]ctl.FailoverResult, error) {
	var todo []*group
	for _, g := range d.runningGroups() {
		st := g.status.Load()
		if len(names) == 0 && st.State == vrrp.Master.String() || slices.Contains(names, g.cfg.Name) {
			todo = append(todo, g)
		}
	}
	for _, n := range names {
		if !slices.ContainsFunc(todo, func(g *group) bool { return g.cfg.Name == n }) {
			return nil, fmt.Errorf("no group named %q", n)
		}
	}
	if len(todo) == 0 {
		return nil, errors.New("this node is master of no group: run the drill on the master")
	}
	out := make([]ctl.FailoverResult, len(todo))
	done := make(chan struct{}, len(todo))
	for i, g := range todo {
		go func() { out[i] = d.drill(ctx, g); done <- struct{}{} }()
	}
	for range todo {
		<-done
	}
	for _, r := range out {
		if r.Error != "" {
			return out, errors.New("failover drill failed for at least one group")
		}
	}
	return out, nil
}

func (d *Daemon) drill(ctx context.Context, g *group) ctl.FailoverResult {
	res := ctl.FailoverResult{Group: g.cfg.Name, From: d.node.Name}
	if st := g.status.Load(); st.State != vrrp.Master.String() {
		res.Error = "not master here (" + st.State + ")"
		return res
	}
	var start, released time.Time
	var rxBefore uint64
	err := g.do(ctx, func() {
		rxBefore = g.m.Status().Counters.RxAdverts
		start = time.Now()
		g.exec(g.m.Resign(start))
		released = time.Now()
	})
	if err != nil {
		res.Error = err.Error()
		return res
	}
	// The peer's first advert as master ends the handover.
	limit := time.Now().Add(3*g.cfg.Advert + time.Second)
	for time.Now().Before(limit) {
		ps := g.status.Load()
		if ps.RxAdverts > rxBefore && ps.MasterAddr != "" && ps.MasterAddr != g.src.String() && ps.MasterPriority > 0 {
			at := g.lastRx.Load()
			if at != nil {
				res.To = ps.MasterAddr
				res.Handover = at.Sub(start).Round(10 * time.Microsecond).String()
				// The VIP had no owner from our release until the peer
				// claimed it, just before its first advert; a peer that
				// was faster than our release left no gap at all.
				gap := max(at.Sub(released), 0)
				res.Gap = gap.Round(10 * time.Microsecond).String()
				res.GapSeen = gap > 0
				return res
			}
		}
		time.Sleep(200 * time.Microsecond)
	}
	res.Error = "the peer did not take over within 3 advert intervals"
	return res
}

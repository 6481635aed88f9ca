package ipvsync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"github.com/havip/havip/internal/samens"
	"github.com/moby/ipvs"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// FlushAddr is the loopback address of the flush service: a TCP virtual
// service whose only real server is this host, used by nothing but the
// flusher.
var FlushAddr = netip.MustParseAddr("127.0.0.2")

// The kernel's master sync daemon holds the message it is filling until
// the next connection entry does not fit in it, or for 2 s (3 s at worst:
// it looks every second). With a message of at most two entries (maxlen
// 100) the entries that follow soon push it out, but the last connections
// before a quiet spell still wait. The flusher makes those entries itself:
// every interval one throwaway TCP connection through the flush service,
// closed with a reset at once, which the kernel syncs twice (on reaching
// ESTABLISHED and on the reset), so whatever it held before goes out
// within interval plus the kernel's 20 ms send delay. It runs while the
// master daemon runs: the kernel shows no count of new connections finer
// than its 2 s estimator, so it cannot tell a quiet spell from a busy one
// in time.
type flusher struct {
	cancel context.CancelFunc
	done   chan struct{}
	ln     net.Listener
}

func flushService(port uint16) *ipvs.Service {
	return &ipvs.Service{
		Address: FlushAddr.AsSlice(), Protocol: unix.IPPROTO_TCP, Port: port,
		AddressFamily: unix.AF_INET, SchedName: "rr", Netmask: 0xffffffff,
	}
}

// programFlush creates the flush service on port and its real server;
// present already is fine.
func programFlush(h *ipvs.Handle, port uint16) error {
	svc := flushService(port)
	if err := h.NewService(svc); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("ipvsync: flush service %s: %w", netip.AddrPortFrom(FlushAddr, port), err)
	}
	dst := &ipvs.Destination{Address: FlushAddr.AsSlice(), Port: port, Weight: 1,
		ConnectionFlags: ipvs.ConnectionFlagDirectRoute, AddressFamily: unix.AF_INET}
	if err := h.NewDestination(svc, dst); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("ipvsync: flush service %s: real server: %w", netip.AddrPortFrom(FlushAddr, port), err)
	}
	return nil
}

// flushCheck is how often the flusher checks that its service is still
// there (an `ipvsadm -C` removes it, and a dial then succeeds without
// IPVS, flushing nothing).
const flushCheck = time.Second

// startFlusher programs the flush service on port and starts the loop.
func startFlusher(every time.Duration, port uint16, log *slog.Logger) (*flusher, error) {
	h, err := ipvs.New("")
	if err != nil {
		return nil, fmt.Errorf("ipvsync: flush service: %w", err)
	}
	if err := programFlush(h, port); err != nil {
		h.Close()
		return nil, err
	}
	addr := netip.AddrPortFrom(FlushAddr, port).String()
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("ipvsync: flush service: %w", err)
	}
	// The caller's network namespace (a test's thread may differ from the
	// process's): the dials must be made there.
	ns, err := netns.Get()
	if err != nil {
		h.Close()
		ln.Close()
		return nil, fmt.Errorf("ipvsync: flush service: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &flusher{cancel: cancel, done: make(chan struct{}), ln: ln}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the real server: accept and drop
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	go func() {
		defer close(f.done)
		defer wg.Wait()
		defer h.Close() // this goroutine's alone from here
		defer ns.Close()
		runtime.LockOSThread() // not unlocked: a thread moved to ns exits with the goroutine
		if err := samens.Enter(ns); err != nil {
			log.Error("ipvsync: sync flush cannot enter its network namespace; not flushing", "err", err)
			return
		}
		t := time.NewTicker(every)
		defer t.Stop()
		checked := time.Now()
		d := net.Dialer{Timeout: max(every, 100*time.Millisecond)}
		failing := false
		var fails uint64
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				if now.Sub(checked) >= flushCheck {
					checked = now
					if _, err := h.GetService(flushService(port)); err != nil {
						err = programFlush(h, port)
						log.Warn("ipvsync: the flush service was gone (removed behind havip's back); programmed again", "err", err)
					}
				}
			}
			c, err := d.DialContext(ctx, "tcp4", addr)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				fails++
				if !failing {
					log.Warn("ipvsync: sync flush failed; the kernel may hold the newest connections up to 3s", "err", err, "failures", fails)
					failing = true
				}
				continue
			}
			c.(*net.TCPConn).SetLinger(0) // a reset: no TIME_WAIT, and one more state change to sync
			c.Close()
			if failing {
				log.Info("ipvsync: sync flush works again", "failures", fails)
				failing = false
			}
		}
	}()
	return f, nil
}

// stop ends the loop; the flush service stays until delFlushService.
func (f *flusher) stop() {
	f.cancel()
	f.ln.Close()
	<-f.done
}

// delFlushService removes the flush service on port; absent is fine.
func delFlushService(port uint16) error {
	h, err := ipvs.New("")
	if err != nil {
		return fmt.Errorf("ipvsync: flush service: %w", err)
	}
	defer h.Close()
	if err := h.DelService(flushService(port)); err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("ipvsync: remove flush service: %w", err)
	}
	return nil
}

package ipvsync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moby/ipvs"
	"golang.org/x/sys/unix"
)

// FlushAddr is the loopback address of the flush service: a TCP virtual
// service whose only real server is this host, used by nothing but the
// flusher.
var FlushAddr = netip.MustParseAddr("127.0.0.2")

// flushFor is how long the flusher keeps going after the kernel last made
// a connection that was not its own: a connection is synced on reaching
// ESTABLISHED, one client round trip after its SYN made it.
const flushFor = time.Second

// statsFile counts the connections IPVS made in this network namespace.
const statsFile = "/proc/net/ip_vs_stats"

// The kernel's master sync daemon holds the message it is filling until
// the next connection entry does not fit in it, or for 2 s (3 s at worst:
// it looks every second). With a message size under one entry the next
// entry always pushes the previous message out, but the last connection
// before a quiet spell still waits. The flusher makes that next entry
// itself: every interval one throwaway TCP connection through the flush
// service, closed with a reset at once, which the kernel syncs on reaching
// ESTABLISHED (and again on the reset), so whatever it held before goes
// out within interval plus the kernel's 20 ms send delay. It flushes only
// while connections arrive (up to flushFor after the last one that was not
// its own, read from statsFile), so an idle director sends nothing.
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

// startFlusher programs the flush service on port and starts the loop.
func startFlusher(every time.Duration, port uint16, log *slog.Logger) (*flusher, error) {
	h, err := ipvs.New("")
	if err != nil {
		return nil, fmt.Errorf("ipvsync: flush service: %w", err)
	}
	defer h.Close()
	svc := flushService(port)
	if err := h.NewService(svc); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("ipvsync: flush service %s: %w", netip.AddrPortFrom(FlushAddr, port), err)
	}
	dst := &ipvs.Destination{Address: FlushAddr.AsSlice(), Port: port, Weight: 1,
		ConnectionFlags: ipvs.ConnectionFlagDirectRoute, AddressFamily: unix.AF_INET}
	if err := h.NewDestination(svc, dst); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("ipvsync: flush service %s: real server: %w", netip.AddrPortFrom(FlushAddr, port), err)
	}
	addr := netip.AddrPortFrom(FlushAddr, port).String()
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
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
		t := time.NewTicker(every)
		defer t.Stop()
		d := net.Dialer{Timeout: max(every, 100*time.Millisecond)}
		failing := false
		var fails uint64
		var last, own uint64 // connections counted at the last tick; ours since
		var active time.Time // when a connection not ours last appeared
		statsFailing := false
		if n, err := ipvsConns(); err == nil {
			last = n
		}
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				n, err := ipvsConns()
				if err != nil {
					if !statsFailing {
						log.Warn("ipvsync: cannot read the connection count; flushing all the time", "err", err)
					}
					statsFailing = true
					active = now // cannot tell: flush
				} else {
					statsFailing = false
					if n-last > own { // wraps only after 2^64
						active = now
					}
					last, own = n, 0
				}
				if now.Sub(active) > flushFor {
					continue
				}
			}
			own++
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

// ipvsConns reads the number of connections IPVS has made (the first field
// of statsFile's third line, hex).
func ipvsConns() (uint64, error) {
	b, err := os.ReadFile(statsFile)
	if err != nil {
		return 0, err
	}
	return parseConns(b)
}

func parseConns(b []byte) (uint64, error) {
	lines := strings.Split(string(b), "\n")
	if len(lines) < 3 {
		return 0, fmt.Errorf("ipvsync: %s: %d lines, want 3", statsFile, len(lines))
	}
	f := strings.Fields(lines[2])
	if len(f) == 0 {
		return 0, fmt.Errorf("ipvsync: %s: no counters", statsFile)
	}
	return strconv.ParseUint(f[0], 16, 64)
}

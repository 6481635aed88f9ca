package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/havip/havip/internal/conf"
	"github.com/havip/havip/internal/ipvsync"
)

// ipvsResync is how often the kernel table is re-read and repaired when
// nothing changed on havip's side (IPVS has no change notifications).
const ipvsResync = 2 * time.Second

// ipvsTask programs IPVS on this director whatever its VRRP state (the
// reconciler owns the kernel handle) and runs the kernel's connection-sync
// daemons for the role the controller asks for, retrying with backoff
// when the kernel refuses them. It is started only for a site with
// virtual servers or [sync].
type ipvsTask struct {
	log     *slog.Logger
	kernel  *ipvsync.NetlinkKernel
	rec     *ipvsync.Reconciler
	desired chan ipvsync.Update
	sync    *mailbox[syncWant]
	changes atomic.Uint64
	snap    atomic.Pointer[syncSnap]
}

// syncWant is what the sync daemons should be: cfg nil = none. handle is
// a fresh generic-netlink handle for a new or changed cfg (opened by the
// reload before it commits, so a failure refuses the reload), nil to keep
// the current one.
type syncWant struct {
	cfg    *conf.Sync
	handle *ipvsync.SyncDaemons
	master bool
}

// syncSnap is what status shows of the sync daemons.
type syncSnap struct {
	running []ipvsync.DaemonStatus
	err     string
	retryAt time.Time
}

// openIPVS opens the kernel handle and the reconciler; a kernel without
// IPVS is a runtime failure that names the cause and the fix.
func openIPVS(site *conf.Site, log *slog.Logger) (*ipvsTask, error) {
	k, err := ipvsync.OpenKernel()
	if err != nil {
		return nil, fmt.Errorf("the site declares %d virtual server(s): %w", len(site.VirtualServers), err)
	}
	if err := os.MkdirAll(site.StateDir, 0o755); err != nil {
		k.Close()
		return nil, fmt.Errorf("state dir: %w", err)
	}
	rec, err := ipvsync.NewReconciler(k, site.StateDir, log)
	if err != nil {
		k.Close()
		return nil, err
	}
	t := &ipvsTask{log: log, kernel: k, rec: rec, desired: make(chan ipvsync.Update, 1), sync: newMailbox[syncWant]()}
	t.snap.Store(&syncSnap{})
	return t, nil
}

// setTable hands the reconciler a new table or changed services; what it
// has not taken yet is merged in (the controller is the only sender).
func (t *ipvsTask) setTable(u ipvsync.Update) {
	select {
	case old := <-t.desired:
		u = old.Merge(u)
	default:
	}
	t.desired <- u
}

func (t *ipvsTask) setSync(w syncWant) { t.sync.put(w) }

// Run reconciles until ctx ends; the table stays as configured, the sync
// daemons are stopped.
func (t *ipvsTask) Run(ctx context.Context) error {
	recDone := make(chan struct{})
	go func() {
		defer close(recDone)
		t.rec.Run(ctx, t.desired, ipvsResync, func(ch ipvsync.Changes) {
			t.changes.Add(uint64(len(ch)))
			for _, c := range ch {
				t.log.Info("ipvs: applied", "change", c.String())
			}
		})
	}()
	t.runSync(ctx)
	<-recDone
	t.kernel.Close()
	return nil
}

// runSync owns the sync-daemon handle.
//
// When this node stops being master, its master sync daemon (and the
// flush) keep running for syncLinger: the kernel drops whatever a master
// daemon still holds when it is stopped, so the connections made through
// this director in its last moments would never reach the new master
// (seen in the VM drill test). The backup daemon runs in both roles.
func (t *ipvsTask) runSync(ctx context.Context) {
	var cur syncWant
	var h *ipvsync.SyncDaemons
	backoff := minBackoff
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	lingering, appliedMaster := false, false
	apply := func() {
		snap := &syncSnap{}
		if h != nil {
			master := cur.master || lingering
			appliedMaster = master
			if err := h.Follow(master); err != nil {
				snap.err = err.Error()
				snap.retryAt = time.Now().Add(backoff)
				t.log.Error("ipvs: connection sync daemons refused; retrying", "err", err, "retry_in", backoff)
				retry.Reset(backoff)
				backoff = min(2*backoff, 30*time.Second)
			} else {
				if t.snap.Load().err != "" {
					t.log.Info("ipvs: connection sync daemons running again")
				}
				backoff = minBackoff
			}
			snap.running, _ = h.Get()
		}
		t.snap.Store(snap)
	}
	stop := func() {
		if h == nil {
			return
		}
		for _, r := range []ipvsync.Role{ipvsync.RoleMaster, ipvsync.RoleBackup} {
			if err := h.Stop(r); err != nil {
				t.log.Warn("ipvs: stopping sync daemon", "role", r.String(), "err", err)
			}
		}
		h.Close()
		h = nil
		appliedMaster = false
	}
	defer stop()
	for {
		select {
		case <-ctx.Done():
			if h != nil && appliedMaster {
				time.Sleep(syncLinger) // see above: a stop drops what the master daemon holds
			}
			return
		case <-linger.C:
			lingering = false
			apply()
		case <-t.sync.ready():
			w, ok := t.sync.take()
			if !ok {
				continue
			}
			switch {
			case w.cfg == nil:
				stop()
			case w.handle != nil:
				if h != nil {
					h.Close() // the new handle takes over the running daemons
				}
				h = w.handle
				h.Log = t.log
			}
			switch {
			case w.master || w.cfg == nil:
				lingering = false
				linger.Stop()
			case appliedMaster && h != nil && !lingering:
				lingering = true
				linger.Reset(syncLinger)
			}
			cur = w
			cur.handle = nil
			backoff = minBackoff
			apply()
		case <-retry.C:
			apply()
		}
	}
}

// syncLinger is how long a master sync daemon outlives this node's last
// master group: the flush sends every 20 ms and the kernel's send delay
// adds about as much.
const syncLinger = 200 * time.Millisecond

// published is what status reads: never the kernel itself.
func (t *ipvsTask) published() (ipvsync.Published, *syncSnap) {
	return t.rec.Published(), t.snap.Load()
}

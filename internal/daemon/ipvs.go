package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/havip/havip/internal/conf"
	"github.com/havip/havip/internal/ctl"
	"github.com/havip/havip/internal/ipvsync"
)

// ipvsResync is how often the kernel table is re-read and repaired when
// nothing changed on havip's side (IPVS has no change notifications).
const ipvsResync = 2 * time.Second

// ipvsPart programs IPVS on this director whatever its VRRP state, and
// runs the connection-sync daemons that follow it.
type ipvsPart struct {
	d       *Daemon
	kernel  *ipvsync.NetlinkKernel
	rec     *ipvsync.Reconciler
	desired chan ipvsync.Table
	repairs atomic.Uint64

	mu   sync.Mutex
	sync *ipvsync.SyncDaemons
	scfg *conf.Sync
}

// startIPVS is a no-op for a VRRP-only site. With virtual servers, a kernel
// without IPVS is a runtime failure naming the cause and the fix.
func (d *Daemon) startIPVS(ctx context.Context) error {
	d.mu.Lock()
	site := d.site
	d.mu.Unlock()
	if len(site.VirtualServers) == 0 && site.Sync == nil {
		return nil
	}
	k, err := ipvsync.OpenKernel("")
	if err != nil {
		return fmt.Errorf("the site declares %d virtual server(s): %w", len(site.VirtualServers), err)
	}
	if err := os.MkdirAll(site.StateDir, 0o755); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	rec, err := ipvsync.NewReconciler(k, site.StateDir, d.log)
	if err != nil {
		k.Close()
		return err
	}
	p := &ipvsPart{d: d, kernel: k, rec: rec, desired: make(chan ipvsync.Table, 1)}
	if err := p.setSite(site, d.health); err != nil {
		k.Close()
		return err // bad virtual servers: ErrBadInput; sync: runtime
	}
	d.ipvs = p
	go func() {
		rec.Run(ctx, p.desired, ipvsResync, func(ch ipvsync.Changes) {
			p.repairs.Add(uint64(len(ch)))
			for _, c := range ch {
				d.log.Info("ipvs: applied", "change", c.String())
			}
		})
		k.Close()
	}()
	return p.follow(false)
}

// setSite computes the desired table, with the real servers' health, and
// hands it to the reconciler.
func (p *ipvsPart) setSite(site *conf.Site, health ipvsync.Health) error {
	t := ipvsync.Desired(site.VirtualServers, health)
	p.mu.Lock()
	switch {
	case site.Sync == nil && p.sync != nil:
		// [sync] removed: stop the kernel's daemons.
		p.stopSyncLocked()
	case site.Sync != nil && (p.scfg == nil || *p.scfg != *site.Sync):
		// Open the new handle before dropping the old one, so a failure
		// leaves the running sync untouched.
		s, err := ipvsync.OpenSyncDaemons(*site.Sync)
		if err != nil {
			p.mu.Unlock()
			return fmt.Errorf("connection sync: %w", err)
		}
		if p.sync != nil {
			p.sync.Close()
		}
		p.sync, p.scfg = s, site.Sync
	}
	p.mu.Unlock()
	// The newest table replaces one the reconciler has not taken yet.
	select {
	case <-p.desired:
	default:
	}
	p.desired <- t
	return nil
}

// follow runs the master sync daemon while any group is master here; the
// backup daemon always runs, so a returning node learns the connections.
func (p *ipvsPart) follow(master bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sync == nil {
		return nil
	}
	if err := p.sync.Follow(master); err != nil {
		p.d.log.Error("ipvs: connection sync daemons", "err", err)
		return nil // IPVS forwarding still works without sync
	}
	return nil
}

// stop stops the sync daemons; the IPVS table stays as configured.
func (p *ipvsPart) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopSyncLocked()
}

func (p *ipvsPart) stopSyncLocked() {
	if p.sync == nil {
		return
	}
	for _, r := range []ipvsync.Role{ipvsync.RoleMaster, ipvsync.RoleBackup} {
		if err := p.sync.Stop(r); err != nil {
			p.d.log.Warn("ipvs: stopping sync daemon", "role", r.String(), "err", err)
		}
	}
	p.sync.Close()
	p.sync, p.scfg = nil, nil
}

func (p *ipvsPart) status() *ctl.IPVSStatus {
	st := &ctl.IPVSStatus{Repairs: p.repairs.Load()}
	p.mu.Lock()
	sd := p.sync
	p.mu.Unlock()
	// What the reconciler last read and wrote: status never dumps the
	// kernel itself.
	pub := p.rec.Published()
	if pub.LastError != "" {
		st.Error = "last reconcile failed: " + pub.LastError
	}
	if pub.StateError != "" {
		st.Error = strings.TrimSpace(st.Error + " state file: " + pub.StateError)
	}
	st.Services, _ = json.Marshal(pub.Rows)
	var b bytes.Buffer
	_ = ipvsync.Format(&b, pub.Rows)
	st.Table = b.String()
	if sd != nil {
		p.mu.Lock()
		ds, err := sd.Get()
		p.mu.Unlock()
		if err != nil {
			st.Error += " sync: " + err.Error()
		}
		for _, d := range ds {
			st.Sync = append(st.Sync, ctl.SyncDaemon{Role: d.Role.String(), Interface: d.Interface, SyncID: d.SyncID})
		}
	}
	return st
}

func (d *Daemon) anyMasterExcept(name string) bool {
	for _, g := range d.runningGroups() {
		if s := g.status.Load(); g.cfg.Name != name && s != nil && s.State == "MASTER" {
			return true
		}
	}
	return false
}

package ipvsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/havip/havip/internal/statefile"
	"github.com/moby/ipvs"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// dumpAttempts bounds how often an inconsistent dump is retried.
const dumpAttempts = 5

// OwnedFile is the name of the state file listing the services havip created.
const OwnedFile = "ipvs-owned.json"

// errInconsistent reports a dump that changed while it was read.
var errInconsistent = errors.New("ipvsync: IPVS table changed during dump")

// Op is one kind of kernel write.
type Op string

const (
	OpAddService    Op = "add-service"
	OpUpdateService Op = "update-service"
	OpDelService    Op = "del-service"
	OpAddDest       Op = "add-dest"
	OpUpdateDest    Op = "update-dest"
	OpDelDest       Op = "del-dest"
)

// Change is one write the reconciler made to the kernel.
type Change struct {
	Op      Op             `json:"op"`
	Service ServiceKey     `json:"service"`
	Name    string         `json:"name,omitempty"`
	Dest    netip.AddrPort `json:"dest,omitzero"`
	Detail  string         `json:"detail,omitempty"`
}

func (c Change) String() string {
	var b strings.Builder
	b.WriteString(string(c.Op))
	b.WriteString(" ")
	b.WriteString(c.Service.String())
	if c.Name != "" {
		fmt.Fprintf(&b, " (%s)", c.Name)
	}
	if c.Dest.IsValid() {
		b.WriteString(" -> ")
		b.WriteString(c.Dest.String())
	}
	if c.Detail != "" {
		b.WriteString(": ")
		b.WriteString(c.Detail)
	}
	return b.String()
}

// Changes lists the writes of one reconcile, in the order they were made.
type Changes []Change

// Reconciler makes the kernel's IPVS table match a Table, touching only
// services that the table declares or that havip created before.
type Reconciler struct {
	k         Kernel
	stateFile string // "" = keep ownership in memory only
	log       *slog.Logger
	owned     map[ServiceKey]bool
	unsaved   bool                   // owned differs from the state file
	applied   map[ServiceKey]Service // the table last applied without error; nil = unknown
	index     map[ServiceKey]int     // position of each service in the table last given
	want      Table                  // ReconcileUpdate's table, its own copy
	wantIndex map[ServiceKey]int     // position of each service in want
	audit     int                    // where the next full reconcile's destination audit starts

	// What the next Published reports, kept by the reconciling goroutine;
	// rows is written under mu too, as Published copies it.
	rows        []ServiceStatus
	rowsAt      time.Time
	dumpRetries int
	writes      uint64

	mu        sync.Mutex // guards what other goroutines read:
	stateErr  string     // why the state file is behind owned; "" = current
	pub       Published  // Rows aside, which are copied from rows when stale
	rowsStale bool       // rows changed since pub.Rows was copied
}

// NewReconciler returns a reconciler over k. If stateDir is not empty, the
// set of services havip owns is loaded from and saved to a file there, so a
// restarted daemon still removes services dropped from the site file. An
// empty or undecodable file (a power cut while it was written) is moved
// aside and logged, and the reconciler starts owning nothing: it then
// touches only the services the site declares. Other errors reading the
// file are returned.
func NewReconciler(k Kernel, stateDir string, log *slog.Logger) (*Reconciler, error) {
	if log == nil {
		log = slog.Default()
	}
	r := &Reconciler{k: k, log: log, owned: make(map[ServiceKey]bool)}
	if stateDir != "" {
		r.stateFile = filepath.Join(stateDir, OwnedFile)
		_, err := statefile.Read(r.stateFile, log, func(b []byte) error {
			var st ownedState
			if err := json.Unmarshal(b, &st); err != nil {
				return err
			}
			for _, k := range st.Services {
				r.owned[k] = true
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("ipvsync: read owned services: %w", err)
		}
	}
	return r, nil
}

// Owned returns the keys of the services havip currently owns, sorted.
func (r *Reconciler) Owned() []ServiceKey {
	out := make([]ServiceKey, 0, len(r.owned))
	for k := range r.owned {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b ServiceKey) int { return strings.Compare(a.String(), b.String()) })
	return out
}

type ownedState struct {
	Services []ServiceKey `json:"services"`
}

// save writes the owned set to the state file if the file is behind it.
// A failure does not stop reconciling: the set stays in memory, every
// later reconcile tries again, and StateError says why meanwhile. It is
// logged when it first appears or changes, and when it clears.
func (r *Reconciler) save() {
	if !r.unsaved {
		return
	}
	err := r.writeOwned()
	r.unsaved = err != nil
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	r.mu.Lock()
	prev := r.stateErr
	r.stateErr = msg
	r.mu.Unlock()
	switch {
	case err != nil && msg != prev:
		r.log.Error("ipvsync: cannot save the owned services; reconciling from memory and retrying", "file", r.stateFile, "err", err)
	case err == nil && prev != "":
		r.log.Info("ipvsync: owned services saved again", "file", r.stateFile)
	}
}

func (r *Reconciler) writeOwned() error {
	b, err := json.MarshalIndent(ownedState{Services: r.Owned()}, "", "  ")
	if err != nil {
		return fmt.Errorf("ipvsync: encode owned services: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(r.stateFile), 0o755); err != nil {
		return fmt.Errorf("ipvsync: save owned services: %w", err)
	}
	if err := statefile.Write(r.stateFile, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("ipvsync: save owned services: %w", err)
	}
	return nil
}

// StateError is why the state file does not hold the services havip owns
// (the last write failed), or "" when it does. It is safe for concurrent
// use.
func (r *Reconciler) StateError() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stateErr
}

type kernelService struct {
	svc   *ipvs.Service
	dests map[netip.AddrPort]*ipvs.Destination
}

// retryable reports an error meaning "the dump was interrupted, read again".
func retryable(err error) bool {
	return errors.Is(err, nl.ErrDumpInterrupted) || errors.Is(err, unix.EINTR) ||
		errors.Is(err, errInconsistent)
}

// dump reads the IPVS table: every service, and the destinations of the
// services audit selects (the others get nil dests: unknown). It retries
// interrupted or inconsistent dumps: a service that vanishes while its
// destinations are read, a duplicate, or a service list that differs when
// read again after the destinations all mean the dump raced with a writer.
func (r *Reconciler) dump(audit func(ServiceKey) bool) (map[ServiceKey]*kernelService, error) {
	var err error
	for range dumpAttempts {
		var m map[ServiceKey]*kernelService
		m, err = dumpOnce(r.k, audit)
		if err == nil {
			return m, nil
		}
		if !retryable(err) {
			return nil, err
		}
		r.dumpRetries++
	}
	return nil, fmt.Errorf("ipvsync: IPVS dump failed %d times: %w", dumpAttempts, err)
}

func dumpOnce(k Kernel, audit func(ServiceKey) bool) (map[ServiceKey]*kernelService, error) {
	svcs, err := k.Services()
	if err != nil {
		return nil, fmt.Errorf("ipvsync: dump services: %w", err)
	}
	m := make(map[ServiceKey]*kernelService, len(svcs))
	for _, s := range svcs {
		key := keyOf(s)
		if m[key] != nil {
			return nil, fmt.Errorf("%w: %s listed twice", errInconsistent, key)
		}
		ks := &kernelService{svc: s}
		m[key] = ks
		if !audit(key) {
			continue
		}
		ds, err := k.Destinations(s)
		if isNotExist(err) {
			return nil, fmt.Errorf("%w: %s vanished: %w", errInconsistent, key, err)
		}
		if err != nil {
			return nil, fmt.Errorf("ipvsync: dump destinations of %s: %w", key, err)
		}
		ks.dests = make(map[netip.AddrPort]*ipvs.Destination, len(ds))
		for _, d := range ds {
			a := destAddr(d)
			if ks.dests[a] != nil {
				return nil, fmt.Errorf("%w: %s -> %s listed twice", errInconsistent, key, a)
			}
			ks.dests[a] = d
		}
	}
	again, err := k.Services()
	if err != nil {
		return nil, fmt.Errorf("ipvsync: dump services: %w", err)
	}
	if len(again) != len(m) {
		return nil, fmt.Errorf("%w: %d services, then %d", errInconsistent, len(m), len(again))
	}
	for _, s := range again {
		if m[keyOf(s)] == nil {
			return nil, fmt.Errorf("%w: %s appeared", errInconsistent, keyOf(s))
		}
	}
	return m, nil
}

// Reconcile makes the kernel hold t: it reads the table, and writes only
// what differs. Services neither declared by t nor owned by havip are left
// alone. It returns the writes that succeeded; the error joins the ones that
// failed (the next reconcile retries them). A state file that cannot be
// written is not among them: see StateError. Like ReconcileChanges, it
// ends by publishing what it read and wrote (Published).
func (r *Reconciler) Reconcile(t Table) (Changes, error) {
	return r.finish(r.reconcileFull(t))
}

func (r *Reconciler) reconcileFull(t Table) (Changes, error) {
	audit, all := r.auditSet(t)
	cur, err := r.dump(func(k ServiceKey) bool { return all || audit[k] })
	if err != nil {
		r.applied = nil
		return nil, err
	}
	r.setIndex(t)
	svcs := make([]*Service, len(t.Services))
	for i := range t.Services {
		svcs[i] = &t.Services[i]
	}
	ch, err := r.apply(svcs, cur, nil)
	var fresh map[ServiceKey]bool
	if !all {
		// Rows of services whose destinations were not read keep what
		// the last read of them showed.
		fresh = make(map[ServiceKey]bool, len(audit)+len(ch))
		for i := range t.Services {
			k := t.Services[i].Key
			if ks := cur[k]; ks == nil || ks.dests != nil {
				fresh[k] = true
			}
		}
	}
	rows := statusRows(t, cur, fresh, r.rows)
	r.mu.Lock()
	r.rows, r.rowsAt, r.rowsStale = rows, time.Now(), true
	r.mu.Unlock()
	return ch, err
}

// auditSlices is how many full reconciles it takes to read the
// destinations of every service once, when the table is larger than
// auditAll services; tables up to auditAll services are read whole on
// every full reconcile.
const (
	auditSlices = 10
	auditAll    = 256
)

// auditSet says whose destinations a full reconcile reads. The service
// list is read whole every time, which finds a service missing (a table
// cleared behind havip's back), foreign or changed at once. Destinations
// cost one request per service, so with a table last applied without
// error only a rotating slice is read: the services that differ from that
// table, those with a destination at weight 0 (draining), and
// 1/auditSlices of the others, so a destination removed, added or
// re-weighted behind havip's back is repaired within auditSlices full
// reconciles. all is true when every service is read.
func (r *Reconciler) auditSet(t Table) (audit map[ServiceKey]bool, all bool) {
	n := len(t.Services)
	if r.applied == nil || n <= auditAll {
		return nil, true
	}
	per := (n + auditSlices - 1) / auditSlices
	audit = make(map[ServiceKey]bool, per)
	if r.audit >= n {
		r.audit = 0
	}
	for i := range per {
		audit[t.Services[(r.audit+i)%n].Key] = true
	}
	r.audit += per
	for i := range t.Services {
		s := &t.Services[i]
		if old, ok := r.applied[s.Key]; !ok || !old.Equal(s) || draining(s) {
			audit[s.Key] = true
		}
	}
	return audit, false
}

// draining reports a destination at weight 0 (drained, or down with
// on_failure = "weight0"): its service is read on every full reconcile,
// so the connection counts that `havip drain --wait` watches stay as
// fresh as the resync period.
func draining(s *Service) bool {
	return slices.ContainsFunc(s.Dests, func(d Dest) bool { return d.Weight == 0 })
}

// setIndex records where each service of t is, for ReconcileServices.
func (r *Reconciler) setIndex(t Table) {
	if r.index == nil || len(r.index) != len(t.Services) {
		r.index = make(map[ServiceKey]int, len(t.Services))
	}
	clear(r.index)
	for i := range t.Services {
		r.index[t.Services[i].Key] = i
	}
}

// Equal reports whether s and o are equal in everything a Service holds
// (reflect.DeepEqual, without its cost).
func (s *Service) Equal(o *Service) bool {
	return s.Key == o.Key && s.Name == o.Name && s.Address == o.Address && s.FWMark == o.FWMark &&
		s.Family == o.Family && s.Protocol == o.Protocol && s.Scheduler == o.Scheduler &&
		s.Flags == o.Flags && s.Timeout == o.Timeout && s.Netmask == o.Netmask &&
		s.Down == o.Down && s.Sorry == o.Sorry &&
		slices.Equal(s.Dests, o.Dests) && slices.Equal(s.Backends, o.Backends)
}

// ReconcileChanges makes the kernel hold t reading and writing only the
// services that differ from the table last applied without error: a new
// weight costs three netlink requests (read the service, read its real
// servers, write one), whatever the table's size. Without such a table it
// is Reconcile. Edits made behind havip's back are left to the next full
// Reconcile (Run does one every resync period).
func (r *Reconciler) ReconcileChanges(t Table) (Changes, error) {
	if r.applied == nil {
		return r.Reconcile(t)
	}
	only := map[ServiceKey]bool{}
	for i := range t.Services {
		s := &t.Services[i]
		if old, ok := r.applied[s.Key]; !ok || !old.Equal(s) {
			only[s.Key] = true
		}
	}
	if len(only) == 0 && len(r.applied) == len(t.Services) {
		return r.finish(nil, nil)
	}
	r.setIndex(t)
	for k := range r.applied {
		if _, ok := r.index[k]; !ok {
			only[k] = true
		}
	}
	return r.finish(r.reconcileTargeted(t, only, false))
}

// ReconcileServices is ReconcileChanges told which services changed: t
// is the table last given with only the services keyed in changed edited
// (same keys, same order). It then costs work in proportion to
// len(changed), not to the table's size: the daemon's path for a health
// change. A t of another shape (services added, removed or moved) is
// handed to ReconcileChanges.
func (r *Reconciler) ReconcileServices(t Table, changed []ServiceKey) (Changes, error) {
	if r.applied == nil || len(r.index) != len(t.Services) || len(r.applied) != len(t.Services) {
		return r.ReconcileChanges(t)
	}
	only := make(map[ServiceKey]bool, len(changed))
	for _, k := range changed {
		i, ok := r.index[k]
		if !ok || t.Services[i].Key != k {
			return r.ReconcileChanges(t)
		}
		only[k] = true
	}
	return r.finish(r.reconcileTargeted(t, only, true))
}

// finish ends every reconcile: a state file behind the owned set is
// retried whatever the kernel said, and the outcome is published.
func (r *Reconciler) finish(ch Changes, err error) (Changes, error) {
	r.save()
	r.writes += uint64(len(ch))
	p := Published{At: r.rowsAt, DumpRetries: r.dumpRetries, Writes: r.writes}
	if err != nil {
		p.LastError = err.Error()
	}
	r.mu.Lock()
	p.StateError = r.stateErr
	p.Rows = r.pub.Rows
	r.pub = p
	r.mu.Unlock()
	return ch, err
}

// reconcileTargeted reads and writes the services in only; r.index
// locates the ones t holds. aligned says the published rows are in t's
// order (t has the shape of the table they were built from).
func (r *Reconciler) reconcileTargeted(t Table, only map[ServiceKey]bool, aligned bool) (Changes, error) {
	if len(only) == 0 {
		return nil, nil
	}
	cur := make(map[ServiceKey]*kernelService, len(only))
	svcs := make([]*Service, 0, len(only))
	for k := range only {
		want := (*ipvs.Service)(nil)
		if i, ok := r.index[k]; ok {
			svcs = append(svcs, &t.Services[i])
			want = t.Services[i].toKernel()
		} else if old, ok := r.applied[k]; ok && r.owned[k] {
			want = old.toKernel()
		}
		if want == nil {
			continue
		}
		if err := r.readOne(cur, want); err != nil {
			r.applied = nil
			return nil, err
		}
	}
	// In the table's order, as a full reconcile writes them.
	slices.SortFunc(svcs, func(a, b *Service) int { return r.index[a.Key] - r.index[b.Key] })
	ch, err := r.apply(svcs, cur, only)
	if aligned && len(r.rows) == len(t.Services) {
		// In place, in proportion to what changed: Published copies
		// the rows when asked.
		rows := make([]ServiceStatus, len(svcs))
		for n, s := range svcs {
			rows[n] = statusRow(s, cur[s.Key])
		}
		r.mu.Lock()
		for n, s := range svcs {
			r.rows[r.index[s.Key]] = rows[n]
		}
		r.rowsStale = true
		r.mu.Unlock()
	} else {
		rows := statusRows(t, cur, only, r.rows)
		r.mu.Lock()
		r.rows, r.rowsStale = rows, true
		r.mu.Unlock()
	}
	r.rowsAt = time.Now()
	return ch, err
}

// readOne reads one service and its real servers into cur (nothing when
// the kernel lacks it).
func (r *Reconciler) readOne(cur map[ServiceKey]*kernelService, want *ipvs.Service) error {
	s, err := r.k.Service(want)
	if err != nil {
		return fmt.Errorf("ipvsync: read service %s: %w", keyOf(want), err)
	}
	if s == nil {
		return nil
	}
	ds, err := r.k.Destinations(s)
	if err != nil {
		return fmt.Errorf("ipvsync: read destinations of %s: %w", keyOf(s), err)
	}
	ks := &kernelService{svc: s, dests: make(map[netip.AddrPort]*ipvs.Destination, len(ds))}
	for _, d := range ds {
		ks.dests[destAddr(d)] = d
	}
	cur[keyOf(s)] = ks
	return nil
}

// apply writes what the services svcs need over the kernel state cur,
// and updates cur with each write that succeeds. A service of cur whose
// dests are nil (not read) keeps its destinations as they are. With only
// nil, svcs is the whole table (r.index locates it) and every owned
// service outside it is deleted; with only set, just the owned services
// of only outside the table are.
//
// The writes go to the kernel as one batch (Kernel.Write); a write that
// depends on an earlier one failing (the destinations of a service the
// kernel refused) fails too, and each failure is reported.
func (r *Reconciler) apply(svcs []*Service, cur map[ServiceKey]*kernelService, only map[ServiceKey]bool) (Changes, error) {
	// Record ownership before creating anything, so a crash in between
	// cannot leave a service nobody will clean up. If the state file
	// cannot be written the kernel is reconciled all the same: a service
	// not reaching it could be left behind by a crash, but a director that
	// stops following the site is worse.
	for _, s := range svcs {
		if !r.owned[s.Key] {
			r.owned[s.Key] = true
			r.unsaved = r.stateFile != ""
		}
	}
	r.save()

	n := 0
	for _, s := range svcs {
		if cur[s.Key] == nil {
			n += 1 + len(s.Dests)
		}
	}
	plan := make([]step, 0, n+8) // room for what a cold start writes
	add := func(c Change, w Write, ok func()) {
		plan = append(plan, step{c, w, ok})
	}
	for _, s := range svcs {
		ksvc := s.toKernel()
		ks := cur[s.Key]
		if ks == nil {
			ks = &kernelService{svc: ksvc, dests: make(map[netip.AddrPort]*ipvs.Destination, len(s.Dests))}
			add(Change{Op: OpAddService, Service: s.Key, Name: s.Name, Detail: s.Scheduler}, Write{OpAddService, ksvc, nil},
				func() { cur[s.Key] = ks })
			for _, d := range s.Dests {
				wd := d.toKernel()
				add(Change{Op: OpAddDest, Service: s.Key, Name: s.Name, Dest: d.Address, Detail: destDetail(d)}, Write{OpAddDest, ksvc, wd},
					func() { ks.dests[d.Address] = wd })
			}
			continue
		}
		if why := serviceDiff(ks.svc, ksvc); why != "" {
			add(Change{Op: OpUpdateService, Service: s.Key, Name: s.Name, Detail: why}, Write{OpUpdateService, ksvc, nil},
				func() { ks.svc = ksvc })
		}
		if ks.dests == nil {
			continue // not read this time
		}
		// Add and update before deleting, so a replaced real server never
		// leaves the service empty in between.
		keep := make(map[netip.AddrPort]bool, len(s.Dests))
		for _, d := range s.Dests {
			keep[d.Address] = true
			kd := ks.dests[d.Address]
			wd := d.toKernel()
			switch {
			case kd == nil:
				add(Change{Op: OpAddDest, Service: s.Key, Name: s.Name, Dest: d.Address, Detail: destDetail(d)}, Write{OpAddDest, ksvc, wd},
					func() { ks.dests[d.Address] = wd })
			case destDiff(kd, wd) != "":
				add(Change{Op: OpUpdateDest, Service: s.Key, Name: s.Name, Dest: d.Address, Detail: destDiff(kd, wd)}, Write{OpUpdateDest, ksvc, wd},
					func() {
						nd := *wd // the connections stay
						nd.ActiveConnections, nd.InactiveConnections = kd.ActiveConnections, kd.InactiveConnections
						ks.dests[d.Address] = &nd
					})
			}
		}
		for _, a := range sortedAddrs(ks.dests) {
			if !keep[a] {
				kd := ks.dests[a]
				add(Change{Op: OpDelDest, Service: s.Key, Name: s.Name, Dest: a}, Write{OpDelDest, ksvc, kd},
					func() { delete(ks.dests, a) })
			}
		}
	}

	// Services havip created and the site no longer declares, in the
	// order Owned lists them. Only these are sorted: sorting every owned
	// key by its String form on each reconcile was about a third of a
	// no-op reconcile's CPU outside the dump (VM profile, 1000 services).
	var gone []ServiceKey
	candidates := r.owned
	if only != nil {
		candidates = only // a targeted reconcile looks at its services alone
	}
	for k := range candidates {
		if _, in := r.index[k]; !in && r.owned[k] {
			gone = append(gone, k)
		}
	}
	slices.SortFunc(gone, func(a, b ServiceKey) int { return strings.Compare(a.String(), b.String()) })
	var disown []ServiceKey
	for _, k := range gone {
		ks := cur[k]
		if ks == nil {
			disown = append(disown, k)
			continue
		}
		add(Change{Op: OpDelService, Service: k}, Write{OpDelService, ks.svc, nil}, func() {
			delete(cur, k)
			disown = append(disown, k)
		})
	}

	ch, errs := r.run(plan)
	for _, k := range disown {
		delete(r.owned, k)
		r.unsaved = r.stateFile != ""
	}
	r.save()

	if len(errs) > 0 {
		r.applied = nil
		return ch, errors.Join(errs...)
	}
	switch {
	case r.applied == nil:
		r.applied = make(map[ServiceKey]Service, len(svcs))
	case only == nil:
		clear(r.applied)
	}
	for _, s := range svcs {
		r.applied[s.Key] = *s
	}
	for k := range only {
		if _, in := r.index[k]; !in {
			delete(r.applied, k)
		}
	}
	return ch, nil
}

// step is one planned write: its change, the write, and what to record
// once it is done.
type step struct {
	change Change
	write  Write
	done   func()
}

// run makes the planned writes as one batch and returns the changes that
// were made, in order, and the errors of the others.
func (r *Reconciler) run(plan []step) (Changes, []error) {
	if len(plan) == 0 {
		return nil, nil
	}
	ws := make([]Write, len(plan))
	for i, p := range plan {
		ws[i] = p.write
	}
	werrs := r.k.Write(ws)
	ch := make(Changes, 0, len(plan))
	var errs []error
	failed := 0
	for i, p := range plan {
		if werrs[i] != nil {
			if failed++; failed <= maxErrs {
				errs = append(errs, fmt.Errorf("ipvsync: %s: %w", p.change, werrs[i]))
			}
			continue
		}
		p.done()
		ch = append(ch, p.change)
	}
	if failed > maxErrs {
		errs = append(errs, fmt.Errorf("ipvsync: %d more writes failed", failed-maxErrs))
	}
	return ch, errs
}

// maxErrs bounds the failed writes one reconcile reports one by one (a
// kernel refusing everything would otherwise make an error of 100,000
// lines).
const maxErrs = 20

func destDetail(d Dest) string {
	return "weight " + strconv.Itoa(d.Weight) + " " + d.Forward
}

// serviceDiff says why the kernel's service k differs from the wanted w,
// or "" if it does not.
func serviceDiff(k, w *ipvs.Service) string {
	var why []string
	if k.SchedName != w.SchedName {
		why = append(why, fmt.Sprintf("scheduler %s->%s", k.SchedName, w.SchedName))
	}
	if k.Flags&userFlags != w.Flags {
		why = append(why, fmt.Sprintf("flags %#x->%#x", k.Flags&userFlags, w.Flags))
	}
	if k.Timeout != w.Timeout {
		why = append(why, fmt.Sprintf("timeout %d->%d", k.Timeout, w.Timeout))
	}
	if k.Netmask != w.Netmask {
		why = append(why, fmt.Sprintf("netmask %#x->%#x", k.Netmask, w.Netmask))
	}
	return strings.Join(why, ", ")
}

func destDiff(k, w *ipvs.Destination) string {
	var why []string
	if k.Weight != w.Weight {
		why = append(why, fmt.Sprintf("weight %d->%d", k.Weight, w.Weight))
	}
	if kf, wf := k.ConnectionFlags&ipvs.ConnectionFlagFwdMask, w.ConnectionFlags&ipvs.ConnectionFlagFwdMask; kf != wf {
		why = append(why, fmt.Sprintf("forward %s->%s", forwardName(kf), forwardName(wf)))
	}
	if k.UpperThreshold != w.UpperThreshold || k.LowerThreshold != w.LowerThreshold {
		why = append(why, "thresholds")
	}
	return strings.Join(why, ", ")
}

func sortedAddrs(m map[netip.AddrPort]*ipvs.Destination) []netip.AddrPort {
	out := make([]netip.AddrPort, 0, len(m))
	for a := range m {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b netip.AddrPort) int { return a.Compare(b) })
	return out
}

// Update is what Run is handed: a whole new table, or services that
// replace the ones with the same keys in the table it has (a health
// change), or both (Set applies after Table). Run keeps its own copy: the
// sender may reuse what it sent.
type Update struct {
	Table *Table
	Set   []Service
}

// Merge is the Update that has the effect of u and then next: what a
// sender hands Run when next replaces an u that Run has not taken yet.
func (u Update) Merge(next Update) Update {
	if next.Table != nil {
		return next
	}
	return Update{Table: u.Table, Set: append(slices.Clip(u.Set), next.Set...)}
}

// ReconcileUpdate applies u to the table the reconciler keeps (see Update)
// and reconciles: a whole table with ReconcileChanges, services set alone
// with ReconcileServices, so a health change costs in proportion to the
// services it changes. A service set whose key is not in the table is an
// error, and nothing is written.
func (r *Reconciler) ReconcileUpdate(u Update) (Changes, error) {
	if u.Table != nil {
		r.want = Table{Services: slices.Clone(u.Table.Services)}
		r.wantIndex = make(map[ServiceKey]int, len(r.want.Services))
		for i := range r.want.Services {
			r.wantIndex[r.want.Services[i].Key] = i
		}
	}
	keys := make([]ServiceKey, 0, len(u.Set))
	for _, s := range u.Set {
		i, ok := r.wantIndex[s.Key]
		if !ok {
			return nil, fmt.Errorf("ipvsync: update sets %s, which the table lacks", s.Key)
		}
		r.want.Services[i] = s
		keys = append(keys, s.Key)
	}
	if u.Table != nil {
		return r.ReconcileChanges(r.want)
	}
	return r.ReconcileServices(r.want, keys)
}

// Run owns the kernel handle: it reconciles on every table received and
// every resync period (which repairs edits made behind havip's back, such
// as `ipvsadm -C`), until ctx is done. onChange, if set, gets the writes of
// every reconcile that made some. Failures are logged when they first
// appear and when they change; the next resync retries. Each reconcile
// publishes what status needs (Published), so nothing else ever has to
// read the kernel through the handle Run owns.
func (r *Reconciler) Run(ctx context.Context, desired <-chan Update, resync time.Duration, onChange func(Changes)) {
	// The resync timer restarts after each full reconcile, at least ten
	// times as long as that reconcile took: a huge table is re-read less
	// often rather than keeping a core busy.
	var tick <-chan time.Time
	var timer *time.Timer
	if resync > 0 {
		timer = time.NewTimer(resync)
		defer timer.Stop()
		tick = timer.C
	}
	have := false
	var failing string // the error last logged
	for {
		var u Update
		full := true
		select {
		case <-ctx.Done():
			return
		case next, ok := <-desired:
			if !ok {
				desired = nil
				continue
			}
			u, have, full = next, true, false
		case <-tick:
			if !have {
				timer.Reset(resync)
			}
		}
		if !have {
			continue
		}
		reconcile := func() (Changes, error) { return r.ReconcileUpdate(u) }
		if full {
			reconcile = func() (Changes, error) { return r.Reconcile(r.want) }
		}
		t0 := time.Now()
		ch, err := reconcile()
		if full && timer != nil {
			timer.Reset(max(resync, 10*time.Since(t0)))
		}
		if len(ch) > 0 && onChange != nil {
			onChange(ch)
		}
		switch {
		case err != nil && err.Error() != failing:
			r.log.Error("ipvsync: reconcile failed", "err", err)
			failing = err.Error()
		case err == nil && failing != "":
			r.log.Info("ipvsync: reconcile succeeded again")
			failing = ""
		}
	}
}

// UnmarshalText parses the String form of a key (as kept in the state file).
func (k *ServiceKey) UnmarshalText(b []byte) error {
	f := strings.Fields(string(b))
	bad := fmt.Errorf("ipvsync: bad service key %q", b)
	switch {
	case len(f) == 3 && f[0] == "fwmark":
		m, err := strconv.ParseUint(f[1], 10, 32)
		if err != nil || m == 0 {
			return bad
		}
		fam := uint16(unix.AF_INET)
		switch f[2] {
		case "inet":
		case "inet6":
			fam = unix.AF_INET6
		default:
			return bad
		}
		*k = ServiceKey{FWMark: uint32(m), Family: fam}
	case len(f) == 2:
		p, ok := protocolNumber(f[0])
		if !ok {
			return bad
		}
		ap, err := netip.ParseAddrPort(f[1])
		if err != nil {
			return bad
		}
		fam, _ := addrFamily(ap.Addr())
		*k = ServiceKey{Family: fam, Protocol: p, Address: unmapAP(ap)}
	default:
		return bad
	}
	return nil
}

package ipvsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
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

	// What the next Published reports, kept by the reconciling goroutine.
	rows        []ServiceStatus
	rowsAt      time.Time
	dumpRetries int
	writes      uint64

	mu       sync.Mutex // guards what other goroutines read:
	stateErr string     // why the state file is behind owned; "" = current
	pub      Published
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

// setOwned makes owned the set of services havip owns and saves it.
func (r *Reconciler) setOwned(owned map[ServiceKey]bool) {
	if !maps.Equal(owned, r.owned) {
		r.owned = maps.Clone(owned)
		r.unsaved = r.stateFile != ""
	}
	r.save()
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

// dump reads the whole IPVS table, retrying interrupted or inconsistent
// dumps. moby/ipvs drops NLM_F_DUMP_INTR on the floor, so consistency is
// checked directly: a service that vanishes while its destinations are
// read, a duplicate, or a service list that differs when read again after
// the destinations, all mean the dump raced with a writer.
func (r *Reconciler) dump() (map[ServiceKey]*kernelService, error) {
	var err error
	for range dumpAttempts {
		var m map[ServiceKey]*kernelService
		m, err = dumpOnce(r.k)
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

func dumpOnce(k Kernel) (map[ServiceKey]*kernelService, error) {
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
		ds, err := k.Destinations(s)
		if errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("%w: %s vanished: %w", errInconsistent, key, err)
		}
		if err != nil {
			return nil, fmt.Errorf("ipvsync: dump destinations of %s: %w", key, err)
		}
		ks := &kernelService{svc: s, dests: make(map[netip.AddrPort]*ipvs.Destination, len(ds))}
		for _, d := range ds {
			a := destAddr(d)
			if ks.dests[a] != nil {
				return nil, fmt.Errorf("%w: %s -> %s listed twice", errInconsistent, key, a)
			}
			ks.dests[a] = d
		}
		m[key] = ks
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
	cur, err := r.dump()
	if err != nil {
		r.applied = nil
		return nil, err
	}
	ch, err := r.apply(t, cur, nil)
	r.rows, r.rowsAt = statusRows(t, cur, nil, nil), time.Now()
	return ch, err
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
	return r.finish(r.reconcileTargeted(t))
}

// finish ends every reconcile: a state file behind the owned set is
// retried whatever the kernel said, and the outcome is published.
func (r *Reconciler) finish(ch Changes, err error) (Changes, error) {
	r.save()
	r.writes += uint64(len(ch))
	p := Published{At: r.rowsAt, Rows: r.rows, DumpRetries: r.dumpRetries, Writes: r.writes}
	if err != nil {
		p.LastError = err.Error()
	}
	r.mu.Lock()
	p.StateError = r.stateErr
	r.pub = p
	r.mu.Unlock()
	return ch, err
}

func (r *Reconciler) reconcileTargeted(t Table) (Changes, error) {
	only := map[ServiceKey]bool{}
	inT := make(map[ServiceKey]bool, len(t.Services))
	for _, s := range t.Services {
		inT[s.Key] = true
		if old, ok := r.applied[s.Key]; !ok || !reflect.DeepEqual(old, s) {
			only[s.Key] = true
		}
	}
	for k := range r.applied {
		if !inT[k] {
			only[k] = true
		}
	}
	if len(only) == 0 {
		return nil, nil
	}
	cur := make(map[ServiceKey]*kernelService, len(only))
	for _, s := range t.Services {
		if only[s.Key] {
			if err := r.readOne(cur, s.toKernel()); err != nil {
				r.applied = nil
				return nil, err
			}
		}
	}
	for k := range only {
		if old, ok := r.applied[k]; ok && cur[k] == nil && r.owned[k] {
			if err := r.readOne(cur, old.toKernel()); err != nil {
				r.applied = nil
				return nil, err
			}
		}
	}
	ch, err := r.apply(t, cur, only)
	r.rows, r.rowsAt = statusRows(t, cur, only, r.rows), time.Now()
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

// apply writes what t needs over the kernel state cur, and updates cur
// with each write that succeeds. With only set, it looks at those services
// alone (cur holds just them).
func (r *Reconciler) apply(t Table, cur map[ServiceKey]*kernelService, only map[ServiceKey]bool) (Changes, error) {
	want := make(map[ServiceKey]bool, len(t.Services))
	owned := make(map[ServiceKey]bool, len(t.Services)+len(r.owned))
	for k := range r.owned {
		owned[k] = true
	}
	for _, s := range t.Services {
		want[s.Key] = true
		owned[s.Key] = true
	}
	// Record ownership before creating anything, so a crash in between
	// cannot leave a service nobody will clean up. If the state file
	// cannot be written the kernel is reconciled all the same: a service
	// not reaching it could be left behind by a crash, but a director that
	// stops following the site is worse.
	r.setOwned(owned)

	var ch Changes
	var errs []error
	do := func(c Change, f func() error) bool {
		if err := f(); err != nil {
			errs = append(errs, fmt.Errorf("ipvsync: %s: %w", c, err))
			return false
		}
		ch = append(ch, c)
		return true
	}

	for i := range t.Services {
		s := &t.Services[i]
		if only != nil && !only[s.Key] {
			continue
		}
		ksvc := s.toKernel()
		ks := cur[s.Key]
		if ks == nil {
			if !do(Change{Op: OpAddService, Service: s.Key, Name: s.Name, Detail: s.Scheduler}, func() error { return r.k.NewService(ksvc) }) {
				continue
			}
			ks = &kernelService{svc: ksvc, dests: make(map[netip.AddrPort]*ipvs.Destination, len(s.Dests))}
			cur[s.Key] = ks
			for _, d := range s.Dests {
				wd := d.toKernel()
				if do(Change{Op: OpAddDest, Service: s.Key, Name: s.Name, Dest: d.Address, Detail: destDetail(d)},
					func() error { return r.k.NewDestination(ksvc, wd) }) {
					ks.dests[d.Address] = wd
				}
			}
			continue
		}
		if why := serviceDiff(ks.svc, ksvc); why != "" {
			if do(Change{Op: OpUpdateService, Service: s.Key, Name: s.Name, Detail: why}, func() error { return r.k.UpdateService(ksvc) }) {
				ks.svc = ksvc
			}
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
				if do(Change{Op: OpAddDest, Service: s.Key, Name: s.Name, Dest: d.Address, Detail: destDetail(d)},
					func() error { return r.k.NewDestination(ksvc, wd) }) {
					ks.dests[d.Address] = wd
				}
			case destDiff(kd, wd) != "":
				if do(Change{Op: OpUpdateDest, Service: s.Key, Name: s.Name, Dest: d.Address, Detail: destDiff(kd, wd)},
					func() error { return r.k.UpdateDestination(ksvc, wd) }) {
					nd := *wd // the connections stay
					nd.ActiveConnections, nd.InactiveConnections = kd.ActiveConnections, kd.InactiveConnections
					ks.dests[d.Address] = &nd
				}
			}
		}
		for _, a := range sortedAddrs(ks.dests) {
			if !keep[a] {
				kd := ks.dests[a]
				if do(Change{Op: OpDelDest, Service: s.Key, Name: s.Name, Dest: a}, func() error { return r.k.DelDestination(ksvc, kd) }) {
					delete(ks.dests, a)
				}
			}
		}
	}

	// Services havip created and the site no longer declares, in the
	// order Owned lists them. Only these are sorted: sorting every owned
	// key by its String form on each reconcile was about a third of a
	// no-op reconcile's CPU outside the dump (VM profile, 1000 services).
	var gone []ServiceKey
	for k := range r.owned {
		if !want[k] && (only == nil || only[k]) {
			gone = append(gone, k)
		}
	}
	slices.SortFunc(gone, func(a, b ServiceKey) int { return strings.Compare(a.String(), b.String()) })
	for _, k := range gone {
		if ks := cur[k]; ks != nil {
			if !do(Change{Op: OpDelService, Service: k}, func() error { return r.k.DelService(ks.svc) }) {
				continue // still ours: retry next time
			}
			delete(cur, k)
		}
		delete(owned, k)
	}
	r.setOwned(owned)
	r.applied = nil
	if len(errs) == 0 {
		r.applied = make(map[ServiceKey]Service, len(t.Services))
		for _, s := range t.Services {
			r.applied[s.Key] = s
		}
	}
	return ch, errors.Join(errs...)
}

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

// Run owns the kernel handle: it reconciles on every table received and
// every resync period (which repairs edits made behind havip's back, such
// as `ipvsadm -C`), until ctx is done. onChange, if set, gets the writes of
// every reconcile that made some. Failures are logged when they first
// appear and when they change; the next resync retries. Each reconcile
// publishes what status needs (Published), so nothing else ever has to
// read the kernel through the handle Run owns.
func (r *Reconciler) Run(ctx context.Context, desired <-chan Table, resync time.Duration, onChange func(Changes)) {
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
	var table Table
	have := false
	var failing string // the error last logged
	for {
		full := true
		select {
		case <-ctx.Done():
			return
		case t, ok := <-desired:
			if !ok {
				desired = nil
				continue
			}
			table, have, full = t, true, false
		case <-tick:
			if !have {
				timer.Reset(resync)
			}
		}
		if !have {
			continue
		}
		reconcile := r.Reconcile
		if !full {
			reconcile = r.ReconcileChanges
		}
		t0 := time.Now()
		ch, err := reconcile(table)
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

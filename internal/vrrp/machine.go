package vrrp

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// ErrConfig is wrapped by NewMachine and Reconfigure errors for an invalid
// config.
var ErrConfig = errors.New("vrrp: invalid config")

// ErrRestart is wrapped by Reconfigure errors for a change that a running
// virtual router cannot take in place; the runner builds a new Machine.
var ErrRestart = errors.New("vrrp: change needs a new machine")

// State is a virtual router state (RFC 5798 section 6.4, plus Fault).
type State uint8

// States.
const (
	Initialize State = iota
	Backup
	Master
	Fault
)

func (s State) String() string {
	switch s {
	case Initialize:
		return "INIT"
	case Backup:
		return "BACKUP"
	case Master:
		return "MASTER"
	case Fault:
		return "FAULT"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// MarshalText spells the state as String does, for messages between
// directors and status output.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses what MarshalText wrote.
func (s *State) UnmarshalText(b []byte) error {
	for c := Initialize; c <= Fault; c++ {
		if string(b) == c.String() {
			*s = c
			return nil
		}
	}
	return fmt.Errorf("vrrp: unknown state %q", b)
}

// OwnerPriority is the priority of the address owner.
const OwnerPriority = 255

// Config configures one virtual router of one IP family.
type Config struct {
	VRID         uint8         // 1..255
	Version      uint8         // 2 or 3
	Priority     uint8         // base priority 1..255; 255 = address owner
	Advert       time.Duration // v3: 10ms..40.95s in 10ms steps; v2: 1..255 whole seconds
	Preempt      bool          // a higher priority backup takes over from a lower priority master
	PreemptDelay time.Duration // wait this long after first seeing a lower priority master
	Accept       bool          // accept mode; not used by the state machine, carried for the runner
	Primary      netip.Addr    // own primary address: advert source, tie-break; fixes the family
	Addrs        []netip.Addr  // VIP addresses carried in adverts, Primary's family, no duplicates
	TwoNode      bool          // exactly one rival: on a priority-0 advert take over at once (no Skew_Time)

	// AdvertGrid, when set, puts a Master's next advert on the nearest
	// multiple of it on the wall clock, at most half a grid early or
	// late: routers that share a grid and an interval then advertise in
	// the same instants, and a receiver of many groups wakes once for
	// each instant rather than once for each advert (see the daemon's
	// advertGrid). The wall clock only picks the offset; the deadline
	// stays on the monotonic clock, so a clock step moves no advert by
	// more than half a grid. Zero: every advert one interval after the
	// last, as RFC 5798 says.
	AdvertGrid time.Duration

	// AlsoAccept are further address lists accepted on receive, each
	// checked like Addrs. During a rolling reload a router advertises the
	// list its peer knows and accepts both the old and the new one, so the
	// two never drop each other's adverts.
	AlsoAccept [][]netip.Addr

	// Sources are where adverts may come from: a received advert whose IP
	// source lies in none of these prefixes is dropped as
	// DropUnknownSource. The runner lists the site's directors (each
	// address as a single-address prefix; fe80::/10 when any link-local
	// must do) and adds what it learns later (a peer's link-local) with
	// Reconfigure. Empty accepts every source: the zero Config, and an
	// operator who asked for it.
	Sources []netip.Prefix
}

// ActionKind says what the runner must do.
type ActionKind uint8

// Action kinds.
const (
	// ActSend: send an advert now carrying Priority (see Machine.Advert).
	ActSend ActionKind = iota + 1
	// ActBecome: the state changed From -> To for Reason; the runner claims
	// the VIPs when To is Master and releases them when From is Master.
	ActBecome
	// ActAnnounce: re-send gratuitous ARP/NA for the VIPs (master only).
	ActAnnounce
)

func (k ActionKind) String() string {
	switch k {
	case ActSend:
		return "send"
	case ActBecome:
		return "become"
	case ActAnnounce:
		return "announce"
	}
	return fmt.Sprintf("ActionKind(%d)", uint8(k))
}

// Action is one thing for the runner to do, in order.
type Action struct {
	Kind     ActionKind
	Priority uint8 // ActSend
	From, To State // ActBecome
	Reason   string
}

// Counters are cumulative since NewMachine.
type Counters struct {
	RxAdverts   uint64 // adverts that passed every check
	TxAdverts   uint64 // ActSend actions returned
	Transitions uint64 // ActBecome actions returned
	Drops       [NumDropReasons]uint64
}

// Status is a snapshot of a Machine.
type Status struct {
	State          State
	Since          time.Time // of the last state change
	Priority       uint8     // effective priority
	BasePriority   uint8
	MasterAddr     netip.Addr    // the current master (ours when Master); invalid if unknown
	MasterPriority uint8         // the priority it advertised
	MasterInterval time.Duration // learned Master_Adver_Interval (ours when Master)
	Counters       Counters
	Fault          string // reason when in Fault
	Yielding       bool   // after Resign: do not preempt until next Master
}

// Machine is the state machine of one virtual router. It is not safe for
// concurrent use; the runner serialises calls.
//
// Receive checks, in this order, after Parse: TTL/hop limit 255 (a negative
// ttl means "unknown" and is not checked, for sockets that cannot report
// it), version equal to ours, family equal to Primary's, VRID equal to ours,
// source not our Primary, v2 interval equal to ours. Then, per RFC 5798
// section 7.1 (and RFC 3768), an address list that differs as a set from Addrs
// and from every AlsoAccept list drops the advert unless its priority is 255
// (the owner's adverts are processed anyway). This includes priority-0
// adverts. Last, a source outside Sources (when there are any) drops it:
// last, so that every other reason still says what is wrong with a packet,
// and DropUnknownSource counts adverts that would have been acted upon. Unlike RFC 5798, we do not discard adverts when we are the owner:
// like keepalived, two owners settle by address rather than both staying
// master.
//
// Deviations from RFC 5798 section 6, all on the side of faster convergence:
// a backup with Preempt that sees a lower priority master takes over at once
// (or when PreemptDelay expires) instead of waiting for Master_Down_Timer,
// unless that advert comes from a rogue while a higher master is known; a
// master that sees a lower priority advert answers with an advert and
// ActAnnounce at once; TwoNode backups skip Skew_Time on a priority-0 advert.
type Machine struct {
	cfg   Config
	lists [][]netip.Addr // cfg.Addrs then cfg.AlsoAccept, each sorted, for set comparison

	state    State
	since    time.Time
	prio     uint8
	fault    string
	yielding bool

	masterAddr     netip.Addr
	masterPrio     uint8
	masterInterval time.Duration

	advertAt  time.Time // Master: next advert
	downAt    time.Time // Backup: Master_Down_Timer expiry
	downCause string    // why downAt was last set short (priority 0), for the reason
	preemptAt time.Time // Backup: preempt delay expiry; zero if not running

	// A planned handover, on each side (see TakeOverFrom and HoldHandover);
	// both end with any state change.
	guardSrc   netip.Addr // Master: the old master whose adverts are dropped ...
	guardUntil time.Time  // ... until then, or its priority-0 advert
	holdUntil  time.Time  // Master: lower priority adverts are not answered until then

	counters Counters
}

// NewMachine validates cfg and returns a machine in Initialize.
func NewMachine(cfg Config) (*Machine, error) {
	cfg, lists, err := validate(cfg)
	if err != nil {
		return nil, err
	}
	return &Machine{cfg: cfg, lists: lists, prio: cfg.Priority, masterInterval: cfg.Advert}, nil
}

// validate returns cfg normalised and the address lists a receiver accepts,
// Addrs first, each sorted for set comparison.
func validate(cfg Config) (Config, [][]netip.Addr, error) {
	if cfg.VRID == 0 {
		return Config{}, nil, fmt.Errorf("%w: VRID must be 1..255", ErrConfig)
	}
	if cfg.Priority == 0 {
		return Config{}, nil, fmt.Errorf("%w: priority must be 1..255", ErrConfig)
	}
	switch cfg.Version {
	case 2:
		if cfg.Advert < time.Second || cfg.Advert > 255*time.Second || cfg.Advert%time.Second != 0 {
			return Config{}, nil, fmt.Errorf("%w: v2 advert interval %v must be 1..255 whole seconds", ErrConfig, cfg.Advert)
		}
	case 3:
		if cfg.Advert < centisecond || cfg.Advert > maxV3Centis*centisecond || cfg.Advert%centisecond != 0 {
			return Config{}, nil, fmt.Errorf("%w: v3 advert interval %v must be 10ms..40.95s in 10ms steps", ErrConfig, cfg.Advert)
		}
	default:
		return Config{}, nil, fmt.Errorf("%w: version %d must be 2 or 3", ErrConfig, cfg.Version)
	}
	if cfg.PreemptDelay < 0 {
		return Config{}, nil, fmt.Errorf("%w: negative preempt delay %v", ErrConfig, cfg.PreemptDelay)
	}
	if cfg.AdvertGrid < 0 || cfg.AdvertGrid > cfg.Advert/4 {
		// Half a grid off on each side: at a quarter of the interval an
		// advert is never more than 1.25 intervals after the last.
		return Config{}, nil, fmt.Errorf("%w: advert grid %v must be 0..a quarter of the interval %v", ErrConfig, cfg.AdvertGrid, cfg.Advert)
	}
	cfg.Primary = normAddr(cfg.Primary)
	if !cfg.Primary.IsValid() || cfg.Primary.IsUnspecified() {
		return Config{}, nil, fmt.Errorf("%w: primary address %v", ErrConfig, cfg.Primary)
	}
	if cfg.Version == 2 && !cfg.Primary.Is4() {
		return Config{}, nil, fmt.Errorf("%w: VRRPv2 is IPv4 only, primary address is %v", ErrConfig, cfg.Primary)
	}
	addrs, sorted, err := addrList("", cfg.Addrs, cfg.Primary)
	if err != nil {
		return Config{}, nil, err
	}
	cfg.Addrs = addrs
	lists := [][]netip.Addr{sorted}
	var also [][]netip.Addr
	for i, l := range cfg.AlsoAccept {
		addrs, sorted, err := addrList(fmt.Sprintf("AlsoAccept[%d]: ", i), l, cfg.Primary)
		if err != nil {
			return Config{}, nil, err
		}
		also = append(also, addrs)
		lists = append(lists, sorted)
	}
	cfg.AlsoAccept = also
	sources := make([]netip.Prefix, 0, len(cfg.Sources))
	for _, p := range cfg.Sources {
		if !p.IsValid() || p.Addr().Is4In6() {
			return Config{}, nil, fmt.Errorf("%w: source prefix %v is not a prefix of plain IPv4 or IPv6 addresses", ErrConfig, p)
		}
		sources = append(sources, p.Masked())
	}
	cfg.Sources = sources
	return cfg, lists, nil
}

// addrList checks one address list: 1..255 usable addresses of primary's
// family, no duplicates. It returns the list normalised and a sorted copy.
func addrList(name string, list []netip.Addr, primary netip.Addr) (addrs, sorted []netip.Addr, err error) {
	if len(list) == 0 || len(list) > 255 {
		return nil, nil, fmt.Errorf("%w: %s%d addresses, need 1..255", ErrConfig, name, len(list))
	}
	addrs = make([]netip.Addr, len(list))
	for i, a := range list {
		a = normAddr(a)
		if !a.IsValid() || a.IsUnspecified() || a.Is4() != primary.Is4() {
			return nil, nil, fmt.Errorf("%w: %saddress %v is not a usable address of the primary address's family", ErrConfig, name, list[i])
		}
		addrs[i] = a
	}
	sorted = slices.Clone(addrs)
	slices.SortFunc(sorted, netip.Addr.Compare)
	if len(slices.Compact(slices.Clone(sorted))) != len(sorted) {
		return nil, nil, fmt.Errorf("%w: %sduplicate address in %v", ErrConfig, name, list)
	}
	return addrs, sorted, nil
}

// Advert returns the advertisement the runner sends for an ActSend carrying
// priority; marshal it with Primary as source.
func (m *Machine) Advert(priority uint8) *Packet {
	return &Packet{
		Version:  m.cfg.Version,
		VRID:     m.cfg.VRID,
		Priority: priority,
		Interval: m.cfg.Advert,
		Addrs:    slices.Clone(m.cfg.Addrs),
	}
}

// Start leaves Initialize: the owner (priority 255) becomes Master, anyone else
// Backup. It does nothing in any other state.
func (m *Machine) Start(now time.Time) []Action {
	if m.state != Initialize {
		return nil
	}
	m.yielding = false
	return m.startup(now, "startup")
}

// startup is RFC 5798 section 6.4.1's Startup event.
func (m *Machine) startup(now time.Time, reason string) []Action {
	if m.prio == OwnerPriority {
		return m.becomeMaster(now, reason+": address owner (priority 255)")
	}
	return m.becomeBackup(now, reason)
}

// Receive handles one received VRRP message (without IP header) from src to
// dst with the given TTL/hop limit (negative: unknown). It returns the actions
// to carry out, or why the message was dropped.
func (m *Machine) Receive(now time.Time, b []byte, src, dst netip.Addr, ttl int) ([]Action, DropReason) {
	p, r := m.check(b, src, dst, ttl)
	if r != DropNone {
		m.CountDrop(r)
		return nil, r
	}
	src = normAddr(src)
	if m.guarded(now, p, src) {
		m.CountDrop(DropHandover)
		return nil, DropHandover
	}
	m.counters.RxAdverts++
	switch m.state {
	case Backup:
		return m.backupRx(now, p, src), DropNone
	case Master:
		return m.masterRx(now, p, src), DropNone
	}
	return nil, DropNone // Initialize and Fault ignore valid adverts
}

func (m *Machine) check(b []byte, src, dst netip.Addr, ttl int) (*Packet, DropReason) {
	p, r := Parse(b, src, dst)
	switch {
	case r != DropNone:
		return nil, r
	case ttl >= 0 && ttl != 255:
		return nil, DropTTL
	case p.Version != m.cfg.Version:
		return nil, DropVersion
	case normAddr(src).Is4() != m.cfg.Primary.Is4():
		return nil, DropFamily
	case p.VRID != m.cfg.VRID:
		return nil, DropVRID
	case normAddr(src) == m.cfg.Primary:
		return nil, DropOwn
	case p.Version == 2 && p.Interval != m.cfg.Advert:
		return nil, DropInterval
	case p.Priority != OwnerPriority && !m.knownAddrs(p.Addrs):
		return nil, DropAddrList
	case !m.knownSource(normAddr(src)):
		return nil, DropUnknownSource
	}
	return p, DropNone
}

// knownAddrs reports whether addrs equals one of the lists we accept, as sets.
func (m *Machine) knownAddrs(addrs []netip.Addr) bool {
	got := slices.Clone(addrs)
	slices.SortFunc(got, netip.Addr.Compare)
	got = slices.Compact(got)
	return slices.ContainsFunc(m.lists, func(l []netip.Addr) bool { return slices.Equal(got, l) })
}

// knownSource reports whether src may send us adverts.
func (m *Machine) knownSource(src netip.Addr) bool {
	return len(m.cfg.Sources) == 0 || slices.ContainsFunc(m.cfg.Sources, func(p netip.Prefix) bool { return p.Contains(src) })
}

func (m *Machine) backupRx(now time.Time, p *Packet, src netip.Addr) []Action {
	if p.Priority == 0 {
		// The master resigns: take over after Skew_Time, unless it is
		// our only rival.
		m.masterAddr, m.masterPrio = src, 0
		m.preemptAt = time.Time{}
		cause := fmt.Sprintf("priority 0 from %v", src)
		if m.cfg.TwoNode {
			return m.becomeMaster(now, cause)
		}
		m.downAt = now.Add(m.skew())
		m.downCause = cause + ", skew time expired"
		return nil
	}
	if p.Priority >= m.prio || !m.preempts() {
		m.masterAddr, m.masterPrio = src, p.Priority
		m.preemptAt = time.Time{}
		m.accept(now, p)
		return nil
	}
	if m.masterAddr.IsValid() && m.masterAddr != src && m.masterPrio >= m.prio {
		// A lower priority rogue while a higher master is known (three
		// or more routers): discard per RFC 5798 rather than flap; if
		// the known master is gone, Master_Down_Timer still fires.
		return nil
	}
	// A lower priority master and we may preempt.
	m.masterAddr, m.masterPrio = src, p.Priority
	if m.cfg.PreemptDelay == 0 {
		return m.becomeMaster(now, fmt.Sprintf("preempting lower priority master %v (%d < %d)", src, p.Priority, m.prio))
	}
	if m.preemptAt.IsZero() {
		m.preemptAt = now.Add(m.cfg.PreemptDelay)
	}
	if !now.Before(m.preemptAt) {
		return m.becomeMaster(now, m.preemptReason())
	}
	// Until the delay expires the lower priority master is accepted.
	m.accept(now, p)
	return nil
}

// accept takes p as the current master's advert: learn its interval (v3) and
// restart Master_Down_Timer.
func (m *Machine) accept(now time.Time, p *Packet) {
	if m.cfg.Version == 3 {
		m.masterInterval = p.Interval
	}
	m.downAt = now.Add(m.masterDownInterval())
	m.downCause = ""
}

func (m *Machine) preempts() bool { return m.cfg.Preempt && !m.yielding }

func (m *Machine) preemptReason() string {
	return fmt.Sprintf("preempt delay %v expired, master %v has lower priority (%d < %d)",
		m.cfg.PreemptDelay, m.masterAddr, m.masterPrio, m.prio)
}

func (m *Machine) masterRx(now time.Time, p *Packet, src netip.Addr) []Action {
	switch {
	case p.Priority == 0:
		// A rival resigned; make sure everybody knows who is master.
		return m.send(now)
	case p.Priority > m.prio:
		return m.masterToBackup(now, p, src, fmt.Sprintf("higher priority advert from %v (%d)", src, p.Priority))
	case p.Priority == m.prio && src.Compare(m.cfg.Primary) > 0:
		return m.masterToBackup(now, p, src, fmt.Sprintf("equal priority advert from higher address %v (%d)", src, p.Priority))
	}
	if now.Before(m.holdUntil) {
		// We are handing over to it (HoldHandover): answering would pull
		// the clients back from the new master just before we resign.
		return nil
	}
	// A lower priority master (a healed partition, or a rival's clock):
	// RFC 5798 discards the advert; we also answer at once so it yields
	// now, and re-announce so switches relearn where the VIPs are.
	return append(m.send(now), Action{Kind: ActAnnounce, Reason: fmt.Sprintf("lower priority advert from %v (%d)", src, p.Priority)})
}

func (m *Machine) masterToBackup(now time.Time, p *Packet, src netip.Addr, reason string) []Action {
	acts := m.become(now, Backup, reason)
	m.masterAddr, m.masterPrio = src, p.Priority
	m.accept(now, p)
	return acts
}

// Tick fires the timers due at now.
func (m *Machine) Tick(now time.Time) []Action {
	switch m.state {
	case Master:
		if now.Before(m.advertAt) {
			return nil
		}
		return m.send(now)
	case Backup:
		if !m.preemptAt.IsZero() && !now.Before(m.preemptAt) {
			return m.becomeMaster(now, m.preemptReason())
		}
		if !now.Before(m.downAt) {
			reason := m.downCause
			if reason == "" {
				reason = "master down timer expired"
			}
			return m.becomeMaster(now, reason)
		}
	}
	return nil
}

// Deadline is when Tick must next be called; zero if no timer runs (in
// Initialize and Fault).
func (m *Machine) Deadline() time.Time {
	switch m.state {
	case Master:
		return m.advertAt
	case Backup:
		if !m.preemptAt.IsZero() && m.preemptAt.Before(m.downAt) {
			return m.preemptAt
		}
		return m.downAt
	}
	return time.Time{}
}

// SetPriority sets the effective priority (from tracking). It is kept within
// 1..254, or 1..255 for the owner. A Master sends an advert with it at once;
// a preempting Backup that now outranks the current master takes over (after
// PreemptDelay); a Backup that no longer does cancels a pending preemption.
func (m *Machine) SetPriority(now time.Time, p uint8) []Action {
	p = max(p, 1)
	if p == OwnerPriority && m.cfg.Priority != OwnerPriority {
		p = OwnerPriority - 1
	}
	if p == m.prio {
		return nil
	}
	m.prio = p
	switch m.state {
	case Master:
		m.masterPrio = p
		return m.send(now)
	case Backup:
		if !m.masterAddr.IsValid() || m.masterPrio == 0 || p <= m.masterPrio || !m.preempts() {
			m.preemptAt = time.Time{}
			return nil
		}
		if m.cfg.PreemptDelay == 0 {
			return m.becomeMaster(now, fmt.Sprintf("priority raised to %d above master %v (%d)", p, m.masterAddr, m.masterPrio))
		}
		if m.preemptAt.IsZero() {
			m.preemptAt = now.Add(m.cfg.PreemptDelay)
		}
	}
	return nil
}

// Reconfigure applies cfg to the running machine without leaving its state:
// it never returns ActBecome, and keeps the counters and Since. It refuses,
// changing nothing, an invalid cfg (ErrConfig) and a change of VRID, Version,
// Primary's family or address ownership (priority 255 or not), which need a
// new Machine (ErrRestart).
//
// The base priority changes but the effective priority stays what it was
// (what SetPriority last set): the runner re-applies tracking with
// SetPriority right after, which may then send, preempt or cancel a
// preemption as usual.
//
// A Master whose Addrs (as a set), Advert or Primary changed sends an advert
// at once and the next one Advert later. When Advert changed, a Backup whose
// master interval follows its own (v2, or v3 before any master was heard)
// takes the new one and re-arms Master_Down_Timer from now (a Skew_Time
// pending after a priority-0 advert is kept: in v2 it does not depend on the
// interval); a v3 Backup keeps the interval it learned from the master. Preempt
// turned off cancels a pending preemption; a changed PreemptDelay moves a
// pending one to the new delay after the lower priority master was first
// seen, which may be already due (the next Tick preempts).
func (m *Machine) Reconfigure(now time.Time, cfg Config) ([]Action, error) {
	cfg, lists, err := validate(cfg)
	if err != nil {
		return nil, err
	}
	old := m.cfg
	switch {
	case cfg.VRID != old.VRID:
		return nil, fmt.Errorf("%w: VRID %d -> %d", ErrRestart, old.VRID, cfg.VRID)
	case cfg.Version != old.Version:
		return nil, fmt.Errorf("%w: version %d -> %d", ErrRestart, old.Version, cfg.Version)
	case cfg.Primary.Is4() != old.Primary.Is4():
		return nil, fmt.Errorf("%w: primary address %v -> %v is another family", ErrRestart, old.Primary, cfg.Primary)
	case (cfg.Priority == OwnerPriority) != (old.Priority == OwnerPriority):
		return nil, fmt.Errorf("%w: address ownership changes (priority %d -> %d)", ErrRestart, old.Priority, cfg.Priority)
	}
	advertChanged := cfg.Advert != old.Advert || cfg.Primary != old.Primary || !slices.Equal(lists[0], m.lists[0])
	m.cfg, m.lists = cfg, lists
	switch m.state {
	case Master:
		m.masterAddr, m.masterInterval = cfg.Primary, cfg.Advert
		if advertChanged {
			return m.send(now), nil
		}
	case Backup:
		if !cfg.Preempt {
			m.preemptAt = time.Time{}
		} else if !m.preemptAt.IsZero() {
			m.preemptAt = m.preemptAt.Add(cfg.PreemptDelay - old.PreemptDelay)
		}
		if (cfg.Version == 2 || !m.masterAddr.IsValid()) && m.masterInterval != cfg.Advert {
			m.masterInterval = cfg.Advert
			if m.downCause == "" {
				m.downAt = now.Add(m.masterDownInterval())
			}
		}
	default:
		m.masterInterval = cfg.Advert
	}
	return nil, nil
}

// SetFault enters Fault (fault true) from any state, a Master first sending a
// priority-0 advert; in Fault no adverts are sent and no timers run. Clearing
// the fault starts over as from Initialize: Backup, or Master for the owner.
// Setting a fault again only updates its reason.
func (m *Machine) SetFault(now time.Time, fault bool, reason string) []Action {
	if !fault {
		if m.state != Fault {
			return nil
		}
		m.fault = ""
		return m.startup(now, "fault cleared")
	}
	if reason == "" {
		reason = "unspecified"
	}
	m.fault = reason
	if m.state == Fault {
		return nil
	}
	return m.leave(now, Fault, "fault: "+reason)
}

// Stop leaves any state for Initialize, a Master first sending a priority-0
// advert so that the backup takes over after Skew_Time.
func (m *Machine) Stop(now time.Time) []Action {
	if m.state == Initialize {
		return nil
	}
	m.fault = ""
	return m.leave(now, Initialize, "stopped")
}

// Resign hands over: a Master sends a priority-0 advert and becomes Backup,
// and does not preempt (Yielding) until it next becomes Master because the
// master went down. It does nothing in other states.
func (m *Machine) Resign(now time.Time) []Action {
	if m.state != Master {
		return nil
	}
	acts := m.sendPriority(0)
	acts = append(acts, m.becomeBackup(now, "resigned (planned handover)")...)
	m.yielding = true
	return acts
}

// Resume leaves Initialize for state as it was in a machine this one
// replaces (a group that needs a new socket, taken over without an
// election): Master at once, else as Start. It does nothing in any other
// state.
func (m *Machine) Resume(now time.Time, state State, reason string) []Action {
	if m.state != Initialize {
		return nil
	}
	m.yielding = false
	if state == Master {
		return m.becomeMaster(now, reason)
	}
	return m.startup(now, reason)
}

// TakeOver makes a Backup Master at once, for reason: the runner's sync
// group follows a member that became master. If the peer outranks us its
// next advert sends us back to Backup by the usual rules. It does nothing
// in other states.
func (m *Machine) TakeOver(now time.Time, reason string) []Action {
	if m.state != Backup {
		return nil
	}
	return m.becomeMaster(now, reason)
}

// TakeOverFrom is TakeOver for a planned handover that the current master
// asked for (make-before-break): a Backup becomes Master at once and, for
// hold or until that master's priority-0 advert, drops its adverts
// (DropHandover) even when they outrank us, so that the advert the old
// master sends before it resigns does not send us back to Backup. After
// the hold the usual rules apply again: a master that did not resign
// takes the group back. It does nothing in other states.
func (m *Machine) TakeOverFrom(now time.Time, hold time.Duration, reason string) []Action {
	if m.state != Backup {
		return nil
	}
	old := m.masterAddr
	acts := m.becomeMaster(now, reason)
	if old.IsValid() && hold > 0 {
		m.guardSrc, m.guardUntil = old, now.Add(hold)
	}
	return acts
}

// guarded says whether p, from src, is the old master's advert that a
// planned takeover drops; its priority-0 advert ends the guard.
func (m *Machine) guarded(now time.Time, p *Packet, src netip.Addr) bool {
	if m.state != Master || !m.guardSrc.IsValid() || src != m.guardSrc {
		return false
	}
	if p.Priority == 0 || !now.Before(m.guardUntil) {
		m.guardSrc, m.guardUntil = netip.Addr{}, time.Time{}
		return false
	}
	return true
}

// EndGuard ends TakeOverFrom's guard at once: the old master's adverts
// count again (the caller abandoned the handover and kept its VIPs, so
// the normal election decides, within an advert interval). It reports
// whether a guard was on.
func (m *Machine) EndGuard() bool {
	on := m.guardSrc.IsValid()
	m.guardSrc, m.guardUntil = netip.Addr{}, time.Time{}
	return on
}

// HoldHandover is the other side of TakeOverFrom: a Master about to hand
// over does not answer lower priority adverts until until (the peer's, now
// master too), so it does not pull the clients back just before it
// resigns. A zero until ends the hold (the handover failed). It does
// nothing in other states.
func (m *Machine) HoldHandover(until time.Time) {
	if m.state == Master {
		m.holdUntil = until
	}
}

// leave goes to Initialize or Fault, where nothing runs.
func (m *Machine) leave(now time.Time, to State, reason string) []Action {
	var acts []Action
	if m.state == Master {
		acts = m.sendPriority(0)
	}
	acts = append(acts, m.become(now, to, reason)...)
	m.masterAddr, m.masterPrio, m.masterInterval = netip.Addr{}, 0, m.cfg.Advert
	return acts
}

// Status returns a snapshot.
func (m *Machine) Status() Status {
	return Status{
		State:          m.state,
		Since:          m.since,
		Priority:       m.prio,
		BasePriority:   m.cfg.Priority,
		MasterAddr:     m.masterAddr,
		MasterPriority: m.masterPrio,
		MasterInterval: m.masterInterval,
		Counters:       m.counters,
		Fault:          m.fault,
		Yielding:       m.yielding,
	}
}

// CountDrop counts a drop the runner detected itself (e.g. wrong interface).
func (m *Machine) CountDrop(r DropReason) {
	if r != DropNone && r < NumDropReasons {
		m.counters.Drops[r]++
	}
}

// become changes state and resets every timer; callers set the new state's.
func (m *Machine) become(now time.Time, to State, reason string) []Action {
	from := m.state
	m.state, m.since = to, now
	m.advertAt, m.downAt, m.preemptAt, m.downCause = time.Time{}, time.Time{}, time.Time{}, ""
	m.guardSrc, m.guardUntil, m.holdUntil = netip.Addr{}, time.Time{}, time.Time{}
	m.counters.Transitions++
	return []Action{{Kind: ActBecome, From: from, To: to, Reason: reason}}
}

func (m *Machine) becomeMaster(now time.Time, reason string) []Action {
	acts := m.become(now, Master, reason)
	m.yielding = false
	m.masterAddr, m.masterPrio, m.masterInterval = m.cfg.Primary, m.prio, m.cfg.Advert
	return append(acts, m.send(now)...)
}

func (m *Machine) becomeBackup(now time.Time, reason string) []Action {
	acts := m.become(now, Backup, reason)
	m.masterAddr, m.masterPrio, m.masterInterval = netip.Addr{}, 0, m.cfg.Advert
	m.downAt = now.Add(m.masterDownInterval())
	return acts
}

// send is a Master's advert: every advert restarts the advert timer.
func (m *Machine) send(now time.Time) []Action {
	m.advertAt = onGrid(now.Add(m.cfg.Advert), m.cfg.AdvertGrid)
	return m.sendPriority(m.prio)
}

// onGrid moves t to the nearest multiple of grid on the wall clock,
// keeping t's monotonic reading (see Config.AdvertGrid).
func onGrid(t time.Time, grid time.Duration) time.Time {
	if grid <= 0 {
		return t
	}
	return t.Add(t.Round(grid).Sub(t.Round(0)))
}

func (m *Machine) sendPriority(p uint8) []Action {
	m.counters.TxAdverts++
	return []Action{{Kind: ActSend, Priority: p}}
}

// skew is Skew_Time: RFC 5798 scales it by Master_Adver_Interval, RFC 3768
// (v2) by one second.
func (m *Machine) skew() time.Duration {
	unit := m.masterInterval
	if m.cfg.Version == 2 {
		unit = time.Second
	}
	return time.Duration(256-int(m.prio)) * unit / 256
}

// masterDownInterval is Master_Down_Interval = 3*Master_Adver_Interval + Skew_Time.
func (m *Machine) masterDownInterval() time.Duration {
	return 3*m.masterInterval + m.skew()
}

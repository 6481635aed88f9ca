package vrrp

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var (
	t0     = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	self   = netip.MustParseAddr("192.168.0.11")
	higher = netip.MustParseAddr("192.168.0.12") // rival with a greater address
	lower  = netip.MustParseAddr("192.168.0.9")  // rival with a smaller address
	vip    = netip.MustParseAddr("192.168.0.210")
)

// At priority 100: Skew_Time = 156/256 * 1s = 609.375ms, so
// Master_Down_Interval = 3s + 609.375ms.
const (
	skew100 = 609375 * time.Microsecond
	down100 = 3*time.Second + skew100
)

func baseConfig() Config {
	return Config{
		VRID: 51, Version: 3, Priority: 100, Advert: time.Second, Preempt: true,
		Primary: self, Addrs: []netip.Addr{vip},
	}
}

// advert is a valid advert for baseConfig's virtual router from src.
type advert struct {
	src      netip.Addr
	prio     uint8
	version  uint8         // default 3
	interval time.Duration // default 1s
	addrs    []netip.Addr  // default {vip}
	vrid     uint8         // default 51
}

func (a advert) bytes(t testing.TB) []byte {
	t.Helper()
	p := Packet{Version: a.version, VRID: a.vrid, Priority: a.prio, Interval: a.interval, Addrs: a.addrs}
	if p.Version == 0 {
		p.Version = 3
	}
	if p.VRID == 0 {
		p.VRID = 51
	}
	if p.Interval == 0 {
		p.Interval = time.Second
	}
	if p.Addrs == nil {
		p.Addrs = []netip.Addr{vip}
	}
	dst := mcast4
	if a.src.Is6() {
		dst = mcast6
	}
	b, err := p.Marshal(a.src, dst)
	if err != nil {
		t.Fatalf("advert %+v: %v", a, err)
	}
	return b
}

// step is one call into the machine at t0+at and what it must return.
type step struct {
	at     time.Duration
	op     string          // start, rx, tick, prio, fault, clear, stop, resign, takeover, takeoverfrom, hold, resume, reconf
	rx     advert          // rx
	arg    uint8           // prio; hold: how long, in 100 ms (0: end the hold)
	mod    func(c *Config) // reconf: changes to the current config
	resume State           // resume: the state to resume
	err    error           // reconf: the error it must wrap; then nothing may change
	want   []Action
	drop   DropReason    // rx
	next   time.Duration // Deadline()-t0; -1 means no deadline
	st     State
}

func become(from, to State, reason string) Action {
	return Action{Kind: ActBecome, From: from, To: to, Reason: reason}
}
func send(p uint8) Action { return Action{Kind: ActSend, Priority: p} }
func announce(reason string) Action {
	return Action{Kind: ActAnnounce, Reason: reason}
}

func run(t *testing.T, m *Machine, steps []step) {
	t.Helper()
	for i, s := range steps {
		now := t0.Add(s.at)
		var got []Action
		drop := DropNone
		switch s.op {
		case "start":
			got = m.Start(now)
		case "rx":
			dst := mcast4
			if s.rx.src.Is6() {
				dst = mcast6
			}
			got, drop = m.Receive(now, s.rx.bytes(t), s.rx.src, dst, 255)
		case "tick":
			got = m.Tick(now)
		case "prio":
			got = m.SetPriority(now, s.arg)
		case "fault":
			got = m.SetFault(now, true, "eth0 down")
		case "clear":
			got = m.SetFault(now, false, "")
		case "stop":
			got = m.Stop(now)
		case "resign":
			got = m.Resign(now)
		case "takeover":
			got = m.TakeOver(now, "sync group")
		case "takeoverfrom":
			got = m.TakeOverFrom(now, 2*time.Second, "planned handover")
		case "endguard":
			if !m.EndGuard() {
				t.Fatalf("step %d: EndGuard: no guard was on", i)
			}
		case "hold":
			until := time.Time{}
			if s.arg > 0 {
				until = now.Add(time.Duration(s.arg) * 100 * time.Millisecond)
			}
			m.HoldHandover(until)
		case "resume":
			got = m.Resume(now, s.resume, "resumed")
		case "reconf":
			got = reconf(t, m, now, s.mod, s.err)
		default:
			t.Fatalf("step %d: unknown op %q", i, s.op)
		}
		if diff := cmp.Diff(s.want, got); diff != "" {
			t.Fatalf("step %d (%s at %v): actions (-want +got):\n%s", i, s.op, s.at, diff)
		}
		if drop != s.drop {
			t.Fatalf("step %d (%s at %v): drop %v, want %v", i, s.op, s.at, drop, s.drop)
		}
		var next time.Duration = -1
		if d := m.Deadline(); !d.IsZero() {
			next = d.Sub(t0)
		}
		if next != s.next {
			t.Fatalf("step %d (%s at %v): deadline %v, want %v", i, s.op, s.at, next, s.next)
		}
		if st := m.Status().State; st != s.st {
			t.Fatalf("step %d (%s at %v): state %v, want %v", i, s.op, s.at, st, s.st)
		}
	}
}

// reconf calls Reconfigure with the machine's config changed by mod and
// checks its error; a refused config must change nothing.
func reconf(t *testing.T, m *Machine, now time.Time, mod func(c *Config), want error) []Action {
	t.Helper()
	cfg := m.cfg
	cfg.Addrs = slices.Clone(cfg.Addrs)
	cfg.AlsoAccept = slices.Clone(cfg.AlsoAccept)
	mod(&cfg)
	before, deadline := *m, m.Deadline()
	acts, err := m.Reconfigure(now, cfg)
	if !errors.Is(err, want) {
		t.Fatalf("Reconfigure: %v, want %v", err, want)
	}
	if err == nil {
		return acts
	}
	if acts != nil {
		t.Fatalf("refused Reconfigure returned %v", acts)
	}
	opts := []cmp.Option{cmpAddrs, cmp.AllowUnexported(Machine{})}
	if diff := cmp.Diff(&before, m, opts...); diff != "" || !m.Deadline().Equal(deadline) {
		t.Fatalf("refused Reconfigure changed the machine (-before +after):\n%s", diff)
	}
	return nil
}

// toMaster is the common opening: start as backup, hear nothing, become master
// at down100.
var toMaster = []step{
	{op: "start", want: []Action{become(Initialize, Backup, "startup")}, next: down100, st: Backup},
	{at: down100, op: "tick", want: []Action{become(Backup, Master, "master down timer expired"), send(100)}, next: down100 + time.Second, st: Master},
}

func seq(parts ...[]step) []step {
	var out []step
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// machineCase is a machine built from baseConfig changed by cfg, driven
// through steps.
type machineCase struct {
	name  string
	cfg   func(c *Config)
	steps []step
}

func runCases(t *testing.T, tests []machineCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig()
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			m, err := NewMachine(cfg)
			if err != nil {
				t.Fatal(err)
			}
			run(t, m, tt.steps)
		})
	}
}

func TestMachine(t *testing.T) {
	const T = down100 // when toMaster became master
	tests := []machineCase{
		{
			name: "backup, master down, adverts",
			steps: seq(toMaster, []step{
				{at: T + 500*time.Millisecond, op: "tick", next: T + time.Second, st: Master}, // early: nothing
				{at: T + time.Second, op: "tick", want: []Action{send(100)}, next: T + 2*time.Second, st: Master},
				{at: T + 2*time.Second + 3*time.Millisecond, op: "tick", want: []Action{send(100)}, next: T + 3*time.Second + 3*time.Millisecond, st: Master},
				{at: T + 10*time.Second, op: "tick", want: []Action{send(100)}, next: T + 11*time.Second, st: Master}, // late runner
			}),
		},
		{
			name: "owner starts master",
			cfg:  func(c *Config) { c.Priority = 255 },
			steps: []step{
				{op: "start", want: []Action{become(Initialize, Master, "startup: address owner (priority 255)"), send(255)}, next: time.Second, st: Master},
				{op: "start", next: time.Second, st: Master}, // no-op
			},
		},
		{
			name: "backup accepts higher and equal priority",
			steps: []step{
				{op: "start", want: []Action{become(Initialize, Backup, "startup")}, next: down100, st: Backup},
				{at: time.Second, op: "rx", rx: advert{src: higher, prio: 200}, next: time.Second + down100, st: Backup},
				{at: 2 * time.Second, op: "rx", rx: advert{src: lower, prio: 100}, next: 2*time.Second + down100, st: Backup},
				{at: 2*time.Second + down100, op: "tick", want: []Action{become(Backup, Master, "master down timer expired"), send(100)}, next: 3*time.Second + down100, st: Master},
			},
		},
		{
			name: "v3 backup learns master interval",
			steps: []step{
				{op: "start", want: []Action{become(Initialize, Backup, "startup")}, next: down100, st: Backup},
				// 3*2s + 156/256*2s = 6s + 1.21875s
				{at: time.Second, op: "rx", rx: advert{src: higher, prio: 200, interval: 2 * time.Second}, next: time.Second + 7218750*time.Microsecond, st: Backup},
				// priority 0: Skew_Time of the learned interval
				{at: 2 * time.Second, op: "rx", rx: advert{src: higher, prio: 0, interval: 2 * time.Second}, next: 2*time.Second + 1218750*time.Microsecond, st: Backup},
				{at: 2*time.Second + 1218750*time.Microsecond, op: "tick", want: []Action{become(Backup, Master, "priority 0 from 192.168.0.12, skew time expired"), send(100)}, next: 3*time.Second + 1218750*time.Microsecond, st: Master},
			},
		},
		{
			name: "priority 0 waits skew time",
			steps: []step{
				{op: "start", want: []Action{become(Initialize, Backup, "startup")}, next: down100, st: Backup},
				{at: time.Second, op: "rx", rx: advert{src: higher, prio: 200}, next: time.Second + down100, st: Backup},
				{at: 2 * time.Second, op: "rx", rx: advert{src: higher, prio: 0}, next: 2*time.Second + skew100, st: Backup},
				{at: 2*time.Second + skew100 - 1, op: "tick", next: 2*time.Second + skew100, st: Backup},
				{at: 2*time.Second + skew100, op: "tick", want: []Action{become(Backup, Master, "priority 0 from 192.168.0.12, skew time expired"), send(100)}, next: 3*time.Second + skew100, st: Master},
			},
		},
		{
			name: "two-node priority 0 takes over at once",
			cfg:  func(c *Config) { c.TwoNode = true },
			steps: []step{
				{op: "start", want: []Action{become(Initialize, Backup, "startup")}, next: down100, st: Backup},
				{at: time.Second, op: "rx", rx: advert{src: higher, prio: 200}, next: time.Second + down100, st: Backup},
				{at: 2 * time.Second, op: "rx", rx: advert{src: higher, prio: 0}, want: []Action{become(Backup, Master, "priority 0 from 192.168.0.12"), send(100)}, next: 3 * time.Second, st: Master},
			},
		},
		{
			name: "preempt lower priority master at once",
			steps: []step{
				{op: "start", want: []Action{become(Initialize, Backup, "startup")}, next: down100, st: Backup},
				{at: time.Second, op: "rx", rx: advert{src: higher, prio: 50}, want: []Action{become(Backup, Master, "preempting lower priority master 192.168.0.12 (50 < 100)"), send(100)}, next: 2 * time.Second, st: Master},
			},
		},
		{
			name: "lower priority rogue ignored while a higher master is known",
			steps: []step{
				{op: "start", want: []Action{become(Initialize, Backup, "startup")}, next: down100, st: Backup},
				{at: time.Second, op: "rx", rx: advert{src: higher, prio: 200}, next: time.Second + down100, st: Backup},
				{at: 1500 * time.Millisecond, op: "rx", rx: advert{src: lower, prio: 50}, next: time.Second + down100, st: Backup},
				// The known master lowers its priority: preempt it.
				{at: 2 * time.Second, op: "rx", rx: advert{src: higher, prio: 90}, want: []Action{become(Backup, Master, "preempting lower priority master 192.168.0.12 (90 < 100)"), send(100)}, next: 3 * time.Second, st: Master},
			},
		},
		{
			name: "lower priority rogue: master down still fires",
			steps: []step{
				{op: "start", want: []Action{become(Initialize, Backup, "startup")}, next: down100, st: Backup},
				{at: time.Second, op: "rx", rx: advert{src: higher, prio: 200}, next: time.Second + down100, st: Backup},
				{at: 1500 * time.Millisecond, op: "rx", rx: advert{src: lower, prio: 50}, next: time.Second + down100, st: Backup},
				{at: 2500 * time.Millisecond, op: "rx", rx: advert{src: lower, prio: 50}, next: time.Second + down100, st: Backup},
				{at: time.Second + down100, op: "tick", want: []Action{become(Backup, Master, "master down timer expired"), send(100)}, next: 2*time.Second + down100, st: Master},
			},
		},
		{
			name: "no preempt accepts lower priority master",
			cfg:  func(c *Config) { c.Preempt = false },
			steps: []step{
				{op: "start", want: []Action{become(Initialize, Backup, "startup")}, next: down100, st: Backup},
				{at: time.Second, op: "rx", rx: advert{src: higher, prio: 50}, next: time.Second + down100, st: Backup},
				{at: 2 * time.Second, op: "prio", arg: 200, next: time.Second + down100, st: Backup},
			},
		},
		{
			name: "preempt delay",
			cfg:  func(c *Config) { c.PreemptDelay = 5 * time.Second },
			steps: []step{
				{op: "start", want: []Action{become(Initialize, Backup, "startup")}, next: down100, st: Backup},
				// The delay starts at 1s; until 6s the lower master is accepted.
				{at: time.Second, op: "rx", rx: advert{src: higher, prio: 50}, next: time.Second + down100, st: Backup},
				{at: 2 * time.Second, op: "rx", rx: advert{src: higher, prio: 50}, next: 2*time.Second + down100, st: Backup},
				{at: 3 * time.Second, op: "rx", rx: advert{src: higher, prio: 50}, next: 6 * time.Second, st: Backup},
				{at: 6 * time.Second, op: "tick", want: []Action{become(Backup, Master, "preempt delay 5s expired, master 192.168.0.12 has lower priority (50 < 100)"), send(100)}, next: 7 * time.Second, st: Master},
			},
		},
		{
			name: "preempt delay expired when the advert arrives first",
			cfg:  func(c *Config) { c.PreemptDelay = 2 * time.Second },
			steps: []step{
				{op: "start", want: []Action{become(Initialize, Backup, "startup")}, next: down100, st: Backup},
				{at: time.Second, op: "rx", rx: advert{src: higher, prio: 50}, next: 3 * time.Second, st: Backup},
				{at: 3 * time.Second, op: "rx", rx: advert{src: higher, prio: 50}, want: []Action{become(Backup, Master, "preempt delay 2s expired, master 192.168.0.12 has lower priority (50 < 100)"), send(100)}, next: 4 * time.Second, st: Master},
			},
		},
		{
			name: "preempt delay cancelled by a higher advert",
			cfg:  func(c *Config) { c.PreemptDelay = 5 * time.Second },
			steps: []step{
				{op: "start", want: []Action{become(Initialize, Backup, "startup")}, next: down100, st: Backup},
				{at: time.Second, op: "rx", rx: advert{src: higher, prio: 50}, next: time.Second + down100, st: Backup},
				{at: 2 * time.Second, op: "rx", rx: advert{src: higher, prio: 150}, next: 2*time.Second + down100, st: Backup},
				// Restarts from 3s: due at 8s, not 6s.
				{at: 3 * time.Second, op: "rx", rx: advert{src: higher, prio: 50}, next: 3*time.Second + down100, st: Backup},
				{at: 4 * time.Second, op: "rx", rx: advert{src: higher, prio: 50}, next: 4*time.Second + down100, st: Backup},
				{at: 5 * time.Second, op: "rx", rx: advert{src: higher, prio: 50}, next: 8 * time.Second, st: Backup},
				{at: 6 * time.Second, op: "tick", next: 8 * time.Second, st: Backup},
			},
		},
		{
			name: "master yields to higher priority",
			steps: seq(toMaster, []step{
				{at: T + 500*time.Millisecond, op: "rx", rx: advert{src: lower, prio: 200}, want: []Action{become(Master, Backup, "higher priority advert from 192.168.0.9 (200)")}, next: T + 500*time.Millisecond + down100, st: Backup},
			}),
		},
		{
			name: "master yields to equal priority from a greater address",
			steps: seq(toMaster, []step{
				{at: T + 500*time.Millisecond, op: "rx", rx: advert{src: higher, prio: 100, interval: 500 * time.Millisecond}, want: []Action{become(Master, Backup, "equal priority advert from higher address 192.168.0.12 (100)")},
					// learned 500ms: 1.5s + 156/256*0.5s
					next: T + 500*time.Millisecond + 1500*time.Millisecond + 304687500, st: Backup},
			}),
		},
		{
			name: "master keeps equal priority from a smaller address, answers at once",
			steps: seq(toMaster, []step{
				{at: T + 500*time.Millisecond, op: "rx", rx: advert{src: lower, prio: 100}, want: []Action{send(100), announce("lower priority advert from 192.168.0.9 (100)")}, next: T + 1500*time.Millisecond, st: Master},
			}),
		},
		{
			name: "master answers lower priority and priority 0 at once",
			steps: seq(toMaster, []step{
				{at: T + 200*time.Millisecond, op: "rx", rx: advert{src: higher, prio: 50}, want: []Action{send(100), announce("lower priority advert from 192.168.0.12 (50)")}, next: T + 1200*time.Millisecond, st: Master},
				{at: T + 700*time.Millisecond, op: "rx", rx: advert{src: higher, prio: 0}, want: []Action{send(100)}, next: T + 1700*time.Millisecond, st: Master},
			}),
		},
		{
			name: "fault from master and back",
			steps: seq(toMaster, []step{
				{at: T + time.Second/2, op: "fault", want: []Action{send(0), become(Master, Fault, "fault: eth0 down")}, next: -1, st: Fault},
				{at: T + time.Second, op: "fault", next: -1, st: Fault},
				{at: T + 2*time.Second, op: "tick", next: -1, st: Fault},
				{at: T + 2*time.Second, op: "rx", rx: advert{src: higher, prio: 50}, next: -1, st: Fault},
				{at: T + 2*time.Second, op: "prio", arg: 120, next: -1, st: Fault},
				{at: T + 3*time.Second, op: "clear", want: []Action{become(Fault, Backup, "fault cleared")},
					// at priority 120: 3s + 136/256 s
					next: T + 3*time.Second + 3*time.Second + 531250*time.Microsecond, st: Backup},
				{at: T + 4*time.Second, op: "clear", next: T + 6*time.Second + 531250*time.Microsecond, st: Backup},
			}),
		},
		{
			name: "fault from backup and init",
			steps: []step{
				{op: "fault", want: []Action{become(Initialize, Fault, "fault: eth0 down")}, next: -1, st: Fault},
				{op: "start", next: -1, st: Fault},
				{at: time.Second, op: "clear", want: []Action{become(Fault, Backup, "fault cleared")}, next: time.Second + down100, st: Backup},
				{at: 2 * time.Second, op: "fault", want: []Action{become(Backup, Fault, "fault: eth0 down")}, next: -1, st: Fault},
				{at: 3 * time.Second, op: "stop", want: []Action{become(Fault, Initialize, "stopped")}, next: -1, st: Initialize},
			},
		},
		{
			name: "owner leaves fault as master",
			cfg:  func(c *Config) { c.Priority = 255 },
			steps: []step{
				{op: "fault", want: []Action{become(Initialize, Fault, "fault: eth0 down")}, next: -1, st: Fault},
				{at: time.Second, op: "clear", want: []Action{become(Fault, Master, "fault cleared: address owner (priority 255)"), send(255)}, next: 2 * time.Second, st: Master},
			},
		},
		{
			name: "set priority while master",
			steps: seq(toMaster, []step{
				{at: T + 300*time.Millisecond, op: "prio", arg: 120, want: []Action{send(120)}, next: T + 1300*time.Millisecond, st: Master},
				{at: T + 400*time.Millisecond, op: "prio", arg: 120, next: T + 1300*time.Millisecond, st: Master}, // unchanged
				{at: T + 1300*time.Millisecond, op: "tick", want: []Action{send(120)}, next: T + 2300*time.Millisecond, st: Master},
				{at: T + 1400*time.Millisecond, op: "prio", arg: 0, want: []Action{send(1)}, next: T + 2400*time.Millisecond, st: Master},     // kept >= 1
				{at: T + 1500*time.Millisecond, op: "prio", arg: 255, want: []Action{send(254)}, next: T + 2500*time.Millisecond, st: Master}, // not an owner
				{at: T + 1600*time.Millisecond, op: "prio", arg: 50, want: []Action{send(50)}, next: T + 2600*time.Millisecond, st: Master},
				// Now a priority 200 rival wins; Skew_Time at 50 is 206/256 s.
				{at: T + 1700*time.Millisecond, op: "rx", rx: advert{src: higher, prio: 200}, want: []Action{become(Master, Backup, "higher priority advert from 192.168.0.12 (200)")}, next: T + 1700*time.Millisecond + 3*time.Second + 804687500, st: Backup},
			}),
		},
		{
			name: "set priority preempts from backup",
			steps: []step{
				{op: "start", want: []Action{become(Initialize, Backup, "startup")}, next: down100, st: Backup},
				{at: time.Second, op: "rx", rx: advert{src: higher, prio: 150}, next: time.Second + down100, st: Backup},
				{at: 1500 * time.Millisecond, op: "prio", arg: 150, next: time.Second + down100, st: Backup}, // equal: no
				{at: 1600 * time.Millisecond, op: "prio", arg: 200, want: []Action{become(Backup, Master, "priority raised to 200 above master 192.168.0.12 (150)"), send(200)}, next: 2600 * time.Millisecond, st: Master},
			},
		},
		{
			name: "set priority with preempt delay, then cancelled",
			cfg:  func(c *Config) { c.PreemptDelay = 2 * time.Second },
			steps: []step{
				{op: "start", want: []Action{become(Initialize, Backup, "startup")}, next: down100, st: Backup},
				{at: time.Second, op: "rx", rx: advert{src: higher, prio: 150}, next: time.Second + down100, st: Backup},
				{at: 1500 * time.Millisecond, op: "prio", arg: 200, next: 3500 * time.Millisecond, st: Backup},
				{at: 2 * time.Second, op: "prio", arg: 120, next: time.Second + down100, st: Backup},
				{at: 2500 * time.Millisecond, op: "prio", arg: 200, next: 4500 * time.Millisecond, st: Backup},
				{at: 4500 * time.Millisecond, op: "tick", want: []Action{become(Backup, Master, "preempt delay 2s expired, master 192.168.0.12 has lower priority (150 < 200)"), send(200)}, next: 5500 * time.Millisecond, st: Master},
			},
		},
		{
			name: "stop",
			steps: seq(toMaster, []step{
				{at: T + time.Second/2, op: "stop", want: []Action{send(0), become(Master, Initialize, "stopped")}, next: -1, st: Initialize},
				{at: T + time.Second, op: "stop", next: -1, st: Initialize},
				{at: T + time.Second, op: "tick", next: -1, st: Initialize},
				{at: T + 2*time.Second, op: "start", want: []Action{become(Initialize, Backup, "startup")}, next: T + 2*time.Second + down100, st: Backup},
				{at: T + 3*time.Second, op: "stop", want: []Action{become(Backup, Initialize, "stopped")}, next: -1, st: Initialize},
			}),
		},
		{
			name: "resign yields until next master",
			cfg:  func(c *Config) { c.Priority = 150 },
			steps: []step{
				{op: "start", want: []Action{become(Initialize, Backup, "startup")}, next: 3*time.Second + 414062500, st: Backup},
				{at: time.Second, op: "resign", next: 3*time.Second + 414062500, st: Backup}, // not master: no-op
				{at: 3*time.Second + 414062500, op: "tick", want: []Action{become(Backup, Master, "master down timer expired"), send(150)}, next: 4*time.Second + 414062500, st: Master},
				{at: 4 * time.Second, op: "resign", want: []Action{send(0), become(Master, Backup, "resigned (planned handover)")}, next: 7*time.Second + 414062500, st: Backup},
				// The peer (100) takes over; we do not preempt it, even when our priority rises.
				{at: 5 * time.Second, op: "rx", rx: advert{src: higher, prio: 100}, next: 8*time.Second + 414062500, st: Backup},
				{at: 5500 * time.Millisecond, op: "prio", arg: 200, next: 8*time.Second + 414062500, st: Backup},
				{at: 6 * time.Second, op: "rx", rx: advert{src: higher, prio: 100}, next: 9*time.Second + 218750000, st: Backup},
				// The peer goes away: we are master again, and no longer yielding.
				{at: 9*time.Second + 218750000, op: "tick", want: []Action{become(Backup, Master, "master down timer expired"), send(200)}, next: 10*time.Second + 218750000, st: Master},
				{at: 11 * time.Second, op: "rx", rx: advert{src: higher, prio: 100}, want: []Action{send(200), announce("lower priority advert from 192.168.0.12 (100)")}, next: 12 * time.Second, st: Master},
			},
		},
		{
			name: "takeover makes a backup master; a higher peer sends it back",
			steps: []step{
				{op: "takeover", next: -1, st: Initialize}, // not backup: no-op
				{op: "start", want: []Action{become(Initialize, Backup, "startup")}, next: down100, st: Backup},
				{at: time.Second, op: "rx", rx: advert{src: higher, prio: 200}, next: time.Second + down100, st: Backup},
				{at: 2 * time.Second, op: "takeover", want: []Action{become(Backup, Master, "sync group"), send(100)}, next: 3 * time.Second, st: Master},
				{at: 2 * time.Second, op: "takeover", next: 3 * time.Second, st: Master}, // already master: no-op
				{at: 2500 * time.Millisecond, op: "rx", rx: advert{src: higher, prio: 200}, want: []Action{become(Master, Backup, "higher priority advert from 192.168.0.12 (200)")}, next: 2500*time.Millisecond + down100, st: Backup},
			},
		},
		{
			name: "planned takeover drops the old master's adverts for the hold",
			steps: []step{
				{op: "takeoverfrom", next: -1, st: Initialize}, // not backup: no-op
				{op: "start", want: []Action{become(Initialize, Backup, "startup")}, next: down100, st: Backup},
				{at: time.Second, op: "rx", rx: advert{src: higher, prio: 200}, next: time.Second + down100, st: Backup},
				{at: 2 * time.Second, op: "takeoverfrom", want: []Action{become(Backup, Master, "planned handover"), send(100)}, next: 3 * time.Second, st: Master},
				// The old master's advert before it resigns: dropped, however it outranks us.
				{at: 2100 * time.Millisecond, op: "rx", rx: advert{src: higher, prio: 200}, drop: DropHandover, next: 3 * time.Second, st: Master},
				// Another router is not the old master: the usual rules.
				{at: 2200 * time.Millisecond, op: "rx", rx: advert{src: lower, prio: 50}, want: []Action{send(100), announce("lower priority advert from 192.168.0.9 (50)")}, next: 3200 * time.Millisecond, st: Master},
				// Just before the hold ends, still dropped.
				{at: 3999 * time.Millisecond, op: "rx", rx: advert{src: higher, prio: 200}, drop: DropHandover, next: 3200 * time.Millisecond, st: Master},
				// The hold is over: a master that did not resign takes the group back.
				{at: 4 * time.Second, op: "rx", rx: advert{src: higher, prio: 200}, want: []Action{become(Master, Backup, "higher priority advert from 192.168.0.12 (200)")}, next: 4*time.Second + down100, st: Backup},
			},
		},
		{
			name: "planned takeover: the old master's priority 0 ends the hold",
			steps: []step{
				{op: "start", want: []Action{become(Initialize, Backup, "startup")}, next: down100, st: Backup},
				{at: time.Second, op: "rx", rx: advert{src: higher, prio: 200}, next: time.Second + down100, st: Backup},
				{at: 2 * time.Second, op: "takeoverfrom", want: []Action{become(Backup, Master, "planned handover"), send(100)}, next: 3 * time.Second, st: Master},
				{at: 2010 * time.Millisecond, op: "rx", rx: advert{src: higher, prio: 0}, want: []Action{send(100)}, next: 3010 * time.Millisecond, st: Master},
				// It came back at once, within the 2 s: the election is normal again.
				{at: 2500 * time.Millisecond, op: "rx", rx: advert{src: higher, prio: 200}, want: []Action{become(Master, Backup, "higher priority advert from 192.168.0.12 (200)")}, next: 2500*time.Millisecond + down100, st: Backup},
			},
		},
		{
			name: "planned takeover abandoned by the old master: EndGuard, its next advert wins",
			steps: []step{
				{op: "start", want: []Action{become(Initialize, Backup, "startup")}, next: down100, st: Backup},
				{at: time.Second, op: "rx", rx: advert{src: higher, prio: 200}, next: time.Second + down100, st: Backup},
				{at: 2 * time.Second, op: "takeoverfrom", want: []Action{become(Backup, Master, "planned handover"), send(100)}, next: 3 * time.Second, st: Master},
				{at: 2010 * time.Millisecond, op: "rx", rx: advert{src: higher, prio: 200}, drop: DropHandover, next: 3 * time.Second, st: Master},
				{at: 2020 * time.Millisecond, op: "endguard", next: 3 * time.Second, st: Master},
				{at: 2100 * time.Millisecond, op: "rx", rx: advert{src: higher, prio: 200}, want: []Action{become(Master, Backup, "higher priority advert from 192.168.0.12 (200)")}, next: 2100*time.Millisecond + down100, st: Backup},
			},
		},
		{
			name: "planned takeover with no master known holds nothing",
			steps: []step{
				{op: "start", want: []Action{become(Initialize, Backup, "startup")}, next: down100, st: Backup},
				{at: time.Second, op: "takeoverfrom", want: []Action{become(Backup, Master, "planned handover"), send(100)}, next: 2 * time.Second, st: Master},
				{at: 1100 * time.Millisecond, op: "rx", rx: advert{src: higher, prio: 200}, want: []Action{become(Master, Backup, "higher priority advert from 192.168.0.12 (200)")}, next: 1100*time.Millisecond + down100, st: Backup},
			},
		},
		{
			name: "handing over: lower priority adverts unanswered during the hold",
			steps: seq(toMaster, []step{
				{at: T, op: "hold", arg: 20, next: T + time.Second, st: Master}, // 2 s
				{at: T + 100*time.Millisecond, op: "rx", rx: advert{src: higher, prio: 50}, next: T + time.Second, st: Master},
				// A higher priority one still wins: that is a handover too.
				{at: T + 200*time.Millisecond, op: "rx", rx: advert{src: lower, prio: 50}, next: T + time.Second, st: Master},
				{at: T + 2*time.Second, op: "rx", rx: advert{src: higher, prio: 50}, want: []Action{send(100), announce("lower priority advert from 192.168.0.12 (50)")}, next: T + 3*time.Second, st: Master},
				// A zero hold ends it at once (the handover failed).
				{at: T + 2500*time.Millisecond, op: "hold", arg: 20, next: T + 3*time.Second, st: Master},
				{at: T + 2600*time.Millisecond, op: "hold", arg: 0, next: T + 3*time.Second, st: Master},
				{at: T + 2700*time.Millisecond, op: "rx", rx: advert{src: higher, prio: 50}, want: []Action{send(100), announce("lower priority advert from 192.168.0.12 (50)")}, next: T + 3700*time.Millisecond, st: Master},
				{at: T + 3100*time.Millisecond, op: "resign", want: []Action{send(0), become(Master, Backup, "resigned (planned handover)")}, next: T + 3100*time.Millisecond + down100, st: Backup},
				{at: T + 3200*time.Millisecond, op: "hold", arg: 20, next: T + 3100*time.Millisecond + down100, st: Backup}, // not master: no-op
			}),
		},
		{
			name: "resume as master, or as backup; only from INIT",
			steps: []step{
				{op: "resume", resume: Master, want: []Action{become(Initialize, Master, "resumed"), send(100)}, next: time.Second, st: Master},
				{at: 100 * time.Millisecond, op: "resume", resume: Backup, next: time.Second, st: Master}, // not INIT: no-op
				{at: 200 * time.Millisecond, op: "stop", want: []Action{send(0), become(Master, Initialize, "stopped")}, next: -1, st: Initialize},
				{at: 300 * time.Millisecond, op: "resume", resume: Backup, want: []Action{become(Initialize, Backup, "resumed")}, next: 300*time.Millisecond + down100, st: Backup},
			},
		},
		{
			name: "drops change nothing",
			steps: seq(toMaster, []step{
				{at: T + 100*time.Millisecond, op: "rx", rx: advert{src: higher, prio: 200, vrid: 52}, drop: DropVRID, next: T + time.Second, st: Master},
				{at: T + 100*time.Millisecond, op: "rx", rx: advert{src: higher, prio: 200, addrs: []netip.Addr{vip, higher}}, drop: DropAddrList, next: T + time.Second, st: Master},
				{at: T + 100*time.Millisecond, op: "rx", rx: advert{src: higher, prio: 0, addrs: []netip.Addr{higher}}, drop: DropAddrList, next: T + time.Second, st: Master},
				{at: T + 100*time.Millisecond, op: "rx", rx: advert{src: self, prio: 200}, drop: DropOwn, next: T + time.Second, st: Master},
				{at: T + 100*time.Millisecond, op: "rx", rx: advert{src: higher, prio: 200, version: 2}, drop: DropVersion, next: T + time.Second, st: Master},
				{at: T + 100*time.Millisecond, op: "rx", rx: advert{src: ll1, prio: 200, addrs: ips("2001:db8::1")}, drop: DropFamily, next: T + time.Second, st: Master},
				// The owner's advert is processed whatever its addresses.
				{at: T + 200*time.Millisecond, op: "rx", rx: advert{src: lower, prio: 255, addrs: []netip.Addr{higher}}, want: []Action{become(Master, Backup, "higher priority advert from 192.168.0.9 (255)")}, next: T + 200*time.Millisecond + down100, st: Backup},
			}),
		},
	}
	runCases(t, tests)
}

func TestV2(t *testing.T) {
	cfg := baseConfig()
	cfg.Version = 2
	cfg.Advert = 2 * time.Second
	m, err := NewMachine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// v2 Skew_Time is in seconds whatever the interval: 3*2s + 156/256 s.
	const down = 6*time.Second + skew100
	run(t, m, []step{
		{op: "start", want: []Action{become(Initialize, Backup, "startup")}, next: down, st: Backup},
		{at: time.Second, op: "rx", rx: advert{src: higher, prio: 200, version: 2, interval: time.Second}, drop: DropInterval, next: down, st: Backup},
		{at: time.Second, op: "rx", rx: advert{src: higher, prio: 200, version: 2, interval: 2 * time.Second}, next: time.Second + down, st: Backup},
		{at: 2 * time.Second, op: "rx", rx: advert{src: higher, prio: 200, interval: 2 * time.Second}, drop: DropVersion, next: time.Second + down, st: Backup},
		{at: 3 * time.Second, op: "rx", rx: advert{src: higher, prio: 0, version: 2, interval: 2 * time.Second}, next: 3*time.Second + skew100, st: Backup},
		{at: 3*time.Second + skew100, op: "tick", want: []Action{become(Backup, Master, "priority 0 from 192.168.0.12, skew time expired"), send(100)}, next: 5*time.Second + skew100, st: Master},
	})
	// The runner's advert matches RFC 3768.
	b, err := m.Advert(100).Marshal(self, mcast4)
	if err != nil {
		t.Fatal(err)
	}
	want := cat([]byte{0x21, 51, 100, 1, 0, 2, 0xb9, 0x4e, 192, 168, 0, 210}, zeros(8))
	if diff := cmp.Diff(want, b); diff != "" {
		t.Fatalf("v2 advert (-want +got):\n%s", diff)
	}
}

func TestIPv6(t *testing.T) {
	cfg := baseConfig()
	cfg.Primary = netip.MustParseAddr("fe80::11%eth0")
	cfg.Addrs = ips("2001:db8::210", "fe80::210")
	m, err := NewMachine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rival := netip.MustParseAddr("fe80::12")
	v6 := ips("fe80::210", "2001:db8::210") // other order: compared as a set
	run(t, m, []step{
		{op: "start", want: []Action{become(Initialize, Backup, "startup")}, next: down100, st: Backup},
		{at: time.Second, op: "rx", rx: advert{src: rival, prio: 200, addrs: v6}, next: time.Second + down100, st: Backup},
		{at: 2 * time.Second, op: "rx", rx: advert{src: netip.MustParseAddr("fe80::11%eth0"), prio: 200, addrs: v6}, drop: DropOwn, next: time.Second + down100, st: Backup},
		{at: 2 * time.Second, op: "rx", rx: advert{src: self, prio: 200}, drop: DropFamily, next: time.Second + down100, st: Backup},
		{at: 3 * time.Second, op: "rx", rx: advert{src: rival, prio: 100, addrs: v6}, next: 3*time.Second + down100, st: Backup},
		{at: 3*time.Second + down100, op: "tick", want: []Action{become(Backup, Master, "master down timer expired"), send(100)}, next: 4*time.Second + down100, st: Master},
		// fe80::12 > fe80::11: equal priority goes to it.
		{at: 4 * time.Second, op: "rx", rx: advert{src: rival, prio: 100, addrs: v6}, want: []Action{become(Master, Backup, "equal priority advert from higher address fe80::12 (100)")}, next: 4*time.Second + down100, st: Backup},
	})
	if s := m.Status(); s.MasterAddr != rival {
		t.Fatalf("master %v", s.MasterAddr)
	}
}

func TestReceiveChecks(t *testing.T) {
	m, err := NewMachine(baseConfig())
	if err != nil {
		t.Fatal(err)
	}
	m.Start(t0)
	good := advert{src: higher, prio: 200}.bytes(t)
	tests := []struct {
		name     string
		b        []byte
		src, dst netip.Addr
		ttl      int
		want     DropReason
	}{
		{"ok", good, higher, mcast4, 255, DropNone},
		{"ttl unknown", good, higher, mcast4, -1, DropNone},
		{"unicast destination", advert{src: higher, prio: 200}.bytesTo(t, self), higher, self, 255, DropNone},
		{"ttl 254", good, higher, mcast4, 254, DropTTL},
		{"ttl 1", good, higher, mcast4, 1, DropTTL},
		{"checksum", good, lower, mcast4, 255, DropChecksum},
		{"truncated", good[:9], higher, mcast4, 255, DropTruncated},
		{"own", advert{src: self, prio: 200}.bytes(t), self, mcast4, 255, DropOwn},
		{"vrid", advert{src: higher, prio: 200, vrid: 1}.bytes(t), higher, mcast4, 255, DropVRID},
		{"addr list: missing", advert{src: higher, prio: 200, addrs: []netip.Addr{}}.bytes(t), higher, mcast4, 255, DropAddrList},
		{"addr list: other", advert{src: higher, prio: 200, addrs: []netip.Addr{higher}}.bytes(t), higher, mcast4, 255, DropAddrList},
		{"addr list: duplicate is the same set", advert{src: higher, prio: 200, addrs: []netip.Addr{vip, vip}}.bytes(t), higher, mcast4, 255, DropNone},
		{"addr list: owner exempt", advert{src: higher, prio: 255, addrs: []netip.Addr{higher}}.bytes(t), higher, mcast4, 255, DropNone},
		{"v3 other interval is fine", advert{src: higher, prio: 200, interval: 3 * time.Second}.bytes(t), higher, mcast4, 255, DropNone},
	}
	want := Counters{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, r := m.Receive(t0.Add(time.Second), tt.b, tt.src, tt.dst, tt.ttl)
			if r != tt.want {
				t.Fatalf("drop %v, want %v", r, tt.want)
			}
		})
		if tt.want == DropNone {
			want.RxAdverts++
		} else {
			want.Drops[tt.want]++
		}
	}
	m.CountDrop(DropFamily)
	m.CountDrop(DropNone)       // not a drop
	m.CountDrop(NumDropReasons) // out of range: ignored
	want.Drops[DropFamily]++
	want.Transitions = 1 // startup
	if diff := cmp.Diff(want, m.Status().Counters); diff != "" {
		t.Fatalf("counters (-want +got):\n%s", diff)
	}
}

func (a advert) bytesTo(t testing.TB, dst netip.Addr) []byte {
	t.Helper()
	b, err := (&Packet{Version: 3, VRID: 51, Priority: a.prio, Interval: time.Second, Addrs: []netip.Addr{vip}}).Marshal(a.src, dst)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestStatusAndCounters(t *testing.T) {
	m, err := NewMachine(baseConfig())
	if err != nil {
		t.Fatal(err)
	}
	run(t, m, seq(toMaster, []step{
		{at: down100 + time.Second, op: "tick", want: []Action{send(100)}, next: down100 + 2*time.Second, st: Master},
		{at: down100 + 1500*time.Millisecond, op: "prio", arg: 90, want: []Action{send(90)}, next: down100 + 2500*time.Millisecond, st: Master},
	}))
	want := Status{
		State: Master, Since: t0.Add(down100), Priority: 90, BasePriority: 100,
		MasterAddr: self, MasterPriority: 90, MasterInterval: time.Second,
		Counters: Counters{TxAdverts: 3, Transitions: 2},
	}
	if diff := cmp.Diff(want, m.Status(), cmpAddrs); diff != "" {
		t.Fatalf("status (-want +got):\n%s", diff)
	}
	now := t0.Add(10 * time.Second)
	m.Receive(now, advert{src: higher, prio: 200, interval: 3 * time.Second}.bytes(t), higher, mcast4, 255)
	m.Receive(now, advert{src: higher, prio: 200}.bytes(t), higher, mcast4, 1)
	m.SetFault(now, true, "link down")
	want = Status{
		State: Fault, Since: now, Priority: 90, BasePriority: 100,
		Counters: Counters{RxAdverts: 1, TxAdverts: 3, Transitions: 4, Drops: [NumDropReasons]uint64{DropTTL: 1}},
		Fault:    "link down", MasterInterval: time.Second,
	}
	if diff := cmp.Diff(want, m.Status(), cmpAddrs); diff != "" {
		t.Fatalf("status (-want +got):\n%s", diff)
	}
}

func TestNewMachineErrors(t *testing.T) {
	tests := []struct {
		name string
		mod  func(c *Config)
	}{
		{"vrid 0", func(c *Config) { c.VRID = 0 }},
		{"priority 0", func(c *Config) { c.Priority = 0 }},
		{"version 1", func(c *Config) { c.Version = 1 }},
		{"v3 advert 0", func(c *Config) { c.Advert = 0 }},
		{"v3 advert 5ms", func(c *Config) { c.Advert = 5 * time.Millisecond }},
		{"v3 advert 41s", func(c *Config) { c.Advert = 41 * time.Second }},
		{"v2 advert 1.5s", func(c *Config) { c.Version = 2; c.Advert = 1500 * time.Millisecond }},
		{"v2 advert 256s", func(c *Config) { c.Version = 2; c.Advert = 256 * time.Second }},
		{"v2 IPv6", func(c *Config) { c.Version = 2; c.Primary = ll1; c.Addrs = ips("2001:db8::1") }},
		{"negative preempt delay", func(c *Config) { c.PreemptDelay = -time.Second }},
		{"no primary", func(c *Config) { c.Primary = netip.Addr{} }},
		{"unspecified primary", func(c *Config) { c.Primary = netip.IPv4Unspecified() }},
		{"no addrs", func(c *Config) { c.Addrs = nil }},
		{"mixed family", func(c *Config) { c.Addrs = ips("192.168.0.210", "2001:db8::1") }},
		{"invalid addr", func(c *Config) { c.Addrs = []netip.Addr{{}} }},
		{"duplicate addr", func(c *Config) { c.Addrs = ips("192.168.0.210", "10.0.0.1", "192.168.0.210") }},
		{"256 addrs", func(c *Config) { c.Addrs = make([]netip.Addr, 256) }},
		{"empty AlsoAccept list", func(c *Config) { c.AlsoAccept = [][]netip.Addr{ips("10.0.0.1"), nil} }},
		{"AlsoAccept of another family", func(c *Config) { c.AlsoAccept = [][]netip.Addr{ips("2001:db8::1")} }},
		{"invalid AlsoAccept addr", func(c *Config) { c.AlsoAccept = [][]netip.Addr{{{}}} }},
		{"duplicate AlsoAccept addr", func(c *Config) { c.AlsoAccept = [][]netip.Addr{ips("10.0.0.1", "10.0.0.1")} }},
		{"256 AlsoAccept addrs", func(c *Config) { c.AlsoAccept = [][]netip.Addr{make([]netip.Addr, 256)} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig()
			tt.mod(&cfg)
			if _, err := NewMachine(cfg); !errors.Is(err, ErrConfig) {
				t.Fatalf("NewMachine: %v, want ErrConfig", err)
			}
		})
	}
	for _, mod := range []func(c *Config){
		func(c *Config) {},
		func(c *Config) { c.Version = 2; c.Advert = 255 * time.Second },
		func(c *Config) { c.Advert = 10 * time.Millisecond },
		func(c *Config) { c.Advert = 40950 * time.Millisecond; c.Priority = 255 },
		func(c *Config) { c.Primary = netip.MustParseAddr("::ffff:192.168.0.11") },
		func(c *Config) { c.AlsoAccept = [][]netip.Addr{ips("192.168.0.210"), ips("10.0.0.1", "192.168.0.210")} },
	} {
		cfg := baseConfig()
		mod(&cfg)
		if _, err := NewMachine(cfg); err != nil {
			t.Errorf("NewMachine(%+v): %v", cfg, err)
		}
	}
}

func TestStateStrings(t *testing.T) {
	got := []string{Initialize.String(), Backup.String(), Master.String(), Fault.String()}
	if diff := cmp.Diff([]string{"INIT", "BACKUP", "MASTER", "FAULT"}, got); diff != "" {
		t.Fatal(diff)
	}
	for _, s := range []State{Initialize, Backup, Master, Fault} {
		b, _ := s.MarshalText()
		var back State
		if err := back.UnmarshalText(b); err != nil || back != s {
			t.Errorf("%v: text %q reads back as %v, %v", s, b, back, err)
		}
	}
	var s State
	if err := s.UnmarshalText([]byte("PRIMARY")); err == nil {
		t.Errorf("an unknown state was accepted")
	}
}

// With AdvertGrid, a master's adverts fall on the grid of the wall clock
// whenever it became master, one interval apart once there, never more
// than half a grid off; a grid above a quarter of the interval is refused.
func TestAdvertGrid(t *testing.T) {
	const grid = 100 * time.Millisecond
	base := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	for _, off := range []time.Duration{0, 37 * time.Millisecond, 49 * time.Millisecond, 51 * time.Millisecond, 99 * time.Millisecond} {
		cfg := Config{VRID: 1, Version: 3, Priority: 255, Advert: time.Second, Primary: netip.MustParseAddr("192.0.2.1"),
			Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.100")}, AdvertGrid: grid}
		m, err := NewMachine(cfg)
		if err != nil {
			t.Fatal(err)
		}
		now := base.Add(off)
		m.Start(now) // the owner: Master at once, an advert now
		prev := now
		for i := range 5 {
			at := m.Deadline()
			if at.Sub(at.Truncate(grid)) != 0 {
				t.Errorf("start +%v: advert %d at %v, off the %v grid", off, i, at.Format("15:04:05.000"), grid)
			}
			if gap := at.Sub(prev); gap < time.Second-grid/2 || gap > time.Second+grid/2 {
				t.Errorf("start +%v: advert %d %v after the last", off, i, gap)
			}
			if i > 0 && at.Sub(prev) != time.Second {
				t.Errorf("start +%v: advert %d %v after the last, want exactly the interval once on the grid", off, i, at.Sub(prev))
			}
			// The timer fires a little late; the grid absorbs it.
			late := at.Add(3 * time.Millisecond)
			if acts := m.Tick(late); len(acts) != 1 || acts[0].Kind != ActSend {
				t.Fatalf("start +%v: tick %d: %v", off, i, acts)
			}
			prev = at
		}
	}
	bad := Config{VRID: 1, Version: 3, Priority: 100, Advert: time.Second, Primary: netip.MustParseAddr("192.0.2.1"), AdvertGrid: 300 * time.Millisecond}
	if _, err := NewMachine(bad); err == nil {
		t.Errorf("a grid of 300ms for a 1s interval was accepted")
	}
}

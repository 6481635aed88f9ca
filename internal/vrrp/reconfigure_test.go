package vrrp

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var (
	vip2 = netip.MustParseAddr("192.168.0.211")
	vip3 = netip.MustParseAddr("192.168.0.212")
)

func TestAlsoAccept(t *testing.T) {
	cfg := baseConfig()
	cfg.AlsoAccept = [][]netip.Addr{{vip2, vip}, {vip3}}
	m, err := NewMachine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m.Start(t0)
	for _, tt := range []struct {
		addrs []netip.Addr
		want  DropReason
	}{
		{[]netip.Addr{vip}, DropNone},
		{[]netip.Addr{vip, vip2}, DropNone}, // a set: order does not matter
		{[]netip.Addr{vip3}, DropNone},
		{[]netip.Addr{vip2}, DropAddrList},
		{[]netip.Addr{vip, vip3}, DropAddrList}, // lists are not merged
		{[]netip.Addr{vip, vip2, vip3}, DropAddrList},
	} {
		_, r := m.Receive(t0.Add(time.Second), advert{src: higher, prio: 200, addrs: tt.addrs}.bytes(t), higher, mcast4, 255)
		if r != tt.want {
			t.Errorf("advert with %v: drop %v, want %v", tt.addrs, r, tt.want)
		}
	}
	// Only Addrs is advertised.
	if diff := cmp.Diff([]netip.Addr{vip}, m.Advert(100).Addrs, cmpAddrs); diff != "" {
		t.Errorf("advertised addresses (-want +got):\n%s", diff)
	}
}

func TestReconfigure(t *testing.T) {
	const T = down100 // when toMaster became master
	tests := []machineCase{
		{
			name: "master: new Addrs are sent at once and received",
			steps: seq(toMaster, []step{
				{at: T + 300*time.Millisecond, op: "reconf", mod: func(c *Config) { c.Addrs = []netip.Addr{vip, vip2} }, want: []Action{send(100)}, next: T + 1300*time.Millisecond, st: Master},
				{at: T + 400*time.Millisecond, op: "rx", rx: advert{src: lower, prio: 50, addrs: []netip.Addr{vip2, vip}}, want: []Action{send(100), announce("lower priority advert from 192.168.0.9 (50)")}, next: T + 1400*time.Millisecond, st: Master},
				{at: T + 500*time.Millisecond, op: "rx", rx: advert{src: lower, prio: 200}, drop: DropAddrList, next: T + 1400*time.Millisecond, st: Master},
			}),
		},
		{
			name: "master: Addrs in another order are no change",
			cfg:  func(c *Config) { c.Addrs = []netip.Addr{vip, vip2} },
			steps: seq(toMaster, []step{
				{at: T + 300*time.Millisecond, op: "reconf", mod: func(c *Config) { c.Addrs = []netip.Addr{vip2, vip} }, next: T + time.Second, st: Master},
			}),
		},
		{
			name: "master: new Advert is sent at once, then at the new interval",
			steps: seq(toMaster, []step{
				{at: T + 300*time.Millisecond, op: "reconf", mod: func(c *Config) { c.Advert = 2 * time.Second }, want: []Action{send(100)}, next: T + 2300*time.Millisecond, st: Master},
				{at: T + 2300*time.Millisecond, op: "tick", want: []Action{send(100)}, next: T + 4300*time.Millisecond, st: Master},
			}),
		},
		{
			name: "master: new Primary is sent at once; the old one is a rival",
			steps: seq(toMaster, []step{
				{at: T + 300*time.Millisecond, op: "reconf", mod: func(c *Config) { c.Primary = netip.MustParseAddr("192.168.0.13") }, want: []Action{send(100)}, next: T + 1300*time.Millisecond, st: Master},
				// 192.168.0.11 < 192.168.0.13: equal priority stays with us.
				{at: T + 400*time.Millisecond, op: "rx", rx: advert{src: self, prio: 100}, want: []Action{send(100), announce("lower priority advert from 192.168.0.11 (100)")}, next: T + 1400*time.Millisecond, st: Master},
				{at: T + 500*time.Millisecond, op: "rx", rx: advert{src: netip.MustParseAddr("192.168.0.13"), prio: 200}, drop: DropOwn, next: T + 1400*time.Millisecond, st: Master},
			}),
		},
		{
			name: "master: AlsoAccept is received, not sent",
			steps: seq(toMaster, []step{
				{at: T + 300*time.Millisecond, op: "reconf", mod: func(c *Config) { c.AlsoAccept = [][]netip.Addr{{vip2}} }, next: T + time.Second, st: Master},
				{at: T + 400*time.Millisecond, op: "rx", rx: advert{src: lower, prio: 50, addrs: []netip.Addr{vip2}}, want: []Action{send(100), announce("lower priority advert from 192.168.0.9 (50)")}, next: T + 1400*time.Millisecond, st: Master},
				{at: T + 500*time.Millisecond, op: "rx", rx: advert{src: lower, prio: 50}, want: []Action{send(100), announce("lower priority advert from 192.168.0.9 (50)")}, next: T + 1500*time.Millisecond, st: Master},
				// Dropped again once no longer accepted.
				{at: T + 600*time.Millisecond, op: "reconf", mod: func(c *Config) { c.AlsoAccept = nil }, next: T + 1500*time.Millisecond, st: Master},
				{at: T + 700*time.Millisecond, op: "rx", rx: advert{src: lower, prio: 200, addrs: []netip.Addr{vip2}}, drop: DropAddrList, next: T + 1500*time.Millisecond, st: Master},
			}),
		},
		{
			name: "master: Preempt, PreemptDelay, Accept and TwoNode change nothing at once",
			steps: seq(toMaster, []step{
				{at: T + 300*time.Millisecond, op: "reconf", mod: func(c *Config) {
					c.Preempt, c.PreemptDelay, c.Accept, c.TwoNode = false, 5*time.Second, true, true
				}, next: T + time.Second, st: Master},
				{at: T + time.Second, op: "tick", want: []Action{send(100)}, next: T + 2*time.Second, st: Master},
			}),
		},
		{
			name: "master: a new base priority leaves the effective one to SetPriority",
			steps: seq(toMaster, []step{
				{at: T + 300*time.Millisecond, op: "reconf", mod: func(c *Config) { c.Priority = 150 }, next: T + time.Second, st: Master},
				{at: T + time.Second, op: "tick", want: []Action{send(100)}, next: T + 2*time.Second, st: Master},
				{at: T + 1100*time.Millisecond, op: "prio", arg: 150, want: []Action{send(150)}, next: T + 2100*time.Millisecond, st: Master},
			}),
		},
		{
			name: "owner: stays master and sends new Addrs",
			cfg:  func(c *Config) { c.Priority = 255 },
			steps: []step{
				{op: "start", want: []Action{become(Initialize, Master, "startup: address owner (priority 255)"), send(255)}, next: time.Second, st: Master},
				{at: 500 * time.Millisecond, op: "reconf", mod: func(c *Config) { c.Addrs = []netip.Addr{vip, vip2} }, want: []Action{send(255)}, next: 1500 * time.Millisecond, st: Master},
			},
		},
		{
			name: "v3 backup before any master: new Advert re-arms Master_Down_Timer from now",
			steps: []step{
				{op: "start", want: []Action{become(Initialize, Backup, "startup")}, next: down100, st: Backup},
				// 3*2s + 156/256*2s = 7.21875s
				{at: time.Second, op: "reconf", mod: func(c *Config) { c.Advert = 2 * time.Second }, next: time.Second + 7218750*time.Microsecond, st: Backup},
				{at: time.Second + 7218750*time.Microsecond, op: "tick", want: []Action{become(Backup, Master, "master down timer expired"), send(100)}, next: 3*time.Second + 7218750*time.Microsecond, st: Master},
			},
		},
		{
			name: "v3 backup: an unchanged Advert does not re-arm",
			steps: []step{
				{op: "start", want: []Action{become(Initialize, Backup, "startup")}, next: down100, st: Backup},
				{at: time.Second, op: "reconf", mod: func(c *Config) { c.Preempt = false }, next: down100, st: Backup},
			},
		},
		{
			name: "v3 backup keeps the interval learned from its master",
			steps: []step{
				{op: "start", want: []Action{become(Initialize, Backup, "startup")}, next: down100, st: Backup},
				{at: time.Second, op: "rx", rx: advert{src: higher, prio: 200}, next: time.Second + down100, st: Backup},
				{at: 2 * time.Second, op: "reconf", mod: func(c *Config) { c.Advert = 2 * time.Second }, next: time.Second + down100, st: Backup},
				{at: 3 * time.Second, op: "rx", rx: advert{src: higher, prio: 200}, next: 3*time.Second + down100, st: Backup},
			},
		},
		{
			name: "v2 backup follows the new Advert",
			cfg:  func(c *Config) { c.Version = 2 },
			steps: []step{
				{op: "start", want: []Action{become(Initialize, Backup, "startup")}, next: down100, st: Backup},
				{at: time.Second, op: "rx", rx: advert{src: higher, prio: 200, version: 2}, next: time.Second + down100, st: Backup},
				// v2 Skew_Time is in seconds: 3*2s + 156/256 s.
				{at: 2 * time.Second, op: "reconf", mod: func(c *Config) { c.Advert = 2 * time.Second }, next: 8*time.Second + skew100, st: Backup},
				{at: 3 * time.Second, op: "rx", rx: advert{src: higher, prio: 200, version: 2}, drop: DropInterval, next: 8*time.Second + skew100, st: Backup},
				{at: 3 * time.Second, op: "rx", rx: advert{src: higher, prio: 200, version: 2, interval: 2 * time.Second}, next: 9*time.Second + skew100, st: Backup},
			},
		},
		{
			name: "v2 backup keeps a pending Skew_Time",
			cfg:  func(c *Config) { c.Version = 2 },
			steps: []step{
				{op: "start", want: []Action{become(Initialize, Backup, "startup")}, next: down100, st: Backup},
				{at: time.Second, op: "rx", rx: advert{src: higher, prio: 200, version: 2}, next: time.Second + down100, st: Backup},
				{at: 2 * time.Second, op: "rx", rx: advert{src: higher, prio: 0, version: 2}, next: 2*time.Second + skew100, st: Backup},
				{at: 2100 * time.Millisecond, op: "reconf", mod: func(c *Config) { c.Advert = 2 * time.Second }, next: 2*time.Second + skew100, st: Backup},
				{at: 2*time.Second + skew100, op: "tick", want: []Action{become(Backup, Master, "priority 0 from 192.168.0.12, skew time expired"), send(100)}, next: 4*time.Second + skew100, st: Master},
			},
		},
		{
			name: "backup: Preempt turned off cancels a pending preemption",
			cfg:  func(c *Config) { c.PreemptDelay = 5 * time.Second },
			steps: []step{
				{op: "start", want: []Action{become(Initialize, Backup, "startup")}, next: down100, st: Backup},
				{at: time.Second, op: "rx", rx: advert{src: higher, prio: 50}, next: time.Second + down100, st: Backup},
				{at: 2 * time.Second, op: "rx", rx: advert{src: higher, prio: 50}, next: 2*time.Second + down100, st: Backup},
				{at: 3 * time.Second, op: "rx", rx: advert{src: higher, prio: 50}, next: 6 * time.Second, st: Backup},
				{at: 3500 * time.Millisecond, op: "reconf", mod: func(c *Config) { c.Preempt = false }, next: 3*time.Second + down100, st: Backup},
				{at: 4 * time.Second, op: "rx", rx: advert{src: higher, prio: 50}, next: 4*time.Second + down100, st: Backup},
				{at: 6 * time.Second, op: "tick", next: 4*time.Second + down100, st: Backup},
			},
		},
		{
			name: "backup: a shorter PreemptDelay counts from the first sighting",
			cfg:  func(c *Config) { c.PreemptDelay = 5 * time.Second },
			steps: []step{
				{op: "start", want: []Action{become(Initialize, Backup, "startup")}, next: down100, st: Backup},
				{at: time.Second, op: "rx", rx: advert{src: higher, prio: 50}, next: time.Second + down100, st: Backup},
				{at: 2 * time.Second, op: "reconf", mod: func(c *Config) { c.PreemptDelay = 2 * time.Second }, next: 3 * time.Second, st: Backup},
				{at: 3 * time.Second, op: "tick", want: []Action{become(Backup, Master, "preempt delay 2s expired, master 192.168.0.12 has lower priority (50 < 100)"), send(100)}, next: 4 * time.Second, st: Master},
			},
		},
		{
			name: "backup: a PreemptDelay already served preempts at the next tick",
			cfg:  func(c *Config) { c.PreemptDelay = 5 * time.Second },
			steps: []step{
				{op: "start", want: []Action{become(Initialize, Backup, "startup")}, next: down100, st: Backup},
				{at: time.Second, op: "rx", rx: advert{src: higher, prio: 50}, next: time.Second + down100, st: Backup},
				{at: 3 * time.Second, op: "rx", rx: advert{src: higher, prio: 50}, next: 6 * time.Second, st: Backup},
				{at: 3500 * time.Millisecond, op: "reconf", mod: func(c *Config) { c.PreemptDelay = time.Second }, next: 2 * time.Second, st: Backup},
				{at: 3500 * time.Millisecond, op: "tick", want: []Action{become(Backup, Master, "preempt delay 1s expired, master 192.168.0.12 has lower priority (50 < 100)"), send(100)}, next: 4500 * time.Millisecond, st: Master},
			},
		},
		{
			name: "backup: a longer PreemptDelay",
			cfg:  func(c *Config) { c.PreemptDelay = 2 * time.Second },
			steps: []step{
				{op: "start", want: []Action{become(Initialize, Backup, "startup")}, next: down100, st: Backup},
				{at: time.Second, op: "rx", rx: advert{src: higher, prio: 50}, next: 3 * time.Second, st: Backup},
				{at: 2 * time.Second, op: "reconf", mod: func(c *Config) { c.PreemptDelay = 5 * time.Second }, next: time.Second + down100, st: Backup},
				{at: 3 * time.Second, op: "rx", rx: advert{src: higher, prio: 50}, next: 6 * time.Second, st: Backup},
				{at: 6 * time.Second, op: "tick", want: []Action{become(Backup, Master, "preempt delay 5s expired, master 192.168.0.12 has lower priority (50 < 100)"), send(100)}, next: 7 * time.Second, st: Master},
			},
		},
		{
			name: "backup: new Addrs drop the master's old list unless also accepted",
			steps: []step{
				{op: "start", want: []Action{become(Initialize, Backup, "startup")}, next: down100, st: Backup},
				{at: time.Second, op: "rx", rx: advert{src: higher, prio: 200}, next: time.Second + down100, st: Backup},
				{at: 1500 * time.Millisecond, op: "reconf", mod: func(c *Config) { c.Addrs = []netip.Addr{vip2} }, next: time.Second + down100, st: Backup},
				{at: 2 * time.Second, op: "rx", rx: advert{src: higher, prio: 200}, drop: DropAddrList, next: time.Second + down100, st: Backup},
				{at: 2500 * time.Millisecond, op: "reconf", mod: func(c *Config) { c.AlsoAccept = [][]netip.Addr{{vip}} }, next: time.Second + down100, st: Backup},
				{at: 3 * time.Second, op: "rx", rx: advert{src: higher, prio: 200}, next: 3*time.Second + down100, st: Backup},
				{at: 4 * time.Second, op: "rx", rx: advert{src: higher, prio: 200, addrs: []netip.Addr{vip2}}, next: 4*time.Second + down100, st: Backup},
			},
		},
		{
			name: "backup: TwoNode turned on takes over at once on priority 0",
			steps: []step{
				{op: "start", want: []Action{become(Initialize, Backup, "startup")}, next: down100, st: Backup},
				{at: time.Second, op: "rx", rx: advert{src: higher, prio: 200}, next: time.Second + down100, st: Backup},
				{at: 1500 * time.Millisecond, op: "reconf", mod: func(c *Config) { c.TwoNode = true }, next: time.Second + down100, st: Backup},
				{at: 2 * time.Second, op: "rx", rx: advert{src: higher, prio: 0}, want: []Action{become(Backup, Master, "priority 0 from 192.168.0.12"), send(100)}, next: 3 * time.Second, st: Master},
			},
		},
		{
			name: "backup: a higher base priority preempts only through SetPriority",
			steps: []step{
				{op: "start", want: []Action{become(Initialize, Backup, "startup")}, next: down100, st: Backup},
				{at: time.Second, op: "rx", rx: advert{src: higher, prio: 150}, next: time.Second + down100, st: Backup},
				{at: 1500 * time.Millisecond, op: "reconf", mod: func(c *Config) { c.Priority = 200 }, next: time.Second + down100, st: Backup},
				{at: 1600 * time.Millisecond, op: "prio", arg: 200, want: []Action{become(Backup, Master, "priority raised to 200 above master 192.168.0.12 (150)"), send(200)}, next: 2600 * time.Millisecond, st: Master},
			},
		},
		{
			name: "initialize: Start uses the new config",
			steps: []step{
				{op: "reconf", mod: func(c *Config) { c.Advert = 2 * time.Second }, next: -1, st: Initialize},
				{at: time.Second, op: "start", want: []Action{become(Initialize, Backup, "startup")}, next: time.Second + 7218750*time.Microsecond, st: Backup},
			},
		},
		{
			name: "fault: clearing uses the new config",
			steps: []step{
				{op: "fault", want: []Action{become(Initialize, Fault, "fault: eth0 down")}, next: -1, st: Fault},
				{at: time.Second, op: "reconf", mod: func(c *Config) { c.Advert = 2 * time.Second }, next: -1, st: Fault},
				{at: 2 * time.Second, op: "clear", want: []Action{become(Fault, Backup, "fault cleared")}, next: 2*time.Second + 7218750*time.Microsecond, st: Backup},
			},
		},
	}
	runCases(t, tests)
}

func TestReconfigureRefused(t *testing.T) {
	tests := []struct {
		name  string
		owner bool
		mod   func(c *Config)
		err   error
	}{
		{"VRID", false, func(c *Config) { c.VRID = 52 }, ErrRestart},
		{"version", false, func(c *Config) { c.Version = 2 }, ErrRestart},
		{"primary family", false, func(c *Config) { c.Primary = ll1; c.Addrs = ips("2001:db8::1") }, ErrRestart},
		{"becomes owner", false, func(c *Config) { c.Priority = 255 }, ErrRestart},
		{"stops being owner", true, func(c *Config) { c.Priority = 254 }, ErrRestart},
		{"invalid beats restart", false, func(c *Config) { c.VRID = 52; c.Advert = 0 }, ErrConfig},
		{"priority 0", false, func(c *Config) { c.Priority = 0 }, ErrConfig},
		{"advert 0", false, func(c *Config) { c.Advert = 0 }, ErrConfig},
		{"negative preempt delay", false, func(c *Config) { c.PreemptDelay = -time.Second }, ErrConfig},
		{"no addrs", false, func(c *Config) { c.Addrs = nil }, ErrConfig},
		{"empty AlsoAccept list", false, func(c *Config) { c.AlsoAccept = [][]netip.Addr{{vip2}, {}} }, ErrConfig},
		{"duplicate in AlsoAccept", false, func(c *Config) { c.AlsoAccept = [][]netip.Addr{{vip2, vip2}} }, ErrConfig},
		{"AlsoAccept of another family", false, func(c *Config) { c.AlsoAccept = [][]netip.Addr{ips("2001:db8::1")} }, ErrConfig},
	}
	for _, tt := range tests {
		for _, st := range []State{Backup, Master} {
			if tt.owner && st == Backup {
				continue // the owner starts as master
			}
			t.Run(tt.name+"/"+st.String(), func(t *testing.T) {
				cfg := baseConfig()
				if tt.owner {
					cfg.Priority = 255
				}
				m, err := NewMachine(cfg)
				if err != nil {
					t.Fatal(err)
				}
				m.Start(t0)
				if m.Status().State != st {
					m.Tick(t0.Add(down100))
				}
				at := down100 + 300*time.Millisecond
				run(t, m, []step{{at: at, op: "reconf", mod: tt.mod, err: tt.err, next: m.Deadline().Sub(t0), st: st}})
			})
		}
	}
}

func TestReconfigureKeepsStatus(t *testing.T) {
	m, err := NewMachine(baseConfig())
	if err != nil {
		t.Fatal(err)
	}
	run(t, m, toMaster)
	now := t0.Add(down100 + 300*time.Millisecond)
	acts, err := m.Reconfigure(now, Config{
		VRID: 51, Version: 3, Priority: 150, Advert: 2 * time.Second,
		Primary: netip.MustParseAddr("::ffff:192.168.0.11"), Addrs: []netip.Addr{vip2, vip},
		AlsoAccept: [][]netip.Addr{{netip.MustParseAddr("::ffff:192.168.0.210")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Action{send(100)}, acts); diff != "" {
		t.Fatalf("actions (-want +got):\n%s", diff)
	}
	want := Status{
		State: Master, Since: t0.Add(down100), Priority: 100, BasePriority: 150,
		MasterAddr: self, MasterPriority: 100, MasterInterval: 2 * time.Second,
		Counters: Counters{TxAdverts: 2, Transitions: 2},
	}
	if diff := cmp.Diff(want, m.Status(), cmpAddrs); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	wantAdv := &Packet{Version: 3, VRID: 51, Priority: 100, Interval: 2 * time.Second, Addrs: []netip.Addr{vip2, vip}}
	if diff := cmp.Diff(wantAdv, m.Advert(100), cmpAddrs); diff != "" {
		t.Errorf("advert (-want +got):\n%s", diff)
	}
	// The primary and AlsoAccept are normalised: a 4-in-6 source is ours.
	if _, r := m.Receive(now, advert{src: self, prio: 200}.bytes(t), self, mcast4, 255); r != DropOwn {
		t.Errorf("own advert: drop %v, want own", r)
	}
	if _, r := m.Receive(now, advert{src: lower, prio: 50}.bytes(t), lower, mcast4, 255); r != DropNone {
		t.Errorf("advert with the also-accepted list: drop %v", r)
	}
}

// director is one side of a simulated pair.
type director struct {
	m       *Machine
	cfg     Config
	becomes []string // "at from->to reason", at from t0
}

// wire is two directors on one lossless, instant link, clocked by hand:
// every advert one sends is marshalled and handed to the other's Receive.
type wire struct {
	t   *testing.T
	now time.Time
	a   *director
	b   *director
}

func newWire(t *testing.T, prioA, prioB uint8, addrs []netip.Addr) *wire {
	t.Helper()
	w := &wire{t: t, now: t0}
	for i, d := range []**director{&w.a, &w.b} {
		cfg := baseConfig()
		cfg.Primary, cfg.Priority, cfg.Addrs, cfg.TwoNode = self, prioA, addrs, true
		if i == 1 {
			cfg.Primary, cfg.Priority = higher, prioB
		}
		m, err := NewMachine(cfg)
		if err != nil {
			t.Fatal(err)
		}
		*d = &director{m: m, cfg: cfg}
	}
	w.exec(w.a, w.a.m.Start(w.now))
	w.exec(w.b, w.b.m.Start(w.now))
	return w
}

func (w *wire) other(d *director) *director {
	if d == w.a {
		return w.b
	}
	return w.a
}

// exec carries out d's actions as the runner would.
func (w *wire) exec(d *director, acts []Action) {
	w.t.Helper()
	for _, a := range acts {
		switch a.Kind {
		case ActBecome:
			d.becomes = append(d.becomes, fmt.Sprintf("%v %v->%v %s", w.now.Sub(t0), a.From, a.To, a.Reason))
		case ActSend:
			b, err := d.m.Advert(a.Priority).Marshal(d.cfg.Primary, mcast4)
			if err != nil {
				w.t.Fatal(err)
			}
			to := w.other(d)
			acts, _ := to.m.Receive(w.now, b, d.cfg.Primary, mcast4, 255)
			w.exec(to, acts)
		}
	}
}

// runUntil advances the clock to at (from t0), ticking each machine at its
// deadlines.
func (w *wire) runUntil(at time.Duration) {
	end := t0.Add(at)
	for {
		var next *director
		for _, d := range []*director{w.a, w.b} {
			dl := d.m.Deadline()
			if !dl.IsZero() && !dl.After(end) && (next == nil || dl.Before(next.m.Deadline())) {
				next = d
			}
		}
		if next == nil {
			w.now = end
			return
		}
		if dl := next.m.Deadline(); dl.After(w.now) {
			w.now = dl
		}
		w.exec(next, next.m.Tick(w.now))
	}
}

// reconf reconfigures d at at to advertise addrs and accept also besides.
func (w *wire) reconf(at time.Duration, d *director, addrs []netip.Addr, also ...[]netip.Addr) {
	w.t.Helper()
	w.runUntil(at)
	d.cfg.Addrs, d.cfg.AlsoAccept = addrs, also
	acts, err := d.m.Reconfigure(w.now, d.cfg)
	if err != nil {
		w.t.Fatalf("Reconfigure at %v: %v", at, err)
	}
	for _, a := range acts {
		if a.Kind == ActBecome {
			w.t.Fatalf("Reconfigure at %v returned %+v", at, a)
		}
	}
	w.exec(d, acts)
}

// TestRollingReload replays a config push that adds a VIP, reaching
// director A 2s before B: A first advertises the old list L1 while accepting
// L1 and L2, B then advertises L2 and accepts both, A follows, and at last
// both accept only L2. Neither side may drop the other's adverts, nor change
// state but as asked.
func TestRollingReload(t *testing.T) {
	l1, l2 := []netip.Addr{vip}, []netip.Addr{vip, vip2}
	tests := []struct {
		name         string
		prioA, prioB uint8
		resignAt     time.Duration       // A resigns then, if set
		want         map[string][]string // state changes after the opening, by director
	}{
		{name: "A master, B backup", prioA: 200, prioB: 100},
		{name: "A backup, B master", prioA: 100, prioB: 200},
		{
			name: "A master hands over to B between the reloads", prioA: 200, prioB: 100, resignAt: 13 * time.Second,
			want: map[string][]string{
				"A": {"13s MASTER->BACKUP resigned (planned handover)"},
				"B": {"13s BACKUP->MASTER priority 0 from 192.168.0.11"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWire(t, tt.prioA, tt.prioB, l1)
			w.runUntil(10 * time.Second)
			master, backup := w.a, w.b
			if tt.prioB > tt.prioA {
				master, backup = w.b, w.a
			}
			if s, b := master.m.Status().State, backup.m.Status().State; s != Master || b != Backup {
				t.Fatalf("opening: master %v, backup %v", s, b)
			}
			w.a.becomes, w.b.becomes = nil, nil

			w.reconf(10*time.Second, w.a, l1, l2)
			w.reconf(12*time.Second, w.b, l2, l1)
			if tt.resignAt > 0 {
				w.runUntil(tt.resignAt)
				w.exec(w.a, w.a.m.Resign(w.now))
			}
			w.reconf(14*time.Second, w.a, l2, l1)
			w.reconf(16*time.Second, w.a, l2)
			w.reconf(17*time.Second, w.b, l2)
			w.runUntil(40 * time.Second)

			got := map[string][]string{}
			for name, d := range map[string]*director{"A": w.a, "B": w.b} {
				if d.becomes != nil {
					got[name] = d.becomes
				}
				if n := d.m.Status().Counters.Drops[DropAddrList]; n != 0 {
					t.Errorf("%s dropped %d adverts for their address list", name, n)
				}
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("state changes (-want +got):\n%s", diff)
			}
			if a, b := w.a.m.Status().State, w.b.m.Status().State; a == b {
				t.Errorf("both %v at the end", a)
			}
		})
	}
}

// TestRollingReloadWithoutAlsoAccept is today's bug in pure logic: A, the
// master, advertises its new list while B still accepts only the old one.
// B drops A's adverts, takes over after Master_Down_Interval, and A drops
// B's in turn: two masters.
func TestRollingReloadWithoutAlsoAccept(t *testing.T) {
	w := newWire(t, 200, 100, []netip.Addr{vip})
	w.runUntil(10 * time.Second)
	w.a.becomes, w.b.becomes = nil, nil
	w.reconf(10*time.Second, w.a, []netip.Addr{vip, vip2})
	w.runUntil(20 * time.Second)

	// A's last advert with the old list left at 9.21875s (master since
	// 3s + 56/256 s); B's Master_Down_Interval is 3s + 156/256 s.
	want := map[string][]string{"B": {"12.828125s BACKUP->MASTER master down timer expired"}}
	got := map[string][]string{}
	for name, d := range map[string]*director{"A": w.a, "B": w.b} {
		if d.becomes != nil {
			got[name] = d.becomes
		}
		if st := d.m.Status().State; st != Master {
			t.Errorf("%s is %v, want MASTER (the dual master this reproduces)", name, st)
		}
		if n := d.m.Status().Counters.Drops[DropAddrList]; n == 0 {
			t.Errorf("%s dropped no adverts for their address list", name)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("state changes (-want +got):\n%s", diff)
	}
}

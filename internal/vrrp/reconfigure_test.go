package vrrp

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
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

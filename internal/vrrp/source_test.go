package vrrp

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

var stranger = netip.MustParseAddr("192.168.0.66") // no director of the site

// onlyDirectors lets adverts come from the two directors only.
func onlyDirectors(c *Config) {
	c.Sources = []netip.Prefix{netip.PrefixFrom(self, 32), netip.PrefixFrom(higher, 32)}
}

// A stranger's adverts change nothing, whatever they carry, and each is a
// drop with its reason: unknown_source for one that would have been acted
// upon, the packet's own fault for a broken one.
func TestUnknownSources(t *testing.T) {
	v6 := func(c *Config) {
		c.Primary = netip.MustParseAddr("fe80::11")
		c.Addrs = ips("2001:db8::210")
	}
	v6addrs := ips("2001:db8::210")
	ll12, ll99 := netip.MustParseAddr("fe80::12"), netip.MustParseAddr("fe80::99")
	runCases(t, []machineCase{
		{name: "master ignores a stranger's priority 255", cfg: onlyDirectors, steps: seq(toMaster, []step{
			{at: down100 + 100*time.Millisecond, op: "rx", rx: advert{src: stranger, prio: 255}, drop: DropUnknownSource, next: down100 + time.Second, st: Master},
			{at: down100 + 200*time.Millisecond, op: "rx", rx: advert{src: stranger, prio: 255, addrs: []netip.Addr{stranger}}, drop: DropUnknownSource, next: down100 + time.Second, st: Master},
			// The director's own higher priority still wins.
			{at: down100 + 300*time.Millisecond, op: "rx", rx: advert{src: higher, prio: 255}, want: []Action{become(Master, Backup, "higher priority advert from 192.168.0.12 (255)")}, next: down100 + 300*time.Millisecond + down100, st: Backup},
		})},
		{name: "backup ignores a stranger's priority 0 (no takeover)", cfg: func(c *Config) { onlyDirectors(c); c.TwoNode = true }, steps: []step{
			{op: "start", want: []Action{become(Initialize, Backup, "startup")}, next: down100, st: Backup},
			{at: time.Second, op: "rx", rx: advert{src: higher, prio: 200}, next: time.Second + down100, st: Backup},
			{at: 2 * time.Second, op: "rx", rx: advert{src: stranger, prio: 0}, drop: DropUnknownSource, next: time.Second + down100, st: Backup},
			// Nor does a stranger's lower priority make it preempt.
			{at: 2 * time.Second, op: "rx", rx: advert{src: stranger, prio: 1}, drop: DropUnknownSource, next: time.Second + down100, st: Backup},
		}},
		{name: "other reasons come first", cfg: onlyDirectors, steps: []step{
			{op: "start", want: []Action{become(Initialize, Backup, "startup")}, next: down100, st: Backup},
			{at: time.Second, op: "rx", rx: advert{src: stranger, prio: 200, vrid: 52}, drop: DropVRID, next: down100, st: Backup},
			{at: time.Second, op: "rx", rx: advert{src: stranger, prio: 200, version: 2}, drop: DropVersion, next: down100, st: Backup},
			{at: time.Second, op: "rx", rx: advert{src: stranger, prio: 200, addrs: []netip.Addr{stranger}}, drop: DropAddrList, next: down100, st: Backup},
			{at: time.Second, op: "rx", rx: advert{src: self, prio: 200}, drop: DropOwn, next: down100, st: Backup},
		}},
		{name: "no sources: anyone is heard", steps: []step{
			{op: "start", want: []Action{become(Initialize, Backup, "startup")}, next: down100, st: Backup},
			{at: time.Second, op: "rx", rx: advert{src: stranger, prio: 200}, next: time.Second + down100, st: Backup},
		}},
		{name: "IPv6: a stranger's link-local", cfg: func(c *Config) { v6(c); c.Sources = []netip.Prefix{netip.PrefixFrom(ll12, 128)} }, steps: []step{
			{op: "start", want: []Action{become(Initialize, Backup, "startup")}, next: down100, st: Backup},
			{at: time.Second, op: "rx", rx: advert{src: ll99, prio: 200, addrs: v6addrs}, drop: DropUnknownSource, next: down100, st: Backup},
			{at: time.Second, op: "rx", rx: advert{src: netip.MustParseAddr("2001:db8::12"), prio: 200, addrs: v6addrs}, drop: DropUnknownSource, next: down100, st: Backup},
			{at: time.Second, op: "rx", rx: advert{src: ll12, prio: 200, addrs: v6addrs}, next: time.Second + down100, st: Backup},
			// A learned link-local (the pair link's) is added in place.
			{at: 2 * time.Second, op: "reconf", mod: func(c *Config) { c.Sources = append(c.Sources, netip.PrefixFrom(ll99, 128)) }, next: time.Second + down100, st: Backup},
			{at: 2 * time.Second, op: "rx", rx: advert{src: ll99, prio: 200, addrs: v6addrs}, next: 2*time.Second + down100, st: Backup},
		}},
		{name: "IPv6: any link-local, no global source", cfg: func(c *Config) { v6(c); c.Sources = []netip.Prefix{netip.MustParsePrefix("fe80::/10")} }, steps: []step{
			{op: "start", want: []Action{become(Initialize, Backup, "startup")}, next: down100, st: Backup},
			{at: time.Second, op: "rx", rx: advert{src: netip.MustParseAddr("2001:db8::12"), prio: 200, addrs: v6addrs}, drop: DropUnknownSource, next: down100, st: Backup},
			{at: time.Second, op: "rx", rx: advert{src: ll99, prio: 200, addrs: v6addrs}, next: time.Second + down100, st: Backup},
		}},
	})
}

func TestSourcesConfig(t *testing.T) {
	for name, sources := range map[string][]netip.Prefix{
		"invalid prefix":     {{}},
		"IPv4-mapped prefix": {netip.MustParsePrefix("::ffff:192.168.0.12/128")},
	} {
		cfg := baseConfig()
		cfg.Sources = sources
		if _, err := NewMachine(cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: NewMachine: %v, want ErrConfig", name, err)
		}
	}
	// Host bits are masked: 192.168.0.77/24 covers the stranger.
	cfg := baseConfig()
	cfg.Sources = []netip.Prefix{netip.MustParsePrefix("192.168.0.77/24")}
	m, err := NewMachine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m.Start(t0)
	if _, r := m.Receive(t0, advert{src: stranger, prio: 200}.bytes(t), stranger, mcast4, 255); r != DropNone {
		t.Errorf("advert from %v inside %v: drop %v", stranger, cfg.Sources[0], r)
	}
}

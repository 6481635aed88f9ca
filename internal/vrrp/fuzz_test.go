package vrrp

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fuzzPeers are the (src, dst) pairs a fuzz input's first byte picks from.
var fuzzPeers = [][2]netip.Addr{
	{netip.MustParseAddr("192.168.0.12"), mcast4},
	{netip.MustParseAddr("192.168.0.11"), mcast4}, // our own primary
	{netip.MustParseAddr("192.168.0.9"), netip.MustParseAddr("192.168.0.11")},
	{netip.MustParseAddr("fe80::12"), mcast6},
}

func fuzzSeeds(f *testing.F) {
	for _, s := range []struct {
		peer int
		p    Packet
	}{
		{0, Packet{Version: 2, VRID: 51, Priority: 100, Interval: time.Second, Addrs: ips("192.168.0.210")}},
		{0, Packet{Version: 3, VRID: 51, Priority: 200, Interval: time.Second, Addrs: ips("192.168.0.210")}},
		{0, Packet{Version: 3, VRID: 51, Priority: 0, Interval: time.Second, Addrs: ips("192.168.0.210")}},
		{0, Packet{Version: 3, VRID: 51, Priority: 50, Interval: time.Second, Addrs: ips("192.168.0.210")}},
		{2, Packet{Version: 3, VRID: 51, Priority: 255, Interval: 40950 * time.Millisecond, Addrs: ips("10.0.0.1", "10.0.0.2")}},
		{3, Packet{Version: 3, VRID: 51, Priority: 100, Interval: 10 * time.Millisecond, Addrs: ips("2001:db8::1", "fe80::1")}},
	} {
		b, err := s.p.Marshal(fuzzPeers[s.peer][0], fuzzPeers[s.peer][1])
		if err != nil {
			f.Fatal(err)
		}
		f.Add(append([]byte{byte(s.peer)}, b...))
	}
	f.Add([]byte{0})
	f.Add([]byte{1, 0x31, 0x33, 0x64, 0xff})
}

// FuzzParse: Parse never panics, and what it accepts re-encodes to an equal
// packet.
func FuzzParse(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		peer := fuzzPeers[int(data[0])%len(fuzzPeers)]
		p, r := Parse(data[1:], peer[0], peer[1])
		if (p == nil) != (r != DropNone) || r >= NumDropReasons {
			t.Fatalf("Parse = %+v, %v", p, r)
		}
		if p == nil {
			return
		}
		b, err := p.Marshal(peer[0], peer[1])
		if err != nil {
			t.Fatalf("Marshal of parsed %+v: %v", p, err)
		}
		q, r := Parse(b, peer[0], peer[1])
		if r != DropNone {
			t.Fatalf("re-Parse: %v", r)
		}
		if diff := cmp.Diff(p, q, cmpAddrs); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}

// FuzzMachine feeds arbitrary bytes to a running machine, interleaved with
// ticks, priority changes and faults chosen by the input, and checks the
// invariants the runner relies on.
func FuzzMachine(f *testing.F) {
	chunk := func(op, dt byte, a advert) []byte {
		b := a.bytes(f)
		return append([]byte{op, dt, byte(len(b))}, b...)
	}
	f.Add(cat(chunk(0, 100, advert{src: higher, prio: 200}), chunk(3, 250, advert{src: lower, prio: 1}), []byte{3, 250, 0}, chunk(1, 100, advert{src: higher, prio: 50})))
	f.Add(cat([]byte{0x80, 0, 0}, chunk(0, 100, advert{src: higher, prio: 0}), []byte{4, 10, 0, 5, 10, 0, 0x85, 10, 0}, chunk(0, 100, advert{src: lower, prio: 100})))
	f.Add(cat([]byte{3, 255, 0, 3, 255, 0, 6, 10, 0}, chunk(2, 10, advert{src: higher, prio: 150, version: 2}), []byte{13, 10, 0, 20, 10, 0}))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := baseConfig()
		if len(data) > 0 && data[0]&0x80 != 0 {
			cfg.TwoNode = true
			cfg.PreemptDelay = 2 * time.Second
		}
		m, err := NewMachine(cfg)
		if err != nil {
			t.Fatal(err)
		}
		now := t0
		m.Start(now)
		// Chunks: [op, dt(10ms units), len, bytes...].
		for len(data) >= 3 {
			op, dt, n := data[0], data[1], int(data[2])
			data = data[3:]
			n = min(n, len(data))
			body := data[:n]
			data = data[n:]
			now = now.Add(time.Duration(dt) * 10 * time.Millisecond)
			if d := m.Deadline(); !d.IsZero() && now.After(d) && op%7 != 0 {
				now = d // the runner ticks on time, mostly
				check(t, m, now, true, m.Tick(now))
			}
			var acts []Action
			switch op % 7 {
			case 0, 1, 2:
				peer := fuzzPeers[int(op/7)%len(fuzzPeers)]
				var r DropReason
				acts, r = m.Receive(now, body, peer[0], peer[1], 255-int(op%3/2))
				if r != DropNone && acts != nil {
					t.Fatalf("drop %v with actions %v", r, acts)
				}
			case 3:
				acts = m.Tick(now)
			case 4:
				acts = m.SetPriority(now, op)
			case 5:
				acts = m.SetFault(now, op&0x80 != 0, "fuzz")
			case 6:
				switch op / 7 % 3 {
				case 0:
					acts = m.Resign(now)
				case 1:
					acts = m.Stop(now)
				default:
					acts = m.Start(now)
				}
			}
			check(t, m, now, op%7 == 3, acts)
		}
	})
}

// check asserts what the runner relies on after any call. A deadline may be
// in the past (the runner was late: it must tick at once), but never after Tick.
func check(t *testing.T, m *Machine, now time.Time, ticked bool, acts []Action) {
	t.Helper()
	s := m.Status()
	d := m.Deadline()
	switch s.State {
	case Master, Backup:
		if d.IsZero() {
			t.Fatalf("%v without a deadline", s.State)
		}
	default:
		if !d.IsZero() {
			t.Fatalf("%v with deadline %v", s.State, d)
		}
	}
	if ticked && !d.IsZero() && !d.After(now) {
		t.Fatalf("%v: deadline %v not after now %v after Tick", s.State, d, now)
	}
	if s.Priority == 0 || s.Priority == 255 && s.BasePriority != 255 {
		t.Fatalf("effective priority %d", s.Priority)
	}
	if s.State != Fault && s.Fault != "" {
		t.Fatalf("fault %q in %v", s.Fault, s.State)
	}
	last := -1
	for i, a := range acts {
		switch a.Kind {
		case ActBecome:
			if a.From == a.To || a.Reason == "" {
				t.Fatalf("action %d: %+v", i, a)
			}
			last = i
		case ActSend, ActAnnounce:
		default:
			t.Fatalf("action %d: kind %v", i, a.Kind)
		}
	}
	if last < 0 {
		return
	}
	if to := acts[last].To; to != s.State {
		t.Fatalf("last transition to %v, state %v", to, s.State)
	}
	if s.State == Master && (last+1 >= len(acts) || acts[last+1] != Action{Kind: ActSend, Priority: s.Priority}) {
		t.Fatalf("became master without an advert: %+v", acts)
	}
}

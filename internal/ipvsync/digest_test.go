package ipvsync

import (
	"slices"
	"testing"
)

func TestDigest(t *testing.T) {
	base := desired(nil, web(), web2())
	// Order of services and of real servers does not matter.
	swapped := desired(nil, web2(), web())
	slices.Reverse(swapped.Services[1].Dests)
	if base.Digest() != swapped.Digest() {
		t.Errorf("digest depends on order: %s vs %s", base.Digest(), swapped.Digest())
	}
	// Health and backends are status, not table: the same dests give the
	// same digest.
	st := desired(nil, web(), web2())
	st.Services[0].Backends = nil
	st.Services[0].Down = true
	if base.Digest() != st.Digest() {
		t.Errorf("digest depends on status fields")
	}
	// Every field the kernel holds changes it.
	for name, mut := range map[string]func(*Table){
		"weight":    func(t *Table) { t.Services[0].Dests[0].Weight = 0 },
		"forward":   func(t *Table) { t.Services[0].Dests[0].Forward = "tun" },
		"dest gone": func(t *Table) { t.Services[0].Dests = t.Services[0].Dests[:1] },
		"scheduler": func(t *Table) { t.Services[1].Scheduler = "rr" },
		"timeout":   func(t *Table) { t.Services[1].Timeout = 30 },
		"service":   func(t *Table) { t.Services = t.Services[:1] },
	} {
		c := desired(nil, web(), web2())
		mut(&c)
		if c.Digest() == base.Digest() {
			t.Errorf("%s: digest unchanged", name)
		}
	}
	if a, b := base.Services[0].Digest(), base.Services[1].Digest(); a == b || len(a) != 64 {
		t.Errorf("service digests %q %q", a, b)
	}
	if got := (Table{}).Digest(); got != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Errorf("empty table digest %s, want sha256 of nothing", got)
	}
}

package siteout

import (
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

// Quote's strings decode to what was quoted, control characters too.
func TestQuoteRoundTrip(t *testing.T) {
	for _, v := range []string{"", `a "b" \c`, "tab\there\nline", "bell\x07 del\x7f", "ünïcode ✓", `case "$2" in MASTER) x ;; esac`} {
		var got struct{ K string }
		if _, err := toml.Decode("K = "+Quote(v), &got); err != nil || got.K != v {
			t.Errorf("Quote(%q) = %s: decodes to %q, %v", v, Quote(v), got.K, err)
		}
	}
}

func TestDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Second: "1s", 90 * time.Second: "1m30s", 5 * time.Minute: "5m", time.Hour: "1h",
		time.Hour + 30*time.Second: "1h0m30s", 750 * time.Millisecond: "750ms", 10 * time.Second: "10s",
	} {
		got := Duration(d)
		if got != want {
			t.Errorf("Duration(%s) = %q, want %q", d, got, want)
		}
		if back, err := time.ParseDuration(got); err != nil || back != d {
			t.Errorf("Duration(%s) = %q parses back to %s, %v", d, got, back, err)
		}
	}
}

func TestPrioritiesKeys(t *testing.T) {
	s := Render(&Site{Groups: []Group{{Name: "g", Priorities: []Priority{{"lb1", 150}, {"peer.example", 100}}}}})
	var got struct {
		Vrrp []struct{ Priorities map[string]int }
	}
	if _, err := toml.Decode(s, &got); err != nil {
		t.Fatalf("%v:\n%s", err, s)
	}
	if p := got.Vrrp[0].Priorities; p["lb1"] != 150 || p["peer.example"] != 100 {
		t.Errorf("priorities %v from:\n%s", p, s)
	}
}

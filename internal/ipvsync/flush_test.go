package ipvsync

import "testing"

func TestParseConns(t *testing.T) {
	// /proc/net/ip_vs_stats of Linux 6.1, counters in hex.
	const stats = `   Total Incoming Outgoing         Incoming         Outgoing
   Conns  Packets  Packets            Bytes            Bytes
     1A3      5F2        0            2F0C4                0

 Conns/s   Pkts/s   Pkts/s          Bytes/s          Bytes/s
       2        5        0              1E0                0
`
	n, err := parseConns([]byte(stats))
	if err != nil || n != 0x1a3 {
		t.Errorf("parseConns = %d, %v; want %d", n, err, 0x1a3)
	}
	for _, bad := range []string{"", "a\nb\n", "a\nb\n\n", "a\nb\n  zz 1 2\n"} {
		if n, err := parseConns([]byte(bad)); err == nil {
			t.Errorf("parseConns(%q) = %d, want an error", bad, n)
		}
	}
}

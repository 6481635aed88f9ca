// Package conftest writes site files for tests and benchmarks: the large
// site of issue 8 (10,000 virtual servers x 10 real servers) in the form
// an operator would write it. It is imported by tests only.
package conftest

import (
	"fmt"
	"strings"
)

// portsPerVIP virtual servers share one VIP, on ports 1000 and up.
const portsPerVIP = 250

// Large returns a valid two-node site file with vss virtual servers of
// rss real servers each, every one with a tcp check, their addresses the
// VIPs of [[vrrp]] groups (255 VIPs at most a group). Real server number
// weighted (counted over all virtual servers, from 0; -1: none) has weight
// 2, the others 1: Large(n, m, -1) and Large(n, m, k) differ in one weight.
func Large(vss, rss, weighted int) []byte {
	var b strings.Builder
	b.Grow(vss * (150 + rss*70))
	b.WriteString("[site]\nname = \"large\"\n\n[[node]]\nname = \"lb1\"\naddress = \"192.168.0.11\"\npriority = 150\n\n[[node]]\nname = \"lb2\"\naddress = \"192.168.0.12\"\npriority = 100\n")
	vips := (vss + portsPerVIP - 1) / portsPerVIP
	for g := 0; g*255 < vips; g++ {
		fmt.Fprintf(&b, "\n[[vrrp]]\nname = \"g%d\"\ninterface = \"eth0\"\nvrid = %d\nvips = [", g, g+1)
		for v := g * 255; v < min(vips, (g+1)*255); v++ {
			if v > g*255 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "\"%s/16\"", vip(v))
		}
		b.WriteString("]\n")
	}
	k := 0
	for i := range vss {
		port := 1000 + i%portsPerVIP
		fmt.Fprintf(&b, "\n[[virtual_server]]\nname = \"vs%d\"\naddress = \"%s:%d\"\nscheduler = \"wrr\"\n", i, vip(i/portsPerVIP), port)
		b.WriteString("[virtual_server.check]\ntype = \"tcp\"\ninterval = \"5s\"\n")
		for range rss {
			w := 1
			if k == weighted {
				w = 2
			}
			fmt.Fprintf(&b, "[[virtual_server.real_server]]\naddress = \"10.%d.%d.%d:%d\"\nweight = %d\n", 1+k>>16, k>>8&255, k&255, port, w)
			k++
		}
	}
	return []byte(b.String())
}

// vip is the v-th VIP: 10.0.x.y, clear of the real servers' 10.1.0.0 on.
func vip(v int) string { return fmt.Sprintf("10.0.%d.%d", 1+v/250, 1+v%250) }

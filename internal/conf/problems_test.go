package conf

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// head is a valid site without groups: 9 lines, so a case's own text
// starts at line 10.
const head = `[site]
name = "t"
[[node]]
name = "lb1"
address = "10.0.0.1"
priority = 150
[[node]]
name = "lb2"
address = "10.0.0.2"
`

// group is a valid [[vrrp]] at lines 10-14, for cases about later tables.
const group = `[[vrrp]]
name = "g"
interface = "eth0"
vrid = 1
vips = ["10.0.0.100/24"]
`

func problems(file, text string) []string {
	s, ps := parseT(file, []byte(text))
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.String())
	}
	if (s == nil) != HasErrors(ps) {
		out = append(out, "BUG: site returned despite errors, or withheld without")
	}
	return out
}

// problemCases has one case per class of problem: the text of a site file
// and every line that `havip check` prints for it.
var problemCases = []struct {
	name string
	text string
	want []string
}{
	{"syntax error", head + "[[vrrp]\n", []string{
		"t.toml:10:7: expected end of table array name delimiter ']', but got '\\n' instead",
	}},
	{"unknown top-level key", "colour = \"red\"\n" + head, []string{
		"t.toml:1:1: unknown key colour",
	}},
	{"unknown key with suggestion", head + group + "advret = \"2s\"\n", []string{
		"t.toml:15:1: unknown key vrrp[0].advret (did you mean advert?)",
	}},
	{"unknown key lists the table's keys", head + group + "prioritty = 5\n", []string{
		"t.toml:15:1: unknown key vrrp[0].prioritty (vrrp[0] takes accept, accept_unknown_sources, advert, garp_count, garp_interval, garp_refresh, interface, name, notify, notify_timeout, preempt, preempt_delay, priorities, sync_group, track, unicast, version, vip_lifetime, vips, vrid)",
	}},
	{"unknown key in inline table", head + group + "track = [{ interface = \"eth1\", wieght = -10 }]\n", []string{
		"t.toml:15:32: unknown key vrrp[0].track[0].wieght (did you mean weight?)",
	}},
	{"unknown key in dotted table", head + group + `[[virtual_server]]
name = "v"
address = "10.0.0.100:80"
check.tipe = "tcp"
`, []string{
		"t.toml:15:1: warning: virtual_server[0]: no real servers",
		"t.toml:18:1: unknown key virtual_server[0].check.tipe (did you mean type?)",
	}},
	{"type mismatch", head + `[[vrrp]]
name = "g"
interface = "eth0"
vrid = "1"
vips = ["10.0.0.100/24", 7]
preempt = "yes"
`, []string{
		"t.toml:13:1: vrrp[0].vrid: expected an integer, got a string",
		"t.toml:14:26: vrrp[0].vips[1]: expected a string, got an integer",
		"t.toml:15:1: vrrp[0].preempt: expected a boolean, got a string",
	}},
	{"missing site", `[[node]]
name = "a"
address = "10.0.0.1"
[[node]]
name = "b"
address = "10.0.0.2"
priority = 99
`, []string{
		"t.toml:1: a [site] table with a name is required",
	}},
	{"missing required keys", head + `[[vrrp]]
advert = "1s"
`, []string{
		"t.toml:10:1: vrrp[0]: name is required",
		"t.toml:10:1: vrrp[0]: interface is required",
		"t.toml:10:1: vrrp[0]: vrid is required",
		"t.toml:10:1: vrrp[0]: vips is required",
	}},
	{"vrid out of range", head + `[[vrrp]]
name = "g"
interface = "eth0"
vrid = 256
vips = ["10.0.0.100/24"]
`, []string{
		"t.toml:13:1: vrrp[0].vrid: 256 is out of range 1..255",
	}},
	{"vrid duplicated on one interface", head + group + `[[vrrp]]
name = "h"
interface = "eth0"
vrid = 1
vips = ["10.0.0.101/24"]
[[vrrp]]
name = "i"
interface = "eth1"
vrid = 1
vips = ["10.0.0.102/24"]
`, []string{
		"t.toml:18:1: vrrp[1].vrid: vrid 1 is already used on eth0 by vrrp group \"g\" (line 13)",
	}},
	{"node priority out of range", strings.Replace(head, "priority = 150", "priority = 0", 1), []string{
		"t.toml:6:1: node[0].priority: 0 is out of range 1..255",
	}},
	{"priority 255 needs an address owner", strings.Replace(head, "priority = 150", "priority = 255", 1) + group + "priorities = { lb2 = 255 }\n", []string{
		"t.toml:6:1: node[0].priority: priority 255 is only for an address owner, and 10.0.0.1 is not a VIP of vrrp group \"g\"; override it in that group's priorities",
		"t.toml:15:16: vrrp[0].priorities.lb2: priority 255 is only for an address owner, and node lb2's address 10.0.0.2 is not a VIP of this group",
		"t.toml:15:16: warning: vrrp[0]: nodes lb1 and lb2 both have priority 255 in this group; the higher address wins every election",
	}},
	{"priority 255 for the address owner", strings.Replace(head, "priority = 150", "priority = 255", 1) + `[[vrrp]]
name = "g"
interface = "eth0"
vrid = 1
vips = ["10.0.0.1/24"]
`, nil},
	{"priorities names an unknown node", head + group + "priorities = { lb1 = 120, lb3 = 90 }\n", []string{
		"t.toml:15:27: vrrp[0].priorities.lb3: no [[node]] named \"lb3\"",
	}},
	{"equal priorities warn", head + group + "priorities = { lb2 = 150 }\n", []string{
		"t.toml:15:16: warning: vrrp[0]: nodes lb1 and lb2 both have priority 150 in this group; the higher address wins every election",
	}},
	{"v3 advert", head + group + `advert = "15ms"
[[vrrp]]
name = "h"
interface = "eth0"
vrid = 2
vips = ["10.0.0.101/24"]
advert = "41s"
vip_lifetime = "90s"
`, []string{
		"t.toml:15:1: vrrp[0].advert: 15ms cannot be carried by VRRPv3: it needs a multiple of 10ms in 10ms..40.95s",
		"t.toml:21:1: vrrp[1].advert: 41s cannot be carried by VRRPv3: it needs a multiple of 10ms in 10ms..40.95s",
	}},
	{"v2 advert", head + group + `version = 2
advert = "1500ms"
`, []string{
		"t.toml:16:1: vrrp[0].advert: 1.5s cannot be carried by VRRPv2: it needs whole seconds in 1s..255s",
	}},
	{"version", head + group + "version = 4\n", []string{
		"t.toml:15:1: vrrp[0].version: 4 is not a VRRP version havip speaks (2 or 3)",
	}},
	{"vip without prefix length", head + `[[vrrp]]
name = "g"
interface = "eth0"
vrid = 1
vips = [
  "10.0.0.100",
  "2001:db8::1",
  "nonsense",
]
`, []string{
		"t.toml:15:3: vrrp[0].vips[0]: VIP \"10.0.0.100\" is not a prefix: write 10.0.0.100/32, or the prefix length of the interface's subnet",
		"t.toml:16:3: vrrp[0].vips[1]: VIP \"2001:db8::1\" is not a prefix: write 2001:db8::1/128, or the prefix length of the interface's subnet",
		"t.toml:17:3: vrrp[0].vips[2]: VIP \"nonsense\" is not an IP prefix like 192.168.0.210/24",
	}},
	{"mixed families in v3", head + `[[vrrp]]
name = "g"
interface = "eth0"
vrid = 1
vips = ["10.0.0.100/24", "2001:db8::1/64"]
`, []string{
		"t.toml:14:26: vrrp[0].vips[1]: VIP 2001:db8::1/64 mixes address families with 10.0.0.100/24; put IPv4 and IPv6 VIPs in separate groups",
	}},
	{"IPv6 with version 2", head + `[[vrrp]]
name = "g"
interface = "eth0"
vrid = 1
version = 2
vips = ["2001:db8::1/64"]
`, []string{
		"t.toml:3:1: warning: node[0]: no link_local on node lb1 and lb2, so IPv6 group g accepts adverts from any link-local address (a stranger's too)",
		"t.toml:15:9: vrrp[0].vips[0]: IPv6 VIP 2001:db8::1/64 needs version = 3 (VRRPv2 is IPv4 only)",
	}},
	{"duplicate VIPs", head + group + `[[vrrp]]
name = "h"
interface = "eth0"
vrid = 2
vips = ["10.0.0.100/32", "10.0.0.101/24", "10.0.0.101/25"]
`, []string{
		"t.toml:19:9: vrrp[1].vips[0]: VIP 10.0.0.100 is also in vrrp group \"g\" (line 14)",
		"t.toml:19:43: vrrp[1].vips[2]: VIP 10.0.0.101 is listed twice (also at line 19)",
	}},
	{"unicast family", head + `[[vrrp]]
name = "g"
interface = "eth0"
vrid = 1
unicast = true
vips = ["2001:db8::1/64"]
`, []string{
		"t.toml:3:1: warning: node[0]: no link_local on node lb1 and lb2, so IPv6 group g accepts adverts from any link-local address (a stranger's too)",
		"t.toml:14:1: vrrp[0].unicast: unicast adverts for IPv6 VIPs go to IPv6 node addresses, but nodes lb1 and lb2 have IPv4 addresses",
	}},
	{"node names and addresses", head + `[[node]]
name = "lb1"
address = "10.0.0.2"
priority = 1
[[node]]
name = "lb4"
address = "10.0.0.4/24"
priority = 2
[[node]]
name = ""
address = "224.0.0.1"
priority = 3
`, []string{
		"t.toml:11:1: node[2].name: duplicate node name \"lb1\" (first at line 4)",
		"t.toml:12:1: node[2].address: duplicate node address \"10.0.0.2\" (first at line 9)",
		"t.toml:16:1: node[3].address: \"10.0.0.4/24\" is a prefix; write the address alone",
		"t.toml:19:1: node[4].name: must not be empty",
		"t.toml:20:1: node[4].address: 224.0.0.1 is not a director's unicast address",
	}},
	{"single node warns", `[site]
name = "t"
[[node]]
name = "lb1"
address = "10.0.0.1"
`, []string{
		"t.toml:3:1: warning: node[0]: only one [[node]]: there is no peer to fail over to",
	}},
	{"no nodes", `[site]
name = "t"
`, []string{
		"t.toml:1: no [[node]]: list both directors of the pair",
	}},
	{"enums", head + group + `[[virtual_server]]
name = "v"
address = "10.0.0.100:80"
protocol = "icmp"
scheduler = "random"
forward = "masq"
on_failure = "panic"
check = { type = "icmp" }
real_server = [{ address = "10.0.1.1:80", forward = "nat" }, { address = "10.0.1.2:80", forward = "gre" }]
`, []string{
		"t.toml:18:1: virtual_server[0].protocol: \"icmp\" is not one of tcp, udp, sctp",
		"t.toml:19:1: virtual_server[0].scheduler: \"random\" is not one of rr, wrr, lc, wlc, sh, mh, sed, nq, dh, lblc, lblcr, fo, ovf",
		"t.toml:20:1: virtual_server[0].forward: \"masq\" is not one of dr, tun, nat",
		"t.toml:21:1: virtual_server[0].on_failure: \"panic\" is not one of remove, weight0",
		"t.toml:22:11: virtual_server[0].check.type: \"icmp\" is not one of tcp, http, https, udp, dns, smtp, ping, exec, none",
		"t.toml:23:89: virtual_server[0].real_server[1].forward: \"gre\" is not one of dr, tun, nat",
	}},
	{"durations", head + group + `preempt_delay = "1x"
notify_timeout = "-1s"
garp_interval = 5
`, []string{
		"t.toml:15:1: vrrp[0].preempt_delay: invalid duration \"1x\" (write e.g. \"1s\" or \"500ms\")",
		"t.toml:16:1: vrrp[0].notify_timeout: duration -1s must not be negative",
		"t.toml:17:1: vrrp[0].garp_interval: expected a string, got an integer",
	}},
	{"vip lifetime", head + group + `vip_lifetime = "1s"
[[vrrp]]
name = "h"
interface = "eth0"
vrid = 2
vips = ["10.0.0.101/24"]
advert = "3s"
[[vrrp]]
name = "i"
interface = "eth0"
vrid = 3
vips = ["10.0.0.102/24"]
advert = "3s"
vip_lifetime = "6s"
`, []string{
		"t.toml:15:1: vrrp[0].vip_lifetime: 1s is too short: it must be at least 2s",
		"t.toml:21:1: vrrp[1].advert: advert 3s needs vip_lifetime longer than 6s (the default is 5s)",
		"t.toml:28:1: vrrp[2].vip_lifetime: 6s must be longer than two advert intervals (6s)",
	}},
	{"address or fwmark", head + group + `[[virtual_server]]
name = "v"
[[virtual_server]]
name = "w"
address = "10.0.0.100:80"
fwmark = 1
[[virtual_server]]
name = "x"
fwmark = 0
family = "ipx"
`, []string{
		"t.toml:15:1: virtual_server[0]: a virtual server needs address (ip:port) or fwmark",
		"t.toml:15:1: warning: virtual_server[0]: no real servers",
		"t.toml:17:1: warning: virtual_server[1]: no real servers",
		"t.toml:20:1: virtual_server[1].fwmark: a virtual server takes either address or fwmark, not both",
		"t.toml:21:1: warning: virtual_server[2]: no real servers",
		"t.toml:23:1: virtual_server[2].fwmark: 0 is out of range 1..4294967295",
		"t.toml:24:1: virtual_server[2].family: \"ipx\" is not one of inet, inet6",
	}},
	{"quorum_hysteresis", head + group + `[[virtual_server]]
name = "v"
address = "10.0.0.100:80"
quorum = 2
quorum_hysteresis = 1
[[virtual_server.real_server]]
address = "10.0.1.1:80"
[[virtual_server.real_server]]
address = "10.0.1.2:80"
[[virtual_server]]
name = "w"
address = "10.0.0.100:81"
quorum = 0
quorum_hysteresis = 1
[[virtual_server.real_server]]
address = "10.0.1.1:81"
[[virtual_server]]
name = "x"
address = "10.0.0.100:82"
quorum_hysteresis = -1
`, []string{
		"t.toml:19:1: virtual_server[0].quorum_hysteresis: quorum 2 + quorum_hysteresis 1 is more than the 2 real servers: a lost quorum would never come back",
		"t.toml:28:1: warning: virtual_server[1].quorum_hysteresis: has no effect with quorum = 0",
		"t.toml:31:1: warning: virtual_server[2]: no real servers",
		"t.toml:34:1: virtual_server[2].quorum_hysteresis: -1 is out of range 0..2147483647",
	}},
	{"real servers", head + group + `[[virtual_server]]
name = "v"
address = "10.0.0.100:80"
quorum = 3
[[virtual_server.real_server]]
address = "10.0.1.1"
[[virtual_server.real_server]]
address = "10.0.1.2:80"
weight = 65536
[[virtual_server.real_server]]
address = "10.0.1.2:80"
[[virtual_server.real_server]]
address = "[2001:db8::5]:80"
[[virtual_server.real_server]]
address = "10.0.1.3:8080"
`, []string{
		"t.toml:20:1: virtual_server[0].real_server[0].address: \"10.0.1.1\" needs a port: write 10.0.1.1:80",
		"t.toml:23:1: virtual_server[0].real_server[1].weight: 65536 is out of range 0..65535",
		"t.toml:25:1: virtual_server[0].real_server[2].address: real server 10.0.1.2:80 is listed twice (also at line 22)",
		"t.toml:27:1: virtual_server[0].real_server[3].address: [2001:db8::5]:80 is not in the virtual server's family (inet); not even forward = \"tun\" can cross families, because moby/ipvs never sends the destination's family",
		"t.toml:29:1: warning: virtual_server[0].real_server[4].address: forward = \"dr\" cannot change the port: packets arrive at port 80, not 8080",
	}},
	{"sorry server and persistence", head + group + `[[virtual_server]]
name = "v"
address = "10.0.0.100:80"
sorry_server = "10.0.9.9"
persistence = "1500ms"
persistence_netmask = "255.0.255.0"
real_server = [{ address = "10.0.1.1:80" }]
`, []string{
		"t.toml:18:1: virtual_server[0].sorry_server: \"10.0.9.9\" needs a port: write 10.0.9.9:80",
		"t.toml:19:1: virtual_server[0].persistence: 1.5s: IPVS persistence is in whole seconds",
		"t.toml:20:1: virtual_server[0].persistence_netmask: \"255.0.255.0\" is not a contiguous netmask",
	}},
	{"scheduler flags", head + group + `[[virtual_server]]
name = "v"
address = "10.0.0.100:80"
scheduler = "sh"
scheduler_flags = ["sh-port", "mh-port", "turbo"]
real_server = [{ address = "10.0.1.1:80" }]
`, []string{
		"t.toml:19:31: virtual_server[0].scheduler_flags[1]: flag mh-port needs scheduler = \"mh\"",
		"t.toml:19:42: virtual_server[0].scheduler_flags[2]: unknown scheduler flag \"turbo\" (one of sh-fallback, sh-port, mh-fallback, mh-port)",
	}},
	{"check timing", head + group + `[[virtual_server]]
name = "v"
address = "10.0.0.100:80"
real_server = [{ address = "10.0.1.1:80" }]
[virtual_server.check]
interval = "1s"
timeout = "1s"
rise = 0
fall = 0
[[virtual_server]]
name = "w"
address = "10.0.0.100:81"
real_server = [{ address = "10.0.1.1:81" }]
check = { timeout = "0s" }
`, []string{
		"t.toml:20:1: virtual_server[0].check.interval: interval (1s) must be longer than timeout (1s)",
		"t.toml:22:1: virtual_server[0].check.rise: 0 is out of range 1..1000",
		"t.toml:23:1: virtual_server[0].check.fall: 0 is out of range 1..1000",
		"t.toml:28:11: virtual_server[1].check.timeout: must be greater than 0",
	}},
	{"check types", head + group + `[[check]]
name = "e"
type = "exec"
[[check]]
name = "d"
type = "dns"
target = "10.0.0.53:53"
[[check]]
name = "h"
type = "http"
target = "http://10.0.0.80/"
path = "healthz"
expect_status = [200, 700]
query = "x."
[[check]]
name = "t"
type = "tcp"
port = 80
`, []string{
		"t.toml:15:1: check[0]: type exec needs command (an argv array)",
		"t.toml:18:1: check[1]: type dns needs query (the name to resolve)",
		"t.toml:25:1: check[2].target: \"http://10.0.0.80/\": a URL is not a host:port (write host:port)",
		"t.toml:26:1: check[2].path: \"healthz\" must start with /",
		"t.toml:27:23: check[2].expect_status[1]: 700 is not an HTTP status (100..599)",
		"t.toml:28:1: warning: check[2].query: ignored for type http",
		"t.toml:29:1: check[3]: type tcp needs target (host:port)",
		"t.toml:32:1: check[3].port: write the port in target (host:port)",
	}},
	{"http check keys", head + group + `[[check]]
name = "h"
type = "https"
target = "10.0.0.80:443"
path = "/a b"
host = "x y"
expect_status = [200, "300-399", "399-300", "2xx", 99, "100-700", true]
method = "get"
headers = { Host = "a", "Content-Length" = "1", "X-A" = "1\r\nEvil: 1", "Bad Name" = "x", X-Ok = "fine", X-Num = 1 }
expect_body = "ok"
expect_body_regex = "(unclosed"
tls_verify = "yes"
tls_ca = "ca.pem"
tls_server_name = "not a name"
[[check]]
name = "h2"
type = "http"
target = "10.0.0.80:80"
method = "HEAD"
expect_body = ""
expect_status = "200-299"
tls_verify = true
[[check]]
name = "h3"
type = "http"
target = "10.0.0.80:80"
expect_status = []
`, []string{
		`t.toml:19:1: check[0].path: "/a b" contains a space or control character; percent-encode it (a space is %20)`,
		`t.toml:20:1: check[0].host: "x y" is not a Host header value`,
		`t.toml:21:34: check[0].expect_status[2]: 399-300 is an empty range: write the lower status first`,
		`t.toml:21:45: check[0].expect_status[3]: "2xx" is not a status or a range like "200-299"`,
		`t.toml:21:52: check[0].expect_status[4]: 99 is not an HTTP status (100..599)`,
		`t.toml:21:56: check[0].expect_status[5]: 100-700 is not a range of HTTP statuses (100..599)`,
		`t.toml:21:67: check[0].expect_status[6]: expected a status code or a range like "200-299", got a boolean`,
		`t.toml:22:1: check[0].method: "get" is not an HTTP method: write it in capitals, like GET or HEAD`,
		`t.toml:23:13: check[0].headers.Host: the check sets Host itself: use the check's host key`,
		`t.toml:23:25: check[0].headers.Content-Length: the check sets Content-Length itself (it sends no body and closes after one response)`,
		`t.toml:23:49: check[0].headers.X-A: "1\r\nEvil: 1": a header value must not contain CR, LF or NUL`,
		`t.toml:23:73: check[0].headers."Bad Name": "Bad Name" is not a header name`,
		`t.toml:23:106: check[0].headers.X-Num: expected a string, got an integer`,
		"t.toml:25:1: check[0].expect_body_regex: \"(unclosed\": missing closing ): `(unclosed`",
		`t.toml:25:1: check[0].expect_body_regex: a check takes expect_body or expect_body_regex, not both`,
		`t.toml:26:1: check[0].tls_verify: expected a boolean, got a string`,
		`t.toml:27:1: check[0].tls_ca: "ca.pem" must be an absolute path`,
		`t.toml:27:1: warning: check[0].tls_ca: has no effect without tls_verify = true`,
		`t.toml:28:1: check[0].tls_server_name: "not a name" is not a host name`,
		`t.toml:34:1: check[1].expect_body: must not be empty: leave the key out to accept any body`,
		`t.toml:36:1: warning: check[1].tls_verify: ignored for type http`,
		`t.toml:41:1: check[2].expect_status: needs at least one status code`,
	}},
	{"dns, smtp and ping check keys", head + group + `[[check]]
name = "d"
type = "dns"
target = "10.0.0.53:53"
query = "a..b"
query_type = "ANY"
[[check]]
name = "d2"
type = "dns"
target = "10.0.0.53:53"
query = "example.com"
query_type = "AAAA"
expect_answer = "192.0.2.1"
[[check]]
name = "d3"
type = "dns"
target = "10.0.0.53:53"
query = "example.com"
query_type = "MX"
expect_answer = "not a name"
[[check]]
name = "d4"
type = "dns"
target = "10.0.0.53:53"
query = "example.com"
expect_answer = ""
helo_name = "x"
[[check]]
name = "s"
type = "smtp"
target = "10.0.0.25"
helo_name = "bad name!"
[[check]]
name = "p"
type = "ping"
target = "10.0.0.1:80"
[[check]]
name = "p2"
type = "ping"
[[check]]
name = "p3"
type = "ping"
target = "fe80::1%eth0"
[[virtual_server]]
name = "v"
address = "10.0.0.100:80"
real_server = [{ address = "10.0.1.1:80" }]
check = { type = "ping", port = 80, query_type = "A" }
`, []string{
		`t.toml:19:1: check[0].query: "a..b" is not a domain name (labels of 1..63 bytes, 253 in all)`,
		`t.toml:20:1: check[0].query_type: "ANY" is not one of A, AAAA, SOA, MX, TXT, CNAME, NS, PTR, SRV`,
		`t.toml:27:1: check[1].expect_answer: "192.0.2.1": not an IPv6 address`,
		`t.toml:34:1: check[2].expect_answer: "not a name": not a domain name (query_type MX compares names)`,
		`t.toml:40:1: check[3].expect_answer: must not be empty: leave the key out to accept any answer`,
		`t.toml:41:1: warning: check[3].helo_name: ignored for type dns`,
		`t.toml:45:1: check[4].target: "10.0.0.25": not host:port (write host:port)`,
		`t.toml:46:1: check[4].helo_name: "bad name!" is not a host name`,
		`t.toml:50:1: check[5].target: "10.0.0.1:80": ping takes an address or a host name, not host:port`,
		`t.toml:51:1: check[6]: type ping needs target (an address or host name)`,
		`t.toml:57:1: check[7].target: "fe80::1%eth0": a zone is not allowed here`,
		`t.toml:62:26: warning: virtual_server[0].check.port: ignored for type ping`,
		`t.toml:62:37: warning: virtual_server[0].check.query_type: ignored for type ping`,
	}},
	{"virtual server check keys", head + group + `[[virtual_server]]
name = "v"
address = "10.0.0.100:80"
real_server = [{ address = "10.0.1.1:80" }]
[virtual_server.check]
name = "c"
target = "10.0.0.1:80"
type = "exec"
command = []
`, []string{
		"t.toml:20:1: virtual_server[0].check.name: only a top-level [[check]] has a name",
		"t.toml:21:1: virtual_server[0].check.target: a virtual server's check probes each real server; use port to probe another port",
		"t.toml:23:1: virtual_server[0].check.command: must name a program: an argv array like [\"/usr/local/bin/probe\", \"arg\"]",
	}},
	{"track", head + group + `[[vrrp.track]]
[[vrrp.track]]
interface = "eth1"
check = "c"
[[vrrp.track]]
virtual_server = "nope"
weight = -255
[[vrrp.track]]
check = "nope"
[[vrrp.track]]
interface = "this-name-is-too-long"
`, []string{
		"t.toml:15:1: vrrp[0].track[0]: a track needs one of interface, virtual_server or check",
		"t.toml:16:1: vrrp[0].track[1]: a track takes only one of interface, virtual_server or check",
		"t.toml:18:1: vrrp[0].track[1].check: no top-level [[check]] named \"c\"",
		"t.toml:20:1: vrrp[0].track[2].virtual_server: no [[virtual_server]] named \"nope\"",
		"t.toml:21:1: vrrp[0].track[2].weight: -255 is out of range -254..254",
		"t.toml:23:1: vrrp[0].track[3].check: no top-level [[check]] named \"nope\"",
		"t.toml:25:1: vrrp[0].track[4].interface: \"this-name-is-too-long\" is longer than the kernel's 15-byte limit",
	}},
	{"notify", head + group + `notify = "/bin/notify"
[[vrrp]]
name = "h"
interface = "eth0"
vrid = 2
vips = ["10.0.0.101/24"]
notify = ["/bin/notify", 1]
[[vrrp]]
name = "i"
interface = "eth0"
vrid = 3
vips = ["10.0.0.102/24"]
notify = []
`, []string{
		"t.toml:15:1: vrrp[0].notify: expected an array, got a string",
		"t.toml:21:26: vrrp[1].notify[1]: expected a string, got an integer",
		"t.toml:27:1: vrrp[2].notify: must name a program: an argv array like [\"/etc/havip/notify\"]",
	}},
	{"sync", head + `[sync]
sync_id = 256
group = "10.0.0.1"
port = 0
ttl = 0
`, []string{
		"t.toml:10:1: sync: interface is required",
		"t.toml:11:1: sync.sync_id: 256 is out of range 0..255",
		"t.toml:12:1: sync.group: 10.0.0.1 is not a multicast address",
		"t.toml:13:1: sync.port: 0 is out of range 1..65535",
		"t.toml:14:1: sync.ttl: 0 is out of range 1..255",
	}},
	{"sync tuning", head + `[sync]
interface = "eth0"
sync_version = 2
sync_threshold = [50, 50]
sync_refresh_period = "1500ms"
sync_retries = 4
flush = "100us"
`, []string{
		"t.toml:12:1: sync.sync_version: 2 is out of range 0..1",
		"t.toml:13:1: sync.sync_threshold: [50 50]: the threshold must be below the period (the kernel refuses it)",
		"t.toml:14:1: sync.sync_refresh_period: 1.5s: the kernel counts it in whole seconds",
		"t.toml:15:1: sync.sync_retries: 4 is out of range 0..3",
		"t.toml:16:1: sync.flush: 100µs is too short: at least 1ms, or 0 for never",
	}},
	{"sync threshold shape", head + `[sync]
interface = "eth0"
sync_threshold = [3]
`, []string{
		"t.toml:12:1: sync.sync_threshold: want [threshold, period], two integers, got 1",
	}},
	{"site", `[site]
name = ""
control_socket = "havip.sock"
state_dir = "var/lib"
metrics = "localhost"
pair_port = 70000
[[node]]
name = "lb1"
address = "10.0.0.1"
priority = 150
[[node]]
name = "lb2"
address = "10.0.0.2"
`, []string{
		"t.toml:2:1: site.name: must not be empty",
		"t.toml:3:1: site.control_socket: \"havip.sock\" must be an absolute path",
		"t.toml:4:1: site.state_dir: \"var/lib\" must be an absolute path",
		"t.toml:5:1: site.metrics: \"localhost\": not host:port (write host:port, or \"\" to disable)",
		"t.toml:6:1: site.pair_port: 70000 is out of range 1..65535",
	}},
	{"unique names", head + group + `[[vrrp]]
name = "g"
interface = "eth0"
vrid = 2
vips = ["10.0.0.101/24"]
[[virtual_server]]
name = "v"
address = "10.0.0.100:80"
real_server = [{ address = "10.0.1.1:80" }]
[[virtual_server]]
name = "v"
address = "10.0.0.100:80"
real_server = [{ address = "10.0.1.1:80" }]
[[check]]
name = "c"
target = "10.0.0.1:1"
[[check]]
name = "c"
target = "10.0.0.1:2"
`, []string{
		"t.toml:16:1: vrrp[1].name: duplicate vrrp group name \"g\" (first at line 11)",
		"t.toml:25:1: virtual_server[1].name: duplicate virtual server name \"v\" (first at line 21)",
		"t.toml:26:1: virtual_server[1].address: duplicate virtual service \"tcp 10.0.0.100:80\" (first at line 22)",
		"t.toml:32:1: check[1].name: duplicate check name \"c\" (first at line 29)",
	}},
	{"virtual server warnings", head + group + `[[virtual_server]]
name = "v"
address = "10.0.0.200:80"
`, []string{
		"t.toml:15:1: warning: virtual_server[0]: no real servers",
		"t.toml:17:1: warning: virtual_server[0].address: 10.0.0.200 is not a VIP of any [[vrrp]] group, so havip never holds it",
	}},
	{"unusable VIPs", head + `[[vrrp]]
name = "g"
interface = "eth0"
vrid = 1
vips = [
  "10.0.0.100/24",
  "224.0.0.18/32",
  "127.0.0.2/8",
  "255.255.255.255/32",
  "10.0.0.0/24",
  "10.0.0.255/24",
  "10.0.0.7/30",
  "10.0.0.6/31",
  "10.0.0.9/32",
  "10.0.0.1/0",
  "0.0.0.0/8",
  "::ffff:10.0.0.1/128",
  "::1/128",
  "ff02::12/128",
  "::/64",
]
`, []string{
		"t.toml:16:3: vrrp[0].vips[1]: VIP 224.0.0.18/32 is a multicast address",
		"t.toml:17:3: vrrp[0].vips[2]: VIP 127.0.0.2/8 is a loopback address",
		"t.toml:18:3: vrrp[0].vips[3]: VIP 255.255.255.255/32 is the broadcast address",
		"t.toml:19:3: vrrp[0].vips[4]: VIP 10.0.0.0/24 is the network address of 10.0.0.0/24",
		"t.toml:20:3: vrrp[0].vips[5]: VIP 10.0.0.255/24 is the broadcast address of 10.0.0.0/24",
		"t.toml:21:3: vrrp[0].vips[6]: VIP 10.0.0.7/30 is the broadcast address of 10.0.0.4/30",
		"t.toml:24:3: vrrp[0].vips[9]: VIP 10.0.0.1/0 has prefix length /0, which would put every address on the interface's link; write the subnet's length",
		"t.toml:25:3: vrrp[0].vips[10]: VIP 0.0.0.0/8 is the unspecified address",
		"t.toml:26:3: vrrp[0].vips[11]: VIP ::ffff:10.0.0.1/128 is an IPv4-mapped IPv6 address; write 10.0.0.1 in an IPv4 group",
		"t.toml:27:3: vrrp[0].vips[12]: VIP ::1/128 is a loopback address",
		"t.toml:28:3: vrrp[0].vips[13]: VIP ff02::12/128 is a multicast address",
		"t.toml:29:3: vrrp[0].vips[14]: VIP ::/64 is the unspecified address",
	}},
	{"more VIPs than one advert carries", head + `[[vrrp]]
name = "v4"
interface = "eth0"
vrid = 1
vips = [` + vipList("10.1.%d.%d/16", 256) + `]
[[vrrp]]
name = "v6"
interface = "eth0"
vrid = 2
vips = [` + vipList("2001:db8::%x:%x/64", 100) + `]
[[vrrp]]
name = "v6-fits"
interface = "eth0"
vrid = 3
vips = [` + vipList("2001:db8:1::%x:%x/64", 90) + `]
[[vrrp]]
name = "v2-fits"
interface = "eth0"
vrid = 4
version = 2
vips = [` + vipList("10.2.%d.%d/16", 255) + `]
`, []string{
		"t.toml:3:1: warning: node[0]: no link_local on node lb1 and lb2, so IPv6 groups v6 and v6-fits accept adverts from any link-local address (a stranger's too)",
		"t.toml:14:1: vrrp[0].vips: 256 VIPs are more than the 255 one advert carries; split them across groups",
		"t.toml:19:1: vrrp[1].vips: an advert carrying 100 IPv6 VIPs is 1648 bytes, more than the 1500-byte Ethernet MTU; split them across groups",
	}},
	{"group bounds", head + group + `garp_count = 101
garp_interval = "1ns"
garp_refresh = "500ms"
vip_lifetime = "25h"
notify_timeout = "6m"
preempt_delay = "2h"
[[vrrp]]
name = "h"
interface = "eth0"
vrid = 2
vips = ["10.0.0.101/24"]
garp_count = 0
garp_interval = "10s"
garp_refresh = "24h"
vip_lifetime = "24h"
notify_timeout = "5m"
preempt_delay = "1h"
[[vrrp]]
name = "i"
interface = "eth0"
vrid = 3
vips = ["10.0.0.102/24"]
garp_interval = "10ms"
garp_refresh = "0s"
[[vrrp]]
name = "j"
interface = "eth0"
vrid = 4
vips = ["10.0.0.103/24"]
garp_interval = "11s"
garp_refresh = "25h"
`, []string{
		"t.toml:15:1: vrrp[0].garp_count: 101 is out of range 0..100",
		"t.toml:16:1: vrrp[0].garp_interval: 1ns is out of range 10ms..10s",
		"t.toml:17:1: vrrp[0].garp_refresh: 500ms is out of range: \"0s\" (off) or 1s..24h",
		"t.toml:18:1: vrrp[0].vip_lifetime: 25h is too long: it must be at most 24h",
		"t.toml:19:1: vrrp[0].notify_timeout: 6m is too long: it must be at most 5m",
		"t.toml:20:1: vrrp[0].preempt_delay: 2h is too long: it must be at most 1h",
		"t.toml:44:1: vrrp[3].garp_interval: 11s is out of range 10ms..10s",
		"t.toml:45:1: vrrp[3].garp_refresh: 25h is out of range: \"0s\" (off) or 1s..24h",
	}},
	{"check bounds", head + group + `[[virtual_server]]
name = "v"
address = "10.0.0.100:80"
real_server = [{ address = "10.0.1.1:80" }]
check = { interval = "50ms", timeout = "20ms" }
[[virtual_server]]
name = "w"
address = "10.0.0.100:81"
real_server = [{ address = "10.0.1.1:81" }]
check = { interval = "2h" }
[[virtual_server]]
name = "x"
address = "10.0.0.100:82"
real_server = [{ address = "10.0.1.1:82" }]
check = { timeout = "5ms" }
[[virtual_server]]
name = "y"
address = "10.0.0.100:83"
real_server = [{ address = "10.0.1.1:83" }]
check = { interval = "100ms", timeout = "10ms" }
[[check]]
name = "c"
target = "10.0.0.1:1"
interval = "1h"
timeout = "59m"
`, []string{
		"t.toml:19:11: virtual_server[0].check.interval: 50ms is out of range 100ms..1h",
		"t.toml:24:11: virtual_server[1].check.interval: 2h is out of range 100ms..1h",
		"t.toml:29:11: virtual_server[2].check.timeout: 5ms is too short: it must be at least 10ms",
	}},
	{"IPv4-mapped addresses", `[site]
name = "t"
[[node]]
name = "lb1"
address = "::ffff:10.0.0.1"
[[node]]
name = "lb2"
address = "10.0.0.2"
[[vrrp]]
name = "g"
interface = "eth0"
vrid = 1
vips = ["10.0.0.100/24"]
[[virtual_server]]
name = "v"
address = "[::ffff:10.0.0.100]:80"
real_server = [{ address = "10.0.1.1:80" }]
[[virtual_server]]
name = "w"
address = "[2001:db8::1]:80"
sorry_server = "[::ffff:10.0.9.9]:80"
real_server = [{ address = "[::ffff:10.0.1.1]:80" }]
`, []string{
		"t.toml:5:1: node[0].address: \"::ffff:10.0.0.1\" is an IPv4-mapped IPv6 address; write 10.0.0.1",
		"t.toml:16:1: virtual_server[0].address: \"[::ffff:10.0.0.100]:80\" is an IPv4-mapped IPv6 address; write 10.0.0.100:80",
		"t.toml:20:1: warning: virtual_server[1].address: 2001:db8::1 is not a VIP of any [[vrrp]] group, so havip never holds it",
		"t.toml:21:1: virtual_server[1].sorry_server: \"[::ffff:10.0.9.9]:80\" is an IPv4-mapped IPv6 address; write 10.0.9.9:80",
		"t.toml:22:18: virtual_server[1].real_server[0].address: \"[::ffff:10.0.1.1]:80\" is an IPv4-mapped IPv6 address; write 10.0.1.1:80",
	}},
	// Everything ipvsync.Desired used to refuse at run time, refused here
	// instead: it now takes what conf gives it without a second look.
	{"what the IPVS table needs", head + group + `[[virtual_server]]
name = "mixed"
address = "10.0.0.100:80"
forward = "tun"
real_server = [{ address = "[2001:db8::5]:80" }]
[[virtual_server]]
name = "persist"
address = "10.0.0.100:81"
persistence = "1200h"
real_server = [{ address = "10.0.1.1:81" }]
[[virtual_server]]
name = "mask0"
address = "10.0.0.100:82"
persistence = "60s"
persistence_netmask = "/0"
real_server = [{ address = "10.0.1.1:82" }]
[[virtual_server]]
name = "mask0-dotted"
address = "10.0.0.100:83"
persistence = "60s"
persistence_netmask = "0.0.0.0"
real_server = [{ address = "10.0.1.1:83" }]
[[virtual_server]]
name = "mask33"
address = "10.0.0.100:84"
persistence = "60s"
persistence_netmask = "/33"
real_server = [{ address = "10.0.1.1:84" }]
[[virtual_server]]
name = "mark"
fwmark = 7
real_server = [{ address = "10.0.1.1:0" }]
[[virtual_server]]
name = "mark-again"
fwmark = 7
family = "inet"
real_server = [{ address = "10.0.1.2:0" }]
[[virtual_server]]
name = "mark6"
fwmark = 7
family = "inet6"
real_server = [{ address = "[2001:db8::5]:0" }]
[[virtual_server]]
name = "udp"
address = "10.0.0.100:80"
protocol = "udp"
real_server = [{ address = "10.0.1.1:80" }]
[[virtual_server]]
name = "tcp-again"
address = "10.0.0.100:80"
protocol = "tcp"
real_server = [{ address = "10.0.1.1:80" }]
`, []string{
		"t.toml:19:18: virtual_server[0].real_server[0].address: [2001:db8::5]:80 is not in the virtual server's family (inet); not even forward = \"tun\" can cross families, because moby/ipvs never sends the destination's family",
		"t.toml:23:1: virtual_server[1].persistence: 1200h is too long: it must be at most 1176h",
		"t.toml:29:1: virtual_server[2].persistence_netmask: \"/0\" is not a prefix length /1../32",
		"t.toml:35:1: virtual_server[3].persistence_netmask: \"0.0.0.0\" is a /0 mask; write one of /1../32",
		"t.toml:41:1: virtual_server[4].persistence_netmask: \"/33\" is not a prefix length /1../32",
		"t.toml:49:1: virtual_server[6].fwmark: duplicate virtual service \"fwmark 7 inet\" (first at line 45)",
		"t.toml:64:1: virtual_server[9].address: duplicate virtual service \"tcp 10.0.0.100:80\" (first at line 17)",
	}},
	{"equal own priorities warn once for all groups", strings.Replace(head, "priority = 150", "priority = 100", 1) + group + `[[vrrp]]
name = "h"
interface = "eth0"
vrid = 2
vips = ["10.0.0.101/24"]
[[node]]
name = "lb3"
address = "10.0.0.3"
`, []string{
		"t.toml:7:1: warning: node[1].priority: nodes lb1 and lb2 both have priority 100; in a vrrp group that overrides neither, the higher address wins every election",
		"t.toml:20:1: warning: node[2].priority: nodes lb1 and lb3 both have priority 100; in a vrrp group that overrides neither, the higher address wins every election",
	}},
	{"equal own priorities that every group overrides", strings.Replace(head, "priority = 150", "priority = 100", 1) + group + `priorities = { lb1 = 150 }
[[vrrp]]
name = "h"
interface = "eth0"
vrid = 2
vips = ["10.0.0.101/24"]
priorities = { lb2 = 150 }
`, nil},
	{"priority 255 in many groups", strings.Replace(head, "priority = 150", "priority = 255", 1) + group + `[[vrrp]]
name = "h"
interface = "eth0"
vrid = 2
vips = ["10.0.0.101/24"]
[[vrrp]]
name = "i"
interface = "eth0"
vrid = 3
vips = ["10.0.0.1/24"]
[[vrrp]]
name = "j"
interface = "eth0"
vrid = 4
vips = ["10.0.0.103/24"]
priorities = { lb1 = 200 }
[[vrrp]]
name = "k"
interface = "eth0"
vrid = 5
vips = ["10.0.0.104/24"]
[[vrrp]]
name = "l"
interface = "eth0"
vrid = 6
vips = ["10.0.0.105/24"]
`, []string{
		"t.toml:6:1: node[0].priority: priority 255 is only for an address owner, and 10.0.0.1 is not a VIP of vrrp groups \"g\", \"h\", \"k\" and 1 more; override it in those groups' priorities",
	}},
	{"sync groups", head + group + `sync_group = "nat"
[[vrrp]]
name = "h"
interface = "eth1"
vrid = 2
vips = ["10.0.1.100/24"]
sync_group = "nat"
[[vrrp]]
name = "i"
interface = "eth1"
vrid = 3
vips = ["10.0.1.101/24"]
priorities = { lb2 = 200 }
sync_group = "nat"
[[vrrp]]
name = "j"
interface = "eth1"
vrid = 4
vips = ["10.0.1.102/24"]
sync_group = "alone"
[[vrrp]]
name = "k"
interface = "eth1"
vrid = 5
vips = ["10.0.1.103/24"]
sync_group = ""
`, []string{
		"t.toml:28:1: vrrp[2].sync_group: sync group \"nat\": node lb1 ranks above lb2 in vrrp group \"h\" (priority 150 to 100) but below it in \"i\" (150 to 200); the members of a sync group must prefer the same node",
		"t.toml:34:1: warning: vrrp[3].sync_group: sync group \"alone\" has no other member: no [[vrrp]] moves together with this one",
		"t.toml:40:1: vrrp[4].sync_group: must not be empty: name the sync group, or leave the key out",
	}},
	{"sync group members that preempt differently", head + group + `sync_group = "nat"
[[vrrp]]
name = "h"
interface = "eth1"
vrid = 2
vips = ["10.0.1.100/24"]
preempt = false
sync_group = "nat"
`, []string{
		"t.toml:22:1: warning: vrrp[1].sync_group: sync group \"nat\": vrrp group \"h\" has preempt = false, preempt_delay = 0s but \"g\" has true, 0s; the one that preempts brings the others along, so give them the same",
	}},
	{"sync group ranks by address ownership", head + group + `sync_group = "s"
[[vrrp]]
name = "owned"
interface = "eth0"
vrid = 2
vips = ["10.0.0.2/24"]
sync_group = "s"
`, []string{
		"t.toml:21:1: vrrp[1].sync_group: sync group \"s\": node lb1 ranks above lb2 in vrrp group \"g\" (priority 150 to 100) but below it in \"owned\" (150 to 255); the members of a sync group must prefer the same node",
	}},
	{"sync group ranks equal priorities by address", head + group + `priorities = { lb1 = 100 }
sync_group = "s"
[[vrrp]]
name = "h"
interface = "eth0"
vrid = 2
vips = ["10.0.0.101/24"]
priorities = { lb1 = 90 }
sync_group = "s"
[[vrrp]]
name = "i"
interface = "eth0"
vrid = 3
vips = ["10.0.0.102/24"]
priorities = { lb2 = 90 }
sync_group = "s"
`, []string{
		"t.toml:15:16: warning: vrrp[0]: nodes lb1 and lb2 both have priority 100 in this group; the higher address wins every election",
		"t.toml:30:1: vrrp[2].sync_group: sync group \"s\": node lb2 ranks above lb1 in vrrp group \"h\" (priority 100 to 90) but below it in \"i\" (90 to 150); the members of a sync group must prefer the same node",
	}},
	{"link_local values", `[site]
name = "t"
[[node]]
name = "lb1"
address = "10.0.0.1"
link_local = "2001:db8::1"
[[node]]
name = "lb2"
address = "10.0.0.2"
link_local = "fe80::2%eth0"
[[node]]
name = "lb3"
address = "10.0.0.3"
link_local = "10.0.0.3"
[[node]]
name = "lb4"
address = "10.0.0.4"
link_local = "fe80::4"
[[node]]
name = "lb5"
address = "10.0.0.5"
link_local = "fe80::4"
`, []string{
		"t.toml:6:1: node[0].link_local: 2001:db8::1 is not an IPv6 link-local address (fe80::/10)",
		`t.toml:10:1: node[1].link_local: "fe80::2%eth0": a zone is not allowed here`,
		"t.toml:14:1: node[2].link_local: 10.0.0.3 is not an IPv6 link-local address (fe80::/10)",
		`t.toml:22:1: node[4].link_local: duplicate link_local "fe80::4" (first at line 18)`,
	}},
	{"IPv6 group, one node without link_local", `[site]
name = "t"
[[node]]
name = "lb1"
address = "10.0.0.1"
link_local = "fe80::1"
[[node]]
name = "lb2"
address = "10.0.0.2"
priority = 150
[[vrrp]]
name = "g6"
interface = "eth0"
vrid = 1
vips = ["2001:db8::1/64"]
`, []string{
		"t.toml:7:1: warning: node[1]: no link_local on node lb2, so IPv6 group g6 accepts adverts from any link-local address (a stranger's too)",
	}},
	{"accept_unknown_sources", head + `[[vrrp]]
name = "g6"
interface = "eth0"
vrid = 1
vips = ["2001:db8::1/64"]
accept_unknown_sources = true
[[vrrp]]
name = "g4"
interface = "eth0"
vrid = 2
vips = ["10.0.0.100/24"]
accept_unknown_sources = false
`, []string{
		"t.toml:15:1: warning: vrrp[0].accept_unknown_sources: adverts from any host on the segment are acted upon: one advert of priority 255 from anyone takes the VIPs from the master",
	}},
}

// vipList writes n VIPs for an array, from a format taking the two low
// bytes of a counter.
func vipList(format string, n int) string {
	vips := make([]string, n)
	for i := range vips {
		vips[i] = fmt.Sprintf(`"`+format+`"`, (i+1)>>8, (i+1)&0xff)
	}
	return strings.Join(vips, ", ")
}

func TestProblems(t *testing.T) {
	for _, tt := range problemCases {
		t.Run(tt.name, func(t *testing.T) {
			got := problems("t.toml", tt.text)
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("problems (-want +got):\n%s\ntext:\n%s", diff, numbered(tt.text))
			}
		})
	}
}

func numbered(text string) string {
	var b strings.Builder
	for i, l := range strings.Split(text, "\n") {
		fmt.Fprintf(&b, "%3d| %s\n", i+1, l)
	}
	return b.String()
}

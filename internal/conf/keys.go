package conf

import (
	"strconv"
	"strings"
)

// Key documents one key of the site file, for havip.toml(5). Keys is the
// one list of them: a test holds it to exactly the keys the decoder asks
// for, and to the defaults the decoder applies, so the manual page made
// from it (packaging/gendocs) cannot drift from the code.
type Key struct {
	// Path names the key as the decoder asks for it: "site.name",
	// "vrrp[].advert" (any element of an array of tables), and
	// "check:interval" for a key both kinds of check take
	// ([virtual_server.check] and [[check]]).
	Path string
	// Type is the TOML type and what it holds, e.g. "duration string";
	// "table" and "array of tables" mark a table, whose keys follow it.
	Type string
	// Default is the value the key takes when left out, written as a TOML
	// value ("1s" in quotes, 3, true); "" when there is none, or when it
	// depends on other keys (Doc then says how).
	Default string
	// Allowed is the range or the values accepted, "" for any of Type.
	Allowed string
	// Doc is one paragraph of plain text.
	Doc string
}

// Keys lists every key of the site file, each table before its keys, in
// the order havip.toml(5) describes them.
func Keys() []Key {
	q := strconv.Quote
	oneOf := func(vs []string) string { return strings.Join(vs, ", ") }
	return []Key{
		{Path: "site", Type: "table", Doc: "What the site is and where the daemon keeps its files. Required."},
		{Path: "site.name", Type: "string", Allowed: "not empty", Doc: "The site's name: required. havip status shows it, and the pair link refuses a peer of another site (wrong_site)."},
		{Path: "site.control_socket", Type: "path string", Default: q(DefaultControlSocket), Allowed: "absolute path",
			Doc: "The Unix socket havip status, reload, failover, drain and events talk to (root only). havip run --socket overrides it."},
		{Path: "site.metrics", Type: "host:port string", Default: q(DefaultMetrics),
			Doc: "Where the Prometheus metrics are served over HTTP; \"\" disables them. havip run --metrics overrides it."},
		{Path: "site.state_dir", Type: "path string", Default: q(DefaultStateDir), Allowed: "absolute path",
			Doc: "Where operator state (drains) survives a restart. havip run --state-dir overrides it."},
		{Path: "site.pair_port", Type: "integer", Default: strconv.Itoa(DefaultPairPort), Allowed: "1..65535",
			Doc: "The TCP port of the pair link between the directors: each listens on it at its [[node]] address. Open it between the two directors."},
		{Path: "site.pair_key", Type: "path string", Allowed: "absolute path",
			Doc: "The pre-shared key of the pair link (written by havip keygen FILE, mode 0600, the same file on both directors). " +
				"Without it the link is unauthenticated and only observes: no takeover in milliseconds when the master's daemon dies, " +
				"no mirrored drains, and drills refuse without --force (havip check warns)."},
		{Path: "site.script_user", Type: "string", Default: q(DefaultScriptUser),
			Doc: "Who exec checks and notify hooks run as. Where the user havip does not exist, nobody (with a warning); " +
				"\"root\" only when written here (with a warning); a user that does not exist is an error."},
		{Path: "site.script_group", Type: "string",
			Doc: "The group scripts run as; default the script user's primary group. Supplementary groups: none."},
		{Path: "site.script_security", Type: "boolean", Default: "true",
			Doc: "Refuse a script whose program, or a directory above it, anyone but root and the script user could change. false is warned about."},

		{Path: "node", Type: "array of tables",
			Doc: "The directors of the pair, each [[node]] once; both directors load the same file and each picks its own (see NODE SELECTION). " +
				"Names and addresses must be unique."},
		{Path: "node[].name", Type: "string", Allowed: "not empty", Doc: "The node's name: required. havip run --node NAME picks it, else the host name does."},
		{Path: "node[].address", Type: "IP address string",
			Doc: "Required: this director's own unicast address, the source of its adverts, its unicast peer address and its pair-link address."},
		{Path: "node[].priority", Type: "integer", Default: strconv.Itoa(DefaultNodePriority), Allowed: "1..255",
			Doc: "VRRP priority in every group, unless the group's priorities say otherwise; the higher is master. 255 only for the owner of the group's VIPs."},
		{Path: "node[].link_local", Type: "IPv6 address string", Allowed: "fe80::/10",
			Doc: "The source of this node's IPv6 adverts, the same on every interface with an IPv6 group. Without it, the other node accepts IPv6 adverts from any link-local address."},

		{Path: "vrrp", Type: "array of tables", Doc: "One VRRP group (a virtual router): VIPs that move together between the directors."},
		{Path: "vrrp[].name", Type: "string", Allowed: "not empty", Doc: "The group's name: required, unique. havip failover GROUP and status use it."},
		{Path: "vrrp[].interface", Type: "string", Allowed: "an interface name, at most 15 bytes", Doc: "Required: the interface the adverts are sent on and the VIPs added to."},
		{Path: "vrrp[].vrid", Type: "integer", Allowed: "1..255",
			Doc: "Required: the virtual router ID, unique per interface across the site, and unique on the segment: another router with the same VRID on the link collides."},
		{Path: "vrrp[].version", Type: "integer", Default: "3", Allowed: "2, 3", Doc: "3 is RFC 5798 (IPv4 and IPv6); 2 is RFC 3768 (IPv4 only)."},
		{Path: "vrrp[].advert", Type: "duration string", Default: q("1s"), Allowed: "v3: multiples of 10ms in 10ms..40.95s; v2: whole seconds 1s..255s",
			Doc: "The advertisement interval. The backup takes over after about three intervals without an advert. A master sends on a grid of a tenth of the interval on the wall clock (at most 5% early or late), so that groups of one interval advertise together."},
		{Path: "vrrp[].unicast", Type: "boolean", Default: "false",
			Doc: "Send adverts to the other node's address instead of the VRRP multicast group (224.0.0.18, ff02::12): for segments that drop multicast."},
		{Path: "vrrp[].accept_unknown_sources", Type: "boolean", Default: "false",
			Doc: "Act on adverts from hosts that are no [[node]] (by address or link_local). Off, they are dropped and counted; on, anyone on the segment can take the VIPs (warned about)."},
		{Path: "vrrp[].preempt", Type: "boolean", Default: "true", Doc: "A node of higher priority takes over from a lower master."},
		{Path: "vrrp[].preempt_delay", Type: "duration string", Default: q("0s"), Allowed: "0s..1h",
			Doc: "How long a node waits, after seeing a lower-priority master, before it preempts."},
		{Path: "vrrp[].accept", Type: "boolean", Default: "false",
			Doc: "RFC 5798 accept mode, recorded and shown. havip always adds VIPs as local addresses (IPVS needs them), so it behaves as accept = true."},
		{Path: "vrrp[].vips", Type: "array of prefix strings", Allowed: "at most 255, one address family, fitting a 1500-byte advert",
			Doc: "Required: the VIPs as prefixes (192.168.0.210/24, 2001:db8::210/64). Not multicast, loopback, unspecified, broadcast, IPv4-mapped or /0, " +
				"nor the network or broadcast address of their subnet. IPv4 and IPv6 VIPs go in separate groups."},
		{Path: "vrrp[].priorities", Type: "table",
			Doc: "Per-node priority overrides for this group, as node = priority (1..255), e.g. { lb2 = 200 }: makes the other node master of some groups (active/active)."},
		{Path: "vrrp[].notify", Type: "array of strings",
			Doc: "A program and its arguments, run without a shell as the script user on every state change; havip appends the group, the new state and the priority."},
		{Path: "vrrp[].notify_timeout", Type: "duration string", Default: q("10s"), Allowed: "more than 0s, at most 5m", Doc: "A notify program still running after this is killed."},
		{Path: "vrrp[].garp_count", Type: "integer", Default: "5", Allowed: "0..100",
			Doc: "Gratuitous ARPs (IPv4) or unsolicited neighbour advertisements (IPv6) per burst, on becoming master and on each refresh; 0 sends none."},
		{Path: "vrrp[].garp_interval", Type: "duration string", Default: q("100ms"), Allowed: "10ms..10s", Doc: "The gap between the packets of one burst."},
		{Path: "vrrp[].garp_refresh", Type: "duration string", Default: q("10s"), Allowed: "0s (off), or 1s..24h", Doc: "Repeat a burst this often while master."},
		{Path: "vrrp[].vip_lifetime", Type: "duration string", Default: q("5s"), Allowed: "at least 2s and more than two adverts, at most 24h",
			Doc: "The VIPs' valid lifetime in the kernel, refreshed by the master: a VIP left behind by a daemon that died disappears by itself."},
		{Path: "vrrp[].sync_group", Type: "string", Allowed: "not empty",
			Doc: "Groups of the same sync group are held by one node at a time (keepalived's vrrp_sync_group): a fault of one member is a fault of all, " +
				"and when one becomes master the others follow. Its members must rank the nodes alike."},
		{Path: "vrrp[].track", Type: "array of tables",
			Doc: "What moves this group's priority: each [[vrrp.track]] names one of interface, virtual_server or check, with a weight."},
		{Path: "vrrp[].track[].interface", Type: "string", Doc: "Track an interface: failing while it is down."},
		{Path: "vrrp[].track[].virtual_server", Type: "string", Doc: "Track a virtual server by name: failing while it has lost its quorum."},
		{Path: "vrrp[].track[].check", Type: "string", Doc: "Track a top-level [[check]] by name: failing while it is down."},
		{Path: "vrrp[].track[].weight", Type: "integer", Default: "0", Allowed: "-254..254",
			Doc: "Added to this node's priority while the track fails (negative lowers it); 0 puts the group in FAULT while it fails."},

		{Path: "virtual_server", Type: "array of tables", Doc: "One IPVS virtual service, programmed on both directors."},
		{Path: "virtual_server[].name", Type: "string", Allowed: "not empty", Doc: "The virtual server's name: required, unique. drain, status and track use it."},
		{Path: "virtual_server[].address", Type: "ip:port string", Doc: "The service address, e.g. 192.168.0.210:80 or [2001:db8::210]:443. Exactly one of address and fwmark."},
		{Path: "virtual_server[].fwmark", Type: "integer", Allowed: "1..4294967295", Doc: "A firewall-mark service: packets marked by nftables or iptables. Exactly one of address and fwmark."},
		{Path: "virtual_server[].family", Type: "string", Allowed: oneOf(families), Doc: "The address family; default the address's, or inet for a fwmark service."},
		{Path: "virtual_server[].protocol", Type: "string", Default: q("tcp"), Allowed: oneOf(protocols), Doc: "The transport protocol of the service."},
		{Path: "virtual_server[].scheduler", Type: "string", Default: q("wlc"), Allowed: oneOf(schedulers), Doc: "The kernel's IPVS scheduler."},
		{Path: "virtual_server[].scheduler_flags", Type: "array of strings", Allowed: "sh-fallback, sh-port (scheduler sh), mh-fallback, mh-port (scheduler mh)",
			Doc: "Scheduler flags, as ipvsadm -b takes them."},
		{Path: "virtual_server[].forward", Type: "string", Default: q("dr"), Allowed: oneOf(forwards),
			Doc: "How packets reach the real servers: dr is direct routing (ipvsadm -g), tun IP-in-IP tunnelling (-i), nat masquerading (-m)."},
		{Path: "virtual_server[].persistence", Type: "duration string", Default: q("0s"), Allowed: "whole seconds, at most 1176h",
			Doc: "Send a client back to the same real server for this long after its last connection; 0s is off."},
		{Path: "virtual_server[].persistence_netmask", Type: "string", Allowed: "/N, or a dotted netmask for IPv4",
			Doc: "Clients within this mask count as one for persistence; default /32 (IPv4), /128 (IPv6)."},
		{Path: "virtual_server[].quorum", Type: "integer", Allowed: "0..the number of real servers",
			Doc: "Live real servers needed, else the service counts as down (tracks see it, sorry_server takes over); default 1, or 0 with no real servers."},
		{Path: "virtual_server[].quorum_hysteresis", Type: "integer", Default: "0",
			Doc: "Quorum is lost below quorum minus this and regained at quorum plus this, so a flapping real server does not flap the service."},
		{Path: "virtual_server[].sorry_server", Type: "ip:port string", Default: q(""), Doc: "Where the service sends clients while its quorum is lost; \"\" is none."},
		{Path: "virtual_server[].on_failure", Type: "string", Default: q("remove"), Allowed: oneOf(onFailures),
			Doc: "What a failed real server becomes: removed from the table, or kept with weight 0 (its connections drain)."},
		{Path: "virtual_server[].check", Type: "table",
			Doc: "The health check every real server of this virtual server gets: the check keys below, without name and target (port probes another port). " +
				"Default a tcp connect to the real server's address."},
		{Path: "virtual_server[].real_server", Type: "array of tables", Doc: "One real server of the virtual server."},
		{Path: "virtual_server[].real_server[].address", Type: "ip:port string",
			Doc: "Required: the real server's address, in the virtual server's family. dr and tun cannot change the port."},
		{Path: "virtual_server[].real_server[].weight", Type: "integer", Default: "1", Allowed: "0..65535", Doc: "The scheduler's weight; 0 takes no new connections."},
		{Path: "virtual_server[].real_server[].forward", Type: "string", Allowed: oneOf(forwards), Doc: "Overrides the virtual server's forward for this real server."},

		{Path: "check", Type: "array of tables", Doc: "A named check of something other than a real server, for [[vrrp.track]] to refer to. Takes name, target and the check keys below."},
		{Path: "check[].name", Type: "string", Allowed: "not empty", Doc: "The check's name: required, unique."},
		{Path: "check[].target", Type: "host:port string",
			Doc: "What to probe: host:port (http and https: the port may be left out), an address or host name for ping. Required but for exec and none."},
		{Path: "check:type", Type: "string", Default: q("tcp"), Allowed: oneOf(checkTypes),
			Doc: "tcp connects; http and https send a request and read the reply; udp sends and may expect a reply; dns resolves; smtp wants the greeting 220 and EHLO answered 250; " +
				"ping sends one ICMP echo; exec runs a program (exit 0 is healthy); none is always healthy."},
		{Path: "check:port", Type: "integer", Allowed: "1..65535", Doc: "[virtual_server.check] only: probe this port of each real server instead of its own."},
		{Path: "check:interval", Type: "duration string", Default: q("2s"), Allowed: "100ms..1h, longer than timeout", Doc: "Time between probes."},
		{Path: "check:timeout", Type: "duration string", Default: q("1s"), Allowed: "at least 10ms", Doc: "A probe not answered within this fails."},
		{Path: "check:rise", Type: "integer", Default: "2", Allowed: "1..1000", Doc: "Successes in a row to count as up."},
		{Path: "check:fall", Type: "integer", Default: "3", Allowed: "1..1000", Doc: "Failures in a row to count as down."},
		{Path: "check:start", Type: "string", Default: q("up"), Allowed: "up, down",
			Doc: "The state before the first verdict: up is counted up until fall failures (a restart keeps the table); down gets no traffic before rise successes."},
		{Path: "check:path", Type: "string", Allowed: "starts with /", Doc: "http, https: the request path; default /."},
		{Path: "check:host", Type: "string", Doc: "http, https: the Host header; default the address probed."},
		{Path: "check:expect_status", Type: "integer, \"lo-hi\" string, or an array of them",
			Doc: "http, https: the status codes that pass, e.g. [200, \"202-204\"]; default [200]."},
		{Path: "check:method", Type: "string", Allowed: "capitals, e.g. GET, HEAD, POST", Doc: "http, https: the request method; default GET. HEAD reads no body."},
		{Path: "check:headers", Type: "table",
			Doc: "http, https: extra request headers, as name = value; not Host, Content-Length, Transfer-Encoding or Connection. User-Agent replaces havip's."},
		{Path: "check:expect_body", Type: "string", Allowed: "not empty", Doc: "http, https: the first 64 KiB of the body must contain this; default any body."},
		{Path: "check:expect_body_regex", Type: "string", Allowed: "a Go regular expression", Doc: "http, https: instead of expect_body, the body must match this."},
		{Path: "check:tls_verify", Type: "boolean", Default: "false", Doc: "https: verify the certificate chain and name."},
		{Path: "check:tls_ca", Type: "path string", Allowed: "absolute path", Doc: "https: a PEM file of the CAs to trust instead of the system's; needs tls_verify = true."},
		{Path: "check:tls_server_name", Type: "string", Doc: "https: the SNI and the name verified; default the host of host, else the address."},
		{Path: "check:command", Type: "array of strings", Doc: "exec: a program and its arguments, run without a shell as the script user; exit 0 is healthy."},
		{Path: "check:query", Type: "string", Doc: "dns: the name to resolve; required for type dns."},
		{Path: "check:query_type", Type: "string", Allowed: oneOf(dnsTypes), Doc: "dns: the record type asked for; default A."},
		{Path: "check:expect_answer", Type: "string",
			Doc: "dns: a record of query_type must have this value: the address (A, AAAA), the name (CNAME, NS, PTR, MX, SRV target, SOA primary server), the joined strings (TXT)."},
		{Path: "check:helo_name", Type: "string", Allowed: "a host name", Doc: "smtp: the name sent with EHLO; default this machine's host name."},
		{Path: "check:send", Type: "string", Doc: "udp: the payload sent."},
		{Path: "check:expect", Type: "string", Doc: "udp: the reply must contain this."},

		{Path: "sync", Type: "table",
			Doc: "The kernel's IPVS connection synchronisation, so that connections survive a failover: the master sends its connections, the backup receives them."},
		{Path: "sync.interface", Type: "string", Doc: "Required: the interface the sync daemon sends and receives on."},
		{Path: "sync.sync_id", Type: "integer", Default: "0", Allowed: "0..255", Doc: "Tells this pair's sync messages from others' on the same group."},
		{Path: "sync.group", Type: "multicast address string", Default: q(DefaultSyncGroup), Doc: "The multicast group the sync messages go to."},
		{Path: "sync.port", Type: "integer", Default: strconv.Itoa(DefaultSyncPort), Allowed: "1..65535", Doc: "The UDP port of the sync messages."},
		{Path: "sync.ttl", Type: "integer", Default: "1", Allowed: "1..255", Doc: "The TTL of the sync messages."},
		{Path: "sync.maxlen", Type: "integer", Default: strconv.Itoa(DefaultSyncMaxLen), Allowed: "0..65535",
			Doc: "The master's message size in bytes: 100 holds at most two connections, so a message leaves at once; 0 is the kernel's (from the MTU)."},
		{Path: "sync.sync_version", Type: "integer", Default: strconv.Itoa(DefaultSyncVersion), Allowed: "0, 1", Doc: "The kernel's sync protocol version."},
		{Path: "sync.sync_threshold", Type: "array of two integers", Default: "[" + strconv.Itoa(DefaultSyncThreshold) + ", " + strconv.Itoa(DefaultSyncPeriod) + "]",
			Allowed: "[threshold, period], each 0..1048576, threshold below a period other than 0",
			Doc:     "A connection is synced at its threshold-th packet and every period packets after; period 0 syncs on every state change."},
		{Path: "sync.sync_refresh_period", Type: "duration string", Default: q(short(DefaultSyncRefreshPeriod)), Allowed: "whole seconds",
			Doc: "Resend a connection whose state did not change after this."},
		{Path: "sync.sync_retries", Type: "integer", Default: "0", Allowed: "0..3", Doc: "Resends of an unchanged connection."},
		{Path: "sync.flush", Type: "duration string", Default: q(DefaultSyncFlush.String()), Allowed: "0s (never), or 1ms..10s",
			Doc: "Push out the message the kernel holds this often."},
	}
}

// KeyTable is the path of the table a Keys path is in: "vrrp[].track" for
// "vrrp[].track[].weight", "" for a top-level table, and "check:" for the
// keys both kinds of check take.
func KeyTable(path string) string {
	if strings.HasPrefix(path, "check:") {
		return "check:"
	}
	i := strings.LastIndexByte(path, '.')
	if i < 0 {
		return ""
	}
	return strings.TrimSuffix(path[:i], "[]")
}

// KeyName is the last part of a Keys path: "weight" for
// "vrrp[].track[].weight".
func KeyName(path string) string {
	return path[strings.LastIndexAny(path, ".:")+1:]
}

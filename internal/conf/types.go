package conf

import (
	"net/netip"
	"time"

	"github.com/havip/havip/internal/runas"
)

// Site is one validated site file: both directors of a pair load the same one.
type Site struct {
	File     string // path it was loaded from, for messages
	Revision string // first 12 hex digits of the SHA-256 of the file's bytes

	Name          string
	ControlSocket string // default /run/havip/havip.sock
	Metrics       string // default 127.0.0.1:9110; "" disables
	StateDir      string // default /var/lib/havip
	PairPort      uint16 // [site] pair_port: TCP port of the director-to-director pair link; default 7519
	// PairKey: [site] pair_key, the path of the pre-shared key file of
	// the pair link ("" = none: the link is unauthenticated and only
	// observes). Load checks the file; the daemon reads it.
	PairKey string
	// ScriptUser: [site] script_user (default "havip", else "nobody"
	// with a warning) and script_group (default the user's primary
	// group), resolved by Load on this host; nil from Parse. Load copies
	// it into every exec check (Check.RunAs) and every group with notify
	// hooks (Group.NotifyAs).
	ScriptUser *runas.User
	// ScriptSecurity: [site] script_security, default true: Load refuses
	// a script that someone other than root or the script user could
	// change (runas.Unsafe).
	ScriptSecurity bool

	Nodes          []Node
	Groups         []Group         // [[vrrp]]
	VirtualServers []VirtualServer // [[virtual_server]]
	Checks         []Check         // top-level [[check]], referenced by name from [[vrrp.track]]
	Sync           *Sync           // [sync]; nil when absent
}

// Node is one director of the pair.
type Node struct {
	Name     string
	Address  netip.Addr
	Priority uint8
	// LinkLocal: key link_local, optional, in fe80::/10: the link-local
	// address this node's IPv6 adverts come from (the same on every
	// interface with an IPv6 group). While a node has none, the others
	// accept IPv6 adverts from any link-local (see Site.AdvertSources).
	LinkLocal netip.Addr
}

// Group is one [[vrrp]] instance: VIPs that move together.
type Group struct {
	Name      string
	Interface string
	VRID      uint8
	Advert    time.Duration
	Version   int // 2 or 3
	Unicast   bool
	// AcceptUnknownSources: key accept_unknown_sources, default false:
	// also act on adverts whose source is no [[node]] of the site.
	AcceptUnknownSources bool
	Preempt              bool
	PreemptDelay         time.Duration
	Accept               bool // v3 accept mode; key "accept", default false
	VIPs                 []netip.Prefix
	Priorities           map[string]uint8 // per-node override
	Notify               []string         // argv
	NotifyAs             *runas.User      // who notify runs as: Site.ScriptUser; nil from Parse
	NotifyTimeout        time.Duration    // key "notify_timeout", default 10s
	Track                []Track
	// SyncGroup: key sync_group, "" = none. The groups of one sync group
	// move together (keepalived's vrrp_sync_group): when one leaves
	// MASTER, the others follow. conf guarantees that they rank the nodes
	// alike; see Site.SyncGroupMembers.
	SyncGroup string

	// Gratuitous ARP / unsolicited NA: keys garp_count (default 5; 0..100,
	// 0 = none at all), garp_interval (default "100ms"; 10ms..10s),
	// garp_refresh (default "10s"; "0s" off, else 1s..24h).
	GARPCount    int
	GARPInterval time.Duration
	GARPRefresh  time.Duration
	// VIPLifetime: key vip_lifetime, default "5s", at most 24h: the VIP
	// address is added with this valid lifetime and refreshed by the
	// master, so a killed daemon's VIPs vanish by the kernel's hand.
	VIPLifetime time.Duration
}

// Track is one [[vrrp.track]] entry; exactly one of Interface,
// VirtualServer, Check is set.
type Track struct {
	Interface     string
	VirtualServer string
	Check         string
	Weight        int // -254..254; 0 means FAULT while failing
}

// VirtualServer is one [[virtual_server]].
type VirtualServer struct {
	Name               string
	Address            netip.AddrPort // zero when FWMark is used
	FWMark             uint32
	Family             string // "inet" or "inet6": from Address, or key "family" (default inet) with fwmark
	Protocol           string // tcp | udp | sctp
	Scheduler          string
	SchedFlags         []string // key "scheduler_flags": e.g. ["sh-fallback","sh-port"] / ["mh-fallback","mh-port"]
	Forward            string   // dr | tun | nat
	Persistence        time.Duration
	PersistenceNetmask netip.Prefix // key "persistence_netmask": prefix length as "/24" style or netmask; default /32 (/128)
	Quorum             int
	// QuorumHysteresis: key quorum_hysteresis, default 0 (none), a count
	// of real servers like quorum: a service whose quorum is met loses it
	// only when fewer than Quorum-QuorumHysteresis real servers are live
	// (or none), and a service without quorum regains it only at
	// Quorum+QuorumHysteresis (keepalived's hysteresis, which counts
	// weights because its quorum does).
	QuorumHysteresis int
	SorryServer      netip.AddrPort // zero = none
	OnFailure        string         // remove | weight0
	Check            Check
	RealServers      []RealServer
}

// RealServer is one [[virtual_server.real_server]].
type RealServer struct {
	Address netip.AddrPort
	Weight  int
	Forward string // optional per-real-server override; "" inherits the virtual server's
}

// Check is a health check definition, either a virtual server's
// [virtual_server.check] or a named top-level [[check]].
type Check struct {
	Name   string // top-level only
	Type   string // tcp | http | https | udp | dns | smtp | ping | exec | none
	Target string // top-level tcp/http/...: "host:port" (or URL host; ping: a host alone); key "target"
	Port   uint16 // optional: probe this port instead of the real server's
	Path   string
	Host   string // http Host header
	// ExpectStatus: http/https, key expect_status: the statuses that pass,
	// each a code or a range; default [200].
	ExpectStatus []StatusRange
	// Method: http/https, key method, default "GET"; HEAD reads no body.
	Method string
	// Headers: http/https, key headers (a table), in file order: extra
	// request headers. conf refuses Host, Content-Length,
	// Transfer-Encoding, Connection and CR/LF in values.
	Headers []Header
	// ExpectBody / ExpectBodyRegex: http/https, keys expect_body (a
	// substring) and expect_body_regex (Go regexp syntax, compiled at
	// load), at most one: the first 64 KiB of body must match.
	ExpectBody      string
	ExpectBodyRegex string
	// https: TLSVerify (key tls_verify, default false) verifies the
	// certificate chain and name; TLSCA (tls_ca) is a PEM file of CAs to
	// trust instead of the system's, read and checked by Load;
	// TLSServerName (tls_server_name) is the SNI and verified name,
	// default the host of Host, else the target's address.
	TLSVerify     bool
	TLSCA         string
	TLSServerName string
	Interval      time.Duration
	Timeout       time.Duration
	Rise          int
	Fall          int
	Command       []string    // exec: argv
	RunAs         *runas.User // exec: who runs it, Site.ScriptUser; nil from Parse (and for other types)
	Query         string      // dns: name to resolve
	// QueryType: dns, key query_type, default "A": A, AAAA, SOA, MX, TXT,
	// CNAME, NS, PTR or SRV.
	QueryType string
	// ExpectAnswer: dns, key expect_answer, "" = any: a record of
	// QueryType in the answer must have this value (an address for A and
	// AAAA, a domain name for CNAME, NS, PTR, MX, SRV and SOA's primary
	// server, the joined strings for TXT).
	ExpectAnswer string
	// HeloName: smtp, key helo_name, default this machine's host name:
	// the name sent with EHLO.
	HeloName string
	Send     string // udp: payload
	Expect   string // udp: expected reply substring
	// StartDown: key start = "down" (default "up"): the target counts as
	// down until its first rise successes, so a real server gets no
	// traffic before it is proven (keepalived's alpha).
	StartDown bool
}

// StatusRange is a range of HTTP statuses, Lo..Hi inclusive (Lo == Hi
// for one code).
type StatusRange struct{ Lo, Hi int }

// Contains reports whether status lies in r.
func (r StatusRange) Contains(status int) bool { return r.Lo <= status && status <= r.Hi }

// Header is one extra request header of an http check.
type Header struct{ Name, Value string }

// Sync is the [sync] table: IPVS connection synchronisation between the directors.
type Sync struct {
	Interface string     // interface the sync daemons use
	SyncID    uint8      // 0..255
	Group     netip.Addr // multicast group; default 224.0.0.81
	Port      uint16     // default 8848
	TTL       uint8      // default 1
	// MaxLen: the master daemon's message size in bytes; 0 = the kernel's
	// (the MTU). The kernel never splits a connection entry (36 bytes for
	// IPv4, 72 for IPv6, after an 8-byte header), so 100 holds at most two
	// and 1 one. Default DefaultSyncMaxLen.
	MaxLen int
	// The kernel's sync sysctls (/proc/sys/net/ipv4/vs/), written in the
	// daemon's network namespace before the master daemon starts. See
	// README "Connection sync" for why each default.
	Version       int           // sync_version: 0 or 1; default DefaultSyncVersion
	Threshold     int           // sync_threshold[0]; default DefaultSyncThreshold
	Period        int           // sync_threshold[1]; default DefaultSyncPeriod
	RefreshPeriod time.Duration // sync_refresh_period, whole seconds; default DefaultSyncRefreshPeriod
	Retries       int           // sync_retries: 0..3; default 0
	// Flush: how often the master pushes out the message its kernel holds
	// (one throwaway connection through a loopback service, see
	// ipvsync.Flusher); 0 = never (the kernel's own 2-3 s). Default
	// DefaultSyncFlush.
	Flush time.Duration
}

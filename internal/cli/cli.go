// Package cli is havip's command line as data: its commands, what each
// takes, and each command's flags. cmd/havip defines its flag sets with
// these functions and runs the commands; packaging/gendocs makes havip(8)
// and the bash completion from the same table and flag sets, so neither
// can list a command or a flag the binary does not have. It parses and
// runs nothing itself.
package cli

import (
	"flag"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/havip/havip/internal/importka"
)

// DefaultConfig is the site file -c names unless given.
const DefaultConfig = "/etc/havip/havip.toml"

// ProbeEvery is how often havip failover --probe connects during a drill.
const ProbeEvery = 5 * time.Millisecond

// Command is one subcommand, as the usage texts and the manual show it.
type Command struct {
	Name, Args, What string
	// Flags defines the command's flags on fs: what the command itself
	// defines, for a caller that only lists them.
	Flags func(fs *flag.FlagSet)
}

// Commands lists havip's commands in the order usage shows them.
func Commands() []Command {
	client := func(fs *flag.FlagSet) { ClientFlags(fs) }
	return []Command{
		{"run", "-c FILE [--node NAME]", "the daemon, in the foreground", func(fs *flag.FlagSet) { RunFlags(fs) }},
		{"check", "-c FILE [--node NAME]", "validate the site file; exit 1 when invalid", func(fs *flag.FlagSet) { CheckFlags(fs) }},
		{"status", "[-c FILE] [--json]", "state of the running daemon", client},
		{"reload", "[-c FILE] [--json]", "make the running daemon re-read its site file", client},
		{"failover", "[GROUP...] [--force] [--probe ADDR:PORT] [--back]", "planned handover drill: refused (exit 2) unless the peer is ready",
			func(fs *flag.FlagSet) { ClientFlags(fs); FailoverFlags(fs) }},
		{"events", "[--follow] [--after SEQ]", "the daemon's events, one JSON line each; --follow streams", func(fs *flag.FlagSet) { ClientFlags(fs); EventsFlags(fs) }},
		{"drain", "VS REAL [--wait] [--timeout D] [--remove]", "weight 0 for a real server (persisted, mirrored to the peer)", func(fs *flag.FlagSet) { ClientFlags(fs); DrainFlags(fs) }},
		{"undrain", "VS REAL", "undo a drain", client},
		{"realserver", "up|down --mode dr|tun --vip ADDR...", "prepare (or restore) a real server", func(fs *flag.FlagSet) { RealserverFlags(fs) }},
		{"keygen", "FILE", "write a new pair-link key (mode 0600) for [site] pair_key", func(*flag.FlagSet) {}},
		{"import", "keepalived MASTER.conf [BACKUP.conf] | ipvsadm [FILE|-]",
			"a site file from keepalived configurations, or [[virtual_server]] tables to paste from ipvsadm-save -n; lists what it left out; exit 1 if unsafe",
			func(fs *flag.FlagSet) { ImportFlags(fs) }},
		{"version", "", "version, commit, build date", func(*flag.FlagSet) {}},
	}
}

// Run is havip run's flags.
type Run struct {
	Config, Node, Socket, StateDir, Metrics, LogLevel *string
}

// RunFlags defines havip run's flags. Metrics is "-" unless given, so
// that "" (disabled) can override the site file.
func RunFlags(fs *flag.FlagSet) Run {
	return Run{
		Config:   fs.String("c", DefaultConfig, "site file"),
		Node:     fs.String("node", "", "this director's [[node]] name (default: hostname)"),
		Socket:   fs.String("socket", "", "control socket path (overrides [site] control_socket)"),
		StateDir: fs.String("state-dir", "", "state directory (overrides [site] state_dir)"),
		Metrics:  fs.String("metrics", "-", "metrics listen address (overrides [site] metrics; \"\" disables)"),
		LogLevel: fs.String("log-level", "info", "debug | info | warn | error"),
	}
}

// Check is havip check's flags.
type Check struct{ Config, Node *string }

// CheckFlags defines havip check's flags.
func CheckFlags(fs *flag.FlagSet) Check {
	return Check{
		Config: fs.String("c", DefaultConfig, "site file"),
		Node:   fs.String("node", "", "check that this [[node]] exists"),
	}
}

// Client is the flags of every command that talks to the running daemon.
type Client struct {
	Config, Socket *string
	PID            *int
	JSON           *bool
}

// ClientFlags defines the flags of a command that talks to the daemon.
func ClientFlags(fs *flag.FlagSet) Client {
	return Client{
		Config: fs.String("c", DefaultConfig, "site file (to find the control socket)"),
		Socket: fs.String("socket", "", "control socket path"),
		PID:    fs.Int("pid", 0, "find the control socket of this havip run process (systemd: $MAINPID)"),
		JSON:   fs.Bool("json", false, "print JSON"),
	}
}

// Failover is havip failover's flags beyond the client's.
type Failover struct {
	Force, Back *bool
	Probe       *string
}

// FailoverFlags defines havip failover's flags beyond ClientFlags.
func FailoverFlags(fs *flag.FlagSet) Failover {
	return Failover{
		Force: fs.Bool("force", false, "hand over even if the pre-checks fail (without an authenticated peer: resign, break-before-make)"),
		Back:  fs.Bool("back", false, "ask the peer to hand back the groups (default: those it is MASTER and this node BACKUP of)"),
		Probe: fs.String("probe", "", "ADDR:PORT to connect through every "+ProbeEvery.String()+
			" during the drill, counting failed connections (the client-visible gap)"),
	}
}

// Events is havip events' flags beyond the client's.
type Events struct {
	Follow *bool
	After  *uint64
}

// EventsFlags defines havip events' flags beyond ClientFlags.
func EventsFlags(fs *flag.FlagSet) Events {
	return Events{
		Follow: fs.Bool("follow", false, "keep printing new events as they happen (until interrupted)"),
		After:  fs.Uint64("after", 0, "only events with a larger sequence number (resume where a previous run stopped)"),
	}
}

// Drain is havip drain's flags beyond the client's.
type Drain struct {
	Wait, Remove *bool
	Timeout      *time.Duration
}

// DrainFlags defines havip drain's flags beyond ClientFlags.
func DrainFlags(fs *flag.FlagSet) Drain {
	return Drain{
		Wait:    fs.Bool("wait", false, "wait until the real server has no active connection left"),
		Timeout: fs.Duration("timeout", 5*time.Minute, "with --wait: give up (exit 2) after this long"),
		Remove:  fs.Bool("remove", false, "remove the real server from the table (after --wait when given)"),
	}
}

// Realserver is havip realserver's flags. VIPs collects every --vip.
type Realserver struct {
	Mode, StateDir *string
	VIPs           *[]netip.Prefix
}

// RealserverFlags defines havip realserver's flags.
func RealserverFlags(fs *flag.FlagSet) Realserver {
	vips := new([]netip.Prefix)
	fs.Func("vip", "virtual IP (repeatable; ADDR or ADDR/LEN)", func(s string) error {
		for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' }) {
			p, err := ParseVIP(f)
			if err != nil {
				return err
			}
			*vips = append(*vips, p)
		}
		return nil
	})
	return Realserver{
		Mode:     fs.String("mode", "", "dr | tun"),
		StateDir: fs.String("state-dir", "/var/lib/havip", "where the previous settings are saved for down"),
		VIPs:     vips,
	}
}

// Import is havip import's flags.
type Import struct {
	Out, Site *string
	// Addresses maps a node name to its address, from every --address.
	Addresses map[string]netip.Addr
}

// ImportFlags defines havip import's flags.
func ImportFlags(fs *flag.FlagSet) Import {
	addrs := addressFlags{}
	fs.Var(addrs, "address", "keepalived: NODE=IP, the address of a node whose configuration names none (repeatable)")
	return Import{
		Out:       fs.String("o", "", "write the result to this file instead of stdout"),
		Site:      fs.String("site", "", "keepalived: the [site] name (default \"imported\")"),
		Addresses: addrs,
	}
}

// addressFlags collects --address NODE=IP.
type addressFlags map[string]netip.Addr

func (a addressFlags) String() string { return "" }

func (a addressFlags) Set(v string) error {
	name, ip, ok := strings.Cut(v, "=")
	addr, err := netip.ParseAddr(ip)
	if !ok || name == "" || err != nil {
		return fmt.Errorf("want NODE=IP, like %s=192.168.0.12", importka.PeerPlaceholder)
	}
	a[name] = addr
	return nil
}

// ParseVIP reads a real server's VIP: ADDR (a host prefix) or ADDR/LEN.
func ParseVIP(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, fmt.Errorf("bad VIP %q: %w", s, err)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad VIP %q: %w", s, err)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

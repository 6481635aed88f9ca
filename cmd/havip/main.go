// Command havip makes a pair of Linux LVS directors highly available:
// VRRP between the directors, VIPs claimed by the master, IPVS programmed
// on both. See README.md and the site file reference in examples/.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/havip/havip/internal/conf"
	"github.com/havip/havip/internal/ctl"
	"github.com/havip/havip/internal/daemon"
	"github.com/havip/havip/internal/realserver"
)

// Set with -ldflags "-X main.version=... -X main.commit=... -X main.date=...".
var (
	version = "dev"
	commit  = "unknown"
	date    = "unknown"
)

// Exit codes of the contract.
const (
	exitOK      = 0
	exitInput   = 1
	exitRuntime = 2
)

const defaultConfig = "/etc/havip/havip.toml"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: havip COMMAND [flags]

commands:
  run       -c FILE [--node NAME]      the daemon, in the foreground
  check     -c FILE [--node NAME]      validate the site file; exit 1 when invalid
  status    [-c FILE] [--json]         state of the running daemon
  failover  [GROUP...]                 planned handover drill to the peer
  realserver up|down --mode dr|tun --vip ADDR...
                                       prepare (or restore) a real server
  version                              version, commit, build date
`)
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitInput
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "run":
		return cmdRun(args, stderr)
	case "check":
		return cmdCheck(args, stdout, stderr)
	case "status":
		return cmdStatus(args, stdout, stderr)
	case "failover":
		return cmdFailover(args, stdout, stderr)
	case "realserver":
		return cmdRealserver(args, stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "havip %s (commit %s, built %s)\n", version, commit, date)
		return exitOK
	case "help", "-h", "--help":
		usage(stdout)
		return exitOK
	default:
		fmt.Fprintf(stderr, "havip: unknown command %q\n", cmd)
		usage(stderr)
		return exitInput
	}
}

// parse parses flags placed anywhere among the arguments and returns the
// positional ones.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("havip "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func cmdRun(args []string, stderr io.Writer) int {
	fs := newFlags("run", stderr)
	cfg := fs.String("c", defaultConfig, "site file")
	node := fs.String("node", "", "this director's [[node]] name (default: hostname)")
	sock := fs.String("socket", "", "control socket path (overrides [site] control_socket)")
	state := fs.String("state-dir", "", "state directory (overrides [site] state_dir)")
	metrics := fs.String("metrics", "-", "metrics listen address (overrides [site] metrics; \"\" disables)")
	logLevel := fs.String("log-level", "info", "debug | info | warn | error")
	if _, err := parse(fs, args); err != nil {
		return exitInput
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "havip run: bad --log-level: %v\n", err)
		return exitInput
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	slog.SetDefault(log)
	opts := daemon.Options{
		ConfigPath: *cfg, Node: *node, Socket: *sock, StateDir: *state,
		Version: version, Logger: log,
	}
	if *metrics != "-" {
		opts.Metrics = metrics
	}
	if err := daemon.Run(context.Background(), opts); err != nil {
		fmt.Fprintf(stderr, "havip run: %v\n", err)
		if errors.Is(err, daemon.ErrBadInput) {
			return exitInput
		}
		return exitRuntime
	}
	return exitOK
}

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("check", stderr)
	cfg := fs.String("c", defaultConfig, "site file")
	node := fs.String("node", "", "check that this [[node]] exists")
	if _, err := parse(fs, args); err != nil {
		return exitInput
	}
	site, problems, err := conf.Load(*cfg)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", *cfg, err)
		return exitInput
	}
	for _, p := range problems {
		fmt.Fprintln(stderr, p.String())
	}
	if conf.HasErrors(problems) {
		return exitInput
	}
	if *node != "" {
		if _, err := site.SelectNode(*node); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", *cfg, err)
			return exitInput
		}
	}
	fmt.Fprintf(stdout, "%s: ok (%d nodes, %d vrrp groups, %d virtual servers)\n",
		*cfg, len(site.Nodes), len(site.Groups), len(site.VirtualServers))
	return exitOK
}

// socketPath finds the control socket: --socket, else the site file's
// control_socket, else the default.
func socketPath(cfg, sock string, cfgSet bool) (string, error) {
	if sock != "" {
		return sock, nil
	}
	if _, err := os.Stat(cfg); err == nil || cfgSet {
		site, problems, err := conf.Load(cfg)
		if err != nil {
			return "", err
		}
		if conf.HasErrors(problems) {
			return "", fmt.Errorf("%s is invalid (run havip check -c %s)", cfg, cfg)
		}
		return site.ControlSocket, nil
	}
	return "/run/havip/havip.sock", nil
}

func clientFlags(name string, stderr io.Writer) (*flag.FlagSet, *string, *string) {
	fs := newFlags(name, stderr)
	cfg := fs.String("c", defaultConfig, "site file (to find the control socket)")
	sock := fs.String("socket", "", "control socket path")
	return fs, cfg, sock
}

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func cmdStatus(args []string, stdout, stderr io.Writer) int {
	fs, cfg, sock := clientFlags("status", stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parse(fs, args); err != nil {
		return exitInput
	}
	path, err := socketPath(*cfg, *sock, flagSet(fs, "c"))
	if err != nil {
		fmt.Fprintf(stderr, "havip status: %v\n", err)
		return exitInput
	}
	resp, err := ctl.Call(path, ctl.Request{Cmd: ctl.CmdStatus}, 5*time.Second)
	if err != nil {
		fmt.Fprintf(stderr, "havip status: %v\n", err)
		return exitRuntime
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(resp.Status)
		return exitOK
	}
	printStatus(stdout, resp.Status)
	return exitOK
}

func cmdFailover(args []string, stdout, stderr io.Writer) int {
	fs, cfg, sock := clientFlags("failover", stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	groups, err := parse(fs, args)
	if err != nil {
		return exitInput
	}
	path, err := socketPath(*cfg, *sock, flagSet(fs, "c"))
	if err != nil {
		fmt.Fprintf(stderr, "havip failover: %v\n", err)
		return exitInput
	}
	resp, err := ctl.Call(path, ctl.Request{Cmd: ctl.CmdFailover, Groups: groups}, 30*time.Second)
	if resp != nil && len(resp.Failover) > 0 {
		if *asJSON {
			_ = json.NewEncoder(stdout).Encode(resp.Failover)
		} else {
			printFailover(stdout, resp.Failover)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "havip failover: %v\n", err)
		if resp != nil && len(resp.Failover) == 0 && strings.Contains(err.Error(), "no group named") {
			return exitInput
		}
		return exitRuntime
	}
	return exitOK
}

func cmdRealserver(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("realserver", stderr)
	mode := fs.String("mode", "", "dr | tun")
	state := fs.String("state-dir", "/var/lib/havip", "where the previous settings are saved for down")
	var vips []netip.Prefix
	fs.Func("vip", "virtual IP (repeatable; ADDR or ADDR/LEN)", func(s string) error {
		for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' }) {
			p, err := parseVIP(f)
			if err != nil {
				return err
			}
			vips = append(vips, p)
		}
		return nil
	})
	pos, err := parse(fs, args)
	if err != nil {
		return exitInput
	}
	// --vip A B C: bare addresses after the action are VIPs too.
	if len(pos) == 0 || (pos[0] != "up" && pos[0] != "down") {
		fmt.Fprintln(stderr, "havip realserver: first argument must be up or down")
		return exitInput
	}
	for _, a := range pos[1:] {
		p, err := parseVIP(a)
		if err != nil {
			fmt.Fprintf(stderr, "havip realserver: %v\n", err)
			return exitInput
		}
		vips = append(vips, p)
	}
	if *mode != "dr" && *mode != "tun" {
		fmt.Fprintf(stderr, "havip realserver: --mode must be dr or tun, not %q\n", *mode)
		return exitInput
	}
	if len(vips) == 0 {
		fmt.Fprintln(stderr, "havip realserver: at least one --vip is needed")
		return exitInput
	}
	if pos[0] == "up" {
		err = realserver.Up(*mode, vips, *state)
	} else {
		err = realserver.Down(*mode, vips, *state)
	}
	if err != nil {
		fmt.Fprintf(stderr, "havip realserver %s: %v\n", pos[0], err)
		return exitRuntime
	}
	fmt.Fprintf(stdout, "real server %s (%s): %d VIP(s)\n", pos[0], *mode, len(vips))
	return exitOK
}

func parseVIP(s string) (netip.Prefix, error) {
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

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
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/havip/havip/internal/cli"
	"github.com/havip/havip/internal/conf"
	"github.com/havip/havip/internal/ctl"
	"github.com/havip/havip/internal/daemon"
	"github.com/havip/havip/internal/pairwire"
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

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// command is one subcommand, as the usage texts show it.
type command struct {
	name, args, what string
	run              func(args []string, stdout, stderr io.Writer) int
}

// commands is cli.Commands with what runs each.
func commands() []command {
	runners := map[string]func(args []string, stdout, stderr io.Writer) int{
		"run": cmdRun, "check": cmdCheck, "status": cmdStatus, "reload": cmdReload,
		"failover": cmdFailover, "events": cmdEvents, "drain": cmdDrain, "undrain": cmdUndrain,
		"realserver": cmdRealserver, "keygen": cmdKeygen, "import": cmdImport, "version": cmdVersion,
	}
	var cs []command
	for _, c := range cli.Commands() {
		cs = append(cs, command{c.Name, c.Args, c.What, runners[c.Name]})
	}
	return cs
}

func usage(w io.Writer) {
	fmt.Fprint(w, "usage: havip COMMAND [flags]\n\ncommands:\n")
	for _, c := range commands() {
		head := fmt.Sprintf("%-9s %s", c.name, c.args)
		if len(head) > 36 {
			fmt.Fprintf(w, "  %s\n%39s%s\n", head, "", c.what)
		} else {
			fmt.Fprintf(w, "  %-37s%s\n", head, c.what)
		}
	}
	fmt.Fprint(w, "\nhavip COMMAND -h lists the command's flags.\n")
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitInput
	}
	name, args := args[0], args[1:]
	switch name {
	case "--version", "-v":
		return cmdVersion(args, stdout, stderr)
	case "help", "-h", "--help":
		usage(stdout)
		return exitOK
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(args, stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "havip: unknown command %q\n", name)
	usage(stderr)
	return exitInput
}

// flags is one subcommand's flag set. -h prints the command's usage to
// stdout (exit 0); a bad flag or argument prints the problem and the usage
// to stderr (exit 1).
type flags struct {
	*flag.FlagSet
	cmd            command
	stdout, stderr io.Writer
}

func newFlags(name string, stdout, stderr io.Writer) *flags {
	f := &flags{FlagSet: flag.NewFlagSet("havip "+name, flag.ContinueOnError), stdout: stdout, stderr: stderr}
	for _, c := range commands() {
		if c.name == name {
			f.cmd = c
		}
	}
	f.SetOutput(stderr)
	f.Usage = func() {} // parse prints it, to the stream that fits
	return f
}

func (f *flags) usage(w io.Writer) {
	fmt.Fprintf(w, "usage: %s\n%s\n", strings.TrimSpace(f.Name()+" "+f.cmd.args), f.cmd.what)
	f.SetOutput(w)
	defer f.SetOutput(f.stderr)
	f.PrintDefaults()
}

// parse parses flags placed anywhere among the arguments and returns the
// positional ones. An error has been printed; exitFor gives the exit code.
func (f *flags) parse(args []string) ([]string, error) {
	var pos []string
	for {
		if err := f.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				f.usage(f.stdout)
			} else {
				f.usage(f.stderr)
			}
			return nil, err
		}
		args = f.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// parseNone is parse for a command that takes no positional arguments.
func (f *flags) parseNone(args []string) error {
	pos, err := f.parse(args)
	if err == nil && len(pos) > 0 {
		err = fmt.Errorf("unexpected argument %q", pos[0])
		fmt.Fprintf(f.stderr, "%s: %v\n", f.Name(), err)
		f.usage(f.stderr)
	}
	return err
}

// exitFor is the exit code for an error of parse: -h is not one.
func exitFor(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	return exitInput
}

func cmdKeygen(args []string, stdout, stderr io.Writer) int {
	f := newFlags("keygen", stdout, stderr)
	pos, err := f.parse(args)
	if err != nil {
		return exitFor(err)
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "havip keygen: name one file to write (for example /etc/havip/pair.key)")
		return exitInput
	}
	if err := pairwire.WriteNewKey(pos[0]); err != nil {
		fmt.Fprintf(stderr, "havip keygen: %v\n", err)
		if errors.Is(err, fs.ErrExist) {
			return exitInput
		}
		return exitRuntime
	}
	fmt.Fprintf(stdout, "wrote %s (mode 0600): copy it to the other director and name it in [site] pair_key on both\n", pos[0])
	return exitOK
}

func cmdVersion(args []string, stdout, stderr io.Writer) int {
	if err := newFlags("version", stdout, stderr).parseNone(args); err != nil {
		return exitFor(err)
	}
	fmt.Fprintf(stdout, "havip %s (commit %s, built %s)\n", version, commit, date)
	return exitOK
}

// daemonGCPercent is the daemon's GOGC unless the environment sets one.
const daemonGCPercent = 50

func cmdRun(args []string, stdout, stderr io.Writer) int {
	f := newFlags("run", stdout, stderr)
	rf := cli.RunFlags(f.FlagSet)
	cfg, node, sock, state, metrics, logLevel := rf.Config, rf.Node, rf.Socket, rf.StateDir, rf.Metrics, rf.LogLevel
	if err := f.parseNone(args); err != nil {
		return exitFor(err)
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "havip run: bad --log-level: %v\n", err)
		return exitInput
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	slog.SetDefault(log)
	if os.Getenv("GOGC") == "" {
		// The daemon's live heap is small (about 5 MB at 255 groups) and
		// its garbage steady, so the default (the heap may double before
		// a collection) is much of its RSS; 50 took 3 MB off at 255
		// groups (BenchmarkManyGroups) for a CPU cost within that
		// bench's noise.
		debug.SetGCPercent(daemonGCPercent)
	}
	opts := daemon.Options{
		ConfigPath: *cfg, Node: *node, Socket: *sock, StateDir: *state,
		Version: version, Logger: log,
		AutoProcs: os.Getenv("GOMAXPROCS") == "",
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
	f := newFlags("check", stdout, stderr)
	cf := cli.CheckFlags(f.FlagSet)
	cfg, node := cf.Config, cf.Node
	if err := f.parseNone(args); err != nil {
		return exitFor(err)
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

// client is the flags of a command that talks to the running daemon.
type client struct {
	*flags
	cfg, sock *string
	pid       *int
	asJSON    *bool
}

func newClient(name string, stdout, stderr io.Writer) *client {
	f := newFlags(name, stdout, stderr)
	cf := cli.ClientFlags(f.FlagSet)
	return &client{flags: f, cfg: cf.Config, sock: cf.Socket, pid: cf.PID, asJSON: cf.JSON}
}

// inputError marks an error that is bad input (exit 1), not a runtime
// failure (exit 2).
type inputError struct{ error }

func (e inputError) Unwrap() error { return e.error }

// call sends req to the daemon and waits up to timeout for the answer.
func (c *client) call(req ctl.Request, timeout time.Duration) (*ctl.Response, error) {
	path, err := c.socket()
	if errors.Is(err, ctl.ErrNotRunning) {
		return nil, err
	}
	if err != nil {
		return nil, inputError{err}
	}
	return ctl.Call(path, req, timeout)
}

// socket finds the control socket: --socket, else the site file's
// control_socket, else the default. An invalid file is read leniently
// (with a note), so the daemon stays reachable while it is being edited.
// An unreadable -c FILE is an error; an unreadable default file is not
// (a missing one goes without a note).
func (c *client) socket() (string, error) {
	if *c.sock != "" {
		return *c.sock, nil
	}
	if *c.pid != 0 {
		path, err := socketOfPID(*c.pid)
		if err != nil {
			return "", fmt.Errorf("%w: %v", ctl.ErrNotRunning, err)
		}
		return path, nil
	}
	data, err := conf.ReadFile(*c.cfg)
	switch {
	case err != nil && c.set("c"):
		return "", err
	case err != nil:
		if !errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(c.stderr, "%s: note: %v; asking the daemon on %s\n", c.Name(), err, conf.DefaultControlSocket)
		}
		return conf.DefaultControlSocket, nil
	}
	site, problems := conf.Parse(*c.cfg, data)
	if !conf.HasErrors(problems) {
		return site.ControlSocket, nil
	}
	path, ok := conf.PeekControlSocket(data)
	if !ok {
		path = conf.DefaultControlSocket
	}
	fmt.Fprintf(c.stderr, "%s: note: %s is invalid (havip check -c %s says why); asking the daemon on %s\n", c.Name(), *c.cfg, *c.cfg, path)
	return path, nil
}

func (c *client) set(name string) bool {
	set := false
	c.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// fail prints err and returns its exit code.
func (c *client) fail(err error) int {
	fmt.Fprintf(c.stderr, "%s: %v\n", c.Name(), err)
	if _, ok := errors.AsType[inputError](err); ok {
		return exitInput
	}
	return exitRuntime
}

func (c *client) printJSON(v any) {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func cmdStatus(args []string, stdout, stderr io.Writer) int {
	c := newClient("status", stdout, stderr)
	if err := c.parseNone(args); err != nil {
		return exitFor(err)
	}
	resp, err := c.call(ctl.Request{Cmd: ctl.CmdStatus}, 5*time.Second)
	if err != nil {
		return c.fail(err)
	}
	if *c.asJSON {
		c.printJSON(resp.Status)
	} else {
		printStatus(stdout, resp.Status)
	}
	return exitOK
}

// cmdReload asks the daemon to re-read its site file: exit 0 when the new
// file runs, 1 when the daemon refused it (the old one keeps running), 2
// when the daemon could not be asked.
func cmdReload(args []string, stdout, stderr io.Writer) int {
	c := newClient("reload", stdout, stderr)
	if err := c.parseNone(args); err != nil {
		return exitFor(err)
	}
	resp, err := c.call(ctl.Request{Cmd: ctl.CmdReload}, 60*time.Second)
	if resp == nil || resp.Reload == nil {
		if err == nil {
			err = errors.New("the daemon answered without a reload result")
		}
		return c.fail(err)
	}
	res := resp.Reload
	switch {
	case *c.asJSON:
		c.printJSON(res)
	case res.Applied:
		printReload(stdout, stderr, res)
	default:
		for _, p := range res.Problems {
			fmt.Fprintln(stderr, p)
		}
		if len(res.Problems) == 0 && err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", c.Name(), err)
		}
		fmt.Fprintln(stderr, "reload refused; the running configuration is unchanged")
	}
	if !res.Applied {
		return exitInput
	}
	return exitOK
}

func cmdFailover(args []string, stdout, stderr io.Writer) int {
	c := newClient("failover", stdout, stderr)
	ff := cli.FailoverFlags(c.FlagSet)
	force, back, probe := ff.Force, ff.Back, ff.Probe
	groups, err := c.parse(args)
	if err != nil {
		return exitFor(err)
	}
	var target netip.AddrPort
	if *probe != "" {
		if target, err = netip.ParseAddrPort(*probe); err != nil {
			return c.fail(inputError{fmt.Errorf("--probe %q: want ADDR:PORT: %w", *probe, err)})
		}
	}
	if *back && *force {
		return c.fail(inputError{errors.New("--back cannot force the peer: run havip failover --force on it")})
	}
	var pr *prober
	if *probe != "" {
		pr = startProbe(target.String())
		time.Sleep(probeBefore)
		pr.started()
	}
	resp, err := c.call(ctl.Request{Cmd: ctl.CmdFailover, Groups: groups, Force: *force, Back: *back}, 30*time.Second)
	out := failoverOutput{}
	if resp != nil {
		out.Groups = resp.Failover
	}
	for _, r := range out.Groups {
		out.Refused = out.Refused || r.Refused
	}
	if pr != nil {
		if err == nil {
			time.Sleep(probeAfter)
		}
		rep := pr.finish()
		out.Probe = &rep
	} else {
		out.ClientGap = notMeasured
	}
	switch {
	case *c.asJSON && (len(out.Groups) > 0 || out.Probe != nil):
		c.printJSON(out)
	case len(out.Groups) > 0 || out.Probe != nil:
		printFailover(stdout, out)
	}
	if err != nil {
		if len(out.Groups) == 0 && strings.Contains(err.Error(), "no group named") {
			err = inputError{err}
		}
		return c.fail(err)
	}
	return exitOK
}

// cmdDrain drains real server REAL (address:port as in the site file) of
// virtual server VS: weight 0, so its connections finish and new ones go
// elsewhere. --wait waits until the kernel counts no active connection
// (exit 2 at --timeout, with the count left); --remove then takes it out
// of the table (at once without --wait).
func cmdDrain(args []string, stdout, stderr io.Writer) int {
	c := newClient("drain", stdout, stderr)
	df := cli.DrainFlags(c.FlagSet)
	wait, timeout, remove := df.Wait, df.Timeout, df.Remove
	vs, real, code, ok := c.drainArgs(args)
	if !ok {
		return code
	}
	req := ctl.Request{Cmd: ctl.CmdDrain, VirtualServer: vs, RealServer: real, Remove: *remove && !*wait}
	res, code := c.drainCall(req)
	if res == nil {
		return code
	}
	c.printDrain(res)
	if !*wait {
		return exitOK
	}
	if code := c.waitDrained(vs, real, res.At, *timeout); code != exitOK {
		return code
	}
	if *remove {
		req.Remove = true
		res, code := c.drainCall(req)
		if res == nil {
			return code
		}
		c.printDrain(res)
	}
	return exitOK
}

func (c *client) printDrain(res *ctl.DrainResult) {
	if *c.asJSON {
		c.printJSON(res)
	} else {
		fmt.Fprintln(c.stdout, res.Message)
	}
}

func cmdUndrain(args []string, stdout, stderr io.Writer) int {
	c := newClient("undrain", stdout, stderr)
	vs, real, code, ok := c.drainArgs(args)
	if !ok {
		return code
	}
	res, code := c.drainCall(ctl.Request{Cmd: ctl.CmdUndrain, VirtualServer: vs, RealServer: real})
	if res == nil {
		return code
	}
	c.printDrain(res)
	return exitOK
}

// drainArgs parses the flags and the two positional arguments.
func (c *client) drainArgs(args []string) (vs, real string, code int, ok bool) {
	pos, err := c.parse(args)
	if err != nil {
		return "", "", exitFor(err), false
	}
	if len(pos) != 2 {
		fmt.Fprintf(c.stderr, "%s: want two arguments, VS and REAL (the real server's address:port), got %d\n", c.Name(), len(pos))
		c.usage(c.stderr)
		return "", "", exitInput, false
	}
	return pos[0], pos[1], exitOK, true
}

// drainCall sends a drain or undrain; nil and the exit code when it failed.
func (c *client) drainCall(req ctl.Request) (*ctl.DrainResult, int) {
	resp, err := c.call(req, 30*time.Second)
	if err == nil && (resp == nil || resp.Drain == nil) {
		err = errors.New("the daemon answered without a drain result")
	}
	if err != nil {
		if resp != nil && resp.BadInput {
			err = inputError{err}
		}
		return nil, c.fail(err)
	}
	return resp.Drain, exitOK
}

// waitDrained polls status until the kernel, read after the drain was
// applied (IPVS as_of), counts no active connection for the real server.
func (c *client) waitDrained(vs, real string, applied time.Time, timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	left := -1
	for {
		resp, err := c.call(ctl.Request{Cmd: ctl.CmdStatus}, 5*time.Second)
		if err != nil {
			return c.fail(err)
		}
		st := resp.Status
		var d *ctl.DrainStatus
		for i := range st.Drains {
			if st.Drains[i].VirtualServer == vs && sameAddr(st.Drains[i].RealServer, real) {
				d = &st.Drains[i]
			}
		}
		switch {
		case d == nil:
			return c.fail(fmt.Errorf("%s %s is no longer drained (undrained meanwhile?)", vs, real))
		case st.IPVS == nil || !st.IPVS.AsOf.After(applied):
			// the kernel not read since the drain yet
		case !d.InKernel:
			fmt.Fprintf(c.stdout, "%s %s is not in the kernel table: no connection to wait for\n", vs, real)
			return exitOK
		case d.Weight == 0 && d.Active == 0:
			fmt.Fprintf(c.stdout, "%s %s: no active connection left (%d inactive)\n", vs, real, d.Inactive)
			return exitOK
		default:
			left = d.Active
		}
		if time.Now().After(deadline) {
			return c.fail(fmt.Errorf("timeout after %s: %d active connection(s) left on %s %s", timeout, left, vs, real))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func sameAddr(a, b string) bool {
	x, err1 := netip.ParseAddrPort(a)
	y, err2 := netip.ParseAddrPort(b)
	return err1 == nil && err2 == nil && netip.AddrPortFrom(x.Addr().Unmap(), x.Port()) == netip.AddrPortFrom(y.Addr().Unmap(), y.Port())
}

func cmdRealserver(args []string, stdout, stderr io.Writer) int {
	f := newFlags("realserver", stdout, stderr)
	rf := cli.RealserverFlags(f.FlagSet)
	mode, state := rf.Mode, rf.StateDir
	pos, err := f.parse(args)
	if err != nil {
		return exitFor(err)
	}
	// --vip A B C: bare addresses after the action are VIPs too.
	if len(pos) == 0 || (pos[0] != "up" && pos[0] != "down") {
		fmt.Fprintln(stderr, "havip realserver: first argument must be up or down")
		return exitInput
	}
	for _, a := range pos[1:] {
		p, err := cli.ParseVIP(a)
		if err != nil {
			fmt.Fprintf(stderr, "havip realserver: %v\n", err)
			return exitInput
		}
		*rf.VIPs = append(*rf.VIPs, p)
	}
	vips := *rf.VIPs
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

// Package daemon is `havip run`. One controller goroutine owns the site,
// this node, health results, link and address states and the peer's view
// (controller.go); everything else reaches it as an event. One pure
// function (derive.go) turns those inputs into what is wanted: the IPVS
// table and each group's tracked objects, priority and fault. The parts
// that act are tasks the controller starts and stops in a written-down
// order: the link watch, notify hooks, the control socket, metrics, health
// checks, the IPVS reconciler, the pair link and one task per VRRP group
// (group.go). Status and metrics read snapshots the tasks publish; they
// never touch the kernel. A reload (reload.go) builds what is new next to
// what runs and commits, or refuses whole.
//
// Protocol logic lives in vrrp, sockets in vrrpnet, VIPs in vip, IPVS in
// ipvsync, probes in checks, the site file in conf: this package wires
// them and owns their lifecycles. Wire types (ctl) appear only at the
// control-socket edge (control.go, status.go).
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/havip/havip/internal/conf"
)

// signals are the daemon's: SIGHUP reloads, SIGTERM and SIGINT stop.
type signals struct{ hup, stop chan os.Signal }

// catchSignals catches them from the start of Run, before the site file
// is read, until the process exits: left to its default action, a SIGHUP
// while the daemon loads its file, or after it has stopped, ended the
// process (and systemd counts that as a clean exit, so it does not
// restart it). Stop signals have a channel of their own: os/signal drops
// a signal whose channel is full, and a SIGTERM queued behind reloads was
// lost in a SIGHUP storm. SIGHUPs coalesce (a reload reads the newest
// file anyway).
func catchSignals() signals {
	s := signals{hup: make(chan os.Signal, 1), stop: make(chan os.Signal, 1)}
	signal.Notify(s.hup, syscall.SIGHUP)
	signal.Notify(s.stop, syscall.SIGTERM, syscall.SIGINT)
	return s
}

// ErrBadInput marks failures caused by the operator's input (exit code 1);
// everything else is a runtime failure (exit code 2).
var ErrBadInput = errors.New("bad input")

// Options are the command-line settings of `havip run`.
type Options struct {
	ConfigPath string
	Node       string // "" = hostname
	Socket     string // overrides [site] control_socket (two daemons on one machine)
	StateDir   string // overrides [site] state_dir
	Metrics    *string
	Version    string
	Logger     *slog.Logger
	// AutoProcs: the daemon sets GOMAXPROCS from the site's check load
	// (procs.go); false when the environment sets it.
	AutoProcs bool
}

// loaded is a validated site file with this node picked out.
type loaded struct {
	site     *conf.Site
	node     *conf.Node
	warnings []conf.Problem
}

// problemsError is a site file refused for its problems.
type problemsError struct {
	file     string
	problems []conf.Problem
}

func (e *problemsError) Error() string {
	var b strings.Builder
	b.WriteString("invalid site file:")
	for _, p := range e.problems {
		b.WriteString("\n" + p.String())
	}
	return b.String()
}

func (e *problemsError) Unwrap() error { return ErrBadInput }

// load reads and validates the site file, applies the command-line
// overrides and picks this node. Problems come back as a *problemsError
// (wrapping ErrBadInput); so does a missing node.
func load(opts Options) (*loaded, error) {
	site, problems, err := conf.Load(opts.ConfigPath)
	if err != nil {
		return nil, &problemsError{file: opts.ConfigPath, problems: []conf.Problem{{File: opts.ConfigPath, Line: 0, Msg: err.Error()}}}
	}
	var errs, warns []conf.Problem
	for _, p := range problems {
		if p.Warning {
			warns = append(warns, p)
		} else {
			errs = append(errs, p)
		}
	}
	if len(errs) > 0 {
		return nil, &problemsError{file: opts.ConfigPath, problems: errs}
	}
	n, err := site.SelectNode(opts.Node)
	if err != nil {
		return nil, &problemsError{file: opts.ConfigPath, problems: []conf.Problem{{File: opts.ConfigPath, Msg: err.Error()}}}
	}
	if opts.Socket != "" {
		site.ControlSocket = opts.Socket
	}
	if opts.StateDir != "" {
		site.StateDir = opts.StateDir
	}
	if opts.Metrics != nil {
		site.Metrics = *opts.Metrics
	}
	return &loaded{site: site, node: n, warnings: warns}, nil
}

// Run runs the daemon until ctx ends or SIGTERM/SIGINT, then stops
// gracefully. Bad input is an error wrapping ErrBadInput.
func Run(ctx context.Context, opts Options) error {
	sigs := catchSignals()
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	l, err := load(opts)
	if err != nil {
		return err
	}
	for _, p := range l.warnings {
		log.Warn("site file", "problem", p.String())
	}
	fitProcs(l.site, opts.AutoProcs, true, log)
	c := newController(opts, log, l, sigs)
	if err := c.run(ctx); err != nil {
		return fmt.Errorf("havip: %w", err)
	}
	return nil
}

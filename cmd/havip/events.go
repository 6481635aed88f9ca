package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/havip/havip/internal/cli"
	"github.com/havip/havip/internal/ctl"
)

// cmdEvents prints the daemon's events, one JSON line each, oldest first:
// those it keeps (the last 1024), or those after --after SEQ. With
// --follow it then prints each new one as it happens, until SIGINT or
// SIGTERM (exit 0) or until the daemon closes the stream (it stops, or a
// reload moved the control socket: exit 2).
func cmdEvents(args []string, stdout, stderr io.Writer) int {
	c := newClient("events", stdout, stderr)
	ef := cli.EventsFlags(c.FlagSet)
	follow, after := ef.Follow, ef.After
	if err := c.parseNone(args); err != nil {
		return exitFor(err)
	}
	req := ctl.Request{Cmd: ctl.CmdEvents, After: *after, Follow: *follow}
	if !*follow {
		resp, err := c.call(req, 10*time.Second)
		if err != nil {
			return c.fail(err)
		}
		if err := printEvents(stdout, resp.Events); err != nil {
			return c.fail(err)
		}
		return exitOK
	}
	path, err := c.socket()
	if err != nil {
		if !errors.Is(err, ctl.ErrNotRunning) {
			err = inputError{err}
		}
		return c.fail(err)
	}
	done := make(chan struct{})
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() { <-sigs; close(done) }()
	err = ctl.Stream(path, req, done, func(r *ctl.Response) error { return printEvents(stdout, r.Events) })
	if err != nil {
		if errors.Is(err, ctl.ErrStreamClosed) {
			err = errors.New("the daemon closed the stream (it stopped)")
		}
		return c.fail(err)
	}
	return exitOK
}

// printEvents writes one JSON line per event, safe for a terminal.
func printEvents(w io.Writer, evs []ctl.Event) error {
	for _, e := range evs {
		b, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("encoding event %d: %w", e.Seq, err)
		}
		if _, err := w.Write(append(terminalSafe(b), '\n')); err != nil {
			return err
		}
	}
	return nil
}

// terminalSafe escapes what encoding/json leaves raw but a terminal would
// act on: DEL and the C1 controls (U+0080..U+009F, U+009B is a CSI).
// Event fields carry text from the peer (group names) and from the site
// file; C0 controls such as ESC are already \u001b. b is valid UTF-8 from
// json.Marshal, where these runes only occur inside strings, so \u escapes
// keep it valid JSON with the same value.
func terminalSafe(b []byte) []byte {
	if !bytes.ContainsFunc(b, isTerminalControl) {
		return b
	}
	out := make([]byte, 0, len(b)+16)
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if isTerminalControl(r) {
			out = fmt.Appendf(out, `\u%04x`, r)
		} else {
			out = append(out, b[:n]...)
		}
		b = b[n:]
	}
	return out
}

func isTerminalControl(r rune) bool { return r < 0x20 || r >= 0x7f && r <= 0x9f }

package checks

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/havip/havip/internal/conf"
)

// smtpProber reads the greeting (220), says EHLO HeloName and wants 250,
// then sends QUIT without waiting for its answer and closes with a reset.
type smtpProber struct {
	addr    string
	ehlo    []byte
	timeout time.Duration
	dialer  net.Dialer
}

// maxReplyLines bounds a multi-line SMTP reply.
const maxReplyLines = 100

var smtpQuit = []byte("QUIT\r\n")

// newSMTPProber builds the prober of an smtp check; HeloName "" means
// "localhost".
func newSMTPProber(c conf.Check, addr netip.AddrPort) prober {
	helo := c.HeloName
	if helo == "" {
		helo = "localhost"
	}
	if strings.ContainsAny(helo, " \r\n") {
		return failing(fail(FailConfig, "smtp: bad helo name %q", helo))
	}
	p := &smtpProber{addr: addr.String(), ehlo: []byte("EHLO " + helo + "\r\n"), timeout: c.Timeout}
	return p.probe
}

func (p *smtpProber) probe(ctx context.Context) (string, error) {
	c, err := p.dialer.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return "", netError(ctx, "connect", err, p.timeout)
	}
	defer closeReset(c)
	defer deadlineOf(ctx, c)()
	br := getReader(c)
	defer putReader(br)
	code, text, err := readSMTPReply(br)
	if err != nil {
		return "", p.readError(ctx, "greeting", err)
	}
	if code != 220 {
		return "", fail(FailStatus, "smtp: greeting %d %s", code, text)
	}
	if _, err := c.Write(p.ehlo); err != nil {
		return "", netError(ctx, "send", err, p.timeout)
	}
	code, text, err = readSMTPReply(br)
	if err != nil {
		return "", p.readError(ctx, "EHLO", err)
	}
	if code != 250 {
		return "", fail(FailStatus, "smtp: EHLO answered %d %s", code, text)
	}
	_, _ = c.Write(smtpQuit) // courtesy: the reset ends the session anyway
	return "EHLO 250", nil
}

func (p *smtpProber) readError(ctx context.Context, step string, err error) error {
	switch {
	case errors.Is(err, errMalformed):
		return fail(FailProtocol, "smtp: %s: %v", step, err)
	case ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded):
		return fail(FailTimeout, "smtp: %s: timeout after %s", step, p.timeout)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fail(FailConnect, "smtp: %s: connection closed", step)
	}
	return netError(ctx, "smtp: "+step, err, p.timeout)
}

// readSMTPReply reads one reply (RFC 5321 section 4.2): lines "NNN-text"
// and a last "NNN text" (or "NNN"), all with the same code. It returns
// the code and the text of the first line.
func readSMTPReply(br *bufio.Reader) (int, string, error) {
	code, first := 0, ""
	for i := range maxReplyLines {
		line, err := readLine(br)
		if err != nil {
			return 0, "", err
		}
		if len(line) < 3 || len(line) > 3 && line[3] != ' ' && line[3] != '-' {
			return 0, "", fmt.Errorf("%w: not a reply: %q", errMalformed, clip(line))
		}
		n := 0
		for _, d := range line[:3] {
			if d < '0' || d > '9' {
				return 0, "", fmt.Errorf("%w: not a reply: %q", errMalformed, clip(line))
			}
			n = n*10 + int(d-'0')
		}
		if n < 200 || n > 599 {
			return 0, "", fmt.Errorf("%w: reply code %d", errMalformed, n)
		}
		if i == 0 {
			code = n
			if len(line) > 4 {
				first = clip(line[4:])
			}
		} else if n != code {
			return 0, "", fmt.Errorf("%w: reply lines with codes %d and %d", errMalformed, code, n)
		}
		if len(line) == 3 || line[3] == ' ' {
			return code, first, nil
		}
	}
	return 0, "", fmt.Errorf("%w: a reply of more than %d lines", errMalformed, maxReplyLines)
}

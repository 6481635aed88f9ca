package checks

import (
	"bufio"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// smtpServer is a tiny SMTP server on loopback: it writes greeting, then
// answers each command line with answer(line) ("" = stay silent). What it
// received is kept, for the test to look at.
type smtpServer struct {
	addr netip.AddrPort
	mu   sync.Mutex
	got  []string
}

func (s *smtpServer) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...)
}

func newSMTPServer(t *testing.T, greeting string, answer func(line string) string) *smtpServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s := &smtpServer{addr: addrOf(t, ln.Addr())}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if greeting != "" {
					c.Write([]byte(greeting))
				}
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					s.mu.Lock()
					s.got = append(s.got, sc.Text())
					s.mu.Unlock()
					if a := answer(sc.Text()); a != "" {
						c.Write([]byte(a))
					}
				}
			}()
		}
	}()
	return s
}

func TestProbeSMTP(t *testing.T) {
	const timeout = 300 * time.Millisecond
	ehlo := func(line string) string {
		switch {
		case strings.HasPrefix(line, "EHLO "):
			return "250-mx.test greets " + strings.TrimPrefix(line, "EHLO ") + "\r\n250-PIPELINING\r\n250 SIZE 10240000\r\n"
		case line == "QUIT":
			return "221 bye\r\n"
		}
		return "500 what?\r\n"
	}
	good := newSMTPServer(t, "220-mx.test ESMTP\r\n220 welcome\r\n", ehlo)
	refusing := newSMTPServer(t, "554 mx.test no service\r\n", ehlo)
	noEHLO := newSMTPServer(t, "220 mx.test ESMTP\r\n", func(line string) string { return "502 5.5.2 not implemented\r\n" })
	silent := newSMTPServer(t, "", ehlo)
	mute := newSMTPServer(t, "220 mx.test\r\n", func(string) string { return "" })
	garbage := newSMTPServer(t, "HTTP/1.1 400 Bad Request\r\n", ehlo)
	mixed := newSMTPServer(t, "220-mx.test\r\n250 oops\r\n", ehlo)
	sc := func(helo string) Target {
		c := check("smtp", timeout)
		c.HeloName = helo
		return Target{Check: c}
	}
	at := func(tg Target, s *smtpServer) Target { tg.Addr = s.addr; return tg }
	runProbes(t, []probeCase{
		{"good", at(sc("lb1.example.test"), good), outcome{OK: true, Reason: "EHLO 250"}},
		{"554 greeting", at(sc("lb1"), refusing), outcome{Kind: FailStatus, Reason: "smtp: greeting 554 mx.test no service"}},
		{"EHLO refused", at(sc("lb1"), noEHLO), outcome{Kind: FailStatus, Reason: "smtp: EHLO answered 502 5.5.2 not implemented"}},
		{"silent server", at(sc("lb1"), silent), outcome{Kind: FailTimeout, Reason: "smtp: greeting: timeout after 300ms"}},
		{"no answer to EHLO", at(sc("lb1"), mute), outcome{Kind: FailTimeout, Reason: "smtp: EHLO: timeout after 300ms"}},
		{"garbage", at(sc("lb1"), garbage), outcome{Kind: FailProtocol, Reason: `smtp: greeting: malformed: not a reply: "HTTP/1.1 400 Bad Request"`}},
		{"codes differ within a reply", at(sc("lb1"), mixed), outcome{Kind: FailProtocol, Reason: "smtp: greeting: malformed: reply lines with codes 220 and 250"}},
		{"refused", Target{Check: sc("lb1").Check, Addr: closedTCPPort(t)}, outcome{Kind: FailRefused, Reason: "connect: connection refused"}},
	})

	t.Run("what the server saw", func(t *testing.T) {
		s := newSMTPServer(t, "220 mx.test\r\n", ehlo)
		if got := probeOnce(t, at(sc("lb1.example.test"), s)); !got.OK {
			t.Fatalf("probe = %+v, want success", got)
		}
		want := []string{"EHLO lb1.example.test", "QUIT"}
		deadline := time.Now().Add(time.Second)
		for len(s.lines()) < len(want) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if got := s.lines(); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("server received %q, want %q", got, want)
		}
	})
}

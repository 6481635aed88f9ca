package main

import (
	"net"
	"strings"
	"testing"
	"time"
)

// The probe counts real connections: all succeed against a listener, all
// fail (with a window) against a port nothing listens on.
func TestProbe(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	p := startProbe(l.Addr().String())
	time.Sleep(20 * time.Millisecond)
	p.started()
	time.Sleep(80 * time.Millisecond)
	r := p.finish()
	if r.Attempts < 5 || r.Failed != 0 || r.Window != "" {
		t.Errorf("against a listener: %+v, want several attempts and none failed", r)
	}

	addr := l.Addr().String()
	l.Close() // nothing listens there now: every connection is refused
	p = startProbe(addr)
	p.started()
	time.Sleep(50 * time.Millisecond)
	r = p.finish()
	if r.Attempts < 3 || r.Failed != r.Attempts || r.Window == "" || !strings.HasPrefix(r.FirstFailure, "+") || len(r.Errors) == 0 {
		t.Errorf("against a closed port: %+v, want every attempt failed and a window", r)
	}
}

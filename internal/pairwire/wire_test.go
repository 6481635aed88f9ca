package pairwire

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	key1 = bytes.Repeat([]byte{1}, KeySize)
	key2 = bytes.Repeat([]byte{2}, KeySize)
	lb1  = Identity{Site: "web", Node: "lb1"}
	lb2  = Identity{Site: "web", Node: "lb2"}
)

// recorder keeps what one side wrote, to replay it later.
type recorder struct {
	net.Conn
	mu  sync.Mutex
	out bytes.Buffer
}

func (r *recorder) Write(b []byte) (int, error) {
	r.mu.Lock()
	r.out.Write(b)
	r.mu.Unlock()
	return r.Conn.Write(b)
}

func (r *recorder) bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.out.Bytes())
}

type result struct {
	s   *Session
	err error
}

// handshake runs both sides over a pipe; the dialer's side is recorded.
func handshake(t *testing.T, dk, ak Key, d, a Identity, seen *Nonces) (dr, ar result, rec *recorder) {
	t.Helper()
	c1, c2 := tcpPipe(t)
	t.Cleanup(func() { c1.Close(); c2.Close() })
	rec = &recorder{Conn: c1}
	done := make(chan result)
	go func() {
		s, err := Accept(c2, ak, a, func(n string) bool { return n == d.Node }, seen)
		if err != nil {
			c2.Close()
		}
		done <- result{s, err}
	}()
	s, err := Dial(rec, dk, d, a.Node, nil)
	if err != nil {
		c1.Close()
	}
	dr = result{s, err}
	ar = <-done
	return dr, ar, rec
}

func TestHandshakeAndFrames(t *testing.T) {
	d, a, _ := handshake(t, key1, key1, lb1, lb2, &Nonces{})
	if d.err != nil || a.err != nil {
		t.Fatalf("handshake: dialer %v, acceptor %v", d.err, a.err)
	}
	if a.s.Peer != "lb1" || d.s.Peer != "lb2" {
		t.Fatalf("peers %q %q", a.s.Peer, d.s.Peer)
	}
	for _, msg := range []string{"one", "", strings.Repeat("x", MaxFrame)} {
		go func() { _ = d.s.Send([]byte(msg)) }()
		got, err := a.s.Recv()
		if err != nil || string(got) != msg {
			t.Fatalf("d->a %d bytes: got %d bytes, %v", len(msg), len(got), err)
		}
		go func() { _ = a.s.Send([]byte(msg)) }()
		got, err = d.s.Recv()
		if err != nil || string(got) != msg {
			t.Fatalf("a->d %d bytes: got %d bytes, %v", len(msg), len(got), err)
		}
	}
	if err := d.s.Send(make([]byte, MaxFrame+1)); err == nil {
		t.Fatal("an oversized frame was sent")
	}
	d.s.Close()
	if _, err := a.s.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after close: %v, want EOF", err)
	}
}

func TestHandshakeRefusals(t *testing.T) {
	for _, tc := range []struct {
		name       string
		dk, ak     Key
		d          Identity
		wantD      error // nil: any error
		wantA      error
		acceptorOK bool
	}{
		// Keys that differ are forged on both ends: the dialer, which
		// finds out first, still sends a proof (that cannot verify).
		{name: "different keys", dk: key1, ak: key2, d: lb1, wantD: ErrForged, wantA: ErrForged},
		{name: "no key against a key", dk: nil, ak: key1, d: lb1, wantD: ErrForged, wantA: ErrForged},
		{name: "a key against no key", dk: key1, ak: nil, d: lb1, wantD: ErrForged, wantA: ErrForged},
		{name: "wrong site", dk: key1, ak: key1, d: Identity{Site: "other", Node: "lb1"}, wantA: ErrWrongSite},
		{name: "node not allowed", dk: key1, ak: key1, d: Identity{Site: "web", Node: "lb3"}, wantA: ErrWrongSite},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c1, c2 := tcpPipe(t)
			defer c1.Close()
			done := make(chan error, 1)
			go func() {
				_, err := Accept(c2, tc.ak, lb2, func(n string) bool { return n == "lb1" }, nil)
				c2.Close()
				done <- err
			}()
			_, derr := Dial(c1, tc.dk, tc.d, "lb2", nil)
			c1.Close()
			aerr := <-done
			if derr == nil || aerr == nil {
				t.Fatalf("dialer %v, acceptor %v: want both to fail", derr, aerr)
			}
			if tc.wantD != nil && !errors.Is(derr, tc.wantD) {
				t.Errorf("dialer: %v, want %v", derr, tc.wantD)
			}
			if tc.wantA != nil && !errors.Is(aerr, tc.wantA) {
				t.Errorf("acceptor: %v, want %v", aerr, tc.wantA)
			}
		})
	}
}

// A recorded session played again to the acceptor is a replay: the hello
// repeats a nonce it has seen.
func TestReplayedHandshake(t *testing.T) {
	seen := &Nonces{}
	d, a, rec := handshake(t, key1, key1, lb1, lb2, seen)
	if d.err != nil || a.err != nil {
		t.Fatal(d.err, a.err)
	}
	go func() { _ = d.s.Send([]byte(`{"state":"MASTER"}`)) }()
	if _, err := a.s.Recv(); err != nil {
		t.Fatal(err)
	}
	recorded := rec.bytes()
	c1, c2 := tcpPipe(t)
	defer c1.Close()
	go func() { _, _ = c1.Write(recorded); _, _ = io.Copy(io.Discard, c1) }()
	_, err := Accept(c2, key1, lb2, func(n string) bool { return n == "lb1" }, seen)
	c2.Close()
	if !errors.Is(err, ErrReplayed) {
		t.Fatalf("replayed handshake: %v, want ErrReplayed", err)
	}
	// Without the memory of nonces the replay fails anyway: the proof does
	// not match the acceptor's fresh nonce.
	c3, c4 := tcpPipe(t)
	defer c3.Close()
	go func() { _, _ = c3.Write(recorded); _, _ = io.Copy(io.Discard, c3) }()
	_, err = Accept(c4, key1, lb2, func(n string) bool { return n == "lb1" }, &Nonces{})
	c4.Close()
	if !errors.Is(err, ErrForged) {
		t.Fatalf("replayed handshake to a fresh acceptor: %v, want ErrForged", err)
	}
}

// rawFrames lets a test write bytes of its own into an established stream.
func TestFrameTampering(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(frame []byte) []byte
		want error
	}{
		{"flipped payload bit", func(f []byte) []byte { f[13] ^= 1; return f }, ErrForged},
		{"replayed frame", func(f []byte) []byte { return append(bytes.Clone(f), f...) }, ErrReplayed},
		{"oversized length", func(f []byte) []byte { f[0] = 0xff; return f }, ErrMalformed},
		{"cut short", func(f []byte) []byte { return f[:len(f)-3] }, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, a, rec := handshake(t, key1, key1, lb1, lb2, nil)
			if d.err != nil || a.err != nil {
				t.Fatal(d.err, a.err)
			}
			before := len(rec.bytes())
			errc := make(chan error, 1)
			go func() { errc <- d.s.Send([]byte("hello")) }()
			// Read the true frame off the wire ourselves, then feed the
			// acceptor a modified copy through a fresh pipe pair.
			if _, err := a.s.Recv(); err != nil {
				t.Fatal(err)
			}
			<-errc
			frame := rec.bytes()[before:]
			c1, c2 := tcpPipe(t)
			defer c1.Close()
			a.s.c = c2
			a.s.recvSeq = 0
			go func() { _, _ = c1.Write(tc.mod(bytes.Clone(frame))); c1.Close() }()
			var err error
			for err == nil {
				_, err = a.s.Recv()
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// A frame cannot be reflected back to its sender: each direction has
// its own key.
func TestFrameReflected(t *testing.T) {
	d, a, rec := handshake(t, key1, key1, lb1, lb2, nil)
	if d.err != nil || a.err != nil {
		t.Fatal(d.err, a.err)
	}
	before := len(rec.bytes())
	go func() { _ = d.s.Send([]byte("x")) }()
	if _, err := a.s.Recv(); err != nil {
		t.Fatal(err)
	}
	frame := rec.bytes()[before:]
	c1, c2 := tcpPipe(t)
	defer c1.Close()
	d.s.c = c2
	go func() { _, _ = c1.Write(frame) }()
	if _, err := d.s.Recv(); !errors.Is(err, ErrForged) {
		t.Fatalf("reflected frame: %v, want ErrForged", err)
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pair.key")
	if err := WriteNewKey(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", fi.Mode(), err)
	}
	k, err := LoadKey(path)
	if err != nil || len(k) != KeySize {
		t.Fatalf("load: %v", err)
	}
	if err := WriteNewKey(path); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("overwrite: %v", err)
	}
	k2path := filepath.Join(dir, "k2")
	if err := WriteNewKey(k2path); err != nil {
		t.Fatal(err)
	}
	if k2, _ := LoadKey(k2path); bytes.Equal(k, k2) {
		t.Fatal("two keys are the same")
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKey(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("mode 0640: %v", err)
	}
	for _, bad := range []string{"", "abc\n", strings.Repeat("0", 64), strings.Repeat("zz", 32), strings.Repeat("ab", 32) + "\n" + strings.Repeat("cd", 32)} {
		if _, err := ParseKey([]byte(bad)); !errors.Is(err, ErrKey) {
			t.Errorf("ParseKey(%q): %v", bad, err)
		}
	}
	if _, err := ParseKey([]byte("# comment\n\n" + strings.Repeat("ab", 32) + "\n")); err != nil {
		t.Error(err)
	}
	if _, err := LoadKey(dir); err == nil {
		t.Error("a directory loaded as a key")
	}
}

// tcpPipe is a connected pair over loopback: unlike net.Pipe it buffers,
// as the daemon's TCP connections do.
func tcpPipe(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			acc <- nil
			return
		}
		acc <- c
	}()
	c1, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c2 := <-acc
	if c2 == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c1.Close(); c2.Close() })
	return c1, c2
}

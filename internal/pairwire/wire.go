package pairwire

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// The handshake, on a stream the dialer opened:
//
//	dialer -> acceptor  hello:   magic, site, dialer's node name, nonce D
//	acceptor -> dialer  welcome: magic, acceptor's node name, nonce A, MAC("accept", T)
//	dialer -> acceptor  proof:   MAC("dial", T)
//
// T is the transcript (site, both names, both nonces); the MACs are
// HMAC-SHA256 under the pair key. Each side proves it holds the key for
// this transcript; fresh nonces make an old exchange worthless. Each
// direction then gets its own key derived from T, and every frame
// carries a sequence number under that key, so a frame cannot be
// altered, replayed, reordered or moved to the other direction.
//
// A frame: length (4 bytes), sequence (8), payload, MAC(seq|length|payload).

const (
	magic     = "HVPL\x01"
	nonceSize = 32
	macSize   = sha256.Size
	// MaxFrame bounds a frame's payload.
	MaxFrame = 64 << 10
	maxName  = 255
)

// Drop reasons: every error a handshake or Recv returns wraps one.
var (
	ErrForged    = errors.New("pairwire: authentication failed (forged, or the pair keys differ)")
	ErrReplayed  = errors.New("pairwire: replayed")
	ErrMalformed = errors.New("pairwire: malformed")
	ErrWrongSite = errors.New("pairwire: wrong site or node")
)

// Identity names one end: the site and the node.
type Identity struct{ Site, Node string }

// Session is an established link. Send is safe for concurrent use; Recv
// must be called from one goroutine.
type Session struct {
	c net.Conn
	// Peer is the other node's name (from a verified handshake when the
	// key is set).
	Peer string

	wmu     sync.Mutex
	sendKey []byte
	sendSeq uint64
	recvKey []byte
	recvSeq uint64
}

// Nonces remembers the peer nonces of recent handshakes, so a recorded
// handshake replayed later is recognised as such. Safe for concurrent use.
type Nonces struct {
	mu    sync.Mutex
	seen  map[[nonceSize]byte]bool
	order [][nonceSize]byte
}

const maxNonces = 4096

func (n *Nonces) check(x [nonceSize]byte) bool {
	if n == nil {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.seen[x]
}

func (n *Nonces) add(x [nonceSize]byte) {
	if n == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.seen == nil {
		n.seen = map[[nonceSize]byte]bool{}
	}
	if len(n.order) >= maxNonces {
		delete(n.seen, n.order[0])
		n.order = n.order[1:]
	}
	n.seen[x] = true
	n.order = append(n.order, x)
}

type transcript struct {
	site, dialer, acceptor string
	nd, na                 [nonceSize]byte
}

func (t transcript) mac(key Key, label string) []byte {
	m := hmac.New(sha256.New, key)
	for _, s := range []string{"havip pair v1", label, t.site, t.dialer, t.acceptor} {
		var l [2]byte
		binary.BigEndian.PutUint16(l[:], uint16(len(s)))
		m.Write(l[:])
		m.Write([]byte(s))
	}
	m.Write(t.nd[:])
	m.Write(t.na[:])
	return m.Sum(nil)
}

// Dial runs the dialer's side of the handshake on c, expecting the node
// named peer at the other end. seen may be nil.
func Dial(c net.Conn, key Key, self Identity, peer string, seen *Nonces) (*Session, error) {
	t := transcript{site: self.Site, dialer: self.Node, acceptor: peer}
	if _, err := rand.Read(t.nd[:]); err != nil {
		return nil, fmt.Errorf("pairwire: random: %w", err)
	}
	hello := []byte(magic)
	hello = appendName(hello, self.Site)
	hello = appendName(hello, self.Node)
	hello = append(hello, t.nd[:]...)
	if _, err := c.Write(hello); err != nil {
		return nil, fmt.Errorf("pairwire: hello: %w", err)
	}
	if err := readMagic(c); err != nil {
		return nil, err
	}
	name, err := readName(c)
	if err != nil {
		return nil, err
	}
	if name != peer {
		return nil, fmt.Errorf("%w: the peer says it is node %q, not %q", ErrWrongSite, name, peer)
	}
	var macA [macSize]byte
	if _, err := io.ReadFull(c, t.na[:]); err != nil {
		return nil, short(err)
	}
	if _, err := io.ReadFull(c, macA[:]); err != nil {
		return nil, short(err)
	}
	if !hmac.Equal(macA[:], t.mac(key, "accept")) {
		// Tell the acceptor too: a proof that cannot verify (all zeros,
		// no MAC of anything), so it counts forged rather than a
		// handshake cut short. It is no oracle: it carries no MAC.
		var none [macSize]byte
		_, _ = c.Write(none[:])
		if seen.check(t.na) {
			return nil, fmt.Errorf("%w: the welcome repeats an earlier handshake's", ErrReplayed)
		}
		return nil, fmt.Errorf("%w: the peer's welcome", ErrForged)
	}
	if _, err := c.Write(t.mac(key, "dial")); err != nil {
		return nil, fmt.Errorf("pairwire: proof: %w", err)
	}
	seen.add(t.na)
	return &Session{c: c, Peer: peer, sendKey: t.mac(key, "key d->a"), recvKey: t.mac(key, "key a->d")}, nil
}

// Accept runs the acceptor's side of the handshake on c. allow says
// whether a node name may speak on this connection (the caller knows
// which node the source address belongs to). seen may be nil.
func Accept(c net.Conn, key Key, self Identity, allow func(node string) bool, seen *Nonces) (*Session, error) {
	if err := readMagic(c); err != nil {
		return nil, err
	}
	site, err := readName(c)
	if err != nil {
		return nil, err
	}
	node, err := readName(c)
	if err != nil {
		return nil, err
	}
	t := transcript{site: site, dialer: node, acceptor: self.Node}
	if _, err := io.ReadFull(c, t.nd[:]); err != nil {
		return nil, short(err)
	}
	if site != self.Site {
		return nil, fmt.Errorf("%w: site %q, not %q", ErrWrongSite, site, self.Site)
	}
	if !allow(node) {
		return nil, fmt.Errorf("%w: node %q may not speak from this address", ErrWrongSite, node)
	}
	if seen.check(t.nd) {
		return nil, fmt.Errorf("%w: the hello repeats an earlier handshake's", ErrReplayed)
	}
	if _, err := rand.Read(t.na[:]); err != nil {
		return nil, fmt.Errorf("pairwire: random: %w", err)
	}
	w := []byte(magic)
	w = appendName(w, self.Node)
	w = append(w, t.na[:]...)
	w = append(w, t.mac(key, "accept")...)
	if _, err := c.Write(w); err != nil {
		return nil, fmt.Errorf("pairwire: welcome: %w", err)
	}
	var macD [macSize]byte
	if _, err := io.ReadFull(c, macD[:]); err != nil {
		return nil, short(err)
	}
	if !hmac.Equal(macD[:], t.mac(key, "dial")) {
		return nil, fmt.Errorf("%w: the dialer's proof", ErrForged)
	}
	seen.add(t.nd)
	return &Session{c: c, Peer: node, sendKey: t.mac(key, "key a->d"), recvKey: t.mac(key, "key d->a")}, nil
}

// Send writes one frame.
func (s *Session) Send(payload []byte) error {
	if len(payload) > MaxFrame {
		return fmt.Errorf("pairwire: a frame of %d bytes is over the limit of %d", len(payload), MaxFrame)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.sendSeq++
	b := make([]byte, 12, 12+len(payload)+macSize)
	binary.BigEndian.PutUint32(b[0:4], uint32(len(payload)))
	binary.BigEndian.PutUint64(b[4:12], s.sendSeq)
	b = append(b, payload...)
	b = append(b, frameMAC(s.sendKey, b[:12], payload)...)
	if _, err := s.c.Write(b); err != nil {
		return fmt.Errorf("pairwire: send: %w", err)
	}
	return nil
}

// Recv reads one frame. An error wrapping ErrForged, ErrReplayed or
// ErrMalformed means the stream can no longer be trusted; io.EOF and
// other I/O errors come back as they are (wrapped).
func (s *Session) Recv() ([]byte, error) {
	var h [12]byte
	if _, err := io.ReadFull(s.c, h[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: a frame header cut short", ErrMalformed)
		}
		return nil, fmt.Errorf("pairwire: recv: %w", err)
	}
	n := binary.BigEndian.Uint32(h[0:4])
	if n > MaxFrame {
		return nil, fmt.Errorf("%w: a frame of %d bytes is over the limit of %d", ErrMalformed, n, MaxFrame)
	}
	b := make([]byte, int(n)+macSize)
	if _, err := io.ReadFull(s.c, b); err != nil {
		return nil, short(err)
	}
	payload, mac := b[:n], b[n:]
	if !hmac.Equal(mac, frameMAC(s.recvKey, h[:], payload)) {
		return nil, fmt.Errorf("%w: a frame", ErrForged)
	}
	seq := binary.BigEndian.Uint64(h[4:12])
	if seq <= s.recvSeq {
		return nil, fmt.Errorf("%w: frame %d after frame %d", ErrReplayed, seq, s.recvSeq)
	}
	if seq != s.recvSeq+1 {
		return nil, fmt.Errorf("%w: frame %d after frame %d (a gap)", ErrMalformed, seq, s.recvSeq)
	}
	s.recvSeq = seq
	return payload, nil
}

// Close closes the connection.
func (s *Session) Close() error { return s.c.Close() }

// Conn is the underlying connection (for deadlines).
func (s *Session) Conn() net.Conn { return s.c }

func frameMAC(key, header, payload []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(header)
	m.Write(payload)
	return m.Sum(nil)
}

func appendName(b []byte, s string) []byte {
	if len(s) > maxName {
		s = s[:maxName]
	}
	return append(append(b, byte(len(s))), s...)
}

func readMagic(r io.Reader) error {
	var m [len(magic)]byte
	if _, err := io.ReadFull(r, m[:]); err != nil {
		return short(err)
	}
	if string(m[:]) != magic {
		return fmt.Errorf("%w: not a havip pair link (or another version of it)", ErrMalformed)
	}
	return nil
}

func readName(r io.Reader) (string, error) {
	var l [1]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return "", short(err)
	}
	b := make([]byte, l[0])
	if _, err := io.ReadFull(r, b); err != nil {
		return "", short(err)
	}
	return string(b), nil
}

// short turns a stream that ended mid-message into ErrMalformed.
func short(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: cut short", ErrMalformed)
	}
	return fmt.Errorf("pairwire: %w", err)
}

package harness

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/havip/havip/test/lab"
)

// Listen runs a TCP server on port, all IPv4 addresses of h's namespace
// (so a director answers on every VIP it holds), handing each connection
// to handle on its own goroutine; handle closes it. The server stops at
// the end of the test, or when the listener returned is closed.
func Listen(t testing.TB, h *lab.Host, port int, handle func(net.Conn)) net.Listener {
	t.Helper()
	var l net.Listener
	if err := h.Do(func() error {
		var err error
		l, err = net.Listen("tcp4", fmt.Sprintf(":%d", port))
		return err
	}); err != nil {
		t.Fatalf("harness: listen on %s port %d: %v", h.Name, port, err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
	return l
}

// Serve is a Listen server that greets each connection with greeting and
// a newline.
func Serve(t testing.TB, h *lab.Host, port int, greeting string) {
	t.Helper()
	Listen(t, h, port, func(c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "%s\n", greeting)
		// The client closes first (with a reset): no TIME_WAIT piles up
		// on either side.
		var b [1]byte
		c.Read(b[:])
	})
}

// Prober opens a TCP connection to each target, one after the other, every
// interval, from a thread in the client's namespace, reads the greeting
// and counts every connection that failed.
type Prober struct {
	every   time.Duration
	timeout time.Duration

	mu       sync.Mutex
	targets  []netip.AddrPort
	stats    ProbeStats
	lastOK   map[netip.AddrPort]time.Time
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

// ProbeStats is what a Prober saw.
type ProbeStats struct {
	Attempts, Failed int
	Answers          map[string]map[string]int // target -> greeting -> count
	Failures         []string                  // the first ones, with time and error
	LongestOutage    time.Duration             // longest time a target went without a successful connection (normally about the interval)
}

const keptFailures = 20

// StartProber starts probing targets from h every interval, each attempt
// bounded by timeout; it stops at the end of the test or with Stop.
func StartProber(t testing.TB, h *lab.Host, every, timeout time.Duration, targets ...netip.AddrPort) *Prober {
	p := &Prober{every: every, timeout: timeout, targets: targets, lastOK: map[netip.AddrPort]time.Time{},
		stats: ProbeStats{Answers: map[string]map[string]int{}}, stop: make(chan struct{}), done: make(chan struct{})}
	started := make(chan struct{})
	go func() {
		defer close(p.done)
		// The whole loop runs on one thread inside the namespace: every
		// socket it opens is the client's.
		err := h.Do(func() error {
			close(started)
			p.loop()
			return nil
		})
		if err != nil {
			p.mu.Lock()
			p.stats.Failed++
			p.stats.Failures = append(p.stats.Failures, "prober: "+err.Error())
			p.mu.Unlock()
		}
	}()
	select {
	case <-started:
	case <-p.done:
	}
	t.Cleanup(func() { p.Stop() })
	return p
}

// AddTarget probes to as well from now on.
func (p *Prober) AddTarget(to netip.AddrPort) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.targets = append(p.targets, to)
}

func (p *Prober) loop() {
	tick := time.NewTicker(p.every)
	defer tick.Stop()
	d := net.Dialer{Timeout: p.timeout}
	for {
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
		p.mu.Lock()
		targets := append([]netip.AddrPort(nil), p.targets...)
		p.mu.Unlock()
		for _, to := range targets {
			at := time.Now()
			greeting, err := probe(&d, to, p.timeout)
			p.record(at, to, greeting, err)
		}
	}
}

func probe(d *net.Dialer, to netip.AddrPort, timeout time.Duration) (string, error) {
	c, err := d.Dial("tcp", to.String())
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.(*net.TCPConn).SetLinger(0)
	c.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("reading the greeting: %w", err)
	}
	return strings.TrimSpace(line), nil
}

func (p *Prober) record(at time.Time, to netip.AddrPort, greeting string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.Attempts++
	key := to.String()
	last, seen := p.lastOK[to]
	if !seen {
		last = at // a new target counts from its first probe
		p.lastOK[to] = at
	}
	p.stats.LongestOutage = max(p.stats.LongestOutage, time.Since(last))
	if err != nil {
		p.stats.Failed++
		if len(p.stats.Failures) < keptFailures {
			p.stats.Failures = append(p.stats.Failures, fmt.Sprintf("%s %s: %v", at.Format("15:04:05.000"), key, err))
		}
		return
	}
	if p.stats.Answers[key] == nil {
		p.stats.Answers[key] = map[string]int{}
	}
	p.stats.Answers[key][greeting]++
	p.lastOK[to] = time.Now()
}

// Stats returns what the prober saw so far.
func (p *Prober) Stats() ProbeStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Failures = append([]string(nil), s.Failures...)
	s.Answers = map[string]map[string]int{}
	for k, v := range p.stats.Answers {
		s.Answers[k] = map[string]int{}
		for g, n := range v {
			s.Answers[k][g] = n
		}
	}
	return s
}

// Stop ends probing and returns the totals.
func (p *Prober) Stop() ProbeStats {
	p.stopOnce.Do(func() { close(p.stop) })
	<-p.done
	return p.Stats()
}

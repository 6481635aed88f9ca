// Package harness runs real havip daemons in lab namespaces for end-to-end
// tests, on the host and inside the VM lab: a switch, two directors, a
// client, and helpers to watch the kernel's address and neighbour tables
// with netlink timestamps.
package harness

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/havip/havip/internal/ctl"
	"github.com/havip/havip/internal/pairwire"
	"github.com/havip/havip/test/lab"
)

// Binary returns the havip binary to test: $HAVIP_BIN, or one built once
// from this checkout.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if p := os.Getenv("HAVIP_BIN"); p != "" {
			built = p
			return
		}
		dir, err := os.MkdirTemp("", "havip-e2e-")
		if err != nil {
			buildErr = err
			return
		}
		out := filepath.Join(dir, "havip")
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..", "..")
		cmd := exec.Command("go", "build", "-o", out, "./cmd/havip")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, b)
			return
		}
		built = out
	})
	if buildErr != nil {
		t.Fatalf("harness: building havip: %v", buildErr)
	}
	return built
}

var (
	buildOnce sync.Once
	built     string
	buildErr  error
)

// Site describes the two-director site a test runs.
type Site struct {
	Version      int           // 3 (default) or 2
	Advert       time.Duration // default 100ms
	Unicast      bool
	Preempt      *bool // default true
	VIPs         []string
	VRID         int
	ExtraGroup   string // raw TOML appended to the [[vrrp]] table
	Extra        string // raw TOML appended to the file
	Prio1, Prio2 int    // default 150, 100
	// NoPairKey: no [site] pair_key, so the pair link only observes
	// (by default both nodes share a key written for the test).
	NoPairKey bool
}

// Node is one director running havip.
type Node struct {
	Name     string
	Addr     netip.Addr
	Host     *lab.Host
	Sock     string
	StateDir string   // this node's --state-dir (the two must not share state files)
	Config   string   // this node's site file (a rolling push changes one node's first)
	Metrics  string   // metrics listen address inside the namespace; "" = off
	Env      []string // extra environment for the daemon
	// SiteKeys: the daemon takes control_socket, state_dir and metrics
	// from its site file (no --socket, --state-dir, --metrics), so a
	// reload can move them; see UseSiteKeys.
	SiteKeys bool

	t      testing.TB
	bin    string
	stdout *syncBuffer
	cmd    *exec.Cmd
	exited chan struct{}
}

// Pair is a switch with two directors and a client.
type Pair struct {
	Switch *lab.Switch
	Client *lab.Host
	Nodes  [2]*Node
	Config string // the site file as first written (each node runs its own copy, Node.Config)
	VIP    netip.Addr
	Site   Site
	// PairKey is the pair key file both nodes name ("" with NoPairKey).
	PairKey string
}

// Lab addresses: the benchmarking range, only ever inside test namespaces.
var (
	Addr1      = netip.MustParseAddr("198.18.0.11")
	Addr2      = netip.MustParseAddr("198.18.0.12")
	ClientAddr = netip.MustParseAddr("198.18.0.50")
	DefaultVIP = "198.18.0.100/24"
)

// NewPair builds the topology and writes the site file; daemons are not
// started yet.
func NewPair(t testing.TB, s Site) *Pair {
	t.Helper()
	lab.RequireRoot(t)
	if s.Advert == 0 {
		s.Advert = 100 * time.Millisecond
	}
	if s.Version == 0 {
		s.Version = 3
	}
	if len(s.VIPs) == 0 {
		s.VIPs = []string{DefaultVIP}
	}
	if s.VRID == 0 {
		s.VRID = 51
	}
	if s.Prio1 == 0 {
		s.Prio1 = 150
	}
	if s.Prio2 == 0 {
		s.Prio2 = 100
	}
	preempt := true
	if s.Preempt != nil {
		preempt = *s.Preempt
	}
	sw := lab.NewSwitch(t)
	p := &Pair{Switch: sw, Site: s, VIP: netip.MustParsePrefix(s.VIPs[0]).Addr()}
	p.Client = sw.AddHost(t, "cli", netip.PrefixFrom(ClientAddr, 24))
	bin := Binary(t)
	dir := t.TempDir()
	p.Config = filepath.Join(dir, "havip.toml")
	vips := `"` + strings.Join(s.VIPs, `", "`) + `"`
	keyLine := ""
	if !s.NoPairKey {
		p.PairKey = filepath.Join(dir, "pair.key")
		if err := pairwire.WriteNewKey(p.PairKey); err != nil {
			t.Fatal(err)
		}
		keyLine = fmt.Sprintf("pair_key = %q\n", p.PairKey)
	}
	cfg := fmt.Sprintf(`[site]
name = "lab"
%s
[[node]]
name = "lb1"
address = "%s"
priority = %d

[[node]]
name = "lb2"
address = "%s"
priority = %d

[[vrrp]]
name = "front"
interface = "eth0"
vrid = %d
advert = "%s"
version = %d
unicast = %t
preempt = %t
vips = [%s]
garp_interval = "20ms"
%s
%s
`, keyLine, Addr1, s.Prio1, Addr2, s.Prio2, s.VRID, s.Advert, s.Version, s.Unicast, preempt, vips, s.ExtraGroup, s.Extra)
	if err := os.WriteFile(p.Config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	for i, a := range []netip.Addr{Addr1, Addr2} {
		name := fmt.Sprintf("lb%d", i+1)
		h := sw.AddHost(t, name, netip.PrefixFrom(a, 24))
		n := &Node{Name: name, Addr: a, Host: h, t: t, bin: bin, Config: filepath.Join(dir, name+".toml"),
			Sock: filepath.Join(dir, name+".sock"), StateDir: filepath.Join(dir, name+".state")}
		n.WriteConfig(cfg)
		p.Nodes[i] = n
	}
	return p
}

// Start starts havip run on n and waits until its control socket answers.
func (n *Node) Start() {
	t := n.t
	t.Helper()
	n.stdout = &syncBuffer{}
	args := []string{"run", "-c", n.Config, "--node", n.Name, "--log-level", "debug"}
	if !n.SiteKeys {
		args = append(args, "--socket", n.Sock, "--state-dir", n.StateDir, "--metrics", n.Metrics)
	}
	n.cmd = exec.Command(n.bin, args...)
	n.cmd.Stdout, n.cmd.Stderr = n.stdout, n.stdout
	n.cmd.Env = append(os.Environ(), n.Env...)
	if err := n.Host.Start(n.cmd); err != nil {
		t.Fatalf("harness: start havip on %s: %v", n.Name, err)
	}
	n.exited = make(chan struct{})
	cmd, exited := n.cmd, n.exited
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
				cmd.Process.Kill()
				<-exited
			}
		}
		// A binary built with -race (HAVIP_BIN) reports here.
		if strings.Contains(n.stdout.String(), "WARNING: DATA RACE") {
			t.Errorf("harness: the race detector reported a data race in havip on %s", n.Name)
		}
		if t.Failed() {
			t.Logf("--- havip log of %s ---\n%s", n.Name, n.stdout.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := ctl.Call(n.Sock, ctl.Request{Cmd: ctl.CmdPing}, time.Second); err == nil {
			return
		}
		select {
		case <-exited:
			t.Fatalf("harness: havip on %s exited at start:\n%s", n.Name, n.stdout.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("harness: havip on %s did not open its control socket:\n%s", n.Name, n.stdout.String())
}

// WriteConfig replaces this node's site file (the daemon reads it on reload).
func (n *Node) WriteConfig(content string) {
	n.t.Helper()
	if err := os.WriteFile(n.Config, []byte(content), 0o644); err != nil {
		n.t.Fatalf("harness: write %s: %v", n.Config, err)
	}
}

// UseSiteKeys makes n take its control socket, state directory and
// metrics address (n.Metrics) from its site file, all under dir, so that a
// reload can move them. Call it before Start.
func (n *Node) UseSiteKeys(dir string) {
	n.t.Helper()
	n.SiteKeys = true
	n.Sock = filepath.Join(dir, "havip.sock")
	cfg := SiteKey(n.ReadConfig(), "control_socket", strconv.Quote(n.Sock))
	cfg = SiteKey(cfg, "state_dir", strconv.Quote(filepath.Join(dir, "state")))
	n.WriteConfig(SiteKey(cfg, "metrics", strconv.Quote(n.Metrics)))
}

// SiteKey sets key to value (TOML, quoted if a string) in the [site]
// table of cfg, replacing the key's line if there is one.
func SiteKey(cfg, key, value string) string {
	lines := strings.Split(cfg, "\n")
	start := slices.Index(lines, "[site]")
	if start < 0 {
		panic("harness: SiteKey: the site file has no [site] table")
	}
	end := len(lines)
	for i := start + 1; i < len(lines); i++ {
		if strings.HasPrefix(lines[i], "[") {
			end = i
			break
		}
	}
	line := key + " = " + value
	for i := start + 1; i < end; i++ {
		if f := strings.SplitN(lines[i], "=", 2); len(f) == 2 && strings.TrimSpace(f[0]) == key {
			lines[i] = line
			return strings.Join(lines, "\n")
		}
	}
	return strings.Join(slices.Insert(lines, start+1, line), "\n")
}

// ReadConfig returns this node's site file.
func (n *Node) ReadConfig() string {
	n.t.Helper()
	b, err := os.ReadFile(n.Config)
	if err != nil {
		n.t.Fatalf("harness: read %s: %v", n.Config, err)
	}
	return string(b)
}

// WriteConfig replaces the site file of both nodes.
func (p *Pair) WriteConfig(content string) {
	for _, n := range p.Nodes {
		n.WriteConfig(content)
	}
}

// Reload runs `havip reload` against n's daemon and returns its output and
// exit code.
func (n *Node) Reload() (string, int) { return n.Run("reload", "-c", n.Config) }

// Signal sends sig and, for SIGKILL/SIGTERM, waits for the process to end.
func (n *Node) Signal(sig syscall.Signal) {
	n.t.Helper()
	if err := n.cmd.Process.Signal(sig); err != nil {
		n.t.Fatalf("harness: signal %s: %v", n.Name, err)
	}
	if sig == syscall.SIGKILL || sig == syscall.SIGTERM {
		select {
		case <-n.exited:
		case <-time.After(10 * time.Second):
			n.t.Fatalf("harness: %s did not exit after %s", n.Name, sig)
		}
	}
}

// Exited reports whether the daemon has ended (by itself or by a signal).
func (n *Node) Exited() bool {
	select {
	case <-n.exited:
		return true
	default:
		return false
	}
}

// ExitCode is the daemon's exit code once it ended (-1 while running, or
// when a signal ended it).
func (n *Node) ExitCode() int {
	select {
	case <-n.exited:
		return n.cmd.ProcessState.ExitCode()
	default:
		return -1
	}
}

// Log returns what the daemon logged so far.
func (n *Node) Log() string { return n.stdout.String() }

// Status asks the daemon for its status.
func (n *Node) Status() (*ctl.Status, error) {
	resp, err := ctl.Call(n.Sock, ctl.Request{Cmd: ctl.CmdStatus}, 2*time.Second)
	if err != nil {
		return nil, err
	}
	return resp.Status, nil
}

// State returns the daemon's state of group, or "" when unreachable.
func (n *Node) State(group string) string {
	st, err := n.Status()
	if err != nil {
		return ""
	}
	for _, g := range st.Groups {
		if g.Name == group {
			return g.State
		}
	}
	return ""
}

// WaitState waits until group reaches state on n.
func (n *Node) WaitState(group, state string, timeout time.Duration) {
	n.t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		if last = n.State(group); last == state {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	n.t.Fatalf("harness: %s: group %s is %q, want %q after %s\n%s", n.Name, group, last, state, timeout, n.Log())
}

// Group returns n's status of group, or nil when the daemon does not
// answer or has no such group.
func (n *Node) Group(group string) *ctl.GroupStatus {
	st, err := n.Status()
	if err != nil {
		return nil
	}
	for i := range st.Groups {
		if st.Groups[i].Name == group {
			return &st.Groups[i]
		}
	}
	return nil
}

// Scrape fetches n's metrics page (Node.Metrics must be set) from inside
// its namespace and returns the body.
func (n *Node) Scrape() (string, error) { return n.ScrapeAt(n.Metrics) }

// ScrapeAt fetches the metrics page at addr from inside n's namespace.
func (n *Node) ScrapeAt(addr string) (string, error) {
	var body string
	err := n.Host.Do(func() error {
		// Dialled here, on the thread inside n's namespace.
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.WriteString(c, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n"); err != nil {
			return err
		}
		b, err := io.ReadAll(c)
		body = string(b)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("harness: scrape %s on %s: %w", addr, n.Name, err)
	}
	if !strings.HasPrefix(body, "HTTP/1.0 200") {
		return "", fmt.Errorf("harness: scrape %s on %s: %q", addr, n.Name, body)
	}
	return body, nil
}

// Reattach plugs a new eth0 of n into the switch, after the test deleted
// the old one: a new ifindex and MAC (n.Host.MAC follows), with n's
// address when withAddr.
func (p *Pair) Reattach(n *Node, withAddr bool) {
	n.t.Helper()
	var addrs []netip.Prefix
	if withAddr {
		addrs = append(addrs, netip.PrefixFrom(n.Addr, 24))
	}
	n.Host.MAC = p.Switch.Attach(n.t, n.Host, "eth0", addrs...)
}

// WaitLinkLocal waits until ifname of host has a usable (no longer
// tentative) IPv6 link-local address: the source of IPv6 adverts.
func WaitLinkLocal(t testing.TB, host *lab.Host, ifname string) {
	t.Helper()
	WaitUntil(t, 5*time.Second, host.Name+" link-local address usable", func() bool {
		for _, a := range host.AddrsOn(t, ifname) {
			if a.IP.IsLinkLocalUnicast() && a.Flags&unix.IFA_F_TENTATIVE == 0 {
				return true
			}
		}
		return false
	})
}

// HasVIP reports whether the VIP is configured on n's eth0.
func (n *Node) HasVIP(ip netip.Addr) bool { return n.Host.HasAddr(n.t, "eth0", ip) }

// Run runs a havip subcommand inside n's namespace against its socket
// (with SiteKeys, the command finds it itself: pass -c).
func (n *Node) Run(args ...string) (string, int) {
	if !n.SiteKeys {
		args = append(args, "--socket", n.Sock)
	}
	cmd := exec.Command(n.bin, args...)
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	if err := n.Host.Start(cmd); err != nil {
		n.t.Fatalf("harness: %v", err)
	}
	err := cmd.Wait()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		n.t.Fatalf("harness: %v", err)
	}
	return b.String(), code
}

// Masters lists the nodes that are MASTER of group.
func (p *Pair) Masters(group string) []*Node {
	var out []*Node
	for _, n := range p.Nodes {
		if n.ExitCode() == -1 && n.State(group) == "MASTER" {
			out = append(out, n)
		}
	}
	return out
}

// WaitAddr returns a channel that receives the time the kernel of h
// reports ip added (true) or removed (false) on any interface. It is
// subscribed before it returns, so nothing that happens after is missed.
func WaitAddr(t testing.TB, h *lab.Host, ip netip.Addr, added bool) <-chan time.Time {
	t.Helper()
	updates := make(chan netlink.AddrUpdate, 64)
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	ns := h.NS
	if err := netlink.AddrSubscribeWithOptions(updates, done, netlink.AddrSubscribeOptions{Namespace: &ns}); err != nil {
		t.Fatalf("harness: address subscription in %s: %v", h.Name, err)
	}
	out := make(chan time.Time, 1)
	go func() {
		for u := range updates {
			if a, ok := netip.AddrFromSlice(u.LinkAddress.IP); ok && a.Unmap() == ip && u.NewAddr == added {
				out <- time.Now()
				return
			}
		}
	}()
	return out
}

// WaitNeigh returns a channel that receives the time h's neighbour entry
// for ip first points at mac.
func WaitNeigh(t testing.TB, h *lab.Host, ip netip.Addr, mac net.HardwareAddr) <-chan time.Time {
	t.Helper()
	updates := make(chan netlink.NeighUpdate, 64)
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	ns := h.NS
	if err := netlink.NeighSubscribeWithOptions(updates, done, netlink.NeighSubscribeOptions{Namespace: &ns}); err != nil {
		t.Fatalf("harness: neighbour subscription in %s: %v", h.Name, err)
	}
	out := make(chan time.Time, 1)
	go func() {
		for u := range updates {
			if a, ok := netip.AddrFromSlice(u.IP); ok && a.Unmap() == ip && bytes.Equal(u.HardwareAddr, mac) {
				out <- time.Now()
				return
			}
		}
	}()
	return out
}

// Within waits for a time on ch, failing the test after timeout.
func Within(t testing.TB, ch <-chan time.Time, timeout time.Duration, what string) time.Time {
	t.Helper()
	select {
	case at := <-ch:
		return at
	case <-time.After(timeout):
		t.Fatalf("harness: %s did not happen within %s", what, timeout)
		return time.Time{}
	}
}

// MasterDown is RFC 5798's Master_Down_Interval for a backup of priority prio.
func MasterDown(advert time.Duration, prio int) time.Duration {
	return 3*advert + time.Duration(256-prio)*advert/256
}

// Nft runs an nft script inside h's namespace.
func Nft(t testing.TB, h *lab.Host, script string) {
	t.Helper()
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	if err := h.Start(cmd); err != nil {
		t.Fatalf("harness: nft: %v", err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("harness: nft in %s: %v\n%s", h.Name, err, b.String())
	}
}

// WaitUntil polls cond every 5ms until it holds or timeout passes.
func WaitUntil(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("harness: %s: not true after %s", what, timeout)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Pid is the daemon's process id.
func (n *Node) Pid() int { return n.cmd.Process.Pid }

// RunDaemonOnce starts havip run on n and returns its output and exit code
// if it exits within two seconds, or -1 (and stops it) if it keeps running.
func (n *Node) RunDaemonOnce() (string, int) {
	n.t.Helper()
	cmd := exec.Command(n.bin, "run", "-c", n.Config, "--node", n.Name, "--socket", n.Sock,
		"--state-dir", n.StateDir, "--metrics", "")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := n.Host.Start(cmd); err != nil {
		n.t.Fatalf("harness: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
		return out.String(), cmd.ProcessState.ExitCode()
	case <-time.After(2 * time.Second):
		cmd.Process.Signal(syscall.SIGTERM)
		<-done
		return out.String(), -1
	}
}

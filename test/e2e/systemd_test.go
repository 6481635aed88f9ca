package e2e

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	h "github.com/havip/havip/test/e2e/harness"
)

// Readiness and watchdog over sd_notify, and a root-only control socket.
func TestSystemdNotifyAndSocket(t *testing.T) {
	p := h.NewPair(t, h.Site{})
	n := p.Nodes[0]
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	n.Env = []string{"NOTIFY_SOCKET=" + path, "WATCHDOG_USEC=300000"}
	got := make(chan string, 16)
	go func() {
		buf := make([]byte, 512)
		for {
			k, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				return
			}
			got <- string(buf[:k])
		}
	}()
	n.Start()
	seen := map[string]bool{}
	deadline := time.After(5 * time.Second)
	for !seen["READY=1"] || !seen["WATCHDOG=1"] {
		select {
		case m := <-got:
			for _, l := range strings.Split(m, "\n") {
				seen[l] = true
			}
		case <-deadline:
			t.Fatalf("sd_notify messages seen: %v; want READY=1 and WATCHDOG=1", seen)
		}
	}
	// Garbage and unknown commands on the control socket get an error
	// answer; the daemon carries on.
	for _, req := range []string{"garbage\n", `{"cmd":"selfdestruct"}` + "\n", ""} {
		c, err := net.Dial("unix", n.Sock)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(7 * time.Second))
		c.Write([]byte(req))
		if req == "" {
			c.(*net.UnixConn).CloseWrite()
		}
		b := make([]byte, 512)
		k, _ := c.Read(b)
		c.Close()
		if !strings.Contains(string(b[:k]), `"error"`) {
			t.Errorf("request %q: answer %q, want an error", req, b[:k])
		}
	}
	if _, err := n.Status(); err != nil || n.ExitCode() != -1 {
		t.Fatalf("daemon after bad requests: %v, exit %d", err, n.ExitCode())
	}
	fi, err := os.Stat(n.Sock)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode&0o077 != 0 {
		t.Errorf("control socket mode %v: group/other may connect", mode)
	}
}

package e2e

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	h "github.com/havip/havip/e2e/harness"
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
	fi, err := os.Stat(n.Sock)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode&0o077 != 0 {
		t.Errorf("control socket mode %v: group/other may connect", mode)
	}
}

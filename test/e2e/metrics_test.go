package e2e

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	h "github.com/havip/havip/test/e2e/harness"
)

// The Prometheus endpoint reports state, priority and counters.
func TestMetrics(t *testing.T) {
	p := h.NewPair(t, h.Site{Extra: `
[[check]]
name = "always"
type = "exec"
command = ["true"]
`})
	p.Nodes[0].Metrics = "127.0.0.1:9110"
	p.Nodes[0].Start()
	p.Nodes[1].Start()
	p.Nodes[0].WaitState(group, "MASTER", 3*time.Second)
	p.Nodes[1].WaitState(group, "BACKUP", time.Second)
	var body string
	err := p.Nodes[0].Host.Do(func() error {
		// Dialled here, on the thread inside lb1's namespace.
		c, err := net.DialTimeout("tcp", "127.0.0.1:9110", 2*time.Second)
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
		t.Fatal(err)
	}
	if !strings.HasPrefix(body, "HTTP/1.0 200") {
		t.Fatalf("GET /metrics: %q", body)
	}
	for _, want := range []string{
		`havip_vrrp_state{group="front",state="MASTER"} 1`,
		`havip_vrrp_priority{group="front"} 150`,
		`havip_vrrp_dual_master{group="front"} 0`,
		`havip_vrrp_adverts_sent_total{group="front"}`,
		`havip_check_up{target="check/always"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
}

package e2e

import (
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
	body, err := p.Nodes[0].Scrape()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`havip_vrrp_state{group="front",state="MASTER"} 1`,
		`havip_vrrp_priority{group="front"} 150`,
		`havip_vrrp_dual_master{group="front"} 0`,
		`havip_vrrp_adverts_sent_total{group="front"}`,
		`havip_check_up{target="check/always"} 1`,
		`havip_reloads_total{result="refused"} 0`,
		"havip_events_total ",
		"process_resident_memory_bytes ", // client_golang's process and Go collectors
		"go_goroutines ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
}

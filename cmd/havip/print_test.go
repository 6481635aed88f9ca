package main

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/havip/havip/internal/ctl"
)

// status shows how many probes run and which keys share one.
func TestPrintChecksShared(t *testing.T) {
	since := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var b strings.Builder
	printChecks(&b, []ctl.CheckStatus{
		{Key: "check/dns", Up: true, SharedBy: 1},
		{Key: "vs1/10.0.0.1:80", Up: true, SharedBy: 2},
		{Key: "vs2/10.0.0.1:80", Up: true, SharedBy: 2},
		{Key: "vs2/10.0.0.2:80", Reason: "connect: connection refused", Since: since},
	})
	want := `health checks: 4, 1 down, 3 probes
  DOWN vs2/10.0.0.2:80 (connect: connection refused, since 03:04:05)
  SHARED vs1/10.0.0.1:80 (probe shared by 2)
  SHARED vs2/10.0.0.1:80 (probe shared by 2)
`
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("printChecks (-want +got):\n%s", diff)
	}
}

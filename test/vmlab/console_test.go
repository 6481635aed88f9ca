package vmlab

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestConsoleProblems(t *testing.T) {
	const boot = "VMLAB-BOOTED uptime=2.7\nVMLAB-MODULES loaded=33 failed=0\n"
	for _, tc := range []struct {
		name    string
		console string
		want    []string
	}{
		{
			name:    "all pass",
			console: boot + "VMLAB-START a\nPASS\r\n\r\nVMLAB-RESULT a rc=0\r\nVMLAB-START b/c\nVMLAB-RESULT b/c rc=0\nVMLAB-DONE uptime=9\n",
		},
		{
			name:    "one fails",
			console: boot + "VMLAB-START a\nVMLAB-RESULT a rc=1\nVMLAB-START b/c\nVMLAB-RESULT b/c rc=0\nVMLAB-DONE\n",
			want:    []string{"a: FAILED rc=1"},
		},
		{
			name:    "dies in second",
			console: boot + "VMLAB-START a\nVMLAB-RESULT a rc=0\nVMLAB-START b/c\n=== RUN TestX\n",
			want:    []string{"b/c: started but no result (VM died or hung in it)", "VM ended before VMLAB-DONE"},
		},
		{
			name:    "never boots",
			console: "[    0.1] early noise\n",
			want:    []string{"VM never reached /init (no VMLAB-BOOTED)", "a: never ran", "b/c: never ran"},
		},
		{
			name: "panic and module failure",
			console: "VMLAB-BOOTED\nVMLAB-MODULE-FAIL /lib/modules/x/ip_vs.ko\nVMLAB-MODULES loaded=0 failed=1\n" +
				"[ 3.1] Kernel panic - not syncing: Attempted to kill init!\n",
			want: []string{
				"kernel panic: [ 3.1] Kernel panic - not syncing: Attempted to kill init!",
				"modules failed to load: /lib/modules/x/ip_vs.ko",
				"a: never ran", "b/c: never ran", "VM ended before VMLAB-DONE",
			},
		},
		{
			name: "marker glued to test output is not a marker",
			// init prints a newline first, so a real marker always starts a line.
			console: boot + "VMLAB-START a\nsome outputVMLAB-RESULT a rc=0\nVMLAB-START b/c\nVMLAB-RESULT b/c rc=0\nVMLAB-DONE\n",
			want:    []string{"a: started but no result (VM died or hung in it)"},
		},
		{
			name:    "unexpected and duplicate results",
			console: boot + "VMLAB-RESULT a rc=0\nVMLAB-RESULT a rc=0\nVMLAB-RESULT b/c rc=0\nVMLAB-RESULT z rc=0\nVMLAB-DONE\n",
			want:    []string{"a: 2 results, want 1", "z: unexpected result"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newConsole(5)
			for _, l := range strings.Split(strings.TrimSuffix(tc.console, "\n"), "\n") {
				c.line(l)
			}
			if diff := cmp.Diff(tc.want, c.problems([]string{"a", "b/c"})); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
			if len(c.tail) > 5 {
				t.Errorf("tail has %d lines, want at most 5", len(c.tail))
			}
		})
	}
}

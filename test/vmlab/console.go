package vmlab

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// TestResult is what /init reported for one test binary.
type TestResult struct {
	Name string
	RC   int
}

// ErrVM is wrapped by every verdict that the VM run failed.
var ErrVM = errors.New("vmlab: VM run failed")

var (
	reResult  = regexp.MustCompile(`^VMLAB-RESULT (\S+) rc=(\d+)$`)
	reModFail = regexp.MustCompile(`^VMLAB-MODULE-FAIL (\S+)$`)
)

// console follows the serial console line by line and collects the marker
// lines /init prints. It keeps the last tailLen lines for error reports.
type console struct {
	booted     bool
	modsDone   bool
	modFails   []string
	started    []string
	results    []TestResult
	done       bool
	panicLine  string
	tail       []string
	tailLen    int
	totalLines int
}

func newConsole(tailLen int) *console { return &console{tailLen: tailLen} }

// line consumes one console line (without its newline).
func (c *console) line(s string) {
	s = strings.TrimRight(s, "\r")
	c.totalLines++
	c.tail = append(c.tail, s)
	if len(c.tail) > c.tailLen {
		c.tail = c.tail[len(c.tail)-c.tailLen:]
	}
	t := strings.TrimSpace(s)
	switch {
	case strings.HasPrefix(t, "VMLAB-BOOTED"):
		c.booted = true
	case strings.HasPrefix(t, "VMLAB-MODULES "):
		c.modsDone = true
	case strings.HasPrefix(t, "VMLAB-START "):
		c.started = append(c.started, strings.TrimPrefix(t, "VMLAB-START "))
	case t == "VMLAB-DONE" || strings.HasPrefix(t, "VMLAB-DONE "):
		c.done = true
	case strings.Contains(s, "Kernel panic"):
		if c.panicLine == "" {
			c.panicLine = t
		}
	}
	if m := reResult.FindStringSubmatch(t); m != nil {
		rc, _ := strconv.Atoi(m[2])
		c.results = append(c.results, TestResult{Name: m[1], RC: rc})
	}
	if m := reModFail.FindStringSubmatch(t); m != nil {
		c.modFails = append(c.modFails, m[1])
	}
}

// problems checks the run against the test names that were to run. Empty
// means the VM booted, loaded every module, ran every test binary once with
// rc=0 and reached VMLAB-DONE.
func (c *console) problems(want []string) []string {
	var p []string
	if c.panicLine != "" {
		p = append(p, "kernel panic: "+c.panicLine)
	}
	if !c.booted {
		p = append(p, "VM never reached /init (no VMLAB-BOOTED)")
	}
	if len(c.modFails) > 0 {
		p = append(p, "modules failed to load: "+strings.Join(c.modFails, " "))
	}
	got := map[string][]int{}
	for _, r := range c.results {
		got[r.Name] = append(got[r.Name], r.RC)
	}
	for _, name := range want {
		rcs := got[name]
		switch {
		case len(rcs) == 0 && slices.Contains(c.started, name):
			p = append(p, name+": started but no result (VM died or hung in it)")
		case len(rcs) == 0:
			p = append(p, name+": never ran")
		case len(rcs) > 1:
			p = append(p, fmt.Sprintf("%s: %d results, want 1", name, len(rcs)))
		case rcs[0] != 0:
			p = append(p, fmt.Sprintf("%s: FAILED rc=%d", name, rcs[0]))
		}
		delete(got, name)
	}
	extra := slices.Sorted(maps.Keys(got))
	for _, name := range extra {
		p = append(p, name+": unexpected result")
	}
	if c.booted && !c.done {
		p = append(p, "VM ended before VMLAB-DONE")
	}
	return p
}

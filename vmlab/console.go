package vmlab

import (
	"errors"
	"fmt"
	"regexp"
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

// verdict checks the run against the test names that were to run, in
// order. nil means the VM booted, loaded every module, ran every test
// binary with rc=0 and reached VMLAB-DONE.
func (c *console) verdict(want []string) error {
	var errs []error
	if c.panicLine != "" {
		errs = append(errs, fmt.Errorf("kernel panic: %s", c.panicLine))
	}
	if !c.booted {
		errs = append(errs, errors.New("VM never reached /init (no VMLAB-BOOTED)"))
	}
	if len(c.modFails) > 0 {
		errs = append(errs, fmt.Errorf("modules failed to load: %s", strings.Join(c.modFails, " ")))
	}
	got := map[string][]int{}
	for _, r := range c.results {
		got[r.Name] = append(got[r.Name], r.RC)
	}
	for _, name := range want {
		rcs := got[name]
		switch {
		case len(rcs) == 0 && contains(c.started, name):
			errs = append(errs, fmt.Errorf("%s: started but no result (VM died or hung in it)", name))
		case len(rcs) == 0:
			errs = append(errs, fmt.Errorf("%s: never ran", name))
		case len(rcs) > 1:
			errs = append(errs, fmt.Errorf("%s: %d results, want 1", name, len(rcs)))
		case rcs[0] != 0:
			errs = append(errs, fmt.Errorf("%s: FAILED rc=%d", name, rcs[0]))
		}
		delete(got, name)
	}
	for name := range got {
		errs = append(errs, fmt.Errorf("%s: unexpected result", name))
	}
	if c.booted && !c.done {
		errs = append(errs, errors.New("VM ended before VMLAB-DONE"))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrVM, errors.Join(errs...))
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}

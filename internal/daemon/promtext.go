package daemon

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// The Prometheus text exposition format (version 0.0.4), written by hand:
// client_golang and the protobuf runtime it pulls in cost the daemon
// 2.4 MB of resident memory for their code and initialisation alone,
// about a quarter of what it needed at 255 groups over keepalived's
// (issue 8); havip's metrics are a fixed table (metricDefs) with no need
// for a registry.

const promContentType = "text/plain; version=0.0.4; charset=utf-8"

// metricType is a metric's TYPE line.
type metricType string

const (
	gauge   metricType = "gauge"
	counter metricType = "counter"
)

// promWriter writes metric families and their samples; the first write
// error, and every sample it refused, are kept for err.
type promWriter struct {
	w       io.Writer
	werr    error
	refused []string
	buf     []byte
}

func (p *promWriter) write(b []byte) {
	if p.werr == nil {
		_, p.werr = p.w.Write(b)
	}
}

// family writes the HELP and TYPE lines of a metric.
func (p *promWriter) family(name, help string, typ metricType) {
	b := append(p.buf[:0], "# HELP "...)
	b = append(b, name...)
	b = append(b, ' ')
	b = append(b, escapeHelp.Replace(help)...)
	b = append(b, "\n# TYPE "...)
	b = append(b, name...)
	b = append(b, ' ')
	b = append(b, typ...)
	b = append(b, '\n')
	p.buf = b
	p.write(b)
}

// sample writes one sample of name with the label names and values.
func (p *promWriter) sample(name string, labels, values []string, v float64) {
	if len(labels) != len(values) {
		p.refused = append(p.refused, fmt.Sprintf("%s: %d label values for %d labels", name, len(values), len(labels)))
		return
	}
	b := append(p.buf[:0], name...)
	if len(labels) > 0 {
		b = append(b, '{')
		for i, l := range labels {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, l...)
			b = append(b, `="`...)
			b = append(b, escapeLabel.Replace(strings.ToValidUTF8(values[i], string(utf8.RuneError)))...)
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	b = append(b, ' ')
	b = strconv.AppendFloat(b, v, 'g', -1, 64)
	b = append(b, '\n')
	p.buf = b
	p.write(b)
}

func (p *promWriter) err() error {
	if len(p.refused) > 0 {
		return errors.Join(p.werr, errors.New("refused: "+strings.Join(p.refused, "; ")))
	}
	return p.werr
}

var (
	escapeHelp  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	escapeLabel = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

// processStart is when the daemon started, for process_start_time_seconds.
var processStart = time.Now()

// writeProcessMetrics writes the standard process_* and go_* metrics
// that dashboards expect, under their usual names, from /proc/self and
// the Go runtime.
func writeProcessMetrics(p *promWriter) {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) == nil {
		cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
		p.family("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", counter)
		p.sample("process_cpu_seconds_total", nil, nil, cpu)
	}
	if rss, vsz, ok := procStatm(); ok {
		p.family("process_resident_memory_bytes", "Resident memory size in bytes.", gauge)
		p.sample("process_resident_memory_bytes", nil, nil, rss)
		p.family("process_virtual_memory_bytes", "Virtual memory size in bytes.", gauge)
		p.sample("process_virtual_memory_bytes", nil, nil, vsz)
	}
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		p.family("process_open_fds", "Number of open file descriptors.", gauge)
		p.sample("process_open_fds", nil, nil, float64(len(fds)))
	}
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) == nil {
		p.family("process_max_fds", "Maximum number of open file descriptors.", gauge)
		p.sample("process_max_fds", nil, nil, float64(lim.Cur))
	}
	p.family("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", gauge)
	p.sample("process_start_time_seconds", nil, nil, float64(processStart.UnixNano())/1e9)

	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	for _, m := range []struct {
		name, help string
		typ        metricType
		v          float64
	}{
		{"go_goroutines", "Number of goroutines that currently exist.", gauge, float64(runtime.NumGoroutine())},
		{"go_gomaxprocs", "The value of GOMAXPROCS.", gauge, float64(runtime.GOMAXPROCS(0))},
		{"go_memstats_heap_alloc_bytes", "Number of heap bytes allocated and still in use.", gauge, float64(ms.HeapAlloc)},
		{"go_memstats_heap_inuse_bytes", "Number of heap bytes in in-use spans.", gauge, float64(ms.HeapInuse)},
		{"go_memstats_stack_inuse_bytes", "Number of bytes in use by the stack allocator.", gauge, float64(ms.StackInuse)},
		{"go_memstats_sys_bytes", "Number of bytes obtained from the system.", gauge, float64(ms.Sys)},
		{"go_memstats_alloc_bytes_total", "Total number of bytes allocated, even if freed.", counter, float64(ms.TotalAlloc)},
		{"go_gc_cycles_total", "Number of completed GC cycles.", counter, float64(ms.NumGC)},
	} {
		p.family(m.name, m.help, m.typ)
		p.sample(m.name, nil, nil, m.v)
	}
}

// procStatm reads the resident and virtual sizes from /proc/self/statm.
func procStatm() (rss, vsz float64, ok bool) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, 0, false
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, 0, false
	}
	pages, err1 := strconv.ParseUint(f[0], 10, 64)
	res, err2 := strconv.ParseUint(f[1], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	page := float64(os.Getpagesize())
	return float64(res) * page, float64(pages) * page, true
}

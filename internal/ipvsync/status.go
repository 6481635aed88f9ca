package ipvsync

import (
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ServiceStatus is one declared service as the kernel holds it.
type ServiceStatus struct {
	Name      string       `json:"name"`
	Key       ServiceKey   `json:"key"`
	InKernel  bool         `json:"in_kernel"`
	Scheduler string       `json:"scheduler"` // the kernel's, or the wanted one when absent
	Flags     []string     `json:"flags"`
	Timeout   uint32       `json:"persistence_seconds,omitempty"`
	Down      bool         `json:"down"` // fewer live real servers than the quorum
	Dests     []DestStatus `json:"real_servers"`
}

// DestStatus is one real server (or the sorry server) of a service.
type DestStatus struct {
	Address  netip.AddrPort `json:"address"`
	InKernel bool           `json:"in_kernel"`
	Weight   int            `json:"weight"`  // the kernel's; 0 when absent
	Forward  string         `json:"forward"` // dr | tun | nat
	Active   int            `json:"active_connections"`
	Inactive int            `json:"inactive_connections"`
	// Health is "up" or "down" for configured real servers, "sorry" for
	// the sorry server, "unknown" for a destination havip did not declare.
	Health string `json:"health"`
}

// Published is what the reconciler knew after its latest reconcile, for
// status and metrics: they read this instead of the kernel, so they never
// add a dump of the whole table.
type Published struct {
	// At is when Rows were built, by the latest reconcile that read the
	// kernel; zero before the first. A reconcile that could not read
	// keeps the rows it had, and LastError says why.
	At time.Time
	// Rows are the services of the table last reconciled, as the kernel
	// held them once the reconciler's writes were done. Connection
	// counters are as of the last read of each service: the last full
	// reconcile (one every resync period), or a targeted one since. Rows
	// is shared by every caller: read it, do not modify it.
	Rows []ServiceStatus
	// LastError is the error of the latest reconcile, "" if it succeeded.
	LastError string
	// StateError is StateError as the latest reconcile left it.
	StateError string
	// DumpRetries counts dumps thrown away because they were interrupted
	// or inconsistent.
	DumpRetries int
	// Writes counts the kernel writes that succeeded (every Change).
	Writes uint64
}

// Published returns what the latest reconcile published; the zero value
// before the first. It is safe for concurrent use and never touches the
// kernel.
func (r *Reconciler) Published() Published {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rowsStale {
		r.pub.Rows = slices.Clone(r.rows)
		r.rowsStale = false
	}
	return r.pub
}

// statusRows reports each service of t as cur holds it, with the health t
// was computed with. With only set, cur holds just those services (a
// targeted reconcile) and the rows of the others are copied from prev.
func statusRows(t Table, cur map[ServiceKey]*kernelService, only map[ServiceKey]bool, prev []ServiceStatus) []ServiceStatus {
	var kept map[ServiceKey]ServiceStatus
	aligned := len(prev) == len(t.Services) // most often: prev is of the same table
	for i := 0; aligned && i < len(prev); i++ {
		aligned = prev[i].Key == t.Services[i].Key
	}
	if only != nil && !aligned {
		kept = make(map[ServiceKey]ServiceStatus, len(prev))
		for _, st := range prev {
			kept[st.Key] = st
		}
	}
	out := make([]ServiceStatus, 0, len(t.Services))
	for i := range t.Services {
		s := &t.Services[i]
		if only != nil && !only[s.Key] {
			if aligned {
				out = append(out, prev[i])
				continue
			}
			if st, ok := kept[s.Key]; ok {
				out = append(out, st)
				continue
			}
		}
		out = append(out, statusRow(s, cur[s.Key]))
	}
	return out
}

// statusRow reports s with its real servers as the kernel's ks (nil when
// the kernel lacks it) holds them.
func statusRow(s *Service, ks *kernelService) ServiceStatus {
	st := ServiceStatus{Name: s.Name, Key: s.Key, Scheduler: s.Scheduler, Down: s.Down, Timeout: s.Timeout}
	flags := s.Flags
	if ks != nil {
		st.InKernel = true
		st.Scheduler = ks.svc.SchedName
		flags = ks.svc.Flags & userFlags
		st.Timeout = ks.svc.Timeout
	}
	st.Flags = FlagNames(st.Scheduler, flags)
	dests := make(map[netip.AddrPort]bool, len(s.Backends)+1)
	st.Dests = make([]DestStatus, 0, len(s.Backends)+1)
	row := func(a netip.AddrPort, fwd, health string) {
		ds := DestStatus{Address: a, Forward: fwd, Health: health}
		if ks != nil {
			if kd := ks.dests[a]; kd != nil {
				ds.InKernel = true
				ds.Weight = kd.Weight
				ds.Forward = forwardName(kd.ConnectionFlags)
				ds.Active = kd.ActiveConnections
				ds.Inactive = kd.InactiveConnections
			}
		}
		dests[a] = true
		st.Dests = append(st.Dests, ds)
	}
	for _, b := range s.Backends {
		h := "down"
		if b.Up {
			h = "up"
		}
		row(b.Address, b.Forward, h)
	}
	if s.Sorry.IsValid() && !dests[s.Sorry] {
		row(s.Sorry, "", "sorry")
	}
	if ks != nil {
		for _, a := range sortedAddrs(ks.dests) {
			if !dests[a] {
				row(a, "", "unknown")
			}
		}
	}
	return st
}

// Format writes rows the way `ipvsadm -Ln` does, plus health.
func Format(w io.Writer, rows []ServiceStatus) error {
	width := len("RemoteAddress:Port")
	for _, s := range rows {
		for _, d := range s.Dests {
			width = max(width, len(d.Address.String()))
		}
	}
	b := &strings.Builder{}
	fmt.Fprintf(b, "Prot LocalAddress:Port Scheduler Flags\n")
	fmt.Fprintf(b, "  -> %-*s %-7s %-6s %-10s %-10s %s\n", width, "RemoteAddress:Port", "Forward", "Weight", "ActiveConn", "InActConn", "Health")
	for _, s := range rows {
		if s.Key.FWMark != 0 {
			fmt.Fprintf(b, "FWM  %d %s", s.Key.FWMark, familyName(s.Key.Family))
		} else {
			fmt.Fprintf(b, "%-4s %s", strings.ToUpper(protocolName(s.Key.Protocol)), s.Key.Address)
		}
		fmt.Fprintf(b, " %s", s.Scheduler)
		for _, f := range s.Flags {
			if f == "persistent" {
				f = fmt.Sprintf("persistent %d", s.Timeout)
			}
			fmt.Fprintf(b, " %s", f)
		}
		if s.Down {
			b.WriteString(" DOWN")
		}
		if !s.InKernel {
			b.WriteString(" MISSING-FROM-KERNEL")
		}
		fmt.Fprintf(b, " (%s)\n", s.Name)
		for _, d := range s.Dests {
			weight := strconv.Itoa(d.Weight)
			if !d.InKernel {
				weight = "-"
			}
			fmt.Fprintf(b, "  -> %-*s %-7s %-6s %-10d %-10d %s\n", width, d.Address, forwardWord(d.Forward), weight, d.Active, d.Inactive, d.Health)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// forwardWord is ipvsadm's name for a forwarding method.
func forwardWord(f string) string {
	switch f {
	case "dr":
		return "Route"
	case "tun":
		return "Tunnel"
	case "nat":
		return "Masq"
	case "local":
		return "Local"
	}
	return f
}

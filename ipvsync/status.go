package ipvsync

import (
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"
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

// Snapshot reads the kernel and reports each service of t with its real
// servers: kernel weight, forwarding and connection counters, and the
// health t was computed with. It only reads.
func Snapshot(k Kernel, t Table) ([]ServiceStatus, error) {
	cur, err := (&Reconciler{k: k}).dump()
	if err != nil {
		return nil, err
	}
	out := make([]ServiceStatus, 0, len(t.Services))
	for _, s := range t.Services {
		st := ServiceStatus{Name: s.Name, Key: s.Key, Scheduler: s.Scheduler, Down: s.Down, Timeout: s.Timeout}
		flags := s.Flags
		ks := cur[s.Key]
		dests := map[netip.AddrPort]bool{}
		if ks != nil {
			st.InKernel = true
			st.Scheduler = ks.svc.SchedName
			flags = ks.svc.Flags & userFlags
			st.Timeout = ks.svc.Timeout
		}
		st.Flags = FlagNames(st.Scheduler, flags)
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
		out = append(out, st)
	}
	return out, nil
}

// Format writes rows the way `ipvsadm -Ln` does, plus health.
func Format(w io.Writer, rows []ServiceStatus) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "Prot LocalAddress:Port\tScheduler\tFlags\t\t\t")
	fmt.Fprintln(tw, "  -> RemoteAddress:Port\tForward\tWeight\tActiveConn\tInActConn\tHealth")
	for _, s := range rows {
		var head string
		if s.Key.FWMark != 0 {
			head = fmt.Sprintf("FWM  %d %s", s.Key.FWMark, familyName(s.Key.Family))
		} else {
			head = fmt.Sprintf("%-4s %s", strings.ToUpper(protocolName(s.Key.Protocol)), s.Key.Address)
		}
		var notes []string
		for _, f := range s.Flags {
			if f == "persistent" {
				f = fmt.Sprintf("persistent %d", s.Timeout)
			}
			notes = append(notes, f)
		}
		if s.Down {
			notes = append(notes, "DOWN")
		}
		if !s.InKernel {
			notes = append(notes, "MISSING from kernel")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t\t\t(%s)\n", head, s.Scheduler, strings.Join(notes, ","), s.Name)
		for _, d := range s.Dests {
			weight := fmt.Sprint(d.Weight)
			if !d.InKernel {
				weight = "-"
			}
			fmt.Fprintf(tw, "  -> %s\t%s\t%s\t%d\t%d\t%s\n", d.Address, forwardWord(d.Forward), weight, d.Active, d.Inactive, d.Health)
		}
	}
	return tw.Flush()
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

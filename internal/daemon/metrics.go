package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"time"
)

// metricsTask exposes Prometheus text metrics from the same snapshots as
// status: a scrape never touches the kernel or waits on a group.
type metricsTask struct {
	addr string
	l    net.Listener
	srv  *http.Server
}

func listenMetrics(addr string, c *controller) (*metricsTask, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		c.writeMetrics(w)
	})
	return &metricsTask{addr: addr, l: l, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}, nil
}

func (m *metricsTask) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- m.srv.Serve(m.l) }()
	select {
	case <-ctx.Done():
		m.srv.Close()
		<-errc
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("metrics: %w", err)
	}
}

// close releases a listener a refused reload had opened.
func (m *metricsTask) close() { m.l.Close() }

var states = []string{"INIT", "BACKUP", "MASTER", "FAULT"}

func (c *controller) writeMetrics(w io.Writer) {
	st := c.status()
	fmt.Fprintln(w, "# HELP havip_vrrp_state 1 for the group's current state.")
	fmt.Fprintln(w, "# TYPE havip_vrrp_state gauge")
	for _, g := range st.Groups {
		for _, s := range states {
			v := 0
			if g.State == s {
				v = 1
			}
			fmt.Fprintf(w, "havip_vrrp_state{group=%q,state=%q} %d\n", g.Name, s, v)
		}
	}
	fmt.Fprintln(w, "# TYPE havip_vrrp_priority gauge")
	for _, g := range st.Groups {
		fmt.Fprintf(w, "havip_vrrp_priority{group=%q} %d\n", g.Name, g.Priority)
	}
	fmt.Fprintln(w, "# TYPE havip_vrrp_dual_master gauge")
	for _, g := range st.Groups {
		fmt.Fprintf(w, "havip_vrrp_dual_master{group=%q} %d\n", g.Name, b2i(g.DualMaster))
	}
	fmt.Fprintln(w, "# HELP havip_vrrp_fault 1 while the group is in FAULT for a reason of its own (interface, socket, VIP claim).")
	fmt.Fprintln(w, "# TYPE havip_vrrp_fault gauge")
	for _, g := range st.Groups {
		fmt.Fprintf(w, "havip_vrrp_fault{group=%q} %d\n", g.Name, b2i(g.Fault != ""))
	}
	for _, m := range []struct {
		name string
		get  func(i int) uint64
	}{
		{"havip_vrrp_adverts_received_total", func(i int) uint64 { return st.Groups[i].RxAdverts }},
		{"havip_vrrp_adverts_sent_total", func(i int) uint64 { return st.Groups[i].TxAdverts }},
		{"havip_vrrp_transitions_total", func(i int) uint64 { return st.Groups[i].Transitions }},
		{"havip_vrrp_send_errors_total", func(i int) uint64 { return st.Groups[i].SendErrors }},
		{"havip_vrrp_read_errors_total", func(i int) uint64 { return st.Groups[i].ReadErrors }},
		{"havip_vrrp_socket_opens_total", func(i int) uint64 { return st.Groups[i].Reopens }},
		{"havip_vip_announcements_total", func(i int) uint64 { return st.Groups[i].Announced }},
		{"havip_vip_announce_errors_total", func(i int) uint64 { return st.Groups[i].AnnounceErrors }},
	} {
		fmt.Fprintf(w, "# TYPE %s counter\n", m.name)
		for i, g := range st.Groups {
			fmt.Fprintf(w, "%s{group=%q} %d\n", m.name, g.Name, m.get(i))
		}
	}
	fmt.Fprintln(w, "# TYPE havip_vrrp_dropped_total counter")
	for _, g := range st.Groups {
		reasons := make([]string, 0, len(g.Drops))
		for r := range g.Drops {
			reasons = append(reasons, r)
		}
		sort.Strings(reasons)
		for _, r := range reasons {
			fmt.Fprintf(w, "havip_vrrp_dropped_total{group=%q,reason=%q} %d\n", g.Name, r, g.Drops[r])
		}
	}
	if len(st.Checks) > 0 {
		fmt.Fprintln(w, "# HELP havip_check_up 1 while a health-checked target is up.")
		fmt.Fprintln(w, "# TYPE havip_check_up gauge")
		for _, ch := range st.Checks {
			fmt.Fprintf(w, "havip_check_up{target=%q} %d\n", ch.Key, b2i(ch.Up))
		}
	}
	if st.IPVS != nil {
		fmt.Fprintln(w, "# HELP havip_ipvs_changes_total IPVS writes made by the reconciler (including repairs).")
		fmt.Fprintln(w, "# TYPE havip_ipvs_changes_total counter")
		fmt.Fprintf(w, "havip_ipvs_changes_total %d\n", st.IPVS.Repairs)
		fmt.Fprintln(w, "# TYPE havip_ipvs_error gauge")
		fmt.Fprintf(w, "havip_ipvs_error %d\n", b2i(st.IPVS.Error != ""))
	}
	if v := c.view.Load(); v.pair != nil {
		fmt.Fprintln(w, "# TYPE havip_pair_dropped_total counter")
		fmt.Fprintf(w, "havip_pair_dropped_total %d\n", v.pair.drops.Load())
	}
	if v := c.view.Load(); v.hooks != nil {
		n := v.hooks.Counters()
		fmt.Fprintln(w, "# TYPE havip_notify_hooks_total counter")
		for _, r := range []struct {
			result string
			n      uint64
		}{{"ran", n.Ran}, {"failed", n.Failed}, {"timed_out", n.TimedOut}, {"dropped", n.Dropped}} {
			fmt.Fprintf(w, "havip_notify_hooks_total{result=%q} %d\n", r.result, r.n)
		}
	}
	fmt.Fprintln(w, "# TYPE havip_reload_refused gauge")
	fmt.Fprintf(w, "havip_reload_refused %d\n", b2i(st.ReloadError != ""))
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

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

// serveMetrics exposes Prometheus text metrics on [site] metrics.
func (d *Daemon) serveMetrics(ctx context.Context) error {
	d.mu.Lock()
	addr := d.site.Metrics
	d.mu.Unlock()
	if addr == "" {
		return nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		d.writeMetrics(w)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("metrics server", "err", err)
		}
	}()
	go func() { <-ctx.Done(); srv.Close() }()
	return nil
}

var states = []string{"INIT", "BACKUP", "MASTER", "FAULT"}

func (d *Daemon) writeMetrics(w io.Writer) {
	st := d.status()
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
		v := 0
		if g.DualMaster {
			v = 1
		}
		fmt.Fprintf(w, "havip_vrrp_dual_master{group=%q} %d\n", g.Name, v)
	}
	for _, c := range []struct {
		name string
		get  func(i int) uint64
	}{
		{"havip_vrrp_adverts_received_total", func(i int) uint64 { return st.Groups[i].RxAdverts }},
		{"havip_vrrp_adverts_sent_total", func(i int) uint64 { return st.Groups[i].TxAdverts }},
		{"havip_vrrp_transitions_total", func(i int) uint64 { return st.Groups[i].Transitions }},
		{"havip_vrrp_send_errors_total", func(i int) uint64 { return st.Groups[i].SendErrors }},
	} {
		fmt.Fprintf(w, "# TYPE %s counter\n", c.name)
		for i, g := range st.Groups {
			fmt.Fprintf(w, "%s{group=%q} %d\n", c.name, g.Name, c.get(i))
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
		for _, c := range st.Checks {
			v := 0
			if c.Up {
				v = 1
			}
			fmt.Fprintf(w, "havip_check_up{target=%q} %d\n", c.Key, v)
		}
	}
	if st.IPVS != nil {
		fmt.Fprintln(w, "# HELP havip_ipvs_changes_total IPVS writes made by the reconciler (including repairs).")
		fmt.Fprintln(w, "# TYPE havip_ipvs_changes_total counter")
		fmt.Fprintf(w, "havip_ipvs_changes_total %d\n", st.IPVS.Repairs)
	}
	if d.pair != nil {
		fmt.Fprintln(w, "# TYPE havip_pair_dropped_total counter")
		fmt.Fprintf(w, "havip_pair_dropped_total %d\n", d.pair.drops.Load())
	}
}

package daemon

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"sync"

	"github.com/havip/havip/internal/checks"
	"github.com/havip/havip/internal/ctl"
	"github.com/havip/havip/internal/notify"
)

// metricsTask serves Prometheus metrics in the text exposition format
// (promtext.go): havip's metrics, read from the same published snapshots
// as status, so a scrape never touches the kernel, takes a controller
// lock or waits on a group, and the standard process_* and go_* ones.
// It speaks just enough HTTP/1.x for a scraper (httpmetrics.go): net/http
// cost the daemon 1.1 MB of resident memory for one GET (issue 8).
type metricsTask struct {
	addr string
	l    net.Listener
	snap func() *metricsSnap
	log  *slog.Logger

	mu      sync.Mutex
	conns   map[net.Conn]bool // being served (httpmetrics.go)
	stopped bool
}

func listenMetrics(addr string, c *controller) (*metricsTask, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return &metricsTask{addr: addr, l: l, snap: c.metricsSnap, log: c.log}, nil
}

// close releases a listener a refused reload had opened.
func (m *metricsTask) close() { m.l.Close() }

// scrape writes one snapshot's metrics to w.
func (m *metricsTask) scrape(w io.Writer) {
	if err := writeMetrics(w, m.snap()); err != nil {
		m.log.Error("metrics: a metric could not be written; the others are served", "err", err)
	}
}

// writeMetrics writes every metric of s, then the process and Go ones.
// A sample whose labels do not fit its metric (a bug) is left out and
// named in the error; the rest is written.
func writeMetrics(w io.Writer, s *metricsSnap) error {
	pw := &promWriter{w: w}
	for _, d := range metricDefs {
		pw.family(d.name, d.help, d.typ)
		d.collect(s, func(v float64, lv ...string) { pw.sample(d.name, d.labels, lv, v) })
	}
	writeProcessMetrics(pw)
	return pw.err()
}

// metricsSnap is what one scrape reads, gathered once from what the
// controller and the tasks published. A metric from a new snapshot field:
// add the field here, fill it in (controller).metricsSnap, and add one
// metricDef to metricDefs (and its row to README's metrics table; a test
// checks).
type metricsSnap struct {
	st      *ctl.Status
	pair    *pairSnap        // nil without a pair link
	hooks   *notify.Counters // nil before the notify runner starts
	events  struct{ emitted, lost uint64 }
	reloads struct{ applied, refused uint64 }
	drills  struct{ run, refused uint64 }
	checks  *checkCounts // nil before the health checks start
}

// checkCounts is what the check runner counts.
type checkCounts struct {
	probes   int
	late     uint64
	failures map[checks.FailureKey]uint64
}

// metricsSnap reads the published view and the tasks' snapshots.
func (c *controller) metricsSnap() *metricsSnap {
	s := &metricsSnap{st: c.status()}
	if v := c.view.Load(); v.pair != nil {
		ps := v.pair.snapshot()
		s.pair = &ps
	}
	if v := c.view.Load(); v.hooks != nil {
		n := v.hooks.Counters()
		s.hooks = &n
	}
	s.events.emitted, s.events.lost = c.journal.Emitted(), c.journal.LostCount()
	s.reloads.applied, s.reloads.refused = c.reloadsApplied.Load(), c.reloadsRefused.Load()
	s.drills.run, s.drills.refused = c.drillsRun.Load(), c.drillsRefused.Load()
	if v := c.view.Load(); v.checks != nil {
		r := v.checks.runner
		s.checks = &checkCounts{probes: r.Probes(), late: r.Late(), failures: r.Failures()}
	}
	return s
}

// metricDef is one metric: its name, help, type and labels, and how to read
// its samples from a snapshot (out takes the value, then the label values
// in the order of labels).
type metricDef struct {
	name, help string
	typ        metricType
	labels     []string
	collect    func(s *metricsSnap, out func(v float64, labelValues ...string))
}

var vrrpStates = []string{"INIT", "BACKUP", "MASTER", "FAULT"}

// perGroup is a metric with one sample per group, labelled group.
func perGroup(name, help string, typ metricType, get func(g *ctl.GroupStatus) float64) metricDef {
	return metricDef{name: name, help: help, typ: typ, labels: []string{"group"},
		collect: func(s *metricsSnap, out func(float64, ...string)) {
			for i := range s.st.Groups {
				out(get(&s.st.Groups[i]), s.st.Groups[i].Name)
			}
		}}
}

// metricDefs is every metric havip exports besides the process and Go
// collectors'. README's metrics table lists them all (TestMetricsREADME).
var metricDefs = []metricDef{
	{name: "havip_vrrp_state", help: "1 for the group's current state, 0 for the others.", typ: gauge, labels: []string{"group", "state"},
		collect: func(s *metricsSnap, out func(float64, ...string)) {
			for _, g := range s.st.Groups {
				for _, st := range vrrpStates {
					out(b2f(g.State == st), g.Name, st)
				}
			}
		}},
	perGroup("havip_vrrp_priority", "The group's effective priority on this node.", gauge,
		func(g *ctl.GroupStatus) float64 { return float64(g.Priority) }),
	perGroup("havip_vrrp_dual_master", "1 while both directors hold the group for longer than an election (seen over the pair link).", gauge,
		func(g *ctl.GroupStatus) float64 { return b2f(g.DualMaster) }),
	perGroup("havip_vrrp_fault", "1 while the group is in FAULT for a reason of its own (interface, socket, VIP claim).", gauge,
		func(g *ctl.GroupStatus) float64 { return b2f(g.Fault != "") }),
	perGroup("havip_vrrp_adverts_received_total", "Adverts received for the group.", counter,
		func(g *ctl.GroupStatus) float64 { return float64(g.RxAdverts) }),
	perGroup("havip_vrrp_adverts_sent_total", "Adverts sent for the group.", counter,
		func(g *ctl.GroupStatus) float64 { return float64(g.TxAdverts) }),
	perGroup("havip_vrrp_transitions_total", "State changes of the group.", counter,
		func(g *ctl.GroupStatus) float64 { return float64(g.Transitions) }),
	perGroup("havip_vrrp_send_errors_total", "Adverts that could not be sent.", counter,
		func(g *ctl.GroupStatus) float64 { return float64(g.SendErrors) }),
	perGroup("havip_vrrp_read_errors_total", "Errors reading the advert socket.", counter,
		func(g *ctl.GroupStatus) float64 { return float64(g.ReadErrors) }),
	perGroup("havip_vrrp_socket_opens_total", "Advert sockets the group attached to (the first included); one socket per interface and family is shared by its groups.", counter,
		func(g *ctl.GroupStatus) float64 { return float64(g.Reopens) }),
	perGroup("havip_vip_announcements_total", "Gratuitous ARPs and unsolicited NAs sent for the group's VIPs.", counter,
		func(g *ctl.GroupStatus) float64 { return float64(g.Announced) }),
	perGroup("havip_vip_announce_errors_total", "Gratuitous ARPs and NAs that could not be sent.", counter,
		func(g *ctl.GroupStatus) float64 { return float64(g.AnnounceErrors) }),
	{name: "havip_vrrp_dropped_total", help: "Received adverts not acted upon, by reason.", typ: counter, labels: []string{"group", "reason"},
		collect: func(s *metricsSnap, out func(float64, ...string)) {
			for _, g := range s.st.Groups {
				for _, r := range sortedKeys(g.Drops) {
					out(float64(g.Drops[r]), g.Name, r)
				}
			}
		}},
	{name: "havip_vrrp_socket_dropped_total", help: "Packets an interface's advert socket could give to no group, by reason (vrid: no group runs it here; truncated).", typ: counter, labels: []string{"interface", "family", "reason"},
		collect: func(s *metricsSnap, out func(float64, ...string)) {
			for _, k := range s.st.Sockets {
				for _, r := range sortedKeys(k.Drops) {
					out(float64(k.Drops[r]), k.Interface, k.Family, r)
				}
			}
		}},
	{name: "havip_vrrp_sockets_opened_total", help: "Advert sockets opened on an interface for an address family (the first included).", typ: counter, labels: []string{"interface", "family"},
		collect: func(s *metricsSnap, out func(float64, ...string)) {
			for _, k := range s.st.Sockets {
				out(float64(k.Opens), k.Interface, k.Family)
			}
		}},
	{name: "havip_check_up", help: "1 while a health-checked target is up.", typ: gauge, labels: []string{"target"},
		collect: func(s *metricsSnap, out func(float64, ...string)) {
			for _, ch := range s.st.Checks {
				out(b2f(ch.Up), ch.Key)
			}
		}},
	{name: "havip_check_probes", help: "Probe loops running: fewer than the checked targets when identical checks share a probe.", typ: gauge,
		collect: func(s *metricsSnap, out func(float64, ...string)) {
			if s.checks != nil && len(s.st.Checks) > 0 {
				out(float64(s.checks.probes))
			}
		}},
	{name: "havip_check_probe_failures_total", help: "Probes that failed, by check type and reason.", typ: counter, labels: []string{"type", "reason"},
		collect: func(s *metricsSnap, out func(float64, ...string)) {
			if s.checks != nil {
				for k, n := range s.checks.failures {
					out(float64(n), k.Type, string(k.Reason))
				}
			}
		}},
	{name: "havip_check_late_total", help: "Probes that started late because every goroutine of the blocking-probe pool was busy.", typ: counter,
		collect: func(s *metricsSnap, out func(float64, ...string)) {
			if s.checks != nil && len(s.st.Checks) > 0 {
				out(float64(s.checks.late))
			}
		}},
	{name: "havip_ipvs_changes_total", help: "IPVS writes made by the reconciler (including repairs).", typ: counter,
		collect: func(s *metricsSnap, out func(float64, ...string)) {
			if s.st.IPVS != nil {
				out(float64(s.st.IPVS.Repairs))
			}
		}},
	{name: "havip_ipvs_error", help: "1 while the IPVS reconciler or the sync daemons report an error.", typ: gauge,
		collect: func(s *metricsSnap, out func(float64, ...string)) {
			if s.st.IPVS != nil {
				out(b2f(s.st.IPVS.Error != ""))
			}
		}},
	{name: "havip_pair_dropped_total", help: "Pair-link connections and messages dropped, by reason.", typ: counter, labels: []string{"reason"},
		collect: func(s *metricsSnap, out func(float64, ...string)) {
			if s.pair != nil {
				for _, r := range pairDropReasons {
					out(float64(s.pair.drops[r]), r)
				}
			}
		}},
	{name: "havip_pair_authenticated", help: "1 when the site names a pair key (the link may act on what it hears), 0 when it only observes.", typ: gauge,
		collect: func(s *metricsSnap, out func(float64, ...string)) {
			if s.pair != nil {
				out(b2f(s.pair.authenticated))
			}
		}},
	{name: "havip_pair_link_up", help: "1 while an authenticated-or-not session with the peer is established.", typ: gauge, labels: []string{"peer"},
		collect: func(s *metricsSnap, out func(float64, ...string)) {
			if s.pair != nil {
				for _, p := range s.pair.peers {
					out(b2f(p.linkUp), p.node)
				}
			}
		}},
	{name: "havip_pair_peer_alive", help: "1 while the peer was heard within 2 s.", typ: gauge, labels: []string{"peer"},
		collect: func(s *metricsSnap, out func(float64, ...string)) {
			if s.pair != nil {
				for _, p := range s.pair.peers {
					out(b2f(p.alive), p.node)
				}
			}
		}},
	{name: "havip_pair_fast_takeovers_total", help: "Times the peer's daemon died as master (its kernel closed the link without a bye) and this node took over at once.", typ: counter,
		collect: func(s *metricsSnap, out func(float64, ...string)) {
			if s.pair != nil {
				out(float64(s.pair.fast))
			}
		}},
	{name: "havip_mirror_digest_match", help: "1 while the peer's desired IPVS table has the same digest as ours.", typ: gauge,
		collect: func(s *metricsSnap, out func(float64, ...string)) {
			if m := s.st.Mirror; m != nil && m.PeerDigest != "" {
				out(b2f(m.Match))
			}
		}},
	{name: "havip_drills_total", help: "Failover drills started on this node, by outcome: run (handed over, or tried) or refused by the pre-checks.", typ: counter, labels: []string{"result"},
		collect: func(s *metricsSnap, out func(float64, ...string)) {
			out(float64(s.drills.run), "run")
			out(float64(s.drills.refused), "refused")
		}},
	{name: "havip_notify_hooks_total", help: "Notify hooks by outcome.", typ: counter, labels: []string{"result"},
		collect: func(s *metricsSnap, out func(float64, ...string)) {
			if n := s.hooks; n != nil {
				out(float64(n.Ran), "ran")
				out(float64(n.Failed), "failed")
				out(float64(n.TimedOut), "timed_out")
				out(float64(n.Dropped), "dropped")
			}
		}},
	{name: "havip_reload_refused", help: "1 while the last reload was refused (the previous config runs).", typ: gauge,
		collect: func(s *metricsSnap, out func(float64, ...string)) { out(b2f(s.st.ReloadError != "")) }},
	{name: "havip_reloads_total", help: "Reloads (havip reload, SIGHUP) by outcome.", typ: counter, labels: []string{"result"},
		collect: func(s *metricsSnap, out func(float64, ...string)) {
			out(float64(s.reloads.applied), "applied")
			out(float64(s.reloads.refused), "refused")
		}},
	{name: "havip_events_total", help: "Events recorded for havip events.", typ: counter,
		collect: func(s *metricsSnap, out func(float64, ...string)) { out(float64(s.events.emitted)) }},
	{name: "havip_events_lost_total", help: "Events a havip events follower missed because it fell more than the ring behind.", typ: counter,
		collect: func(s *metricsSnap, out func(float64, ...string)) { out(float64(s.events.lost)) }},
}

func sortedKeys(m map[string]uint64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

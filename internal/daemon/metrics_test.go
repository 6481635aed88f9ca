package daemon

import (
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/havip/havip/internal/ctl"
	"github.com/havip/havip/internal/notify"
)

func (d metricDef) typeName() string {
	if d.typ == prometheus.CounterValue {
		return "counter"
	}
	return "gauge"
}

func (d metricDef) labelList() string {
	if len(d.labels) == 0 {
		return "—"
	}
	return "`" + strings.Join(d.labels, "`, `") + "`"
}

// Every metric registered in code has its row in README's metrics table,
// with its type and labels, and the table names nothing the code lacks.
func TestMetricsREADME(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `(havip_[a-z_]+)` \\| ([a-z]+) \\| ([^|]*) \\|")
	readme := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(string(b), -1) {
		readme[m[1]] = m[2] + " | " + strings.TrimSpace(m[3])
	}
	code := map[string]string{}
	var missing []string
	for _, d := range metricDefs {
		code[d.name] = d.typeName() + " | " + d.labelList()
		if _, ok := readme[d.name]; !ok {
			missing = append(missing, "| `"+d.name+"` | "+code[d.name]+" | "+d.help+" |")
		}
	}
	if len(missing) > 0 {
		t.Errorf("README's metrics table lacks these rows:\n%s", strings.Join(missing, "\n"))
	}
	if d := cmp.Diff(code, readme); d != "" {
		t.Errorf("README's metrics table differs from the code: name -> type | labels (-code +README):\n%s", d)
	}
}

// A scrape of a snapshot with every part present gathers a sample for
// every metric in metricDefs, plus the process and Go collectors', with
// the values read from the snapshot.
func TestMetricsGather(t *testing.T) {
	s := &metricsSnap{
		st: &ctl.Status{
			Groups: []ctl.GroupStatus{{Name: "front", State: "MASTER", Priority: 150, TxAdverts: 7, Drops: map[string]uint64{"unknown_source": 3}}},
			Checks: []ctl.CheckStatus{{Key: "check/dns", Up: true}},
			IPVS:   &ctl.IPVSStatus{Repairs: 2},
			Mirror: &ctl.MirrorStatus{PeerDigest: "ab", Match: true},
		},
		pair:  &pairSnap{drops: map[string]uint64{dropForged: 5}, authenticated: true, fast: 1, peers: []pairPeerSnap{{node: "lb2", alive: true, linkUp: true}}},
		hooks: &notify.Counters{Ran: 4},
	}
	s.events.emitted, s.events.lost = 11, 1
	s.reloads.applied, s.reloads.refused = 2, 1
	reg := newRegistry(func() *metricsSnap { return s })
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	var names []string
	for _, f := range fams {
		names = append(names, f.GetName())
		for _, m := range f.Metric {
			var lv []string
			for _, l := range m.Label {
				lv = append(lv, l.GetName()+"="+l.GetValue())
			}
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			got[f.GetName()+"{"+strings.Join(lv, ",")+"}"] = v
		}
	}
	sort.Strings(names)
	for _, d := range metricDefs {
		if _, ok := sort.Find(len(names), func(i int) int { return strings.Compare(d.name, names[i]) }); !ok {
			t.Errorf("no samples of %s", d.name)
		}
	}
	for _, want := range []string{"process_cpu_seconds_total", "go_goroutines"} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Errorf("no %s: the process and Go collectors are not registered", want)
		}
	}
	for k, want := range map[string]float64{
		"havip_vrrp_state{group=front,state=MASTER}":                  1,
		"havip_vrrp_state{group=front,state=BACKUP}":                  0,
		"havip_vrrp_priority{group=front}":                            150,
		"havip_vrrp_adverts_sent_total{group=front}":                  7,
		"havip_vrrp_dropped_total{group=front,reason=unknown_source}": 3,
		"havip_check_up{target=check/dns}":                            1,
		"havip_ipvs_changes_total{}":                                  2,
		"havip_pair_dropped_total{reason=forged}":                     5,
		"havip_pair_dropped_total{reason=replayed}":                   0,
		"havip_pair_authenticated{}":                                  1,
		"havip_pair_link_up{peer=lb2}":                                1,
		"havip_pair_peer_alive{peer=lb2}":                             1,
		"havip_pair_fast_takeovers_total{}":                           1,
		"havip_mirror_digest_match{}":                                 1,
		"havip_notify_hooks_total{result=ran}":                        4,
		"havip_reloads_total{result=applied}":                         2,
		"havip_reloads_total{result=refused}":                         1,
		"havip_events_total{}":                                        11,
		"havip_events_lost_total{}":                                   1,
	} {
		if v, ok := got[k]; !ok || v != want {
			t.Errorf("%s = %v (present %t), want %v", k, v, ok, want)
		}
	}
}

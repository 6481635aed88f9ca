package daemon

import (
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/havip/havip/internal/checks"
	"github.com/havip/havip/internal/ctl"
	"github.com/havip/havip/internal/notify"
)

func (d metricDef) typeName() string { return string(d.typ) }

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
			Groups:  []ctl.GroupStatus{{Name: "front", State: "MASTER", Priority: 150, TxAdverts: 7, Drops: map[string]uint64{"unknown_source": 3}}},
			Sockets: []ctl.SocketStatus{{Interface: "eth0", Family: "inet", Opens: 1, Drops: map[string]uint64{"vrid": 6}}},
			Checks:  []ctl.CheckStatus{{Key: "check/dns", Up: true}},
			IPVS:    &ctl.IPVSStatus{Repairs: 2},
			Mirror:  &ctl.MirrorStatus{PeerDigest: "ab", Match: true},
		},
		pair:   &pairSnap{drops: map[string]uint64{dropForged: 5}, authenticated: true, fast: 1, peers: []pairPeerSnap{{node: "lb2", alive: true, linkUp: true}}},
		hooks:  &notify.Counters{Ran: 4},
		checks: &checkCounts{probes: 1, late: 3, failures: map[checks.FailureKey]uint64{{Type: "http", Reason: checks.FailStatus}: 9}},
	}
	s.events.emitted, s.events.lost = 11, 1
	s.reloads.applied, s.reloads.refused = 2, 1
	var out strings.Builder
	if err := writeMetrics(&out, s); err != nil {
		t.Fatal(err)
	}
	got, names := parseExposition(t, out.String())
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
		"havip_vrrp_state{group=front,state=MASTER}":                              1,
		"havip_vrrp_state{group=front,state=BACKUP}":                              0,
		"havip_vrrp_priority{group=front}":                                        150,
		"havip_vrrp_adverts_sent_total{group=front}":                              7,
		"havip_vrrp_dropped_total{group=front,reason=unknown_source}":             3,
		"havip_check_up{target=check/dns}":                                        1,
		"havip_check_probes{}":                                                    1,
		"havip_check_late_total{}":                                                3,
		"havip_check_probe_failures_total{reason=status,type=http}":               9,
		"havip_vrrp_socket_dropped_total{family=inet,interface=eth0,reason=vrid}": 6,
		"havip_vrrp_sockets_opened_total{family=inet,interface=eth0}":             1,
		"havip_ipvs_changes_total{}":                                              2,
		"havip_pair_dropped_total{reason=forged}":                                 5,
		"havip_pair_dropped_total{reason=replayed}":                               0,
		"havip_pair_authenticated{}":                                              1,
		"havip_pair_link_up{peer=lb2}":                                            1,
		"havip_pair_peer_alive{peer=lb2}":                                         1,
		"havip_pair_fast_takeovers_total{}":                                       1,
		"havip_mirror_digest_match{}":                                             1,
		"havip_notify_hooks_total{result=ran}":                                    4,
		"havip_reloads_total{result=applied}":                                     2,
		"havip_reloads_total{result=refused}":                                     1,
		"havip_events_total{}":                                                    11,
		"havip_events_lost_total{}":                                               1,
	} {
		if v, ok := got[k]; !ok || v != want {
			t.Errorf("%s = %v (present %t), want %v", k, v, ok, want)
		}
	}
}

// parseExposition reads the text format back: every sample by name and
// its labels sorted (name=value, comma-separated), the families named by
// TYPE lines; it fails on any line that is not a comment or a sample,
// a sample before its family's TYPE, or a family typed twice.
func parseExposition(t *testing.T, text string) (map[string]float64, []string) {
	t.Helper()
	got := map[string]float64{}
	typed := map[string]bool{}
	var names []string
	sample := regexp.MustCompile(`^([a-z_]+)(?:\{(.*)\})? (\S+)$`)
	label := regexp.MustCompile(`^([a-z_]+)="((?:[^"\\]|\\.)*)"(?:,|$)`)
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, typ, _ := strings.Cut(rest, " ")
			if typed[name] || (typ != "gauge" && typ != "counter") {
				t.Errorf("bad or repeated TYPE line %q", line)
			}
			typed[name] = true
			names = append(names, name)
			continue
		}
		if strings.HasPrefix(line, "# HELP ") {
			continue
		}
		m := sample.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("not a sample: %q", line)
			continue
		}
		if !typed[m[1]] {
			t.Errorf("sample before its TYPE line: %q", line)
		}
		var lv []string
		for rest := m[2]; rest != ""; {
			l := label.FindStringSubmatch(rest)
			if l == nil {
				t.Errorf("bad labels in %q", line)
				break
			}
			lv = append(lv, l[1]+"="+l[2])
			rest = rest[len(l[0]):]
		}
		sort.Strings(lv)
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			t.Errorf("bad value in %q", line)
		}
		got[m[1]+"{"+strings.Join(lv, ",")+"}"] = v
	}
	return got, names
}

// Label values are escaped as the format says, and a sample whose labels
// do not fit its metric is refused with the others still written.
func TestPromWriter(t *testing.T) {
	var out strings.Builder
	p := &promWriter{w: &out}
	p.family("x_total", "A help\\with a backslash\nand a newline.", counter)
	p.sample("x_total", []string{"k"}, []string{"a\"b\\c\nd\xff"}, 2.5)
	p.sample("x_total", []string{"k"}, nil, 1)
	p.sample("x_total", []string{"k"}, []string{"ok"}, 3)
	want := "# HELP x_total A help\\\\with a backslash\\nand a newline.\n# TYPE x_total counter\n" +
		`x_total{k="a\"b\\c\nd` + "\ufffd" + `"} 2.5` + "\n" + `x_total{k="ok"} 3` + "\n"
	if d := cmp.Diff(want, out.String()); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if err := p.err(); err == nil || !strings.Contains(err.Error(), "x_total: 0 label values for 1 labels") {
		t.Errorf("err %v, want the refused sample named", err)
	}
}

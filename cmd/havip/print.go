package main

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/havip/havip/internal/ctl"
)

func printStatus(w io.Writer, st *ctl.Status) {
	fmt.Fprintf(w, "site %s  node %s (%s)  pid %d  up %s  version %s\n",
		st.Site, st.Node, st.Address, st.PID, time.Since(st.Started).Round(time.Second), st.Version)
	fmt.Fprintf(w, "config %s  revision %s", dash(st.ConfigFile), dash(st.Revision))
	if !st.ConfigLoaded.IsZero() {
		fmt.Fprintf(w, "  loaded %s", st.ConfigLoaded.Format(time.DateTime))
	}
	fmt.Fprintln(w)
	switch lr := st.LastReload; {
	case lr != nil && !lr.Applied:
		fmt.Fprintln(w, "LAST RELOAD REFUSED (running config kept):")
		for _, p := range lr.Problems {
			fmt.Fprintf(w, "  %s\n", p)
		}
		if len(lr.Problems) == 0 && st.ReloadError != "" {
			fmt.Fprintf(w, "  %s\n", st.ReloadError)
		}
	case st.ReloadError != "":
		fmt.Fprintf(w, "LAST RELOAD REFUSED (running config kept): %s\n", st.ReloadError)
	}
	if st.PairError != "" {
		fmt.Fprintf(w, "PAIR LINK NOT BOUND (retrying): %s\n", st.PairError)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nGROUP\tIFACE\tVRID\tVER\tSTATE\tPRIO\tMASTER\tPEER\tVIPS")
	for _, g := range st.Groups {
		state := g.State
		if g.DualMaster {
			state += " (DUAL MASTER!)"
		}
		if g.Fault != "" {
			state += " (" + g.Fault + ")"
		}
		prio := fmt.Sprint(g.Priority)
		if g.Priority != g.BasePriority {
			prio = fmt.Sprintf("%d/%d", g.Priority, g.BasePriority)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\n", g.Name, g.Interface, g.VRID, g.Version,
			state, prio, dash(g.MasterAddr), safe(dash(g.PeerState)), strings.Join(g.VIPs, ","))
	}
	tw.Flush()
	for _, g := range st.Groups {
		var parts []string
		for _, t := range g.Tracks {
			if t.Failing {
				parts = append(parts, fmt.Sprintf("%s %s failing (weight %d)", t.Kind, t.Name, t.Weight))
			}
		}
		if len(g.Drops) > 0 {
			parts = append(parts, "dropped: "+counts(g.Drops))
		}
		for _, e := range []struct {
			what string
			n    uint64
		}{{"send errors", g.SendErrors}, {"read errors", g.ReadErrors}, {"GARP/NA errors", g.AnnounceErrors}} {
			if e.n > 0 {
				parts = append(parts, fmt.Sprintf("%s %d", e.what, e.n))
			}
		}
		if g.Socket != "" {
			parts = append(parts, "no advert socket: "+g.Socket)
		}
		if g.ClaimError != "" {
			parts = append(parts, "VIP claim failed: "+g.ClaimError)
		}
		if g.Pending != "" {
			parts = append(parts, g.Pending)
		}
		if len(g.Advertising) > 0 {
			parts = append(parts, "advertising the peer's list "+strings.Join(g.Advertising, ",")+" until it runs this file")
		}
		fmt.Fprintf(w, "  %s:", g.Name)
		if g.SyncGroup != "" {
			fmt.Fprintf(w, " sync group %s;", g.SyncGroup)
		}
		fmt.Fprintf(w, " adverts rx %d tx %d, transitions %d", g.RxAdverts, g.TxAdverts, g.Transitions)
		if len(parts) > 0 {
			fmt.Fprintf(w, "; %s", strings.Join(parts, "; "))
		}
		fmt.Fprintln(w)
	}
	for _, k := range st.Sockets {
		mode := "unicast only"
		if k.Multicast {
			mode = "multicast joined"
		}
		fmt.Fprintf(w, "  advert socket %s %s: %d groups, %s, %d opened", k.Interface, k.Family, k.Groups, mode, k.Opens)
		if k.ReadErrors > 0 {
			fmt.Fprintf(w, ", read errors %d", k.ReadErrors)
		}
		if len(k.Drops) > 0 {
			fmt.Fprintf(w, "; dropped (no group for them): %s", counts(k.Drops))
		}
		fmt.Fprintln(w)
	}
	for _, p := range st.Peers {
		state := "not heard"
		if p.Alive {
			state = fmt.Sprintf("alive (last %s ago)", time.Since(p.LastSeen).Round(time.Millisecond))
		} else if !p.LastSeen.IsZero() {
			state = fmt.Sprintf("silent since %s", p.LastSeen.Format(time.RFC3339))
		}
		if p.Revision != "" {
			state += ", revision " + safe(p.Revision)
			if p.Revision != st.Revision {
				state += " (differs from this node's)"
			}
		}
		switch {
		case p.LinkUp && p.Trusted:
			state += "; pair link up, authenticated"
		case p.LinkUp:
			state += "; pair link up, NOT authenticated (no pair_key): observed only"
		case p.LinkError != "":
			state += "; pair link down: " + safe(p.LinkError)
		default:
			state += "; pair link down"
		}
		fmt.Fprintf(w, "peer %s (%s): %s\n", p.Node, p.Address, state)
	}
	if pr := st.Pair; pr != nil {
		var drops []string
		for r, n := range pr.Drops {
			drops = append(drops, fmt.Sprintf("%s %d", r, n))
		}
		sort.Strings(drops)
		if len(drops) > 0 || pr.FastTakeovers > 0 {
			fmt.Fprintf(w, "pair link: dropped %s; fast takeovers %d\n", dash(strings.Join(drops, ", ")), pr.FastTakeovers)
		}
	}
	printChecks(w, st.Checks)
	if st.IPVS != nil {
		fmt.Fprintln(w)
		if st.IPVS.Error != "" {
			fmt.Fprintf(w, "IPVS: %s\n", st.IPVS.Error)
		}
		fmt.Fprint(w, st.IPVS.Table)
		for _, s := range st.IPVS.Sync {
			fmt.Fprintf(w, "sync daemon: %s on %s, sync id %d\n", s.Role, s.Interface, s.SyncID)
		}
	}
	printDrains(w, st)
}

// printDrains prints the operator drains and the mirror comparison. Names
// may come from the peer: they are printed escaped (safe).
func printDrains(w io.Writer, st *ctl.Status) {
	if len(st.Drains) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "DRAINED\tREAL SERVER\tMODE\tSINCE\tBY\tKERNEL WEIGHT\tACTIVE\tINACTIVE")
		for _, d := range st.Drains {
			mode := "weight 0"
			if d.Remove {
				mode = "removed"
			}
			weight := "-"
			if d.InKernel {
				weight = fmt.Sprint(d.Weight)
			}
			if !d.InSite {
				mode += " (not in this site file)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\n", safe(d.VirtualServer), safe(d.RealServer), mode,
				d.Since.Local().Format(time.DateTime), safe(d.By), weight, d.Active, d.Inactive)
		}
		tw.Flush()
	}
	m := st.Mirror
	if m == nil {
		return
	}
	fmt.Fprintf(w, "\nmirror: drains revision %d", m.DrainsRevision)
	if m.DrainsBy != "" {
		fmt.Fprintf(w, " (changed on %s at %s)", safe(m.DrainsBy), m.DrainsChanged.Local().Format(time.DateTime))
	}
	here, there := "here:", "on "+safe(m.Peer)+":"
	width := max(len(here), len(there))
	fmt.Fprintf(w, "\n  desired table %-*s %s\n", width, here, m.Digest)
	switch {
	case m.Peer == "":
		fmt.Fprintln(w, "  no peer")
		return
	case m.PeerDigest == "":
		fmt.Fprintf(w, "  desired table %-*s unknown (not heard, or it does not send one)\n", width, there)
		return
	}
	fmt.Fprintf(w, "  desired table %-*s %s (drains revision %d)\n", width, there, m.PeerDigest, m.PeerDrainsRevision)
	switch {
	case !m.PeerAlive:
		fmt.Fprintln(w, "  the peer is silent: the comparison is with what it said last")
	case m.Match:
		fmt.Fprintln(w, "  tables MATCH")
	}
	if len(m.Differences) > 0 {
		fmt.Fprintln(w, "  tables DIFFER:")
		for _, d := range m.Differences {
			fmt.Fprintf(w, "    %s\n", safe(d))
		}
	}
	if !m.PeerTrusted {
		fmt.Fprintln(w, "  the peer is not authenticated: its drains are shown, not adopted")
	}
	if m.BadDrainMessages > 0 {
		fmt.Fprintf(w, "  %d peer messages had a drain set that did not validate\n", m.BadDrainMessages)
	}
}

// safe is s with control and other non-printing characters escaped, for
// text that may come from the peer.
func safe(s string) string {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			q := strconv.QuoteToGraphic(s)
			return q[1 : len(q)-1]
		}
	}
	return s
}

// printReload prints an applied reload: the changes, then one line of
// what ran before and what runs now; warnings go to stderr.
func printReload(stdout, stderr io.Writer, res *ctl.ReloadResult) {
	for _, c := range res.Changes {
		fmt.Fprintln(stdout, c)
	}
	if len(res.Changes) == 0 {
		fmt.Fprintln(stdout, "no changes")
	}
	took := ""
	if res.Took != "" {
		took = " in " + res.Took
	}
	fmt.Fprintf(stdout, "reloaded %s (revision %s -> %s)%s\n", res.File, dash(res.OldRevision), dash(res.Revision), took)
	for _, w := range res.Warnings {
		fmt.Fprintln(stderr, w)
	}
}

// failoverOutput is what havip failover prints (as JSON with --json).
type failoverOutput struct {
	Groups    []ctl.FailoverResult `json:"groups"`
	Refused   bool                 `json:"refused,omitempty"` // the pre-checks failed: nothing changed
	Probe     *probeReport         `json:"probe,omitempty"`
	ClientGap string               `json:"client_gap,omitempty"` // without a probe: that it was not measured
}

var notMeasured = "not measured: the drill sees no clients; havip failover --probe VIP:PORT connects through the VIP every " +
	probeEvery.String() + " during the drill and counts the connections that failed"

func printFailover(w io.Writer, out failoverOutput) {
	if len(out.Groups) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "GROUP\tFROM\tTO\tMODE\tHANDOVER\tFIRST ADVERT\tERROR")
		for _, r := range out.Groups {
			mode := r.Mode
			if r.Refused {
				mode = "refused"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", printable(r.Group), printable(r.From), dash(printable(r.To)),
				dash(mode), dash(r.Handover), dash(r.FirstAdvert), dash(printable(r.Error)))
		}
		tw.Flush()
	}
	if out.Refused {
		fmt.Fprintln(w, "drill refused: nothing changed, the VIPs stay here (--force overrides)")
	}
	switch p := out.Probe; {
	case p == nil:
		fmt.Fprintln(w, "client-visible gap: "+out.ClientGap)
	case p.Failed == 0:
		fmt.Fprintf(w, "client-visible gap: none: probe %s, %d connections (every %s, timeout %s), 0 failed\n", p.Target, p.Attempts, p.Every, p.Timeout)
	default:
		fmt.Fprintf(w, "client-visible gap: %s: probe %s, %d of %d connections failed (every %s, timeout %s), from %s to %s after the drill started\n",
			p.Window, p.Target, p.Failed, p.Attempts, p.Every, p.Timeout, p.FirstFailure, p.LastFailure)
		for _, e := range p.Errors {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
}

// printable escapes what is not printable in s: peer text never reaches
// the terminal raw.
func printable(s string) string {
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// counts renders reason -> count as "a=1 b=2", sorted.
func counts(m map[string]uint64) string {
	out := make([]string, 0, len(m))
	for r, n := range m {
		out = append(out, fmt.Sprintf("%s=%d", r, n))
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// printChecks prints the health checks: a count, each one down, and each
// one whose probe other keys share (one probe feeds them all).
func printChecks(w io.Writer, checks []ctl.CheckStatus) {
	if len(checks) == 0 {
		return
	}
	var down, shared []string
	probes := 0.0
	for _, c := range checks {
		probes += 1 / float64(max(c.SharedBy, 1))
		if !c.Up {
			down = append(down, fmt.Sprintf("%s (%s, since %s)", c.Key, c.Reason, c.Since.Format(time.TimeOnly)))
		}
		if c.SharedBy > 1 {
			shared = append(shared, fmt.Sprintf("%s (probe shared by %d)", c.Key, c.SharedBy))
		}
	}
	fmt.Fprintf(w, "health checks: %d, %d down, %d probes\n", len(checks), len(down), int(probes+0.5))
	for _, d := range down {
		fmt.Fprintf(w, "  DOWN %s\n", d)
	}
	for _, s := range shared {
		fmt.Fprintf(w, "  SHARED %s\n", s)
	}
}

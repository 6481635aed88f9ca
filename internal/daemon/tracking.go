package daemon

import (
	"context"
	"slices"
	"sort"
	"time"

	"github.com/havip/havip/internal/track"
)

// linkNames is every interface the groups depend on: their own and the
// ones named by [[vrrp.track]].
func (d *Daemon) linkNames() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	set := map[string]bool{}
	for _, g := range d.site.Groups {
		set[g.Interface] = true
		for _, t := range g.Track {
			if t.Interface != "" {
				set[t.Interface] = true
			}
		}
	}
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// startTracking (re)starts the link watch when the set of names changed.
func (d *Daemon) startTracking(ctx context.Context) error {
	names := d.linkNames()
	if slices.Equal(names, d.trackOn) && d.trackCh != nil {
		return nil
	}
	if d.trackStop != nil {
		d.trackStop()
	}
	tctx, cancel := context.WithCancel(ctx)
	ch, err := track.Watch(tctx, track.Want{Links: names}, d.log)
	if err != nil {
		cancel()
		return err
	}
	d.trackCh, d.trackStop, d.trackOn = ch, cancel, names
	return nil
}

func (d *Daemon) linkChanged(ls track.LinkState) {
	d.mu.Lock()
	if d.links == nil {
		d.links = map[string]track.LinkState{}
	}
	d.links[ls.Name] = ls
	d.mu.Unlock()
	for _, g := range d.runningGroups() {
		d.pushLink(g, ls)
	}
}

// refreshLinks hands a newly started group the link states known so far.
func (d *Daemon) refreshLinks(g *group) {
	d.mu.Lock()
	var known []track.LinkState
	for _, ls := range d.links {
		known = append(known, ls)
	}
	d.mu.Unlock()
	for _, ls := range known {
		d.pushLink(g, ls)
	}
}

func (d *Daemon) pushLink(g *group, ls track.LinkState) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = g.do(ctx, func() { g.setTrack("interface:"+ls.Name, !ls.Up) })
}

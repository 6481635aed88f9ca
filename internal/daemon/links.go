package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/havip/havip/internal/track"
)

// linkWatch is the subscription to link and address changes (package
// track runs it); the controller reads its channel.
type linkWatch struct {
	want    track.Want
	ch      <-chan track.Update
	cancel  context.CancelFunc
	initial []track.Update // the state of everything wanted, at start
}

// initialWait bounds the wait for the first state of every wanted link
// and address (track emits them at once, from one dump).
const initialWait = 2 * time.Second

// startLinkWatch subscribes and collects the initial states, so that no
// group starts before its interface is known (a group that started blind
// would go INIT -> FAULT -> BACKUP, running notify hooks for nothing).
func startLinkWatch(ctx context.Context, want track.Want, log *slog.Logger) (*linkWatch, error) {
	wctx, cancel := context.WithCancel(ctx)
	ch, err := track.Watch(wctx, want, log)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("link watch: %w", err)
	}
	w := &linkWatch{want: want, ch: ch, cancel: cancel}
	need := len(want.Links) + len(want.Addrs)
	deadline := time.After(initialWait)
	for len(w.initial) < need {
		select {
		case u, ok := <-ch:
			if !ok {
				cancel()
				return nil, fmt.Errorf("link watch: ended at start")
			}
			w.initial = append(w.initial, u)
		case <-deadline:
			log.Warn("link watch: not every initial state arrived in time", "got", len(w.initial), "want", need)
			return w, nil
		}
	}
	return w, nil
}

func (w *linkWatch) stop() { w.cancel() }

func sameWant(a, b track.Want) bool {
	return slices.Equal(a.Links, b.Links) && slices.Equal(a.Addrs, b.Addrs)
}

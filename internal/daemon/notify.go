package daemon

import (
	"context"
	"log/slog"
	"os/exec"
	"strconv"
	"time"
)

// notifier runs notify hooks one after another, in the order the state
// changes happened, without a shell, each bounded by its timeout. It never
// blocks a group: a full queue drops the hook and counts it.
type notifier struct {
	log     *slog.Logger
	queue   chan hookRun
	dropped uint64
}

type hookRun struct {
	argv    []string
	timeout time.Duration
}

func newNotifier(log *slog.Logger) *notifier {
	return &notifier{log: log, queue: make(chan hookRun, 64)}
}

func (n *notifier) run(argv []string, timeout time.Duration, group, state string, prio uint8) {
	if len(argv) == 0 {
		return
	}
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	full := append(append([]string(nil), argv...), group, state, strconv.Itoa(int(prio)))
	select {
	case n.queue <- hookRun{argv: full, timeout: timeout}:
	default:
		n.dropped++
		n.log.Error("notify queue full; hook not run", "argv", full)
	}
}

// loop runs queued hooks until ctx ends, then drains what is queued.
func (n *notifier) loop(ctx context.Context) {
	for {
		select {
		case h := <-n.queue:
			n.exec(h)
		case <-ctx.Done():
			for {
				select {
				case h := <-n.queue:
					n.exec(h)
				default:
					return
				}
			}
		}
	}
}

func (n *notifier) exec(h hookRun) {
	ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, h.argv[0], h.argv[1:]...).CombinedOutput()
	if err != nil {
		n.log.Warn("notify hook failed", "argv", h.argv, "err", err, "output", string(out), "took", time.Since(start))
		return
	}
	n.log.Info("notify hook ran", "argv", h.argv, "took", time.Since(start))
}

package daemon

import (
	"context"
	"log/slog"
)

// Every long-running part of the daemon is a task: Run(ctx) returns once
// ctx ends and the part has cleaned up. The controller starts each one
// with startTask and stops it with stop, in the order written down in
// controller.go; stop waits, so shutdown waits for every task it started.

type taskHandle struct {
	name   string
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// startTask runs run on its own goroutine under a child of parent.
func startTask(parent context.Context, name string, log *slog.Logger, run func(context.Context) error) *taskHandle {
	ctx, cancel := context.WithCancel(parent)
	t := &taskHandle{name: name, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(t.done)
		t.err = run(ctx)
		if t.err != nil {
			log.Error("task failed", "task", name, "err", t.err)
		}
	}()
	return t
}

// wait waits for the task to return.
func (t *taskHandle) wait() error {
	<-t.done
	return t.err
}

// stop cancels the task and waits for it.
func (t *taskHandle) stop() error {
	t.cancel()
	return t.wait()
}

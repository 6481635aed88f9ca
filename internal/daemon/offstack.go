package daemon

import (
	"context"
	"net/netip"
)

// offStack wraps a group's VIP claimer so that its netlink calls run on a
// goroutine of their own, which ends with the call: vishvananda/netlink
// receives into a 64 KiB array on its caller's stack, so every group
// goroutine that had claimed a VIP kept a stack of 128 KiB, and 255
// master groups held 20 MB of stacks. The group waits for each call as
// before; only the stack is another's.
type offStack struct{ claimer }

// onOwnStack runs fn on a new goroutine and returns its result.
func onOwnStack[T any](fn func() T) T {
	ch := make(chan T, 1)
	go func() { ch <- fn() }()
	return <-ch
}

func (o offStack) Claim(ctx context.Context) error {
	return onOwnStack(func() error { return o.claimer.Claim(ctx) })
}

func (o offStack) ClaimSome(ctx context.Context, ps []netip.Prefix) error {
	return onOwnStack(func() error { return o.claimer.ClaimSome(ctx, ps) })
}

func (o offStack) Refresh() error { return onOwnStack(o.claimer.Refresh) }

func (o offStack) Release() error { return onOwnStack(o.claimer.Release) }

func (o offStack) ReleaseSome(ps []netip.Prefix) error {
	return onOwnStack(func() error { return o.claimer.ReleaseSome(ps) })
}

func (o offStack) Announce(ctx context.Context) {
	onOwnStack(func() struct{} { o.claimer.Announce(ctx); return struct{}{} })
}

func (o offStack) RemoveStale() (int, error) {
	type res struct {
		n   int
		err error
	}
	r := onOwnStack(func() res { n, err := o.claimer.RemoveStale(); return res{n, err} })
	return r.n, r.err
}

// Package samens gives vishvananda/netlink a network namespace only when
// it is not the calling thread's own. netlink's *At functions and its
// subscriptions' Namespace option enter the namespace they are given
// (setns) even when the thread is in it already, and setns needs
// CAP_SYS_ADMIN, which havip.service does not grant (its
// RestrictNamespaces= forbids it too). The daemon never leaves its
// namespace; only tests run parts of it on threads moved into others.
// samens never creates, enters for good or closes a namespace.
package samens

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Do runs fn on a locked thread with nil when that thread is in ns, so
// netlink opens its socket right there, and with &ns otherwise.
func Do(ns netns.NsHandle, fn func(at *netns.NsHandle) error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cur, err := netns.Get()
	if err != nil {
		return fmt.Errorf("samens: current netns: %w", err)
	}
	defer cur.Close()
	if cur.Equal(ns) {
		return fn(nil)
	}
	return fn(&ns)
}

// Handle is netlink.NewHandleAt(ns, protos...) without entering ns when
// the calling thread is in it.
func Handle(ns netns.NsHandle, protos ...int) (*netlink.Handle, error) {
	var h *netlink.Handle
	err := Do(ns, func(at *netns.NsHandle) error {
		var err error
		if at == nil {
			h, err = netlink.NewHandle(protos...)
		} else {
			h, err = netlink.NewHandleAt(*at, protos...)
		}
		return err
	})
	return h, err
}

// Enter moves the calling thread, which the caller has locked, into ns
// unless it is there already.
func Enter(ns netns.NsHandle) error {
	cur, err := netns.Get()
	if err != nil {
		return fmt.Errorf("samens: current netns: %w", err)
	}
	defer cur.Close()
	if cur.Equal(ns) {
		return nil
	}
	return netns.Set(ns)
}

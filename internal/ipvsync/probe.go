package ipvsync

import (
	"errors"
	"fmt"
	"os"

	"github.com/mdlayher/genetlink"
)

// ErrNoIPVS means the running kernel has no IPVS.
var ErrNoIPVS = errors.New("the kernel has no IPVS")

// procIPVS exists whenever IPVS is loaded (per network namespace).
var procIPVS = "/proc/net/ip_vs"

// Probe reports whether the kernel has IPVS. It looks for the generic
// netlink family "IPVS" and for /proc/net/ip_vs; when both are missing it
// returns ErrNoIPVS with the fix. It never loads modules.
func Probe() error {
	c, err := genetlink.Dial(nil)
	if err != nil {
		return fmt.Errorf("ipvsync: generic netlink: %w", err)
	}
	defer c.Close()
	_, famErr := c.GetFamily(ipvsGenlName)
	if famErr == nil {
		return nil
	}
	if !errors.Is(famErr, os.ErrNotExist) {
		return fmt.Errorf("ipvsync: look up generic netlink family %q: %w", ipvsGenlName, famErr)
	}
	if _, err := os.Stat(procIPVS); err == nil {
		// Registered in /proc but not over netlink: a kernel too old
		// for havip, which speaks only netlink.
		return fmt.Errorf("ipvsync: %w over generic netlink (%s exists, but no family %q): use a kernel with IPVS netlink support",
			ErrNoIPVS, procIPVS, ipvsGenlName)
	}
	return fmt.Errorf("ipvsync: %w: load the ip_vs module (modprobe ip_vs) or build the kernel with CONFIG_IP_VS (no generic netlink family %q, no %s)",
		ErrNoIPVS, ipvsGenlName, procIPVS)
}

// Package realserver prepares a Linux host to be an LVS real server for
// direct routing (dr) or IP tunnelling (tun): it answers for the VIP
// without announcing it (arp_ignore=1, arp_announce=2), holds the VIP on lo
// (dr) or tunl0 (tun), and relaxes rp_filter for decapsulated packets (tun).
//
// Every change is recorded in a state file (written atomically and synced,
// by statefile) before it is made, so Down restores exactly what Up changed
// and a repeated Up keeps the first recorded originals. A state file a
// power cut left empty or garbled is moved aside and counts as none. It
// never touches addresses or settings it did not change itself, and it
// does not load kernel modules.
package realserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/havip/havip/internal/statefile"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// StateFile is the file under the state directory that records what Up
// changed.
const StateFile = "realserver.json"

const tunl0 = "tunl0"

var (
	// ErrNoIPIP means the kernel cannot provide tunl0.
	ErrNoIPIP = errors.New("realserver: the kernel has no IPIP tunnel (tunl0): load the ipip module (modprobe ipip) or build the kernel with CONFIG_NET_IPIP")
	// ErrMode means the arguments do not fit: unknown mode, no VIPs, an
	// IPv6 VIP in tun mode, or a different mode than the one that is up.
	ErrMode = errors.New("realserver: bad request")
)

// state is what Up changed, in order.
type state struct {
	Mode    string   `json:"mode"`
	Sysctls []sysctl `json:"sysctls"` // original values, first change first
	Addrs   []vipOn  `json:"addrs"`   // addresses Up added
	// CreatedTunl0: Up created tunl0; Down deletes it.
	CreatedTunl0 bool `json:"created_tunl0,omitempty"`
	// RaisedTunl0: tunl0 was down and Up brought it up.
	RaisedTunl0 bool `json:"raised_tunl0,omitempty"`
}

type sysctl struct {
	Name string `json:"name"` // e.g. net/ipv4/conf/all/arp_ignore
	Old  string `json:"old"`
}

type vipOn struct {
	Link string       `json:"link"`
	VIP  netip.Prefix `json:"vip"`
}

type settings struct {
	dir  string
	st   *state
	path string
}

func (s *settings) save() error {
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return fmt.Errorf("realserver: state dir: %w", err)
	}
	b, err := json.MarshalIndent(s.st, "", "  ")
	if err != nil {
		return fmt.Errorf("realserver: encode state: %w", err)
	}
	if err := statefile.Write(s.path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("realserver: %w", err)
	}
	return nil
}

// load reads the state file. An empty or undecodable one (a power cut
// while it was written) is moved aside and logged on slog.Default(), and
// then counts as no state file: Up records the current values as the
// originals, Down has nothing to undo.
func load(dir string) (*settings, error) {
	s := &settings{dir: dir, path: filepath.Join(dir, StateFile)}
	_, err := statefile.Read(s.path, slog.Default(), func(b []byte) error {
		st := new(state)
		if err := json.Unmarshal(b, st); err != nil {
			return err
		}
		if st.Mode != "dr" && st.Mode != "tun" {
			return fmt.Errorf("mode %q (want dr or tun)", st.Mode)
		}
		s.st = st
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("realserver: read state: %w", err)
	}
	return s, nil
}

func sysctlPath(name string) string { return filepath.Join("/proc/sys", name) }

func readSysctl(name string) (string, error) {
	b, err := os.ReadFile(sysctlPath(name))
	if err != nil {
		return "", fmt.Errorf("realserver: read %s: %w", strings.ReplaceAll(name, "/", "."), err)
	}
	return strings.TrimSpace(string(b)), nil
}

func writeSysctl(name, v string) error {
	if err := os.WriteFile(sysctlPath(name), []byte(v+"\n"), 0o644); err != nil {
		return fmt.Errorf("realserver: set %s=%s: %w", strings.ReplaceAll(name, "/", "."), v, err)
	}
	return nil
}

// setSysctl records the original value (once) and then sets v.
func (s *settings) setSysctl(name, v string) error {
	cur, err := readSysctl(name)
	if err != nil {
		return err
	}
	if cur == v {
		return nil
	}
	if !slices.ContainsFunc(s.st.Sysctls, func(x sysctl) bool { return x.Name == name }) {
		s.st.Sysctls = append(s.st.Sysctls, sysctl{Name: name, Old: cur})
		if err := s.save(); err != nil {
			return err
		}
	}
	return writeSysctl(name, v)
}

func hostPrefix(p netip.Prefix) netip.Prefix {
	a := p.Addr().Unmap()
	return netip.PrefixFrom(a, a.BitLen())
}

func check(mode string, vips []netip.Prefix) error {
	if mode != "dr" && mode != "tun" {
		return fmt.Errorf("%w: mode %q (want dr or tun)", ErrMode, mode)
	}
	if len(vips) == 0 {
		return fmt.Errorf("%w: no VIP", ErrMode)
	}
	for _, v := range vips {
		if !v.IsValid() {
			return fmt.Errorf("%w: invalid VIP", ErrMode)
		}
		if mode == "tun" && !v.Addr().Unmap().Is4() {
			return fmt.Errorf("%w: VIP %s: tun mode uses IPIP (tunl0), which carries IPv4 only", ErrMode, v.Addr())
		}
	}
	return nil
}

// Up prepares this host as a real server for the VIPs (each is put on as a
// host address, /32 or /128, whatever prefix length it carries). It is
// idempotent: a second Up changes nothing and keeps the recorded
// originals; it may add more VIPs. Over a state file that is empty or
// garbled (moved aside), it records the current values as the originals.
func Up(mode string, vips []netip.Prefix, stateDir string) error {
	if err := check(mode, vips); err != nil {
		return err
	}
	s, err := load(stateDir)
	if err != nil {
		return err
	}
	if s.st == nil {
		s.st = &state{Mode: mode}
	} else if s.st.Mode != mode {
		return fmt.Errorf("%w: already up in %s mode; run down first", ErrMode, s.st.Mode)
	}

	link := "lo"
	if mode == "tun" {
		link = tunl0
		if err := s.ensureTunl0(); err != nil {
			return err
		}
	}

	var v4 bool
	for _, v := range vips {
		v4 = v4 || v.Addr().Unmap().Is4()
	}
	var sets [][2]string
	if v4 {
		for _, dev := range []string{"all", "lo"} {
			sets = append(sets, [2]string{"net/ipv4/conf/" + dev + "/arp_ignore", "1"}, [2]string{"net/ipv4/conf/" + dev + "/arp_announce", "2"})
		}
	}
	if mode == "tun" {
		sets = append(sets,
			[2]string{"net/ipv4/conf/tunl0/arp_ignore", "1"}, [2]string{"net/ipv4/conf/tunl0/arp_announce", "2"},
			// The kernel uses max(all, dev): both must be 0 for packets
			// decapsulated on tunl0 whose source routes via another link.
			[2]string{"net/ipv4/conf/tunl0/rp_filter", "0"}, [2]string{"net/ipv4/conf/all/rp_filter", "0"})
	}
	for _, kv := range sets {
		if err := s.setSysctl(kv[0], kv[1]); err != nil {
			return err
		}
	}

	l, err := netlink.LinkByName(link)
	if err != nil {
		return fmt.Errorf("realserver: %s: %w", link, err)
	}
	if l.Attrs().Flags&unix.IFF_UP == 0 {
		if link == tunl0 && !s.st.RaisedTunl0 {
			s.st.RaisedTunl0 = true
			if err := s.save(); err != nil {
				return err
			}
		}
		if err := netlink.LinkSetUp(l); err != nil {
			return fmt.Errorf("realserver: bring %s up: %w", link, err)
		}
	}
	for _, v := range vips {
		p := hostPrefix(v)
		has, err := hasAddr(l, p)
		if err != nil {
			return err
		}
		if has {
			continue // ours from an earlier Up, or the operator's: leave it
		}
		s.st.Addrs = append(s.st.Addrs, vipOn{Link: link, VIP: p})
		if err := s.save(); err != nil {
			return err
		}
		if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: prefixNet(p)}); err != nil {
			return fmt.Errorf("realserver: add %s to %s: %w", p, link, err)
		}
	}
	return s.save()
}

// ensureTunl0 makes tunl0 exist, creating it (and recording that) if the
// ipip module is there but the device is not (e.g. in a namespace).
func (s *settings) ensureTunl0() error {
	if _, err := netlink.LinkByName(tunl0); err == nil {
		return nil
	}
	s.st.CreatedTunl0 = true
	if err := s.save(); err != nil {
		return err
	}
	err := netlink.LinkAdd(&netlink.Iptun{LinkAttrs: netlink.LinkAttrs{Name: tunl0}})
	if errors.Is(err, unix.EEXIST) {
		// Loading ipip on demand made the fallback tunl0 appear: it
		// is the kernel's, not ours.
		err = nil
		s.st.CreatedTunl0 = false
	}
	if err != nil {
		s.st.CreatedTunl0 = false
		if serr := s.save(); serr != nil {
			return serr
		}
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("%w (creating tunl0: %v)", ErrNoIPIP, err)
		}
		return fmt.Errorf("realserver: create tunl0: %w", err)
	}
	if _, err := netlink.LinkByName(tunl0); err != nil {
		return fmt.Errorf("%w (tunl0 missing after creating it: %v)", ErrNoIPIP, err)
	}
	return s.save()
}

// Down undoes what Up recorded: it removes the VIPs Up added (only those
// listed, or all when vips is empty), and once none is left restores every
// sysctl to its recorded value, brings tunl0 back down and deletes it if Up
// created it, and removes the state file. Without a usable state file
// (none, or one moved aside as empty or garbled) there is nothing to undo
// and Down returns nil.
func Down(mode string, vips []netip.Prefix, stateDir string) error {
	if mode != "" && mode != "dr" && mode != "tun" {
		return fmt.Errorf("%w: mode %q (want dr or tun)", ErrMode, mode)
	}
	s, err := load(stateDir)
	if err != nil || s.st == nil {
		return err
	}
	if mode != "" && s.st.Mode != mode {
		return fmt.Errorf("%w: up in %s mode, not %s", ErrMode, s.st.Mode, mode)
	}
	drop := func(p netip.Prefix) bool {
		return len(vips) == 0 || slices.ContainsFunc(vips, func(v netip.Prefix) bool { return hostPrefix(v) == p })
	}
	var errs []error
	var kept []vipOn
	for _, a := range s.st.Addrs {
		if !drop(a.VIP) {
			kept = append(kept, a)
			continue
		}
		if err := delAddr(a); err != nil {
			errs = append(errs, err)
			kept = append(kept, a)
		}
	}
	s.st.Addrs = kept
	if len(kept) > 0 || len(errs) > 0 {
		if err := s.save(); err != nil {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}

	var left []sysctl
	for i := len(s.st.Sysctls) - 1; i >= 0; i-- {
		sc := s.st.Sysctls[i]
		if err := writeSysctl(sc.Name, sc.Old); err != nil {
			if strings.Contains(sc.Name, "/"+tunl0+"/") && errors.Is(err, os.ErrNotExist) {
				continue // tunl0 went away meanwhile: nothing to restore
			}
			errs = append(errs, err)
			left = append(left, sc)
		}
	}
	s.st.Sysctls = left
	if s.st.RaisedTunl0 || s.st.CreatedTunl0 {
		if l, err := netlink.LinkByName(tunl0); err == nil {
			switch {
			case s.st.CreatedTunl0:
				if err := netlink.LinkDel(l); err != nil {
					errs = append(errs, fmt.Errorf("realserver: delete tunl0: %w", err))
				}
			case s.st.RaisedTunl0:
				if err := netlink.LinkSetDown(l); err != nil {
					errs = append(errs, fmt.Errorf("realserver: bring tunl0 down: %w", err))
				}
			}
		}
	}
	if len(errs) > 0 {
		if err := s.save(); err != nil {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}
	if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("realserver: remove state: %w", err)
	}
	return nil
}

func delAddr(a vipOn) error {
	l, err := netlink.LinkByName(a.Link)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil // the link and its addresses are gone
		}
		return fmt.Errorf("realserver: %s: %w", a.Link, err)
	}
	has, err := hasAddr(l, a.VIP)
	if err != nil || !has {
		return err
	}
	if err := netlink.AddrDel(l, &netlink.Addr{IPNet: prefixNet(a.VIP)}); err != nil {
		return fmt.Errorf("realserver: remove %s from %s: %w", a.VIP, a.Link, err)
	}
	return nil
}

func hasAddr(l netlink.Link, p netip.Prefix) (bool, error) {
	fam := netlink.FAMILY_V4
	if p.Addr().Is6() {
		fam = netlink.FAMILY_V6
	}
	addrs, err := netlink.AddrList(l, fam)
	if err != nil {
		return false, fmt.Errorf("realserver: list addresses of %s: %w", l.Attrs().Name, err)
	}
	for _, a := range addrs {
		got, ok := netip.AddrFromSlice(a.IP)
		ones, _ := a.Mask.Size()
		if ok && got.Unmap() == p.Addr() && ones == p.Bits() {
			return true, nil
		}
	}
	return false, nil
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

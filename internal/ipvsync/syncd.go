package ipvsync

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/havip/havip/internal/conf"
	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Generic netlink IPVS commands and attributes from
// include/uapi/linux/ip_vs.h; moby/ipvs has no sync-daemon API.
const (
	ipvsGenlName    = "IPVS"
	ipvsGenlVersion = 1

	cmdNewDaemon = 9
	cmdDelDaemon = 10
	cmdGetDaemon = 11

	cmdAttrDaemon = 3 // IPVS_CMD_ATTR_DAEMON, nested

	daemonAttrState       = 1 // u32: 1 master, 2 backup
	daemonAttrMcastIfn    = 2 // string
	daemonAttrSyncID      = 3 // u32
	daemonAttrSyncMaxLen  = 4 // u16
	daemonAttrMcastGroup  = 5 // in_addr, network order
	daemonAttrMcastGroup6 = 6 // in6_addr
	daemonAttrMcastPort   = 7 // u16, host order
	daemonAttrMcastTTL    = 8 // u8
)

// Role is the kind of kernel sync daemon: a master sends connection
// updates, a backup receives them.
type Role uint32

const (
	RoleMaster Role = 1
	RoleBackup Role = 2
)

func (r Role) String() string {
	switch r {
	case RoleMaster:
		return "master"
	case RoleBackup:
		return "backup"
	}
	return fmt.Sprintf("role%d", uint32(r))
}

// MarshalText makes the role readable in JSON.
func (r Role) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// DaemonStatus is one running kernel sync daemon as the kernel reports it.
type DaemonStatus struct {
	Role      Role       `json:"role"`
	Interface string     `json:"interface"`
	SyncID    uint32     `json:"sync_id"`
	MaxLen    uint16     `json:"max_len"`
	Group     netip.Addr `json:"group,omitzero"`
	Port      uint16     `json:"port"`
	TTL       uint8      `json:"ttl"`
}

// genlConn is the part of *genetlink.Conn the sync daemons use.
type genlConn interface {
	Execute(m genetlink.Message, family uint16, flags netlink.HeaderFlags) ([]genetlink.Message, error)
	Close() error
}

var _ genlConn = (*genetlink.Conn)(nil)

// SyncDaemons starts and stops the kernel's IPVS connection sync daemons,
// so the backup director already knows the connections when it takes over.
type SyncDaemons struct {
	c      genlConn
	family uint16
	cfg    conf.Sync
	// Log receives the flusher's failures; nil = slog.Default().
	Log *slog.Logger

	sysctlDir string // the kernel's IPVS sysctls for this network namespace
	flushOps  flushOps
	flush     stopper // running while the master daemon runs and cfg.Flush > 0
}

// flushOps starts the flusher and removes its service (flush.go; a fake
// in unit tests).
type flushOps interface {
	start(every time.Duration, port uint16, log *slog.Logger) (stopper, error)
	del(port uint16) error
}

type stopper interface{ stop() }

type kernelFlush struct{}

func (kernelFlush) start(every time.Duration, port uint16, log *slog.Logger) (stopper, error) {
	return startFlusher(every, port, log)
}
func (kernelFlush) del(port uint16) error { return delFlushService(port) }

// SysctlDir is where the kernel shows the IPVS sysctls of the network
// namespace of the process that opens them.
const SysctlDir = "/proc/sys/net/ipv4/vs"

// OpenSyncDaemons opens a generic netlink socket for the IPVS family. cfg
// is what Follow starts daemons with.
func OpenSyncDaemons(cfg conf.Sync) (*SyncDaemons, error) {
	c, err := genetlink.Dial(nil)
	if err != nil {
		return nil, fmt.Errorf("ipvsync: generic netlink: %w", err)
	}
	f, err := c.GetFamily(ipvsGenlName)
	if err != nil {
		c.Close()
		if errors.Is(err, os.ErrNotExist) {
			return nil, Probe() // names the cause and the fix
		}
		return nil, fmt.Errorf("ipvsync: look up generic netlink family %q: %w", ipvsGenlName, err)
	}
	return &SyncDaemons{c: c, family: f.ID, cfg: cfg, sysctlDir: SysctlDir, flushOps: kernelFlush{}}, nil
}

// Close stops the flusher and releases the netlink socket; running daemons
// keep running (the handle that takes over restarts the flusher).
func (s *SyncDaemons) Close() error {
	s.stopFlush()
	return s.c.Close()
}

// Get lists the sync daemons the kernel runs.
func (s *SyncDaemons) Get() ([]DaemonStatus, error) {
	msgs, err := s.c.Execute(genetlink.Message{
		Header: genetlink.Header{Command: cmdGetDaemon, Version: ipvsGenlVersion},
	}, s.family, netlink.Request|netlink.Dump)
	if err != nil {
		return nil, fmt.Errorf("ipvsync: get sync daemons: %w", err)
	}
	var out []DaemonStatus
	for _, m := range msgs {
		d, ok, err := parseDaemon(m.Data)
		if err != nil {
			return nil, fmt.Errorf("ipvsync: get sync daemons: %w", err)
		}
		if ok {
			out = append(out, d)
		}
	}
	return out, nil
}

func parseDaemon(b []byte) (DaemonStatus, bool, error) {
	var d DaemonStatus
	found := false
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return d, false, err
	}
	for ad.Next() {
		if ad.Type() != cmdAttrDaemon {
			continue
		}
		found = true
		ad.Nested(func(nad *netlink.AttributeDecoder) error {
			for nad.Next() {
				switch nad.Type() {
				case daemonAttrState:
					d.Role = Role(nad.Uint32())
				case daemonAttrMcastIfn:
					d.Interface = nad.String()
				case daemonAttrSyncID:
					d.SyncID = nad.Uint32()
				case daemonAttrSyncMaxLen:
					d.MaxLen = nad.Uint16()
				case daemonAttrMcastGroup, daemonAttrMcastGroup6:
					d.Group, _ = netip.AddrFromSlice(nad.Bytes())
				case daemonAttrMcastPort:
					d.Port = nad.Uint16()
				case daemonAttrMcastTTL:
					d.TTL = nad.Uint8()
				}
			}
			return nil
		})
	}
	return d, found, ad.Err()
}

// Start starts the daemon of the given role with cfg. It is a no-op when
// that daemon already runs with cfg, and restarts it when it runs with a
// different one.
func (s *SyncDaemons) Start(role Role, cfg conf.Sync) error {
	if cfg.Interface == "" {
		return fmt.Errorf("ipvsync: start %s sync daemon: no interface", role)
	}
	running, err := s.Get()
	if err != nil {
		return err
	}
	for _, d := range running {
		if d.Role != role {
			continue
		}
		if sameDaemon(d, cfg) {
			return nil
		}
		if err := s.Stop(role); err != nil {
			return err
		}
	}
	if role == RoleBackup {
		// The backup's maxlen is its receive buffer (the kernel makes it
		// at least 1024); the kernel's default, the MTU, takes any
		// message a master sends.
		cfg.MaxLen = 0
	}
	b, err := encodeDaemon(role, &cfg)
	if err != nil {
		return fmt.Errorf("ipvsync: start %s sync daemon: %w", role, err)
	}
	_, err = s.c.Execute(genetlink.Message{
		Header: genetlink.Header{Command: cmdNewDaemon, Version: ipvsGenlVersion},
		Data:   b,
	}, s.family, netlink.Request|netlink.Acknowledge)
	if err != nil {
		return fmt.Errorf("ipvsync: start %s sync daemon on %s: %w", role, cfg.Interface, err)
	}
	return nil
}

// Stop stops the daemon of the given role; stopping one that does not run
// is not an error.
func (s *SyncDaemons) Stop(role Role) error {
	var errF error
	if role == RoleMaster {
		s.stopFlush()
		errF = s.flushOps.del(s.cfg.Port) // also one a killed havip left
	}
	b, err := encodeDaemon(role, nil)
	if err != nil {
		return fmt.Errorf("ipvsync: stop %s sync daemon: %w", role, err)
	}
	_, err = s.c.Execute(genetlink.Message{
		Header: genetlink.Header{Command: cmdDelDaemon, Version: ipvsGenlVersion},
		Data:   b,
	}, s.family, netlink.Request|netlink.Acknowledge)
	if errors.Is(err, unix.ESRCH) {
		return errF
	}
	if err != nil {
		return errors.Join(errF, fmt.Errorf("ipvsync: stop %s sync daemon: %w", role, err))
	}
	return errF
}

// Follow sets the daemons for this node's VRRP state: the backup daemon
// always runs (on both directors, so either can take over with the other's
// connections), the master daemon only while this node is master.
func (s *SyncDaemons) Follow(master bool) error {
	errS := s.applySysctls()
	errB := s.Start(RoleBackup, s.cfg)
	var errM, errF error
	if master {
		errM = s.Start(RoleMaster, s.cfg)
		switch {
		case errM != nil:
		case s.cfg.Flush == 0:
			errF = s.flushOps.del(s.cfg.Port) // flush turned off by a reload
		case s.flush == nil:
			log := s.Log
			if log == nil {
				log = slog.Default()
			}
			s.flush, errF = s.flushOps.start(s.cfg.Flush, s.cfg.Port, log)
		}
	} else {
		errM = s.Stop(RoleMaster)
	}
	return errors.Join(errS, errB, errM, errF)
}

func (s *SyncDaemons) stopFlush() {
	if s.flush != nil {
		s.flush.stop()
		s.flush = nil
	}
}

// syncSysctls are the kernel's sync settings cfg asks for, by file name
// under SysctlDir.
func syncSysctls(cfg conf.Sync) [][2]string {
	return [][2]string{
		{"sync_version", strconv.Itoa(cfg.Version)},
		{"sync_threshold", fmt.Sprintf("%d %d", cfg.Threshold, cfg.Period)},
		{"sync_refresh_period", strconv.Itoa(int(cfg.RefreshPeriod / time.Second))},
		{"sync_retries", strconv.Itoa(cfg.Retries)},
	}
}

// applySysctls writes the sync sysctls that differ from cfg. They belong
// to the network namespace, so both daemons (and a keepalived on the same
// host) share them.
func (s *SyncDaemons) applySysctls() error {
	var errs []error
	for _, kv := range syncSysctls(s.cfg) {
		p := filepath.Join(s.sysctlDir, kv[0])
		cur, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("ipvsync: read %s: %w", p, err))
			continue
		}
		if strings.Join(strings.Fields(string(cur)), " ") == kv[1] {
			continue
		}
		if err := os.WriteFile(p, []byte(kv[1]+"\n"), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("ipvsync: set %s to %q: %w", p, kv[1], err))
		}
	}
	return errors.Join(errs...)
}

// sameDaemon compares a running daemon with cfg; zero fields of cfg mean
// "kernel default" and match anything.
func sameDaemon(d DaemonStatus, cfg conf.Sync) bool {
	return d.Interface == cfg.Interface && d.SyncID == uint32(cfg.SyncID) &&
		(cfg.MaxLen == 0 || d.Role == RoleBackup || int(d.MaxLen) == cfg.MaxLen) &&
		(!cfg.Group.IsValid() || d.Group == cfg.Group.Unmap()) &&
		(cfg.Port == 0 || d.Port == cfg.Port) &&
		(cfg.TTL == 0 || d.TTL == cfg.TTL)
}

// encodeDaemon builds the IPVS_CMD_ATTR_DAEMON attribute; cfg nil encodes
// the state alone, which is all DEL_DAEMON needs.
func encodeDaemon(role Role, cfg *conf.Sync) ([]byte, error) {
	ae := netlink.NewAttributeEncoder()
	var bad error
	ae.Nested(cmdAttrDaemon, func(nae *netlink.AttributeEncoder) error {
		nae.Uint32(daemonAttrState, uint32(role))
		if cfg == nil {
			return nil
		}
		nae.String(daemonAttrMcastIfn, cfg.Interface)
		nae.Uint32(daemonAttrSyncID, uint32(cfg.SyncID))
		if cfg.MaxLen > 0 {
			if cfg.MaxLen > 0xffff {
				bad = fmt.Errorf("max_len %d out of range", cfg.MaxLen)
			}
			nae.Uint16(daemonAttrSyncMaxLen, uint16(cfg.MaxLen))
		}
		if g := cfg.Group.Unmap(); g.Is4() {
			a := g.As4()
			nae.Bytes(daemonAttrMcastGroup, a[:])
		} else if g.Is6() {
			a := g.As16()
			nae.Bytes(daemonAttrMcastGroup6, a[:])
		}
		if cfg.Port != 0 {
			nae.Uint16(daemonAttrMcastPort, cfg.Port)
		}
		if cfg.TTL != 0 {
			nae.Uint8(daemonAttrMcastTTL, cfg.TTL)
		}
		return nil
	})
	if bad != nil {
		return nil, bad
	}
	return ae.Encode()
}

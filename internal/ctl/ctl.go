// Package ctl is the control-socket protocol between the havip daemon and
// its command line: one JSON request and one JSON response per connection
// over a root-only unix socket. It owns the wire types and the client; the
// server side lives in package daemon.
package ctl

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"time"
)

// Commands.
const (
	CmdStatus   = "status"
	CmdFailover = "failover"
	CmdPing     = "ping"
	CmdReload   = "reload"
)

// Request is what the client sends.
type Request struct {
	Cmd    string   `json:"cmd"`
	Groups []string `json:"groups,omitempty"`
	Force  bool     `json:"force,omitempty"` // failover: past the pre-checks
	Back   bool     `json:"back,omitempty"`  // failover: ask the peer to hand the groups back
}

// Response is what the daemon answers.
type Response struct {
	OK       bool             `json:"ok"`
	Error    string           `json:"error,omitempty"`
	Status   *Status          `json:"status,omitempty"`
	Failover []FailoverResult `json:"failover,omitempty"`
	Reload   *ReloadResult    `json:"reload,omitempty"`
}

// ReloadResult is the outcome of a reload: what changed, or why the new
// file was refused (the running configuration then stays whole).
type ReloadResult struct {
	File        string   `json:"file"`
	Applied     bool     `json:"applied"`
	OldRevision string   `json:"old_revision"`
	Revision    string   `json:"revision"`           // of the file read; the running one when refused
	Changes     []string `json:"changes,omitempty"`  // one line per change, e.g. "group front: vips +198.18.0.101/24"
	Problems    []string `json:"problems,omitempty"` // refusals, each FILE:LINE: message (or "reload: message")
	Warnings    []string `json:"warnings,omitempty"`
	Took        string   `json:"took,omitempty"` // request to applied
}

// Status is the whole daemon's state.
type Status struct {
	Site         string        `json:"site"`
	Node         string        `json:"node"`
	Address      string        `json:"address"`
	Version      string        `json:"version"`
	PID          int           `json:"pid"`
	Started      time.Time     `json:"started"`
	ConfigFile   string        `json:"config_file"`
	ConfigLoaded time.Time     `json:"config_loaded"`
	Revision     string        `json:"revision"` // of the running site file
	ReloadError  string        `json:"reload_error,omitempty"`
	PairError    string        `json:"pair_error,omitempty"` // the pair link cannot bind (yet)
	LastReload   *ReloadResult `json:"last_reload,omitempty"`
	Groups       []GroupStatus `json:"groups"`
	Peers        []PeerStatus  `json:"peers"`
	IPVS         *IPVSStatus   `json:"ipvs,omitempty"`
	Checks       []CheckStatus `json:"checks,omitempty"`
}

// CheckStatus is one health-checked target: "rs/VS/ADDR" for a real
// server, "check/NAME" for a named [[check]].
type CheckStatus struct {
	Key    string    `json:"key"`
	Up     bool      `json:"up"`
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since"`
}

// GroupStatus is one VRRP group as this node sees it.
type GroupStatus struct {
	Name           string            `json:"name"`
	Interface      string            `json:"interface"`
	VRID           uint8             `json:"vrid"`
	Version        int               `json:"version"`
	Unicast        bool              `json:"unicast"`
	State          string            `json:"state"`
	Since          time.Time         `json:"since"`
	Priority       uint8             `json:"priority"`
	BasePriority   uint8             `json:"base_priority"`
	VIPs           []string          `json:"vips"`
	Advert         string            `json:"advert"`
	MasterAddr     string            `json:"master_addr,omitempty"`
	MasterPriority uint8             `json:"master_priority"`
	MasterInterval string            `json:"master_interval,omitempty"`
	Fault          string            `json:"fault,omitempty"`
	Yielding       bool              `json:"yielding,omitempty"`
	SyncGroup      string            `json:"sync_group,omitempty"` // the groups that move with this one
	DualMaster     bool              `json:"dual_master"`
	PeerState      string            `json:"peer_state,omitempty"`
	Tracks         []TrackStatus     `json:"tracks,omitempty"`
	RxAdverts      uint64            `json:"rx_adverts"`
	TxAdverts      uint64            `json:"tx_adverts"`
	Transitions    uint64            `json:"transitions"`
	Drops          map[string]uint64 `json:"drops"`
	SendErrors     uint64            `json:"send_errors"`
	ReadErrors     uint64            `json:"read_errors"`
	Announced      uint64            `json:"announced"`              // gratuitous ARPs and NAs sent
	AnnounceErrors uint64            `json:"announce_errors"`        // and the ones that could not be
	Reopens        uint64            `json:"socket_opens"`           // advert socket opened (first time included)
	Socket         string            `json:"socket_error,omitempty"` // why there is no advert socket now
	ClaimError     string            `json:"claim_error,omitempty"`  // the last VIP claim or refresh failure
	Advertising    []string          `json:"advertising,omitempty"`  // set while advertising the peer's list (rolling push)
	Pending        string            `json:"pending,omitempty"`      // a restart the reload asked for waits until the peer runs it
	Revision       string            `json:"revision"`               // site file revision the group runs
}

// TrackStatus is one tracked object of a group.
type TrackStatus struct {
	Kind    string `json:"kind"` // interface | virtual_server | check
	Name    string `json:"name"`
	Weight  int    `json:"weight"`
	Failing bool   `json:"failing"`
}

// PeerStatus is the other director as heard over the pair link.
type PeerStatus struct {
	Node     string            `json:"node"`
	Address  string            `json:"address"`
	Alive    bool              `json:"alive"`
	LastSeen time.Time         `json:"last_seen,omitempty"`
	Groups   map[string]string `json:"groups,omitempty"`   // group -> state
	Revision string            `json:"revision,omitempty"` // the peer's site file revision
}

// IPVSStatus is the live IPVS table and connection-sync state.
type IPVSStatus struct {
	Error    string          `json:"error,omitempty"`
	Services json.RawMessage `json:"services,omitempty"`
	Table    string          `json:"table,omitempty"` // ipvsadm-like rendering
	Sync     []SyncDaemon    `json:"sync,omitempty"`
	Repairs  uint64          `json:"repairs"`
	AsOf     time.Time       `json:"as_of"` // when the reconciler last read the kernel
}

// SyncDaemon is one kernel connection-sync daemon.
type SyncDaemon struct {
	Role      string `json:"role"`
	Interface string `json:"interface"`
	SyncID    uint32 `json:"sync_id"`
}

// FailoverResult is the outcome of a planned handover of one group. It
// carries no client-visible gap: only a probe through the VIP measures
// that (havip failover --probe).
type FailoverResult struct {
	Group       string `json:"group"`
	From        string `json:"from"`
	To          string `json:"to,omitempty"`
	Mode        string `json:"mode,omitempty"`         // "make-before-break" or "resign"; "" when refused
	Handover    string `json:"handover,omitempty"`     // make-before-break: takeover request -> the peer's answer; resign: resign -> the peer's first advert
	FirstAdvert string `json:"first_advert,omitempty"` // drill start -> the peer's first advert as master, as heard by the old master
	Refused     bool   `json:"refused,omitempty"`      // a pre-check failed: nothing changed
	Error       string `json:"error,omitempty"`
}

// ErrNotRunning means nothing listens on the control socket.
var ErrNotRunning = errors.New("ctl: the havip daemon is not running")

// ErrPermission means the control socket exists but this user may not use
// it (it is root only).
var ErrPermission = errors.New("ctl: permission denied (the control socket is root only)")

// PermissionDenied begins the daemon's answer to a client that is not root.
const PermissionDenied = "permission denied"

// Call sends one request to the daemon at socket and returns its response.
// Not reaching the daemon is ErrNotRunning, or ErrPermission when this user
// may not use the socket; a refusal by the daemon returns the response too.
func Call(socket string, req Request, timeout time.Duration) (*Response, error) {
	c, err := net.DialTimeout("unix", socket, timeout)
	if err != nil {
		return nil, dialError(socket, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return nil, fmt.Errorf("ctl: send: %w", err)
	}
	var resp Response
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		return nil, fmt.Errorf("ctl: read response: %w", err)
	}
	return &resp, responseError(&resp)
}

func dialError(socket string, err error) error {
	if errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) {
		return fmt.Errorf("%w (socket %s: %v)", ErrPermission, socket, err)
	}
	return fmt.Errorf("%w (socket %s: %v)", ErrNotRunning, socket, err)
}

func responseError(resp *Response) error {
	switch {
	case resp.OK:
		return nil
	case strings.HasPrefix(resp.Error, PermissionDenied):
		return fmt.Errorf("%w (daemon: %s)", ErrPermission, resp.Error)
	}
	return fmt.Errorf("ctl: daemon: %s", resp.Error)
}

// Package ctl is the control-socket protocol between the havip daemon and
// its command line: one JSON request and one JSON response per connection
// over a root-only unix socket. One request streams: events with Follow,
// answered by one Response per batch of events until either side closes. It owns the wire types and the client; the
// server side lives in package daemon.
package ctl

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	CmdEvents   = "events"
	CmdDrain    = "drain"
	CmdUndrain  = "undrain"
)

// Request is what the client sends.
type Request struct {
	Cmd    string   `json:"cmd"`
	Groups []string `json:"groups,omitempty"`
	Force  bool     `json:"force,omitempty"` // failover: past the pre-checks
	Back   bool     `json:"back,omitempty"`  // failover: ask the peer to hand the groups back
	// events: the events after sequence number After (0: every event the
	// daemon still keeps); Follow keeps the connection open and streams
	// each new batch as a Response of its own.
	After  uint64 `json:"after,omitempty"`
	Follow bool   `json:"follow,omitempty"`
	// Drain and undrain: the [[virtual_server]] name and the real
	// server's address:port as in the site file; Remove takes it out of
	// the table instead of weight 0.
	VirtualServer string `json:"virtual_server,omitempty"`
	RealServer    string `json:"real_server,omitempty"`
	Remove        bool   `json:"remove,omitempty"`
}

// Response is what the daemon answers.
type Response struct {
	OK       bool             `json:"ok"`
	Error    string           `json:"error,omitempty"`
	Status   *Status          `json:"status,omitempty"`
	Failover []FailoverResult `json:"failover,omitempty"`
	Reload   *ReloadResult    `json:"reload,omitempty"`
	Events   []Event          `json:"events,omitempty"`
	Drain    *DrainResult     `json:"drain,omitempty"`
	// BadInput: the request itself was wrong (an unknown name): exit 1.
	BadInput bool `json:"bad_input,omitempty"`
}

// Event is one entry of the daemon's event log, oldest first, Seq
// increasing. Kind "events_lost" stands for events this reader missed
// (fields count and first_seq). The kinds and their fields are listed in
// package events.
type Event struct {
	Seq    uint64         `json:"seq"`
	Time   time.Time      `json:"time"`
	Kind   string         `json:"kind"`
	Fields map[string]any `json:"fields,omitempty"`
}

// DrainResult is the outcome of a drain or undrain.
type DrainResult struct {
	Message string    `json:"message"`
	At      time.Time `json:"at"` // when the new table went to the reconciler
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
	// Sockets are the advert sockets, one per interface and family,
	// shared by the groups there.
	Sockets []SocketStatus `json:"sockets,omitempty"`
	Peers   []PeerStatus   `json:"peers"`
	Pair    *PairStatus    `json:"pair,omitempty"`
	IPVS    *IPVSStatus    `json:"ipvs,omitempty"`
	Checks  []CheckStatus  `json:"checks,omitempty"`
	Drains  []DrainStatus  `json:"drains"`
	Mirror  *MirrorStatus  `json:"mirror,omitempty"`
}

// DrainStatus is one operator drain and its real server as the kernel
// holds it (as of IPVSStatus.AsOf).
type DrainStatus struct {
	VirtualServer string    `json:"virtual_server"`
	RealServer    string    `json:"real_server"`
	Remove        bool      `json:"remove"`
	Since         time.Time `json:"since"`
	By            string    `json:"by"`      // the node the operator drained it on
	InSite        bool      `json:"in_site"` // false: the peer's drain of a real server this file lacks
	InKernel      bool      `json:"in_kernel"`
	Weight        int       `json:"weight"`
	Active        int       `json:"active_connections"`
	Inactive      int       `json:"inactive_connections"`
}

// MirrorStatus compares this node's operator state and desired IPVS table
// with the peer's.
type MirrorStatus struct {
	DrainsRevision     uint64    `json:"drains_revision"`
	DrainsChanged      time.Time `json:"drains_changed,omitzero"`
	DrainsBy           string    `json:"drains_by,omitempty"`
	Digest             string    `json:"digest"` // sha256 of this node's desired table
	Peer               string    `json:"peer,omitempty"`
	PeerAlive          bool      `json:"peer_alive"`
	PeerTrusted        bool      `json:"peer_trusted"` // authenticated: its drains are adopted
	PeerDigest         string    `json:"peer_digest,omitempty"`
	PeerDrainsRevision uint64    `json:"peer_drains_revision"`
	Match              bool      `json:"match"`
	Differences        []string  `json:"differences,omitempty"` // where the peer's table differs, one line each
	BadDrainMessages   uint64    `json:"bad_drain_messages,omitempty"`
}

// CheckStatus is one health-checked target: "rs/VS/ADDR" for a real
// server, "check/NAME" for a named [[check]].
type CheckStatus struct {
	Key    string    `json:"key"`
	Up     bool      `json:"up"`
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since"`
	// SharedBy is how many keys share this key's probe (identical check
	// of the same address), itself included; 0 or 1: not shared.
	SharedBy int `json:"shared_by,omitempty"`
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
	Reopens        uint64            `json:"socket_opens"`           // advert sockets the group attached to, the first included (SocketStatus.Opens counts those opened)
	Socket         string            `json:"socket_error,omitempty"` // why there is no advert socket now
	ClaimError     string            `json:"claim_error,omitempty"`  // the last VIP claim or refresh failure
	Advertising    []string          `json:"advertising,omitempty"`  // set while advertising the peer's list (rolling push)
	Pending        string            `json:"pending,omitempty"`      // a restart the reload asked for waits until the peer runs it
	Revision       string            `json:"revision"`               // site file revision the group runs
}

// SocketStatus is the advert socket of one interface and address family,
// shared by every group there; its counters cover every socket opened
// there since the daemon started.
type SocketStatus struct {
	Interface  string            `json:"interface"`
	Family     string            `json:"family"`    // inet | inet6
	IfIndex    int               `json:"ifindex"`   // of the current socket; 0 with none
	Multicast  bool              `json:"multicast"` // the current socket joined the VRRP group
	Groups     int               `json:"groups"`    // groups attached to the current socket
	Open       int               `json:"open"`      // sockets open: the current one, and older ones groups still hold
	Opens      uint64            `json:"opens"`     // sockets opened (the first included)
	ReadErrors uint64            `json:"read_errors"`
	Drops      map[string]uint64 `json:"drops"` // by reason: vrid (no group runs it here), truncated
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
	LinkUp   bool              `json:"link_up"`            // a pair-link session is established
	Trusted  bool              `json:"trusted"`            // authenticated with the pair key: what it says is acted on
	// LinkError: why the last connection attempt failed, while the link is down.
	LinkError string `json:"link_error,omitempty"`
}

// PairStatus is the pair link as a whole.
type PairStatus struct {
	Authenticated bool              `json:"authenticated"` // the site names a pair key
	Drops         map[string]uint64 `json:"drops"`         // reason -> count
	FastTakeovers uint64            `json:"fast_takeovers"`
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
	dec := json.NewDecoder(c)
	dec.UseNumber() // event fields keep their integers whole
	if err := dec.Decode(&resp); err != nil {
		return nil, fmt.Errorf("ctl: read response: %w", err)
	}
	return &resp, responseError(&resp)
}

// Stream sends a streaming request (events with Follow) and calls fn with
// each response until the daemon closes the connection, fn returns an
// error, or done is closed (then Stream returns nil). A response that is a
// refusal (the daemon is stopping) ends the stream with its error.
func Stream(socket string, req Request, done <-chan struct{}, fn func(*Response) error) error {
	c, err := net.DialTimeout("unix", socket, 5*time.Second)
	if err != nil {
		return dialError(socket, err)
	}
	defer c.Close()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-done:
			c.Close()
		case <-stop:
		}
	}()
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return fmt.Errorf("ctl: send: %w", err)
	}
	dec := json.NewDecoder(c)
	dec.UseNumber()
	for {
		var resp Response
		if err := dec.Decode(&resp); err != nil {
			select {
			case <-done:
				return nil
			default:
			}
			if errors.Is(err, io.EOF) {
				return ErrStreamClosed
			}
			return fmt.Errorf("ctl: read response: %w", err)
		}
		if err := responseError(&resp); err != nil {
			return err
		}
		if err := fn(&resp); err != nil {
			return err
		}
	}
}

// ErrStreamClosed means the daemon closed a stream without a reason
// (it stopped, or was killed).
var ErrStreamClosed = errors.New("ctl: the daemon closed the connection")

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

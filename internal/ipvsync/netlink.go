package ipvsync

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"

	"github.com/mdlayher/genetlink"
	"github.com/moby/ipvs"
	"golang.org/x/sys/unix"
)

// This file is the only code that speaks the kernel's IPVS generic netlink
// family (include/uapi/linux/ip_vs.h) for services and destinations. It
// encodes requests itself, so that writes can be pipelined: a batch of
// requests goes to the kernel in one sendmsg, only the last one asks for
// an acknowledgement, and the kernel answers the others only when they
// fail. Programming 110,000 objects then costs a few hundred system calls
// instead of one round trip each (moby/ipvs waits for every reply).

// IPVS generic netlink commands.
const (
	cmdNewService = 1
	cmdSetService = 2
	cmdDelService = 3
	cmdGetService = 4
	cmdNewDest    = 5
	cmdSetDest    = 6
	cmdDelDest    = 7
	cmdGetDest    = 8
	cmdFlush      = 17
)

// Attributes: IPVS_CMD_ATTR_*, IPVS_SVC_ATTR_*, IPVS_DEST_ATTR_*.
const (
	cmdAttrService = 1
	cmdAttrDest    = 2

	svcAttrAF       = 1  // u16
	svcAttrProtocol = 2  // u16
	svcAttrAddr     = 3  // 4 or 16 bytes
	svcAttrPort     = 4  // be16
	svcAttrFWMark   = 5  // u32
	svcAttrSched    = 6  // string
	svcAttrFlags    = 7  // struct ip_vs_flags {flags, mask u32}
	svcAttrTimeout  = 8  // u32
	svcAttrNetmask  = 9  // u32 (see kernelNetmask)
	svcAttrPEName   = 11 // string

	destAttrAddr     = 1  // 4 or 16 bytes
	destAttrPort     = 2  // be16
	destAttrFwd      = 3  // u32
	destAttrWeight   = 4  // u32
	destAttrUThresh  = 5  // u32
	destAttrLThresh  = 6  // u32
	destAttrActive   = 7  // u32
	destAttrInactive = 8  // u32
	destAttrAF       = 11 // u16
)

const (
	nlmsgHdrLen = unix.SizeofNlMsghdr
	genlHdrLen  = 4
	// batchBytes bounds one sendmsg: below the socket's default send
	// buffer (the kernel refuses a message larger than it).
	batchBytes = 64 << 10
	// recvBytes holds the largest datagram the kernel sends (dump parts
	// are at most 32 KiB).
	recvBytes = 128 << 10
)

// errDumpInterrupted is a dump the kernel flagged NLM_F_DUMP_INTR: the
// table changed while it was read.
var errDumpInterrupted = fmt.Errorf("%w (NLM_F_DUMP_INTR)", errInconsistent)

// ipvsConn is one generic netlink socket talking to the IPVS family. It
// is not safe for concurrent use.
type ipvsConn struct {
	fd     int
	family uint16
	seq    uint32
	rbuf   []byte
	wbuf   []byte
}

// dialIPVS opens a socket in the calling thread's network namespace.
func dialIPVS() (*ipvsConn, error) {
	gc, err := genetlink.Dial(nil)
	if err != nil {
		return nil, fmt.Errorf("ipvsync: generic netlink: %w", err)
	}
	fam, err := gc.GetFamily(ipvsGenlName)
	gc.Close()
	if err != nil {
		return nil, fmt.Errorf("ipvsync: look up generic netlink family %q: %w", ipvsGenlName, err)
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_GENERIC)
	if err != nil {
		return nil, fmt.Errorf("ipvsync: netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("ipvsync: bind netlink socket: %w", err)
	}
	// Error replies carry only the failed request's header, not all of it.
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	// Room for the error replies of a whole batch that fails (a service
	// refused, and every destination after it).
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
	}
	return &ipvsConn{fd: fd, family: fam.ID, rbuf: make([]byte, recvBytes)}, nil
}

func (c *ipvsConn) close() error { return unix.Close(c.fd) }

// msg starts a request in b: the netlink and generic netlink headers,
// with the length patched by end.
func (c *ipvsConn) msg(b []byte, cmd uint8, flags uint16) ([]byte, uint32) {
	c.seq++
	var h [nlmsgHdrLen + genlHdrLen]byte
	binary.NativeEndian.PutUint16(h[4:], c.family)
	binary.NativeEndian.PutUint16(h[6:], flags|unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(h[8:], c.seq)
	h[16] = cmd
	h[17] = ipvsGenlVersion
	return append(b, h[:]...), c.seq
}

// end patches the length of the message that starts at off.
func end(b []byte, off int) []byte {
	binary.NativeEndian.PutUint32(b[off:], uint32(len(b)-off))
	return b
}

func attr(b []byte, typ uint16, data []byte) []byte {
	var h [4]byte
	binary.NativeEndian.PutUint16(h[0:], uint16(4+len(data)))
	binary.NativeEndian.PutUint16(h[2:], typ)
	b = append(append(b, h[:]...), data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func u16(v uint16) []byte  { return binary.NativeEndian.AppendUint16(nil, v) }
func u32(v uint32) []byte  { return binary.NativeEndian.AppendUint32(nil, v) }
func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

// nest appends a nested attribute whose content fill appends.
func nest(b []byte, typ uint16, fill func([]byte) []byte) []byte {
	off := len(b)
	b = append(b, 0, 0, 0, 0)
	b = fill(b)
	binary.NativeEndian.PutUint16(b[off:], uint16(len(b)-off))
	binary.NativeEndian.PutUint16(b[off+2:], typ)
	return b
}

func rawIP(ip net.IP) []byte {
	if v4 := ip.To4(); v4 != nil {
		return v4
	}
	return ip.To16()
}

// serviceAttrs appends s: its identity, and with full everything
// NEW_SERVICE and SET_SERVICE need.
func serviceAttrs(b []byte, s *ipvs.Service, full bool) []byte {
	return nest(b, cmdAttrService, func(b []byte) []byte {
		b = attr(b, svcAttrAF, u16(s.AddressFamily))
		if s.FWMark != 0 {
			b = attr(b, svcAttrFWMark, u32(s.FWMark))
		} else {
			b = attr(b, svcAttrProtocol, u16(s.Protocol))
			b = attr(b, svcAttrAddr, rawIP(s.Address))
			b = attr(b, svcAttrPort, be16(s.Port))
		}
		if !full {
			return b
		}
		b = attr(b, svcAttrSched, append([]byte(s.SchedName), 0))
		if s.PEName != "" {
			b = attr(b, svcAttrPEName, append([]byte(s.PEName), 0))
		}
		b = attr(b, svcAttrFlags, append(u32(s.Flags), u32(^uint32(0))...))
		b = attr(b, svcAttrTimeout, u32(s.Timeout))
		return attr(b, svcAttrNetmask, u32(s.Netmask))
	})
}

// destAttrs appends d: its identity, and with full what NEW_DEST and
// SET_DEST need.
func destAttrs(b []byte, d *ipvs.Destination, full bool) []byte {
	return nest(b, cmdAttrDest, func(b []byte) []byte {
		b = attr(b, destAttrAddr, rawIP(d.Address))
		b = attr(b, destAttrPort, be16(d.Port))
		if d.AddressFamily != 0 {
			b = attr(b, destAttrAF, u16(d.AddressFamily))
		}
		if !full {
			return b
		}
		b = attr(b, destAttrFwd, u32(d.ConnectionFlags&ipvs.ConnectionFlagFwdMask))
		b = attr(b, destAttrWeight, u32(uint32(d.Weight)))
		b = attr(b, destAttrUThresh, u32(d.UpperThreshold))
		return attr(b, destAttrLThresh, u32(d.LowerThreshold))
	})
}

// appendWrite appends w as one request.
func (c *ipvsConn) appendWrite(b []byte, w Write, flags uint16) ([]byte, uint32) {
	off := len(b)
	b, seq := c.msg(b, writeCmd[w.Op], flags)
	switch w.Op {
	case OpAddService, OpUpdateService:
		b = serviceAttrs(b, w.Service, true)
	case OpDelService:
		b = serviceAttrs(b, w.Service, false)
	default:
		b = serviceAttrs(b, w.Service, false)
		b = destAttrs(b, w.Dest, w.Op != OpDelDest)
	}
	return end(b, off), seq
}

var writeCmd = map[Op]uint8{
	OpAddService: cmdNewService, OpUpdateService: cmdSetService, OpDelService: cmdDelService,
	OpAddDest: cmdNewDest, OpUpdateDest: cmdSetDest, OpDelDest: cmdDelDest,
}

// write sends ws in batches and returns one error per write. Within a
// batch only the last request asks for an acknowledgement; the kernel
// handles a batch's requests in order, so that reply ends the batch and
// every error reply before it belongs to one of the others.
func (c *ipvsConn) write(ws []Write) []error {
	errs := make([]error, len(ws))
	for start := 0; start < len(ws); {
		b := c.wbuf[:0]
		first := c.seq + 1
		n := 0
		for {
			off := len(b)
			b, _ = c.appendWrite(b, ws[start+n], 0)
			n++
			if start+n == len(ws) || len(b) >= batchBytes {
				fl := binary.NativeEndian.Uint16(b[off+6:])
				binary.NativeEndian.PutUint16(b[off+6:], fl|unix.NLM_F_ACK)
				break
			}
		}
		c.wbuf = b
		last := first + uint32(n) - 1
		if err := c.send(b); err != nil {
			for i := range n {
				errs[start+i] = err
			}
		} else if err := c.acks(first, last, errs[start:start+n]); err != nil {
			for i := range n {
				if errs[start+i] == nil {
					errs[start+i] = err
				}
			}
		}
		start += n
	}
	return errs
}

func (c *ipvsConn) send(b []byte) error {
	if err := unix.Sendto(c.fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("ipvsync: netlink send: %w", err)
	}
	return nil
}

// acks reads replies until the one for last; errs[seq-first] gets each
// request's error.
func (c *ipvsConn) acks(first, last uint32, errs []error) error {
	for {
		done := false
		err := c.recv(func(h unix.NlMsghdr, body []byte) error {
			if h.Type != unix.NLMSG_ERROR {
				return nil
			}
			if len(body) < 4+nlmsgHdrLen {
				return errors.New("ipvsync: short netlink error reply")
			}
			code := int32(binary.NativeEndian.Uint32(body))
			seq := binary.NativeEndian.Uint32(body[4+8:])
			if seq < first || seq > last {
				return nil // a reply to an earlier, abandoned request
			}
			if code != 0 {
				errs[seq-first] = unix.Errno(-code)
			}
			if seq == last {
				done = true
			}
			return nil
		})
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

// recv reads one datagram and calls f for each message in it.
func (c *ipvsConn) recv(f func(unix.NlMsghdr, []byte) error) error {
	n, _, err := unix.Recvfrom(c.fd, c.rbuf, 0)
	if err != nil {
		return fmt.Errorf("ipvsync: netlink receive: %w", err)
	}
	b := c.rbuf[:n]
	for len(b) >= nlmsgHdrLen {
		h := unix.NlMsghdr{
			Len:   binary.NativeEndian.Uint32(b),
			Type:  binary.NativeEndian.Uint16(b[4:]),
			Flags: binary.NativeEndian.Uint16(b[6:]),
			Seq:   binary.NativeEndian.Uint32(b[8:]),
		}
		if h.Len < nlmsgHdrLen || int(h.Len) > len(b) {
			return errors.New("ipvsync: malformed netlink message")
		}
		if err := f(h, b[nlmsgHdrLen:h.Len]); err != nil {
			return err
		}
		b = b[min(len(b), int((h.Len+3)&^3)):]
	}
	return nil
}

// request sends one request (a dump with dump set) and calls each for
// every reply's attributes (after the generic netlink header). A dump ends
// with NLMSG_DONE, any other request with its acknowledgement (after the
// reply, if any). A dump the kernel marks interrupted returns
// errDumpInterrupted once it is read to its end.
func (c *ipvsConn) request(cmd uint8, dump bool, fill func([]byte) []byte, each func([]byte) error) error {
	flags := uint16(unix.NLM_F_ACK)
	if dump {
		flags = unix.NLM_F_DUMP
	}
	b, seq := c.msg(c.wbuf[:0], cmd, flags)
	b = end(fill(b), 0)
	c.wbuf = b
	if err := c.send(b); err != nil {
		return err
	}
	var interrupted bool
	var failed error
	for {
		done := false
		err := c.recv(func(h unix.NlMsghdr, body []byte) error {
			if h.Seq != seq {
				return nil
			}
			if h.Flags&unix.NLM_F_DUMP_INTR != 0 {
				interrupted = true
			}
			switch h.Type {
			case unix.NLMSG_DONE:
				done = true
			case unix.NLMSG_ERROR:
				done = true
				if len(body) >= 4 {
					if code := int32(binary.NativeEndian.Uint32(body)); code != 0 {
						failed = unix.Errno(-code)
					}
				}
			default:
				if len(body) < genlHdrLen {
					return errors.New("ipvsync: short generic netlink message")
				}
				if err := each(body[genlHdrLen:]); err != nil && failed == nil {
					failed = err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if done {
			break
		}
	}
	if failed != nil {
		return failed
	}
	if interrupted {
		return errDumpInterrupted
	}
	return nil
}

// attrs calls f for each attribute in b.
func attrs(b []byte, f func(typ uint16, data []byte)) {
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b))
		if l < 4 || l > len(b) {
			return
		}
		f(binary.NativeEndian.Uint16(b[2:])&^(unix.NLA_F_NESTED|unix.NLA_F_NET_BYTEORDER), b[4:l])
		b = b[min(len(b), (l+3)&^3):]
	}
}

func getU16(b []byte) uint16 {
	if len(b) < 2 {
		return 0
	}
	return binary.NativeEndian.Uint16(b)
}

func getU32(b []byte) uint32 {
	if len(b) < 4 {
		return 0
	}
	return binary.NativeEndian.Uint32(b)
}

func getBE16(b []byte) uint16 {
	if len(b) < 2 {
		return 0
	}
	return binary.BigEndian.Uint16(b)
}

func cstring(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

func ipOf(b []byte, fam uint16) net.IP {
	if fam == unix.AF_INET && len(b) >= 4 {
		return net.IP(append([]byte(nil), b[:4]...))
	}
	return net.IP(append([]byte(nil), b...))
}

// parseService decodes a reply's IPVS_CMD_ATTR_SERVICE.
func parseService(b []byte) (*ipvs.Service, error) {
	var s *ipvs.Service
	attrs(b, func(typ uint16, data []byte) {
		if typ != cmdAttrService {
			return
		}
		s = &ipvs.Service{}
		var addr []byte
		attrs(data, func(typ uint16, v []byte) {
			switch typ {
			case svcAttrAF:
				s.AddressFamily = getU16(v)
			case svcAttrProtocol:
				s.Protocol = getU16(v)
			case svcAttrAddr:
				addr = v
			case svcAttrPort:
				s.Port = getBE16(v)
			case svcAttrFWMark:
				s.FWMark = getU32(v)
			case svcAttrSched:
				s.SchedName = cstring(v)
			case svcAttrFlags:
				s.Flags = getU32(v)
			case svcAttrTimeout:
				s.Timeout = getU32(v)
			case svcAttrNetmask:
				s.Netmask = getU32(v)
			case svcAttrPEName:
				s.PEName = cstring(v)
			}
		})
		if addr != nil {
			s.Address = ipOf(addr, s.AddressFamily)
		}
	})
	if s == nil {
		return nil, errors.New("ipvsync: netlink reply without a service")
	}
	return s, nil
}

// parseDest decodes a reply's IPVS_CMD_ATTR_DEST; fam is the service's
// family, for kernels that do not report the destination's.
func parseDest(b []byte, fam uint16) (*ipvs.Destination, error) {
	var d *ipvs.Destination
	attrs(b, func(typ uint16, data []byte) {
		if typ != cmdAttrDest {
			return
		}
		d = &ipvs.Destination{AddressFamily: fam}
		var addr []byte
		attrs(data, func(typ uint16, v []byte) {
			switch typ {
			case destAttrAddr:
				addr = v
			case destAttrPort:
				d.Port = getBE16(v)
			case destAttrFwd:
				d.ConnectionFlags = getU32(v)
			case destAttrWeight:
				d.Weight = int(getU32(v))
			case destAttrUThresh:
				d.UpperThreshold = getU32(v)
			case destAttrLThresh:
				d.LowerThreshold = getU32(v)
			case destAttrActive:
				d.ActiveConnections = int(getU32(v))
			case destAttrInactive:
				d.InactiveConnections = int(getU32(v))
			case destAttrAF:
				d.AddressFamily = getU16(v)
			}
		})
		d.Address = ipOf(addr, d.AddressFamily)
	})
	if d == nil {
		return nil, errors.New("ipvsync: netlink reply without a destination")
	}
	return d, nil
}

func (c *ipvsConn) services() ([]*ipvs.Service, error) {
	var out []*ipvs.Service
	err := c.request(cmdGetService, true, func(b []byte) []byte { return b }, func(b []byte) error {
		s, err := parseService(b)
		if err == nil {
			out = append(out, s)
		}
		return err
	})
	return out, err
}

func (c *ipvsConn) service(want *ipvs.Service) (*ipvs.Service, error) {
	var out *ipvs.Service
	err := c.request(cmdGetService, false, func(b []byte) []byte { return serviceAttrs(b, want, false) }, func(b []byte) error {
		s, err := parseService(b)
		out = s
		return err
	})
	return out, err
}

func (c *ipvsConn) dests(s *ipvs.Service) ([]*ipvs.Destination, error) {
	var out []*ipvs.Destination
	err := c.request(cmdGetDest, true, func(b []byte) []byte { return serviceAttrs(b, s, false) }, func(b []byte) error {
		d, err := parseDest(b, s.AddressFamily)
		if err == nil {
			out = append(out, d)
		}
		return err
	})
	return out, err
}

func (c *ipvsConn) flush() error {
	return c.request(cmdFlush, false, func(b []byte) []byte { return b }, func([]byte) error { return nil })
}

// isNotExist reports the kernel's "no such service or destination".
func isNotExist(err error) bool {
	return errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOENT)
}

package vrrpnet

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawIO reads and writes a Conn's socket with recvmsg and sendmsg made as
// raw system calls from inside the runtime poller's RawConn callbacks.
// The socket is non-blocking and every call says MSG_DONTWAIT, so none
// can block; a raw call skips the runtime's entersyscall, which wakes
// the sysmon thread from its sleep on the first system call after every
// idle spell. A backup of 255 groups is idle between most of its 255
// adverts a second: those wakes, and sysmon's polling after each, were a
// fifth of its CPU (perf of BenchmarkManyGroups), and x/net's ReadFrom
// allocated its control-message and address buffers per packet.
//
// Reads are serialized (a Conn has one reader goroutine, but the mutex
// keeps another correct) and so are writes: their buffers, and the
// callbacks' inputs and results, live here and are reused, so a packet
// costs no allocation.
type rawIO struct {
	rc syscall.RawConn
	v6 bool

	rmu    sync.Mutex
	readFn func(fd uintptr) bool // r.recv, bound once
	rmsg   unix.Msghdr
	riov   unix.Iovec
	rname  unix.RawSockaddrAny
	roob   [128]byte
	rbuf   []byte // IPv4: the packet with its IP header, which the kernel includes
	rn     int    // recv's results
	roobn  int
	rerr   error

	wmu     sync.Mutex
	writeFn func(fd uintptr) bool // r.send, bound once
	wmsg    unix.Msghdr
	wiov    unix.Iovec
	wname   unix.RawSockaddrInet6 // large enough for either family
	woob    [64]byte
	werr    error // send's result
}

func newRawIO(c syscall.Conn, v6 bool) (*rawIO, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("vrrpnet: %w", err)
	}
	r := &rawIO{rc: rc, v6: v6}
	r.readFn, r.writeFn = r.recv, r.send
	return r, nil
}

// ipv4MaxHeader is the longest IPv4 header (IHL 15).
const ipv4MaxHeader = 60

// readFrom receives one datagram into b, without its IP header, and what
// the kernel said of it. A datagram longer than b is cut to len(b).
func (r *rawIO) readFrom(b []byte) (int, Meta, error) {
	r.rmu.Lock()
	defer r.rmu.Unlock()
	into := b
	if !r.v6 {
		if cap(r.rbuf) < len(b)+ipv4MaxHeader {
			r.rbuf = make([]byte, len(b)+ipv4MaxHeader)
		}
		into = r.rbuf[:len(b)+ipv4MaxHeader]
	}
	if len(into) == 0 {
		return 0, Meta{}, fmt.Errorf("vrrpnet: read into an empty buffer")
	}
	r.riov.Base = &into[0]
	r.riov.SetLen(len(into))
	r.rmsg = unix.Msghdr{
		Name:    (*byte)(unsafe.Pointer(&r.rname)),
		Namelen: uint32(unsafe.Sizeof(r.rname)),
		Iov:     &r.riov,
		Iovlen:  1,
		Control: &r.roob[0],
	}
	r.rmsg.SetControllen(len(r.roob))
	err := r.rc.Read(r.readFn)
	r.riov.Base = nil // into is not ours to hold
	if err != nil {
		return 0, Meta{}, err
	}
	if r.rerr != nil {
		return 0, Meta{}, r.rerr
	}
	n, oobn := r.rn, r.roobn
	n = min(n, len(into)) // MSG_TRUNC is not asked for, but stay in bounds
	m := Meta{TTL: -1}
	parseControl(r.roob[:min(oobn, len(r.roob))], &m)
	if r.v6 {
		if r.rname.Addr.Family == unix.AF_INET6 {
			sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&r.rname))
			m.Src = netip.AddrFrom16(sa.Addr)
		}
		return n, m, nil
	}
	// IPv4 raw sockets deliver the header: the source, the destination
	// and the TTL are read from it, as the router saw them.
	// The kernel always gives one; were it not there, an empty payload is
	// what the parser drops (and counts) as too short.
	hl := 0
	if n >= 20 && into[0]>>4 == 4 {
		hl = int(into[0]&0x0f) << 2
	}
	if hl < 20 || hl > n {
		return 0, m, nil
	}
	m.Src = netip.AddrFrom4([4]byte(into[12:16]))
	m.Dst = netip.AddrFrom4([4]byte(into[16:20]))
	m.TTL = int(into[8])
	return copy(b, into[hl:n]), m, nil
}

// recv is readFrom's callback: one recvmsg of rmsg; false when nothing
// is there yet (the poller waits until the socket is readable).
func (r *rawIO) recv(fd uintptr) bool {
	for {
		got, _, e := unix.RawSyscall(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&r.rmsg)), unix.MSG_DONTWAIT)
		switch e {
		case 0:
			r.rn, r.roobn, r.rerr = int(got), int(r.rmsg.Controllen), nil
			return true
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			r.rerr = fmt.Errorf("vrrpnet: recvmsg: %w", e)
			return true
		}
	}
}

// parseControl fills m from the control messages of a received datagram:
// IPv6's hop limit and destination, and either family's interface. The
// headers are read byte by byte: oob need not be aligned.
func parseControl(oob []byte, m *Meta) {
	for len(oob) >= unix.SizeofCmsghdr {
		l, level, typ := cmsgHeader(oob)
		if l < unix.SizeofCmsghdr || l > uint64(len(oob)) {
			return
		}
		data := oob[unix.CmsgLen(0):l]
		switch {
		case level == unix.IPPROTO_IP && typ == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			m.IfIndex = int(int32(binary.NativeEndian.Uint32(data[0:4])))
		case level == unix.IPPROTO_IPV6 && typ == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			m.Dst = netip.AddrFrom16([16]byte(data[0:16]))
			m.IfIndex = int(binary.NativeEndian.Uint32(data[16:20]))
		case level == unix.IPPROTO_IPV6 && typ == unix.IPV6_HOPLIMIT && len(data) >= 4:
			m.TTL = int(int32(binary.NativeEndian.Uint32(data[0:4])))
		}
		next := unix.CmsgSpace(int(l) - unix.CmsgLen(0))
		if next > len(oob) {
			return
		}
		oob = oob[next:]
	}
}

// cmsgHeader reads a cmsghdr: its length is a size_t (8 bytes on 64-bit
// Linux, 4 on 32-bit), then the level and the type, each an int.
func cmsgHeader(b []byte) (l uint64, level, typ int32) {
	off := unix.SizeofCmsghdr - 8
	if off == 8 {
		l = binary.NativeEndian.Uint64(b)
	} else {
		l = uint64(binary.NativeEndian.Uint32(b))
	}
	return l, int32(binary.NativeEndian.Uint32(b[off:])), int32(binary.NativeEndian.Uint32(b[off+4:]))
}

// writeTo sends b to dst out of the interface ifindex, from src (invalid:
// the kernel chooses), with hop limit 255 for IPv6 (IPv4's TTL is the
// socket's).
func (r *rawIO) writeTo(b []byte, src, dst netip.Addr, ifindex int) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	var oobn int
	if r.v6 {
		dst16 := dst.As16()
		*(*unix.RawSockaddrInet6)(unsafe.Pointer(&r.wname)) = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: dst16, Scope_id: uint32(ifindex)}
		oobn = putCmsg(r.woob[:], unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, unix.SizeofInet6Pktinfo, func(d []byte) {
			if src.IsValid() {
				s := src.As16()
				copy(d[0:16], s[:])
			}
			binary.NativeEndian.PutUint32(d[16:20], uint32(ifindex))
		})
		oobn += putCmsg(r.woob[oobn:], unix.IPPROTO_IPV6, unix.IPV6_HOPLIMIT, 4, func(d []byte) {
			binary.NativeEndian.PutUint32(d, 255)
		})
	} else {
		*(*unix.RawSockaddrInet4)(unsafe.Pointer(&r.wname)) = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: dst.As4()}
		oobn = putCmsg(r.woob[:], unix.IPPROTO_IP, unix.IP_PKTINFO, unix.SizeofInet4Pktinfo, func(d []byte) {
			binary.NativeEndian.PutUint32(d[0:4], uint32(ifindex))
			if src.IsValid() {
				s := src.As4()
				copy(d[4:8], s[:]) // spec_dst: the source address
			}
		})
	}
	namelen := uint32(unix.SizeofSockaddrInet4)
	if r.v6 {
		namelen = unix.SizeofSockaddrInet6
	}
	if len(b) > 0 {
		r.wiov.Base = &b[0]
	}
	r.wiov.SetLen(len(b))
	r.wmsg = unix.Msghdr{
		Name:    (*byte)(unsafe.Pointer(&r.wname)),
		Namelen: namelen,
		Iov:     &r.wiov,
		Iovlen:  1,
		Control: &r.woob[0],
	}
	r.wmsg.SetControllen(oobn)
	err := r.rc.Write(r.writeFn)
	r.wiov.Base = nil // b is the caller's again
	if err != nil {
		return err
	}
	return r.werr
}

// send is writeTo's callback: one sendmsg of wmsg; false when the socket
// has no room (the poller waits until it has).
func (r *rawIO) send(fd uintptr) bool {
	for {
		_, _, e := unix.RawSyscall(unix.SYS_SENDMSG, fd, uintptr(unsafe.Pointer(&r.wmsg)), unix.MSG_DONTWAIT)
		switch e {
		case 0:
			r.werr = nil
			return true
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			r.werr = fmt.Errorf("vrrpnet: sendmsg: %w", e)
			return true
		}
	}
}

// putCmsg writes one control message of level and typ with n bytes of
// data (filled by fill, zeroed first) at the start of oob, and returns its
// aligned length.
func putCmsg(oob []byte, level, typ int32, n int, fill func([]byte)) int {
	space := unix.CmsgSpace(n)
	clear(oob[:space])
	off := unix.SizeofCmsghdr - 8
	if off == 8 {
		binary.NativeEndian.PutUint64(oob, uint64(unix.CmsgLen(n)))
	} else {
		binary.NativeEndian.PutUint32(oob, uint32(unix.CmsgLen(n)))
	}
	binary.NativeEndian.PutUint32(oob[off:], uint32(level))
	binary.NativeEndian.PutUint32(oob[off+4:], uint32(typ))
	fill(oob[unix.CmsgLen(0) : unix.CmsgLen(0)+n])
	return space
}

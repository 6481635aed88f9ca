// Package vrrp owns the VRRP protocol logic of havip: the advertisement codec
// (RFC 5798 version 3 for IPv4 and IPv6, RFC 3768 version 2 for IPv4) and the
// RFC 5798 section 6 state machine.
//
// It is pure logic. It never opens a socket, never touches netlink, never
// starts a goroutine and never reads the clock: every method of Machine takes
// the current time from its caller, and the caller arms a timer for
// Machine.Deadline. A runner elsewhere owns the socket, the timer, the VIPs and
// gratuitous ARP/NA; it carries out the Actions this package returns.
//
// Wire compatibility with keepalived:
//   - v3 checksums cover the IPv4 or IPv6 pseudo-header (source, destination,
//     protocol 112, VRRP length) followed by the VRRP message;
//   - v2 checksums cover only the VRRP message, which ends with 8 bytes of
//     (zero) authentication data; only auth type 0 is accepted;
//   - v3 Max Adver Int is 12 bits of centiseconds, v2 Adver Int is seconds.
package vrrp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// ErrPacket is wrapped by Marshal errors.
var ErrPacket = errors.New("vrrp: invalid packet")

// ProtocolNumber is the IP protocol number of VRRP.
const ProtocolNumber = 112

const (
	headerLen   = 8
	v2AuthLen   = 8
	typeAdvert  = 1
	maxV3Centis = 0xfff
	centisecond = 10 * time.Millisecond
)

// Packet is a decoded VRRP advertisement.
type Packet struct {
	Version  uint8         // 2 or 3
	VRID     uint8         // 1..255
	Priority uint8         // 0 = resigning master, 255 = address owner
	Interval time.Duration // v3 Max Adver Int (10ms steps); v2 Adver Int (whole seconds)
	Addrs    []netip.Addr  // virtual addresses, all of the packet's IP family
}

// normAddr strips what does not travel on the wire: a 4-in-6 mapping and an
// IPv6 zone.
func normAddr(a netip.Addr) netip.Addr { return a.Unmap().WithZone("") }

// addrFamily reports the IP address length (4 or 16) shared by src and dst, or
// 0 if they are invalid or of different families.
func addrFamily(src, dst netip.Addr) int {
	src, dst = normAddr(src), normAddr(dst)
	switch {
	case !src.IsValid() || !dst.IsValid():
		return 0
	case src.Is4() && dst.Is4():
		return 4
	case src.Is6() && dst.Is6():
		return 16
	}
	return 0
}

// Marshal encodes the advertisement (the VRRP message only, without an IP
// header). src and dst are the IP source and destination the runner will use:
// v3 checksums cover them through the pseudo-header, and they fix the address
// family the Addrs must have.
func (p *Packet) Marshal(src, dst netip.Addr) ([]byte, error) {
	alen := addrFamily(src, dst)
	if alen == 0 {
		return nil, fmt.Errorf("%w: source %v and destination %v are not valid addresses of one family", ErrPacket, src, dst)
	}
	if p.VRID == 0 {
		return nil, fmt.Errorf("%w: VRID 0", ErrPacket)
	}
	if len(p.Addrs) > 255 {
		return nil, fmt.Errorf("%w: %d addresses, at most 255 fit", ErrPacket, len(p.Addrs))
	}
	var ivl uint16
	trailer := 0
	switch p.Version {
	case 2:
		if alen != 4 {
			return nil, fmt.Errorf("%w: VRRPv2 is IPv4 only", ErrPacket)
		}
		if p.Interval < time.Second || p.Interval > 255*time.Second || p.Interval%time.Second != 0 {
			return nil, fmt.Errorf("%w: v2 interval %v is not 1..255 whole seconds", ErrPacket, p.Interval)
		}
		ivl = uint16(p.Interval / time.Second)
		trailer = v2AuthLen
	case 3:
		if p.Interval < centisecond || p.Interval > maxV3Centis*centisecond || p.Interval%centisecond != 0 {
			return nil, fmt.Errorf("%w: v3 interval %v is not 10ms..40.95s in 10ms steps", ErrPacket, p.Interval)
		}
		ivl = uint16(p.Interval / centisecond)
	default:
		return nil, fmt.Errorf("%w: version %d", ErrPacket, p.Version)
	}

	b := make([]byte, headerLen, headerLen+alen*len(p.Addrs)+trailer)
	b[0] = p.Version<<4 | typeAdvert
	b[1] = p.VRID
	b[2] = p.Priority
	b[3] = uint8(len(p.Addrs))
	if p.Version == 2 {
		b[4] = 0 // auth type: none
		b[5] = uint8(ivl)
	} else {
		binary.BigEndian.PutUint16(b[4:6], ivl) // the 4 reserved bits stay zero
	}
	for _, a := range p.Addrs {
		a = a.WithZone("")
		if alen == 4 {
			a = a.Unmap()
		}
		if !a.IsValid() || a.BitLen()/8 != alen {
			return nil, fmt.Errorf("%w: address %v is not of the packet's family", ErrPacket, a)
		}
		b = append(b, a.AsSlice()...)
	}
	b = append(b, make([]byte, trailer)...)
	binary.BigEndian.PutUint16(b[6:8], checksum(p.Version, src, dst, b))
	return b, nil
}

// checksum returns the checksum of msg (whose checksum field must be zero, or
// hold the received value when verifying, in which case a valid message
// yields 0).
func checksum(version uint8, src, dst netip.Addr, msg []byte) uint16 {
	var sum uint32
	if version == 3 {
		sum = pseudoHeaderSum(src, dst, len(msg))
	}
	return ^fold(sumBytes(sum, msg))
}

// pseudoHeaderSum sums the IPv4 (RFC 791) or IPv6 (RFC 8200 section 8.1)
// pseudo-header; both reduce to the same 16-bit word sum.
func pseudoHeaderSum(src, dst netip.Addr, length int) uint32 {
	s, d := normAddr(src).AsSlice(), normAddr(dst).AsSlice()
	sum := sumBytes(0, s)
	sum = sumBytes(sum, d)
	return sum + ProtocolNumber + uint32(length)
}

func sumBytes(sum uint32, b []byte) uint32 {
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

func fold(sum uint32) uint16 {
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}

// Parse decodes and checks a VRRP message (without IP header) received from
// src to dst. It checks only what the message says about itself: length,
// version (2 or 3), type, family, checksum, v2 auth type, a non-zero VRID and
// interval. Whether the advertisement is for us is Machine.Receive's job.
//
// Bytes beyond the message's own length (link padding) are ignored, as
// keepalived does. A v2 message must carry its 8 bytes of auth data.
func Parse(b []byte, src, dst netip.Addr) (*Packet, DropReason) {
	if len(b) < headerLen {
		return nil, DropTruncated
	}
	version := b[0] >> 4
	if version != 2 && version != 3 {
		return nil, DropVersion
	}
	if b[0]&0x0f != typeAdvert {
		return nil, DropType
	}
	alen := addrFamily(src, dst)
	if alen == 0 || version == 2 && alen != 4 {
		return nil, DropFamily
	}
	n := int(b[3])
	msgLen := headerLen + n*alen
	if version == 2 {
		msgLen += v2AuthLen
	}
	if len(b) < msgLen {
		return nil, DropTruncated
	}
	msg := b[:msgLen]
	if checksum(version, src, dst, msg) != 0 {
		return nil, DropChecksum
	}
	p := &Packet{Version: version, VRID: msg[1], Priority: msg[2]}
	if version == 2 {
		if msg[4] != 0 {
			return nil, DropAuth
		}
		p.Interval = time.Duration(msg[5]) * time.Second
	} else {
		p.Interval = time.Duration(binary.BigEndian.Uint16(msg[4:6])&maxV3Centis) * centisecond
	}
	if p.VRID == 0 {
		return nil, DropVRID
	}
	if p.Interval == 0 {
		return nil, DropInterval
	}
	if n > 0 {
		p.Addrs = make([]netip.Addr, n)
		for i := range n {
			raw := msg[headerLen+i*alen : headerLen+(i+1)*alen]
			if alen == 4 {
				p.Addrs[i] = netip.AddrFrom4([4]byte(raw))
			} else {
				p.Addrs[i] = netip.AddrFrom16([16]byte(raw))
			}
		}
	}
	return p, DropNone
}

// VRIDOf is the VRID a VRRP message names, read without judging anything
// else, so that a runner with one socket for many virtual routers can hand
// the message to the one that runs it (whose Receive judges it whole). A
// message too short to name one is DropTruncated.
func VRIDOf(b []byte) (uint8, DropReason) {
	if len(b) < 2 {
		return 0, DropTruncated
	}
	return b[1], DropNone
}

package checks

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/havip/havip/internal/conf"
	"github.com/miekg/dns"
)

// dnsProber asks the server itself, over UDP, rather than through
// net.Resolver: the resolver reads /etc/hosts before asking (a check on
// "localhost." would never reach the server), appends search domains
// from resolv.conf and retries by its own options. One query per probe:
// retrying is the scheduler's business (rise and fall).
type dnsProber struct {
	addr    netip.AddrPort
	query   []byte // packed once; each probe writes a fresh ID into it
	name    string // canonical query name
	qtype   uint16
	expect  string // what the answer must hold (see answerHas), "" = any
	timeout time.Duration
}

// newDNSProber builds the prober of a dns check: Query asked for
// QueryType records ("" means A), passing on a NOERROR reply whose answer
// holds a record of that type and, with ExpectAnswer, one with that value.
func newDNSProber(c conf.Check, addr netip.AddrPort) prober {
	qt := c.QueryType
	if qt == "" {
		qt = "A"
	}
	qtype, ok := dns.StringToType[qt]
	if !ok {
		return failing(fail(FailConfig, "dns: unknown query type %q", qt))
	}
	name := dns.Fqdn(c.Query)
	if c.Query == "" || !dns.IsFqdn(name) {
		return failing(fail(FailConfig, "dns query %q is not a domain name", c.Query))
	}
	if _, ok := dns.IsDomainName(name); !ok {
		return failing(fail(FailConfig, "dns query %q is not a domain name", c.Query))
	}
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	query, err := m.Pack()
	if err != nil {
		return failing(fail(FailConfig, "dns query %q is not a domain name", c.Query))
	}
	p := &dnsProber{addr: addr, query: query, name: dns.CanonicalName(name), qtype: qtype, expect: c.ExpectAnswer, timeout: c.Timeout}
	return p.probe
}

func (p *dnsProber) probe(ctx context.Context) (string, error) {
	var q [512]byte
	query := append(q[:0], p.query...)
	id := uint16(rand.Uint32())
	query[0], query[1] = byte(id>>8), byte(id)
	c, done, err := dialUDP(ctx, p.addr, p.timeout)
	if err != nil {
		return "", err
	}
	defer done()
	if _, err := c.Write(query); err != nil {
		return "", netError(ctx, "send", err, p.timeout)
	}
	bp := replyBufs.Get().(*[maxUDPReply]byte)
	defer replyBufs.Put(bp)
	for {
		n, err := c.Read(bp[:])
		if err != nil {
			if errors.Is(err, syscall.ECONNREFUSED) {
				return "", fail(FailRefused, "port unreachable")
			}
			return "", netError(ctx, "receive", err, p.timeout)
		}
		b := bp[:n]
		// Cheap tests first: the ID and the QR bit.
		if n < 12 || uint16(b[0])<<8|uint16(b[1]) != id || b[2]&0x80 == 0 {
			continue // not the answer to this query: keep waiting
		}
		var m dns.Msg
		if err := m.Unpack(b); err != nil {
			return "", fail(FailProtocol, "dns: malformed reply: %v", err)
		}
		if len(m.Question) != 1 || dns.CanonicalName(m.Question[0].Name) != p.name || m.Question[0].Qtype != p.qtype {
			continue
		}
		return p.judge(&m)
	}
}

func (p *dnsProber) judge(m *dns.Msg) (string, error) {
	tname := dns.TypeToString[p.qtype]
	if m.Rcode != dns.RcodeSuccess {
		return "", fail(FailRcode, "dns: rcode %s", rcodeName(m.Rcode))
	}
	var values []string
	for _, rr := range m.Answer {
		if rr.Header().Rrtype != p.qtype {
			continue // e.g. the CNAME before the A records
		}
		v := answerValue(rr)
		if p.expect != "" && sameAnswer(p.qtype, v, p.expect) {
			return fmt.Sprintf("%s %s found", tname, p.expect), nil
		}
		values = append(values, v)
	}
	switch {
	case len(values) == 0:
		return "", fail(FailNoAnswer, "dns: no answer for %s %s", p.name, tname)
	case p.expect != "":
		if len(values) > 4 {
			values = append(values[:4], "...")
		}
		return "", fail(FailAnswer, "dns: no %s %s in the answer (got %s)", tname, p.expect, strings.Join(values, ", "))
	}
	return fmt.Sprintf("%d answers", len(values)), nil
}

// answerValue is what expect_answer is compared with: the address of an
// A or AAAA record, the target name of CNAME, NS, PTR, MX and SRV, the
// primary server (MNAME) of SOA, the strings of TXT joined without a
// separator.
func answerValue(rr dns.RR) string {
	switch r := rr.(type) {
	case *dns.A:
		return r.A.String()
	case *dns.AAAA:
		return r.AAAA.String()
	case *dns.CNAME:
		return r.Target
	case *dns.NS:
		return r.Ns
	case *dns.PTR:
		return r.Ptr
	case *dns.MX:
		return r.Mx
	case *dns.SRV:
		return r.Target
	case *dns.SOA:
		return r.Ns
	case *dns.TXT:
		return strings.Join(r.Txt, "")
	}
	return rr.String()
}

// sameAnswer compares addresses as addresses, names without regard to
// case or a final dot, and TXT exactly.
func sameAnswer(qtype uint16, got, want string) bool {
	switch qtype {
	case dns.TypeA, dns.TypeAAAA:
		g, err1 := netip.ParseAddr(got)
		w, err2 := netip.ParseAddr(want)
		return err1 == nil && err2 == nil && g.Unmap() == w.Unmap()
	case dns.TypeTXT:
		return got == want
	}
	return dns.CanonicalName(got) == dns.CanonicalName(want)
}

func rcodeName(rc int) string {
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return fmt.Sprint(rc)
}

package checks

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/havip/havip/internal/conf"
	"github.com/miekg/dns"
)

// dnsZone is what the test server knows: records by name, in zone-file
// syntax. A name it does not know gets NXDOMAIN; "silent." gets no reply.
var dnsZone = []string{
	"ok.test. 60 IN A 192.0.2.1",
	"ok.test. 60 IN A 192.0.2.2",
	"ok.test. 60 IN AAAA 2001:db8::1",
	"ok.test. 60 IN MX 10 Mail.Test.",
	"ok.test. 60 IN TXT \"v=spf1\" \" -all\"",
	"ok.test. 60 IN SOA ns1.test. admin.test. 1 3600 600 86400 60",
	"ok.test. 60 IN NS ns1.test.",
	"ok.test. 60 IN SRV 0 5 80 web.test.",
	"www.test. 60 IN CNAME ok.test.",
	"1.2.0.192.in-addr.arpa. 60 IN PTR ok.test.",
	"empty.test. 60 IN TXT \"only text here\"",
}

// dnsServer runs a real miekg/dns server on a loopback UDP port.
func dnsServer(t *testing.T) netip.AddrPort {
	t.Helper()
	var rrs []dns.RR
	for _, s := range dnsZone {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		rrs = append(rrs, rr)
	}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		q := r.Question[0]
		if q.Name == "silent.test." {
			return
		}
		m := new(dns.Msg)
		m.SetReply(r)
		m.Authoritative = true
		known := false
		for _, rr := range rrs {
			h := rr.Header()
			if !strings.EqualFold(h.Name, q.Name) {
				continue
			}
			known = true
			if h.Rrtype == q.Qtype || h.Rrtype == dns.TypeCNAME {
				m.Answer = append(m.Answer, rr)
			}
			if cn, ok := rr.(*dns.CNAME); ok && q.Qtype != dns.TypeCNAME { // the chain, as a resolver gives it
				for _, rr2 := range rrs {
					if rr2.Header().Name == cn.Target && rr2.Header().Rrtype == q.Qtype {
						m.Answer = append(m.Answer, rr2)
					}
				}
			}
		}
		if !known {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: handler, NotifyStartedFunc: func() { close(started) }}
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return addrOf(t, pc.LocalAddr())
}

func TestProbeDNS(t *testing.T) {
	srv := dnsServer(t)
	// A responder that first sends a reply with the wrong ID, which the
	// probe must ignore, then the right one (SERVFAIL).
	liar := udpServerFunc(t, func(c net.PacketConn, p []byte, from net.Addr) {
		var m dns.Msg
		if m.Unpack(p) != nil {
			return
		}
		wrong := new(dns.Msg)
		wrong.SetReply(&m)
		wrong.Id++
		wrong.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: m.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET}, A: net.IPv4(192, 0, 2, 9)}}
		right := new(dns.Msg)
		right.SetRcode(&m, dns.RcodeServerFailure)
		for _, msg := range []*dns.Msg{wrong, right} {
			b, _ := msg.Pack()
			c.WriteTo(b, from)
		}
	})
	garbage := udpServer(t, func(p []byte) []byte {
		if len(p) < 2 {
			return nil
		}
		// A header with the query's ID, one question, then no room for it.
		return append([]byte{p[0], p[1], 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0}, "\x09not dns"...)
	})
	const timeout = 200 * time.Millisecond
	dc := func(q, qtype, want string) conf.Check {
		c := check("dns", timeout)
		c.Query, c.QueryType, c.ExpectAnswer = q, qtype, want
		return c
	}
	at := func(c conf.Check) Target { return Target{Check: c, Addr: srv} }
	runProbes(t, []probeCase{
		{"answers", at(dc("ok.test", "", "")), outcome{OK: true, Reason: "2 answers"}},
		{"absolute name", at(dc("ok.test.", "A", "")), outcome{OK: true, Reason: "2 answers"}},
		{"right address", at(dc("ok.test", "A", "192.0.2.2")), outcome{OK: true, Reason: "A 192.0.2.2 found"}},
		{"wrong address", at(dc("ok.test", "A", "192.0.2.3")),
			outcome{Kind: FailAnswer, Reason: "dns: no A 192.0.2.3 in the answer (got 192.0.2.1, 192.0.2.2)"}},
		{"AAAA, address compared as an address", at(dc("ok.test", "AAAA", "2001:db8:0::1")), outcome{OK: true, Reason: "AAAA 2001:db8:0::1 found"}},
		{"MX, name compared without case", at(dc("ok.test", "MX", "mail.test")), outcome{OK: true, Reason: "MX mail.test found"}},
		{"MX, wrong name", at(dc("ok.test", "MX", "mx.test.")), outcome{Kind: FailAnswer, Reason: "dns: no MX mx.test. in the answer (got Mail.Test.)"}},
		{"TXT joined", at(dc("ok.test", "TXT", "v=spf1 -all")), outcome{OK: true, Reason: "TXT v=spf1 -all found"}},
		{"SOA primary server", at(dc("ok.test", "SOA", "ns1.test.")), outcome{OK: true, Reason: "SOA ns1.test. found"}},
		{"NS", at(dc("ok.test", "NS", "ns1.test")), outcome{OK: true, Reason: "NS ns1.test found"}},
		{"SRV target", at(dc("ok.test", "SRV", "web.test.")), outcome{OK: true, Reason: "SRV web.test. found"}},
		{"CNAME", at(dc("www.test", "CNAME", "ok.test.")), outcome{OK: true, Reason: "CNAME ok.test. found"}},
		{"A through a CNAME", at(dc("www.test", "A", "192.0.2.1")), outcome{OK: true, Reason: "A 192.0.2.1 found"}},
		{"PTR", at(dc("1.2.0.192.in-addr.arpa", "PTR", "ok.test.")), outcome{OK: true, Reason: "PTR ok.test. found"}},
		{"nxdomain", at(dc("nx.test", "A", "")), outcome{Kind: FailRcode, Reason: "dns: rcode NXDOMAIN"}},
		{"no answer of the type", at(dc("empty.test", "A", "")), outcome{Kind: FailNoAnswer, Reason: "dns: no answer for empty.test. A"}},
		{"hosts file not consulted", at(dc("localhost", "A", "")), outcome{Kind: FailRcode, Reason: "dns: rcode NXDOMAIN"}},
		{"timeout", at(dc("silent.test", "A", "")), outcome{Kind: FailTimeout, Reason: "receive: timeout after 200ms"}},
		{"reply with the wrong id ignored", Target{Check: dc("ok.test", "A", ""), Addr: liar}, outcome{Kind: FailRcode, Reason: "dns: rcode SERVFAIL"}},
		{"garbage", Target{Check: dc("ok.test", "A", ""), Addr: garbage},
			outcome{Kind: FailProtocol, Reason: "dns: malformed reply: bad question name: dns: buffer size too small"}},
		{"refused: port unreachable", Target{Check: dc("ok.test", "A", ""), Addr: closedUDPPort(t)}, outcome{Kind: FailRefused, Reason: "port unreachable"}},
		{"bad name", at(dc(strings.Repeat("a", 70)+".test", "A", "")),
			outcome{Kind: FailConfig, Reason: fmt.Sprintf("dns query %q is not a domain name", strings.Repeat("a", 70)+".test")}},
	})
}

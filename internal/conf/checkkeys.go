package conf

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// The type-specific keys of http, https and dns checks, and the value
// checks of the probe keys (the probes in package checks take what these
// let through literally).

// refusedHeaders are request headers the http probe writes itself, or
// that would change how the reply is framed.
var refusedHeaders = []string{"host", "content-length", "transfer-encoding", "connection"}

func (p *parser) httpKeys(t *table, c *Check) {
	if v, ok := t.lookup("expect_status"); ok {
		c.ExpectStatus = p.statusRanges(t, v)
	}
	if v, ok := t.str("method"); ok {
		if v == "" || strings.ContainsFunc(v, func(r rune) bool { return r < 'A' || r > 'Z' }) {
			t.errorf("method", "%q is not an HTTP method: write it in capitals, like GET or HEAD", v)
		}
		c.Method = v
	}
	if ht := t.sub("headers"); ht != nil {
		for _, k := range ht.keys() {
			v, ok := ht.str(k)
			if !ok {
				continue
			}
			switch {
			case strings.EqualFold(k, "host"):
				ht.errorf(k, "the check sets Host itself: use the check's host key")
			case slices.Contains(refusedHeaders, strings.ToLower(k)):
				ht.errorf(k, "the check sets %s itself (it sends no body and closes after one response)", k)
			case !isToken(k):
				ht.errorf(k, "%q is not a header name", k)
			case strings.ContainsAny(v, "\r\n\x00"):
				ht.errorf(k, "%q: a header value must not contain CR, LF or NUL", v)
			}
			c.Headers = append(c.Headers, Header{Name: k, Value: v})
		}
		ht.finish()
	}
	if v, ok := t.str("expect_body"); ok {
		if v == "" {
			t.errorf("expect_body", "must not be empty: leave the key out to accept any body")
		}
		c.ExpectBody = v
	}
	if v, ok := t.str("expect_body_regex"); ok {
		if _, err := regexp.Compile(v); err != nil {
			t.errorf("expect_body_regex", "%q: %s", v, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
		}
		if t.has("expect_body") {
			t.errorf("expect_body_regex", "a check takes expect_body or expect_body_regex, not both")
		}
		c.ExpectBodyRegex = v
	}
	if v, ok := t.boolean("tls_verify"); ok {
		c.TLSVerify = v
	}
	if v, ok := t.str("tls_ca"); ok {
		p.absPath(t, "tls_ca", v)
		if p.onHost && strings.HasPrefix(v, "/") {
			if err := checkCAFile(v); err != nil {
				t.errorf("tls_ca", "%v", err)
			}
		}
		if !c.TLSVerify {
			t.warnf("tls_ca", "has no effect without tls_verify = true")
		}
		c.TLSCA = v
	}
	if v, ok := t.str("tls_server_name"); ok {
		if !isDomainName(v) {
			t.errorf("tls_server_name", "%q is not a host name", v)
		}
		c.TLSServerName = v
	}
}

// statusRanges reads expect_status: a code, a "lo-hi" range, or an
// array of codes and ranges.
func (p *parser) statusRanges(t *table, v any) []StatusRange {
	one := func(e any, report func(format string, args ...any)) (StatusRange, bool) {
		var r StatusRange
		switch x := e.(type) {
		case int64:
			r = StatusRange{int(x), int(x)}
		case string:
			lo, hi, isRange := strings.Cut(x, "-")
			a, err1 := strconv.Atoi(strings.TrimSpace(lo))
			b, err2 := a, error(nil)
			if isRange {
				b, err2 = strconv.Atoi(strings.TrimSpace(hi))
			}
			if err1 != nil || err2 != nil {
				report("%q is not a status or a range like \"200-299\"", x)
				return r, false
			}
			r = StatusRange{a, b}
		default:
			report("expected a status code or a range like \"200-299\", got %s", typeName(e))
			return r, false
		}
		switch {
		case r.Lo < 100 || r.Lo > 599 || r.Hi < 100 || r.Hi > 599:
			if r.Lo == r.Hi {
				report("%d is not an HTTP status (100..599)", r.Lo)
			} else {
				report("%d-%d is not a range of HTTP statuses (100..599)", r.Lo, r.Hi)
			}
			return r, false
		case r.Lo > r.Hi:
			report("%d-%d is an empty range: write the lower status first", r.Lo, r.Hi)
			return r, false
		}
		return r, true
	}
	arr, isArr := v.([]any)
	if !isArr {
		r, ok := one(v, func(format string, args ...any) { t.errorf("expect_status", format, args...) })
		if !ok {
			return nil
		}
		return []StatusRange{r}
	}
	if len(arr) == 0 {
		t.errorf("expect_status", "needs at least one status code")
	}
	out := make([]StatusRange, 0, len(arr))
	for i, e := range arr {
		r, _ := one(e, func(format string, args ...any) { t.elemErrorf("expect_status", i, format, args...) })
		out = append(out, r)
	}
	return out
}

func (p *parser) dnsKeys(t *table, c *Check) {
	if v, ok := t.str("query"); ok {
		c.Query = v
		switch {
		case c.Type != "dns":
		case v == "":
			t.errorf("query", "must not be empty")
		case !isDomainName(v):
			t.errorf("query", "%q is not a domain name (labels of 1..63 bytes, 253 in all)", v)
		}
	}
	if v, ok := p.enum(t, "query_type", dnsTypes); ok {
		c.QueryType = v
	}
	if v, ok := t.str("expect_answer"); ok {
		if v == "" {
			t.errorf("expect_answer", "must not be empty: leave the key out to accept any answer")
		}
		c.ExpectAnswer = v
	}
}

// checkAnswer checks expect_answer against the query type: what the
// probe compares it with.
func checkAnswer(qtype, v string) error {
	switch qtype {
	case "A", "AAAA":
		a, err := netip.ParseAddr(v)
		if err != nil || a.Zone() != "" {
			return fmt.Errorf("not an IP address (query_type %s compares addresses)", qtype)
		}
		if a.Is4() != (qtype == "A") || a.Is4In6() {
			return fmt.Errorf("not an %s address", map[bool]string{true: "IPv4", false: "IPv6"}[qtype == "A"])
		}
	case "TXT":
	default:
		if !isDomainName(v) {
			return fmt.Errorf("not a domain name (query_type %s compares names)", qtype)
		}
	}
	return nil
}

// checkPingTarget accepts an address or a host name, without a port.
func checkPingTarget(v string) error {
	if _, _, err := net.SplitHostPort(v); err == nil {
		return errors.New("ping takes an address or a host name, not host:port")
	}
	h := strings.TrimSuffix(strings.TrimPrefix(v, "["), "]")
	if a, err := netip.ParseAddr(h); err == nil {
		if a.Zone() != "" {
			return errors.New("a zone is not allowed here")
		}
		return nil
	}
	if !isDomainName(v) {
		return errors.New("not an address or a host name")
	}
	return nil
}

// isDomainName accepts a name of dot-separated labels (1..63 bytes, 253
// in all, an optional final dot) of letters, digits, '-' and '_'.
func isDomainName(v string) bool {
	v = strings.TrimSuffix(v, ".")
	if v == "" || len(v) > 253 {
		return false
	}
	for l := range strings.SplitSeq(v, ".") {
		if l == "" || len(l) > 63 {
			return false
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

// isToken reports whether v is an HTTP token (RFC 9110 section 5.6.2).
func isToken(v string) bool {
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		b := v[i]
		if b <= ' ' || b >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, b) >= 0 {
			return false
		}
	}
	return true
}

func isSpaceOrControl(r rune) bool { return r <= ' ' || r == 0x7f }

// checkCAFile reads a PEM file of CA certificates the way the https probe
// will, and says what is wrong with it.
func checkCAFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, errors.Unwrap(err))
	}
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return fmt.Errorf("%s: a %s block, not a CERTIFICATE", path, b.Type)
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return fmt.Errorf("%s: certificate %d: %v", path, n+1, err)
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("%s holds no PEM certificate", path)
	}
	return nil
}

// defaultHeloName is this machine's host name, for smtp's EHLO.
func defaultHeloName() string {
	if h, err := os.Hostname(); err == nil && isDomainName(h) {
		return h
	}
	return "localhost"
}

package checks

import (
	"bufio"
	"bytes"
	"testing"
)

// FuzzHTTPResponse feeds anything to the response parser: it must not
// panic, and never keep more than 64 KiB of body.
func FuzzHTTPResponse(f *testing.F) {
	for _, seed := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n0\r\n\r\n",
		"HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.0 204 No Content\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
		"HTTP/1.1 999 Nope\r\n\r\n",
		"SSH-2.0-OpenSSH\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), maxLine)
		status, fr, err := readHead(br)
		if err != nil {
			return
		}
		if status < 100 || status > 599 {
			t.Fatalf("status %d accepted", status)
		}
		body, _ := readBody(br, fr, make([]byte, 0, maxHTTPBody))
		if len(body) > maxHTTPBody {
			t.Fatalf("%d bytes of body kept", len(body))
		}
	})
}

// FuzzSMTPReply feeds anything to the SMTP reply parser.
func FuzzSMTPReply(f *testing.F) {
	for _, seed := range []string{"220 ok\r\n", "250-a\r\n250-b\r\n250 c\r\n", "220-a\r\n250 b\r\n", "2\r\n", "999 x\r\n"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		code, _, err := readSMTPReply(bufio.NewReaderSize(bytes.NewReader(data), maxLine))
		if err == nil && (code < 200 || code > 599) {
			t.Fatalf("code %d accepted", code)
		}
	})
}

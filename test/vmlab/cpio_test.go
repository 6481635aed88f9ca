package vmlab

import (
	"bytes"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type cpioRecord struct {
	Name string
	Mode uint32
	Data string
}

// readNewc parses a newc archive the way the kernel's initramfs unpacker
// does: 110-byte header, name, pad to 4, data, pad to 4.
func readNewc(t *testing.T, b []byte) []cpioRecord {
	t.Helper()
	var recs []cpioRecord
	off := 0
	hex := func(i int) int {
		v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
		if err != nil {
			t.Fatalf("bad header field %d at %d: %v", i, off, err)
		}
		return int(v)
	}
	pad := func(n int) int { return (n + 3) &^ 3 }
	for {
		if string(b[off:off+6]) != "070701" {
			t.Fatalf("bad magic at offset %d: %q", off, b[off:off+6])
		}
		mode, size, namesize := hex(1), hex(6), hex(11)
		name := string(b[off+110 : off+110+namesize-1])
		off = pad(off + 110 + namesize)
		data := string(b[off : off+size])
		off = pad(off + size)
		if name == "TRAILER!!!" {
			if off != len(b) {
				t.Errorf("%d bytes after trailer", len(b)-off)
			}
			return recs
		}
		recs = append(recs, cpioRecord{name, uint32(mode), data})
	}
}

func TestCPIORoundTrip(t *testing.T) {
	a := newCPIO()
	a.AddFile("/init", 0o755, []byte("#!/bin/sh\n"))
	a.AddFile("bin/busybox", 0o755, []byte("12345"))
	a.AddSymlink("bin/sh", "/bin/busybox")
	a.AddSymlink("lib64", "lib")
	a.AddFile("lib64/ld.so", 0o644, []byte("x")) // under a symlinked dir: no dir entry replaces the link
	a.AddDir("proc")
	a.AddFile("bin/busybox", 0o700, []byte("replaced"))
	var buf bytes.Buffer
	n, err := a.WriteTo(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if int(n) != buf.Len() || n%4 != 0 {
		t.Errorf("WriteTo returned %d for %d bytes; want equal and a multiple of 4", n, buf.Len())
	}
	want := []cpioRecord{
		{"bin", cpioDir | 0o755, ""},
		{"bin/busybox", cpioFile | 0o700, "replaced"},
		{"bin/sh", cpioLink | 0o777, "/bin/busybox"},
		{"init", cpioFile | 0o755, "#!/bin/sh\n"},
		{"lib64", cpioLink | 0o777, "lib"},
		{"lib64/ld.so", cpioFile | 0o644, "x"},
		{"proc", cpioDir | 0o755, ""},
	}
	if diff := cmp.Diff(want, readNewc(t, buf.Bytes())); diff != "" {
		t.Errorf("archive (-want +got):\n%s", diff)
	}
}

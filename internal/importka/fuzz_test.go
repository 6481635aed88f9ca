package importka

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzConvert: any input converts (with notes) without a panic, and the
// site it writes is valid whenever no note says it is unsafe.
func FuzzConvert(f *testing.F) {
	for _, p := range []string{"testdata/dr/lb1.conf", "testdata/nat/keepalived.conf", "testdata/odd/keepalived.conf", "testdata/differ/b.conf"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("vrrp_instance { } } { \"\n$A=$A\n$A\n@x\n~SEQ(a,1,2)\ninclude *\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "k.conf")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, _, err := Convert([]string{path}, Options{}); err != nil {
			t.Fatal(err)
		}
	})
}

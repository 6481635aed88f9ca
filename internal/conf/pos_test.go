package conf

import (
	"fmt"
	"strings"
	"testing"
)

// TestPositionsLookup: every key and element is found where it is
// written, in a table of a few keys (found by walking them), in one of
// many (found in the map), and in an array of many elements.
func TestPositionsLookup(t *testing.T) {
	for _, n := range []int{1, fewKeys, fewKeys + 1, 3 * fewKeys} {
		var b strings.Builder
		for k := range n {
			fmt.Fprintf(&b, "k%d = [%s1]\n", k, strings.Repeat("0, ", k))
		}
		b.WriteString("[t]\n")
		for k := range n {
			fmt.Fprintf(&b, "k%d = 1\n", k)
		}
		ix := indexPositions([]byte(b.String()))
		tbl := ix.key(0, "t")
		if tbl == noNode || ix.at(tbl) != (pos{n + 1, 1}) {
			t.Fatalf("%d keys: table t at node %d", n, tbl)
		}
		for k := range n {
			key := fmt.Sprintf("k%d", k)
			arr := ix.key(0, key)
			if arr == noNode || ix.at(arr) != (pos{k + 1, 1}) {
				t.Fatalf("%d keys: %s not at line %d", n, key, k+1)
			}
			for i := 0; i <= k; i++ {
				if e := ix.elem(arr, i); e == noNode || ix.at(e) != (pos{k + 1, len(key) + 5 + 3*i}) {
					t.Fatalf("%d keys: %s[%d] not at %d:%d", n, key, i, k+1, len(key)+5+3*i)
				}
			}
			if ix.elem(arr, k+1) != noNode {
				t.Fatalf("%d keys: %s[%d] found", n, key, k+1)
			}
			if c := ix.key(tbl, key); c == noNode || ix.at(c) != (pos{n + 2 + k, 1}) {
				t.Fatalf("%d keys: t.%s not at line %d", n, key, n+2+k)
			}
		}
		if ix.key(0, "nope") != noNode || ix.key(tbl, "t") != noNode {
			t.Fatalf("%d keys: a key never written found", n)
		}
	}
}

package conf

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// TestSyncGroupRankingMatchesPairs holds the sync group check, which looks
// only at the nodes a group changes, against the definition: for every
// pair of nodes, the same one is higher (priority, 255 for the address
// owner, then address) in each member and the one before it.
func TestSyncGroupRankingMatchesPairs(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 2000 {
		nodes := 2 + rng.IntN(5)
		groups := 2 + rng.IntN(3)
		own := make([]int, nodes)
		var b strings.Builder
		b.WriteString("[site]\nname = \"t\"\n")
		for i := range nodes {
			own[i] = []int{50, 100, 150}[rng.IntN(3)]
			fmt.Fprintf(&b, "[[node]]\nname = \"n%d\"\naddress = \"10.0.0.%d\"\npriority = %d\n", i, i+1, own[i])
		}
		prio := make([][]int, groups) // effective, by group and node
		owned := map[int]bool{}
		for g := range groups {
			prio[g] = slices.Clone(own)
			vip := fmt.Sprintf("10.0.1.%d/24", g+1)
			if n := rng.IntN(nodes * 2); n < nodes && !owned[n] { // sometimes the owner of a node's address
				owned[n] = true
				vip = fmt.Sprintf("10.0.0.%d/24", n+1)
				prio[g][n] = 255
			}
			var over []string
			for n := range nodes {
				if rng.IntN(3) == 0 {
					p := 1 + rng.IntN(200)
					over = append(over, fmt.Sprintf("n%d = %d", n, p))
					if prio[g][n] != 255 {
						prio[g][n] = p
					}
				}
			}
			fmt.Fprintf(&b, "[[vrrp]]\nname = \"g%d\"\ninterface = \"eth0\"\nvrid = %d\nvips = [%q]\nsync_group = \"s\"\npriorities = { %s }\n",
				g, g+1, vip, strings.Join(over, ", "))
		}
		higher := func(g, a, b int) bool { // a above b in group g
			return prio[g][a] > prio[g][b] || prio[g][a] == prio[g][b] && a > b // the higher address wins
		}
		var want []string
		for g := 1; g < groups; g++ {
		pairs:
			for a := range nodes {
				for b := range nodes {
					if a != b && higher(g-1, a, b) && higher(g, b, a) {
						want = append(want, fmt.Sprintf("g%d", g))
						break pairs
					}
				}
			}
		}
		var got []string
		for _, p := range problems("t.toml", b.String()) {
			if i := strings.Index(p, ": vrrp["); i >= 0 && strings.Contains(p, ".sync_group: sync group") {
				got = append(got, fmt.Sprintf("g%c", p[i+len(": vrrp[")]))
			}
		}
		if !slices.Equal(want, got) {
			t.Fatalf("round %d: misranked members %v, want %v\n%s", round, got, want, numbered(b.String()))
		}
	}
}

//go:build vmtest

package ipvsync

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/havip/havip/internal/conf"
	"github.com/moby/ipvs"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// BenchmarkVMIPVSScale programs a large IPVS table in the VM and prints,
// in one run: cold programming by the reconciler against `ipvsadm -R`
// restoring the same table (target ratio <= 0.25); one health change end
// to end (the new health, DesiredService, ReconcileUpdate, the kernel
// write done; target < 5 ms) and a rack of 100 at once (target < 1 s); a
// no-op repair pass against `ipvsadm -Ln` reading the same table (target
// ratio <= 0.2) with its netlink requests; how many passes repair a
// destination re-weighted behind havip's back (bound auditSlices); and
// the repair after `ipvsadm -C` (time, passes; target 1 pass). Run it with
//
//	go run ./test/vmlab/vmrun -pkg ./internal/ipvsync -run '^$' -bench VMIPVSScale -timeout 25m -- -test.benchtime=1x
//
// The default, 10000 services x 10 real servers, takes about 7-9 minutes
// of TCG VM time: `ipvsadm -R` 1.5-3.5 minutes, the repair after
// `ipvsadm -C` 3 minutes (every add scans the kernel's destination trash).
//
// Environment (vmrun -env KEY=VALUE): HAVIP_BENCH_SERVICES (10000),
// HAVIP_BENCH_DESTS (10), HAVIP_BENCH_REPS (cold runs of each tool, 1),
// HAVIP_BENCH_STEADY_REPS (no-op runs, 3; health changes, at least 10);
// HAVIP_BENCH_AFTER_FLUSH=1 also times ipvsadm -R refilling the table
// right after `ipvsadm -C` in the same namespace (the destination trash
// full); HAVIP_BENCH_CPUPROFILE, a comma-separated subset of
// cold,weight,noop, profiles the first reconcile of those phases (weight:
// the first health change) and prints each profile, base64, between
// "PPROF-BEGIN phase" and "PPROF-END" lines (decode them on the host).
//
// Everything runs in a fresh network namespace, so the VM's own table is
// never touched. Timings are printed, not asserted, as timings under TCG
// are noisy; the write counts are asserted: exactly 1 for one health
// change, 0 for a no-op, and the re-weight repaired within the bound.
func BenchmarkVMIPVSScale(b *testing.B) {
	nSvc := benchEnvInt(b, "HAVIP_BENCH_SERVICES", 10000)
	nDst := benchEnvInt(b, "HAVIP_BENCH_DESTS", 10)
	reps := benchEnvInt(b, "HAVIP_BENCH_REPS", 1)
	steady := benchEnvInt(b, "HAVIP_BENCH_STEADY_REPS", 3)
	afterFlush := os.Getenv("HAVIP_BENCH_AFTER_FLUSH") == "1"
	profile := strings.Split(os.Getenv("HAVIP_BENCH_CPUPROFILE"), ",")
	if _, err := exec.LookPath("ipvsadm"); err != nil {
		b.Fatalf("ipvsadm not in the VM: %v", err)
	}
	for range b.N {
		benchScale(b, nSvc, nDst, reps, steady, afterFlush, profile)
	}
}

func benchEnvInt(b *testing.B, key string, def int) int {
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive integer", key, v)
	}
	return n
}

// benchNetns locks the benchmark's goroutine to its thread for the rest of
// the benchmark and returns a function that moves the thread into a fresh
// network namespace (its own, empty IPVS table and destination trash) with
// lo up and an extra address on it (the kernel refuses IPv4 destinations in
// a namespace without addresses). Commands the benchmark starts inherit the
// namespace, since Go forks from the calling thread. The function returns
// leave, which flushes the namespace's table, closes kernel handles opened
// in it (they pin it) and moves the thread back.
func benchNetns(b *testing.B) (enter func() (k *countingKernel, leave func())) {
	b.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		b.Fatalf("current netns: %v", err)
	}
	b.Cleanup(func() {
		if err := netns.Set(orig); err != nil {
			b.Errorf("restore netns: %v", err)
		}
		orig.Close()
		runtime.UnlockOSThread()
	})
	return func() (*countingKernel, func()) {
		b.Helper()
		ns, err := netns.New()
		if err != nil {
			b.Fatalf("new netns: %v", err)
		}
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			b.Fatalf("lo: %v", err)
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			b.Fatalf("lo up: %v", err)
		}
		a, _ := netlink.ParseAddr("192.0.2.1/32")
		if err := netlink.AddrAdd(lo, a); err != nil {
			b.Fatalf("address on lo: %v", err)
		}
		nk, err := OpenKernel()
		if err != nil {
			b.Fatalf("OpenKernel: %v", err)
		}
		return &countingKernel{Kernel: nk}, func() {
			ipvsadm(b, nil, "-C")
			nk.Close()
			if err := netns.Set(orig); err != nil {
				b.Fatalf("restore netns: %v", err)
			}
			ns.Close()
			// Let the kernel tear the namespace down before the next
			// timed run.
			time.Sleep(2 * time.Second)
		}
	}
}

// benchSite declares nSvc TCP services 10.100.x.y:80 (wlc, DR), each with
// nDst real servers 172.(16+j).x.y:80 of weight 1; all addresses distinct.
func benchSite(nSvc, nDst int) []conf.VirtualServer {
	vss := make([]conf.VirtualServer, nSvc)
	for i := range vss {
		hi, lo := byte(i/250), byte(i%250+1)
		// Complete, as conf would give it: too many real servers for a
		// site file of 1 MiB to write out.
		vs := conf.VirtualServer{
			Name:               "s" + strconv.Itoa(i),
			Address:            netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 100, hi, lo}), 80),
			Family:             "inet",
			Protocol:           "tcp",
			Scheduler:          "wlc",
			Forward:            "dr",
			PersistenceNetmask: netip.MustParsePrefix("0.0.0.0/32"),
			Quorum:             1,
			OnFailure:          "remove",
		}
		for j := range nDst {
			vs.RealServers = append(vs.RealServers, conf.RealServer{
				Address: netip.AddrPortFrom(netip.AddrFrom4([4]byte{172, byte(16 + j), hi, lo}), 80),
				Weight:  1,
			})
		}
		vss[i] = vs
	}
	return vss
}

// ipvsadmRules is t as `ipvsadm -R` input. It handles what benchSite
// produces: TCP services without persistence or scheduler flags.
func ipvsadmRules(t Table) []byte {
	var buf bytes.Buffer
	fwd := map[string]string{"dr": "-g", "tun": "-i", "nat": "-m"}
	for _, s := range t.Services {
		vip := s.Key.Address.String()
		fmt.Fprintf(&buf, "-A -t %s -s %s\n", vip, s.Scheduler)
		for _, d := range s.Dests {
			fmt.Fprintf(&buf, "-a -t %s -r %s %s -w %d\n", vip, d.Address, fwd[d.Forward], d.Weight)
		}
	}
	return buf.Bytes()
}

// countingKernel counts the calls it passes to the Kernel it wraps; every
// write method is one netlink request.
type countingKernel struct {
	Kernel
	writes, svcDumps, destDumps int
	// readTime and writeTime add up the time spent in reads and writes
	// (writes is the number of writes, each one netlink request, sent in
	// batches);
	// svcTime is the part of readTime spent listing services.
	readTime, writeTime, svcTime time.Duration
}

func (c *countingKernel) reset() {
	c.writes, c.svcDumps, c.destDumps = 0, 0, 0
	c.readTime, c.writeTime, c.svcTime = 0, 0, 0
}

func (c *countingKernel) read(f func()) {
	t0 := time.Now()
	f()
	c.readTime += time.Since(t0)
}

// split says where the time of a reconcile that took d went.
func (c *countingKernel) split(d time.Duration) string {
	return fmt.Sprintf("dump %v (service lists %v), writes %v, rest %v", c.readTime.Round(time.Millisecond), c.svcTime.Round(time.Millisecond),
		c.writeTime.Round(time.Millisecond), (d - c.readTime - c.writeTime).Round(time.Millisecond))
}

func (c *countingKernel) Services() (out []*ipvs.Service, err error) {
	c.svcDumps++
	before := c.readTime
	c.read(func() { out, err = c.Kernel.Services() })
	c.svcTime += c.readTime - before
	return out, err
}
func (c *countingKernel) Service(s *ipvs.Service) (out *ipvs.Service, err error) {
	c.svcDumps++
	before := c.readTime
	c.read(func() { out, err = c.Kernel.Service(s) })
	c.svcTime += c.readTime - before
	return out, err
}

func (c *countingKernel) Destinations(s *ipvs.Service) (out []*ipvs.Destination, err error) {
	c.destDumps++
	c.read(func() { out, err = c.Kernel.Destinations(s) })
	return out, err
}
func (c *countingKernel) Write(ws []Write) (errs []error) {
	c.writes += len(ws)
	t0 := time.Now()
	errs = c.Kernel.Write(ws)
	c.writeTime += time.Since(t0)
	return errs
}

// ipvsCounts counts the services and destinations in this namespace's
// /proc/net/ip_vs.
func ipvsCounts(b *testing.B) (svcs, dests int) {
	b.Helper()
	f, err := os.Open("/proc/thread-self/net/ip_vs")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		switch l := sc.Text(); {
		case strings.HasPrefix(l, "TCP ") || strings.HasPrefix(l, "UDP ") || strings.HasPrefix(l, "FWM "):
			svcs++
		case strings.HasPrefix(l, "  -> ") && !strings.HasPrefix(l, "  -> RemoteAddress"):
			dests++
		}
	}
	if err := sc.Err(); err != nil {
		b.Fatal(err)
	}
	return svcs, dests
}

// ipvsadm runs ipvsadm in the benchmark's namespace and returns how long
// it took.
func ipvsadm(b *testing.B, stdin []byte, args ...string) time.Duration {
	b.Helper()
	cmd := exec.Command("ipvsadm", args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if slices.Contains(args, "-L") {
		cmd.Stdout = nil // discard the listing
	}
	t0 := time.Now()
	err := cmd.Run()
	d := time.Since(t0)
	if err != nil {
		b.Fatalf("ipvsadm %s: %v\n%s", strings.Join(args, " "), err, out.Bytes())
	}
	return d
}

// startProfile starts a CPU profile if on; the returned func stops it and
// prints it base64-encoded between "PPROF-BEGIN name" and "PPROF-END"
// lines, for the host to decode from the console log.
func startProfile(b *testing.B, on bool, name string) (stop func()) {
	if !on {
		return func() {}
	}
	var buf bytes.Buffer
	if err := pprof.StartCPUProfile(&buf); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		enc := base64.StdEncoding.EncodeToString(buf.Bytes())
		fmt.Printf("PPROF-BEGIN %s\n", name)
		for len(enc) > 0 {
			n := min(len(enc), 76)
			fmt.Println(enc[:n])
			enc = enc[n:]
		}
		fmt.Println("PPROF-END")
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func fmtDurs(ds []time.Duration) string {
	var f []string
	for _, d := range ds {
		f = append(f, d.Round(time.Millisecond).String())
	}
	return strings.Join(f, " ")
}

func benchScale(b *testing.B, nSvc, nDst, reps, steady int, afterFlush bool, profile []string) {
	b.StopTimer()
	enter := benchNetns(b)
	tab := Desired(benchSite(nSvc, nDst), nil)
	rules := ipvsadmRules(tab)
	total := nSvc * (1 + nDst)
	fmt.Printf("\nIPVS scale benchmark: %d services x %d real servers (%d objects), %d cold reps, %d steady reps, GOMAXPROCS %d\n",
		nSvc, nDst, total, reps, steady, runtime.GOMAXPROCS(0))

	checkTable := func(what string) {
		b.Helper()
		if s, d := ipvsCounts(b); s != nSvc || d != nSvc*nDst {
			b.Fatalf("%s: kernel holds %d services, %d destinations; want %d, %d", what, s, d, nSvc, nSvc*nDst)
		}
	}
	// coldReconcile times a fresh reconciler writing the whole table into
	// the current namespace's empty IPVS table.
	coldReconcile := func(k *countingKernel, what string, prof bool) time.Duration {
		b.Helper()
		if s, _ := ipvsCounts(b); s != 0 {
			b.Fatalf("%s: table not empty (%d services)", what, s)
		}
		r, err := NewReconciler(k, "", nil)
		if err != nil {
			b.Fatal(err)
		}
		k.reset()
		runtime.GC()
		stop := startProfile(b, prof, "cold")
		b.StartTimer()
		t0 := time.Now()
		ch, err := r.Reconcile(tab)
		d := time.Since(t0)
		b.StopTimer()
		stop()
		if err != nil {
			b.Fatalf("%s: %v", what, err)
		}
		if len(ch) != total || k.writes != total {
			b.Fatalf("%s: %d changes, %d writes; want %d", what, len(ch), k.writes, total)
		}
		checkTable(what)
		fmt.Printf("  %s: %v (%d writes, %d service dumps, %d destination dumps; %s)\n",
			what, d.Round(time.Millisecond), k.writes, k.svcDumps, k.destDumps, k.split(d))
		return d
	}
	restore := func(what string) time.Duration {
		b.Helper()
		if s, _ := ipvsCounts(b); s != 0 {
			b.Fatalf("%s: table not empty (%d services)", what, s)
		}
		d := ipvsadm(b, rules, "-R")
		checkTable(what)
		fmt.Printf("  %s: %v\n", what, d.Round(time.Millisecond))
		return d
	}

	// 1. Cold programming: the reconciler and ipvsadm -R, each into a
	// fresh namespace. Not one namespace flushed between runs: `ipvsadm -C`
	// leaves every destination in the kernel's destination trash for
	// 120 s, and each add scans that list, so a run after a flush pays
	// for the previous run's table (measured separately below).
	var cold, restored []time.Duration
	var k *countingKernel
	var leave func()
	for rep := range reps {
		recRun := func() {
			k, leave := enter()
			cold = append(cold, coldReconcile(k, fmt.Sprintf("rep %d: Reconcile, fresh netns", rep+1),
				rep == 0 && slices.Contains(profile, "cold")))
			leave()
		}
		resRun := func() {
			kk, ll := enter()
			restored = append(restored, restore(fmt.Sprintf("rep %d: ipvsadm -R, fresh netns", rep+1)))
			if rep == reps-1 && rep%2 == 0 { // the last run: keep it
				k, leave = kk, ll
			} else {
				ll()
			}
		}
		// Alternate the order, so neither always runs first.
		if rep%2 == 0 {
			recRun()
			resRun()
		} else {
			resRun()
			recRun()
		}
	}

	// The rest runs in one namespace holding the table ipvsadm -R wrote.
	if k == nil {
		k, leave = enter()
		restore("ipvsadm -R for the steady-state runs")
	}
	defer leave()
	r, err := NewReconciler(k, "", nil)
	if err != nil {
		b.Fatal(err)
	}
	// It is the table the reconciler writes: a reconciler has nothing to
	// do over it (this also makes the reconciler own its services).
	if ch, err := r.ReconcileUpdate(Update{Table: &tab}); err != nil || len(ch) != 0 {
		b.Fatalf("reconcile over the ipvsadm -R table: %d changes (want 0), err %v; first: %v", len(ch), err, ch[:min(3, len(ch))])
	}

	// 2. Health changes on the full table, as the daemon applies them:
	// the health result flips, the services of the real servers it
	// names are recomputed (DesiredService) and handed to
	// ReconcileUpdate, which replaces them in its table. One real
	// server, then a rack: one real server in each of 100 services.
	vss := benchSite(nSvc, nDst)
	health := benchHealth{}
	healthChange := func(what string, idx []int, down bool, prof bool) (time.Duration, int, int) {
		b.Helper()
		k.reset()
		runtime.GC()
		stop := startProfile(b, prof, what)
		b.StartTimer()
		t0 := time.Now()
		set := make([]Service, len(idx))
		for n, i := range idx {
			health[vss[i].RealServers[nDst/2].Address] = !down
			set[n] = DesiredService(vss[i], health)
		}
		ch, err := r.ReconcileUpdate(Update{Set: set})
		d := time.Since(t0)
		b.StopTimer()
		stop()
		if err != nil {
			b.Fatalf("%s: %v", what, err)
		}
		if len(ch) != len(idx) {
			b.Errorf("%s: %d changes, want %d: %v", what, len(ch), len(idx), ch[:min(3, len(ch))])
		}
		fmt.Printf("  %s: %v (%d writes, %d reads; %s)\n", what, d.Round(time.Microsecond), k.writes, k.svcDumps+k.destDumps, k.split(d))
		return d, k.writes, k.svcDumps + k.destDumps
	}
	var one, rack []time.Duration
	var oneWrites, oneReads []int
	rackIdx := make([]int, 0, 100)
	for i := range min(100, nSvc) {
		rackIdx = append(rackIdx, i*nSvc/min(100, nSvc))
	}
	for rep := range max(10, 2*((steady+1)/2)) { // each is milliseconds: enough for a median
		d, w, rd := healthChange(fmt.Sprintf("one health change rep %d", rep+1), []int{nSvc / 2}, rep%2 == 0,
			rep == 0 && slices.Contains(profile, "weight"))
		one, oneWrites, oneReads = append(one, d), append(oneWrites, w), append(oneReads, rd)
	}
	for rep := range 2 {
		d, _, _ := healthChange(fmt.Sprintf("rack of %d health changes rep %d", len(rackIdx), rep+1), rackIdx, rep%2 == 0, false)
		rack = append(rack, d)
	}
	checkTable("after health changes")

	// 3. No-op full reconciles (the periodic repair) on the full table,
	// and `ipvsadm -Ln` reading the same table for comparison. The repair
	// reads every service and the destinations of one slice of them, so
	// the passes cost alike; the first pass after the health changes also
	// audits nothing more (the table was applied).
	var noop, list []time.Duration
	var noopWrites, noopDumps []int
	for rep := range max(steady, 3) {
		k.reset()
		runtime.GC()
		stop := startProfile(b, rep == 0 && slices.Contains(profile, "noop"), "noop")
		b.StartTimer()
		t0 := time.Now()
		ch, err := r.Reconcile(r.want)
		d := time.Since(t0)
		b.StopTimer()
		stop()
		if err != nil || len(ch) != 0 {
			b.Fatalf("no-op reconcile: %d changes, err %v", len(ch), err)
		}
		noop = append(noop, d)
		noopWrites = append(noopWrites, k.writes)
		noopDumps = append(noopDumps, k.svcDumps+k.destDumps)
		fmt.Printf("  no-op rep %d: %v (%d writes, %d requests; %s)\n", rep+1, d.Round(time.Millisecond), k.writes, k.svcDumps+k.destDumps, k.split(d))
	}
	for range 3 {
		list = append(list, ipvsadm(b, nil, "-L", "-n"))
	}

	// 4. A destination re-weighted behind havip's back is repaired
	// within auditSlices passes.
	mid := nSvc / 2
	behind := r.want.Services[mid].toKernel()
	odd := r.want.Services[mid].Dests[0]
	odd.Weight += 5
	if errs := k.Kernel.Write([]Write{{OpUpdateDest, behind, odd.toKernel()}}); errs[0] != nil {
		b.Fatalf("re-weight behind havip's back: %v", errs[0])
	}
	reweightPasses := 0
	for reweightPasses < 2*auditSlices {
		reweightPasses++
		ch, err := r.Reconcile(r.want)
		if err != nil {
			b.Fatalf("repair of a re-weight: %v", err)
		}
		if len(ch) > 0 {
			break
		}
	}
	fmt.Printf("  re-weight behind havip's back: repaired by pass %d\n", reweightPasses)

	// 5. Repair after `ipvsadm -C` of the full table, in the same
	// namespace (every destination is in the kernel's trash now, which
	// each add scans): passes until the table is whole, and the time of
	// the first. Optionally ipvsadm -R refilling it too.
	ipvsadm(b, nil, "-C")
	k.reset()
	t0 := time.Now()
	ch, err := r.Reconcile(r.want)
	flushRec := time.Since(t0)
	if err != nil {
		b.Fatalf("repair after ipvsadm -C: %v", err)
	}
	flushPasses := 1
	fmt.Printf("  repair after ipvsadm -C: %v, %d writes (%s)\n", flushRec.Round(time.Millisecond), len(ch), k.split(flushRec))
	checkTable("after repairing ipvsadm -C")
	if ch, err := r.Reconcile(r.want); err != nil || len(ch) != 0 {
		flushPasses++
		b.Errorf("the pass after the repair wrote %d changes, err %v", len(ch), err)
	}
	var flushRes time.Duration
	if afterFlush {
		ipvsadm(b, nil, "-C")
		flushRes = restore("ipvsadm -R after ipvsadm -C (trash full)")
	}

	mc, mr := median(cold), median(restored)
	ratio := float64(mc) / float64(mr)
	mo, mk, mn, ml := median(one), median(rack), median(noop), median(list)
	noopRatio := float64(mn) / float64(ml)
	maxW, maxN := slices.Max(oneWrites), slices.Max(noopWrites)

	row := func(name string, d time.Duration, all []time.Duration) {
		fmt.Printf("%-52s %12v  %s\n", name, d.Round(time.Microsecond), fmtDurs(all))
	}
	fmt.Printf("\n%-52s %12s  %s\n", fmt.Sprintf("%d x %d, medians", nSvc, nDst), "median", "all runs")
	row("cold: Reconcile (NetlinkKernel), fresh netns", mc, cold)
	row("cold: ipvsadm -R (same table), fresh netns", mr, restored)
	fmt.Printf("%-52s %12.2f  (target <= 0.25)\n", "cold: ratio havip/ipvsadm -R", ratio)
	fmt.Printf("%-52s %12.1f\n", "cold: µs per object (Reconcile)", float64(mc.Microseconds())/float64(total))
	fmt.Printf("%-52s %12.1f\n", "cold: µs per object (ipvsadm -R)", float64(mr.Microseconds())/float64(total))
	row("one health change, end to end", mo, one)
	fmt.Printf("%-52s %12s  (target < 5ms)\n", "", "")
	fmt.Printf("%-52s %12d  %v (target 1)\n", "one health change: writes", maxW, oneWrites)
	fmt.Printf("%-52s %12d  %v\n", "one health change: reads", slices.Max(oneReads), oneReads)
	row(fmt.Sprintf("rack: %d health changes at once", len(rackIdx)), mk, rack)
	fmt.Printf("%-52s %12s  (target < 1s)\n", "", "")
	row("no-op repair pass (full Reconcile)", mn, noop)
	row("read: ipvsadm -Ln of the full table", ml, list)
	fmt.Printf("%-52s %12.2f  (target <= 0.2)\n", "no-op repair: ratio havip/ipvsadm -Ln", noopRatio)
	fmt.Printf("%-52s %12d  %v (target 0)\n", "no-op repair: writes", maxN, noopWrites)
	fmt.Printf("%-52s %12d  %v (ipvsadm -Ln: %d)\n", "no-op repair: netlink requests per pass", slices.Max(noopDumps), noopDumps, nSvc+1)
	fmt.Printf("%-52s %12d  (bound %d)\n", "re-weight behind havip's back: repaired by pass", reweightPasses, auditSlices)
	row("after ipvsadm -C: first repair pass", flushRec, nil)
	fmt.Printf("%-52s %12d  (target 1)\n", "after ipvsadm -C: passes to a whole table", flushPasses)
	if afterFlush {
		row("after ipvsadm -C: ipvsadm -R", flushRes, nil)
	}
	fmt.Println()

	b.ReportMetric(mc.Seconds(), "cold-reconcile-s")
	b.ReportMetric(mr.Seconds(), "cold-ipvsadm-R-s")
	b.ReportMetric(ratio, "cold-ratio")
	b.ReportMetric(float64(mo.Microseconds())/1000, "health-ms")
	b.ReportMetric(float64(mk.Microseconds())/1000, "rack-ms")
	b.ReportMetric(float64(mn.Microseconds())/1000, "noop-ms")
	b.ReportMetric(noopRatio, "noop-ratio")
	b.ReportMetric(float64(slices.Max(noopDumps)), "noop-requests")
	b.ReportMetric(flushRec.Seconds(), "repair-after-flush-s")

	if maxW != 1 {
		b.Errorf("one health change made %d writes (%v), want 1", maxW, oneWrites)
	}
	if maxN != 0 {
		b.Errorf("no-op reconcile made %d writes, want 0", maxN)
	}
	if reweightPasses > auditSlices {
		b.Errorf("a re-weight behind havip's back took %d passes to repair, bound %d", reweightPasses, auditSlices)
	}
}

// benchHealth is the health of the benchmark's real servers: up unless
// set.
type benchHealth map[netip.AddrPort]bool

func (h benchHealth) Up(_ string, rs netip.AddrPort) bool {
	up, ok := h[rs]
	return !ok || up
}

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

// BenchmarkVMIPVSScale programs a large IPVS table in the VM and compares
// the reconciler with `ipvsadm -R` restoring the same table, then times one
// weight change and a no-op reconcile on the full table. Run it with
//
//	go run ./test/vmlab/vmrun -pkg ./internal/ipvsync -run '^$' -bench VMIPVSScale -timeout 20m -- -test.benchtime=1x
//
// The default, 10000 services x 10 real servers, one cold run of each tool
// and 3 no-op and 4 weight-change runs, takes about 4 minutes of TCG VM
// time (each further cold repetition about 1m50s, most of it ipvsadm -R).
//
// Environment (vmrun -env KEY=VALUE): HAVIP_BENCH_SERVICES (10000),
// HAVIP_BENCH_DESTS (10), HAVIP_BENCH_REPS (cold runs of each tool, 1),
// HAVIP_BENCH_STEADY_REPS (no-op runs, 3; weight-change runs, the next even
// number); HAVIP_BENCH_AFTER_FLUSH=1 also times both tools refilling the
// table right after `ipvsadm -C` in the same namespace (the destination
// trash full; several minutes at the default size); HAVIP_BENCH_CPUPROFILE, a
// comma-separated subset of cold,weight,noop, profiles the first reconcile
// of those phases and prints each profile, base64, between "PPROF-BEGIN
// phase" and "PPROF-END" lines (decode them on the host).
//
// Everything runs in a fresh network namespace, so the VM's own table is
// never touched. The ratio reconcile/ipvsadm -R is printed (target <= 1.0),
// not asserted, as timings under TCG are noisy; the write counts are
// asserted: exactly 1 for one weight change, 0 for a no-op.
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
		nk, err := OpenKernel("")
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
	// readTime and writeTime add up the time spent in reads and writes;
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

func (c *countingKernel) write(f func() error) error {
	c.writes++
	t0 := time.Now()
	err := f()
	c.writeTime += time.Since(t0)
	return err
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
func (c *countingKernel) NewService(s *ipvs.Service) error {
	return c.write(func() error { return c.Kernel.NewService(s) })
}
func (c *countingKernel) UpdateService(s *ipvs.Service) error {
	return c.write(func() error { return c.Kernel.UpdateService(s) })
}
func (c *countingKernel) DelService(s *ipvs.Service) error {
	return c.write(func() error { return c.Kernel.DelService(s) })
}
func (c *countingKernel) NewDestination(s *ipvs.Service, d *ipvs.Destination) error {
	return c.write(func() error { return c.Kernel.NewDestination(s, d) })
}
func (c *countingKernel) UpdateDestination(s *ipvs.Service, d *ipvs.Destination) error {
	return c.write(func() error { return c.Kernel.UpdateDestination(s, d) })
}
func (c *countingKernel) DelDestination(s *ipvs.Service, d *ipvs.Destination) error {
	return c.write(func() error { return c.Kernel.DelDestination(s, d) })
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
	if ch, err := r.Reconcile(tab); err != nil || len(ch) != 0 {
		b.Fatalf("reconcile over the ipvsadm -R table: %d changes (want 0), err %v; first: %v", len(ch), err, ch[:min(3, len(ch))])
	}

	// 2. One weight changes on the full table; then back.
	changed := Table{Services: slices.Clone(tab.Services)}
	mid := nSvc / 2
	changed.Services[mid].Dests = slices.Clone(changed.Services[mid].Dests)
	changed.Services[mid].Dests[nDst/2].Weight = 2
	var weight []time.Duration
	var weightWrites, weightReads []int
	for rep := range 2 * ((steady + 1) / 2) {
		want := changed
		if rep%2 == 1 {
			want = tab
		}
		k.reset()
		runtime.GC()
		stop := startProfile(b, rep == 0 && slices.Contains(profile, "weight"), "weight")
		b.StartTimer()
		t0 := time.Now()
		// The daemon's path for a new table: only changed services.
		ch, err := r.ReconcileChanges(want)
		d := time.Since(t0)
		b.StopTimer()
		stop()
		fmt.Printf("  weight rep %d: %v (%d writes, %d reads; %s)\n", rep+1, d.Round(time.Millisecond), k.writes, k.svcDumps+k.destDumps, k.split(d))
		weightReads = append(weightReads, k.svcDumps+k.destDumps)
		if err != nil {
			b.Fatalf("weight change: %v", err)
		}
		if len(ch) != 1 || ch[0].Op != OpUpdateDest {
			b.Errorf("weight change: changes %v, want one update-dest", ch)
		}
		weight = append(weight, d)
		weightWrites = append(weightWrites, k.writes)
	}
	checkTable("after weight changes")

	// 3. No-op reconcile on the full table, and `ipvsadm -Ln` reading the
	// same table for comparison.
	var noop, list []time.Duration
	var noopWrites, noopDumps []int
	for rep := range steady {
		k.reset()
		runtime.GC()
		stop := startProfile(b, rep == 0 && slices.Contains(profile, "noop"), "noop")
		b.StartTimer()
		t0 := time.Now()
		ch, err := r.Reconcile(tab)
		d := time.Since(t0)
		b.StopTimer()
		stop()
		if err != nil || len(ch) != 0 {
			b.Fatalf("no-op reconcile: %d changes, err %v", len(ch), err)
		}
		noop = append(noop, d)
		noopWrites = append(noopWrites, k.writes)
		noopDumps = append(noopDumps, k.svcDumps+k.destDumps)
		fmt.Printf("  no-op rep %d: %v (%d writes; %s)\n", rep+1, d.Round(time.Millisecond), k.writes, k.split(d))
	}
	list = append(list, ipvsadm(b, nil, "-L", "-n"))

	// 4. Repair after `ipvsadm -C` of the full table, in the same
	// namespace: every destination is in the trash now.
	var flushRec, flushRes time.Duration
	if afterFlush {
		ipvsadm(b, nil, "-C")
		flushRec = coldReconcile(k, "Reconcile after ipvsadm -C (trash full)", false)
		ipvsadm(b, nil, "-C")
		flushRes = restore("ipvsadm -R after ipvsadm -C (trash full)")
	}

	mc, mr := median(cold), median(restored)
	ratio := float64(mc) / float64(mr)
	mw, mn, ml := median(weight), median(noop), median(list)
	maxW, maxN := slices.Max(weightWrites), slices.Max(noopWrites)

	row := func(name string, d time.Duration, all []time.Duration) {
		fmt.Printf("%-48s %12v  %s\n", name, d.Round(time.Millisecond), fmtDurs(all))
	}
	fmt.Printf("\n%-48s %12s  %s\n", fmt.Sprintf("%d x %d, medians", nSvc, nDst), "median", "all runs")
	row("cold: Reconcile (NetlinkKernel), fresh netns", mc, cold)
	row("cold: ipvsadm -R (same table), fresh netns", mr, restored)
	fmt.Printf("%-48s %12.2f  (target <= 1.0)\n", "cold: ratio havip/ipvsadm", ratio)
	fmt.Printf("%-48s %12.1f\n", "cold: µs per object (Reconcile)", float64(mc.Microseconds())/float64(total))
	fmt.Printf("%-48s %12.1f\n", "cold: µs per object (ipvsadm -R)", float64(mr.Microseconds())/float64(total))
	row("one weight change: ReconcileChanges", mw, weight)
	fmt.Printf("%-48s %12d  %v (target 1)\n", "one weight change: writes", maxW, weightWrites)
	fmt.Printf("%-48s %12d  %v\n", "one weight change: reads", slices.Max(weightReads), weightReads)
	row("no-op: full Reconcile (the 2s resync)", mn, noop)
	fmt.Printf("%-48s %12d  %v (target 0)\n", "no-op: writes", maxN, noopWrites)
	fmt.Printf("%-48s %12d\n", "no-op: netlink dump requests", noopDumps[0])
	row("read: ipvsadm -Ln of the full table", ml, list)
	if afterFlush {
		row("after ipvsadm -C: Reconcile (repair)", flushRec, nil)
		row("after ipvsadm -C: ipvsadm -R", flushRes, nil)
	}
	fmt.Println()

	b.ReportMetric(mc.Seconds(), "cold-reconcile-s")
	b.ReportMetric(mr.Seconds(), "cold-ipvsadm-R-s")
	b.ReportMetric(ratio, "cold-ratio")
	b.ReportMetric(float64(mw.Microseconds())/1000, "weight-ms")
	b.ReportMetric(float64(maxW), "weight-writes")
	b.ReportMetric(float64(mn.Microseconds())/1000, "noop-ms")
	b.ReportMetric(float64(maxN), "noop-writes")
	if afterFlush {
		b.ReportMetric(flushRec.Seconds(), "repair-after-flush-s")
	}

	if maxW != 1 {
		b.Errorf("one weight change made %d writes (%v), want 1", maxW, weightWrites)
	}
	if maxN != 0 {
		b.Errorf("no-op reconcile made %d writes, want 0", maxN)
	}
}

//go:build vmtest

package ipvsync

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/havip/havip/internal/conf"
	"github.com/moby/ipvs"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// BenchmarkVMSyncCost prints what connection sync costs the master with
// the kernel's defaults and with havip's: sync packets per second and the
// CPU of the whole VM and of the kernel's master sync thread, idle and at
// 100, 1,000 and 10,000 new connections per second (or the rate the
// emulated VM reaches, printed: a few hundred). Figures only: timings under TCG are not asserted.
//
//	go run ./test/vmlab/vmrun -pkg ./internal/ipvsync -run '^$' -bench VMSyncCost -timeout 10m -- -test.benchtime=1x
//
// It runs in the VM's own network namespace (the load generator's
// goroutines must share it) and removes what it made. The connections are
// local clients of a virtual service whose real server is this host: the
// same kernel path as a remote client's (IPVS syncs a connection when it
// reaches ESTABLISHED), without a second machine to emulate.
// HAVIP_BENCH_SYNC_SECONDS (5) is each measurement's length.
func BenchmarkVMSyncCost(b *testing.B) {
	secs := benchEnvInt(b, "HAVIP_BENCH_SYNC_SECONDS", 5)
	for range b.N {
		benchSyncCost(b, time.Duration(secs)*time.Second)
	}
}

var (
	benchVIP     = netip.MustParseAddr("10.98.0.1")
	benchSyncDev = "hvbs0"
)

func benchSyncCost(b *testing.B, window time.Duration) {
	// The sync interface: a veth with an address (the master binds to it).
	la := netlink.NewLinkAttrs()
	la.Name = benchSyncDev
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: benchSyncDev + "p"}); err != nil {
		b.Fatalf("add veth: %v", err)
	}
	defer func() {
		if l, err := netlink.LinkByName(benchSyncDev); err == nil {
			netlink.LinkDel(l)
		}
	}()
	for _, n := range []string{"lo", benchSyncDev, benchSyncDev + "p"} {
		l, err := netlink.LinkByName(n)
		if err != nil {
			b.Fatal(err)
		}
		if n == benchSyncDev {
			a, _ := netlink.ParseAddr("10.97.0.1/24")
			if err := netlink.AddrAdd(l, a); err != nil {
				b.Fatal(err)
			}
		}
		if err := netlink.LinkSetUp(l); err != nil {
			b.Fatal(err)
		}
	}
	// The virtual service, its real server this host.
	lo, _ := netlink.LinkByName("lo")
	vip := &netlink.Addr{IPNet: &net.IPNet{IP: benchVIP.AsSlice(), Mask: net.CIDRMask(32, 32)}}
	if err := netlink.AddrAdd(lo, vip); err != nil {
		b.Fatal(err)
	}
	defer netlink.AddrDel(lo, vip)
	h, err := ipvs.New("")
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	svc := &ipvs.Service{Address: benchVIP.AsSlice(), Protocol: unix.IPPROTO_TCP, Port: 80,
		AddressFamily: unix.AF_INET, SchedName: "rr", Netmask: 0xffffffff}
	if err := h.NewService(svc); err != nil {
		b.Fatal(err)
	}
	defer h.DelService(svc)
	if err := h.NewDestination(svc, &ipvs.Destination{Address: benchVIP.AsSlice(), Port: 80, Weight: 1,
		ConnectionFlags: ipvs.ConnectionFlagDirectRoute, AddressFamily: unix.AF_INET}); err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp4", netip.AddrPortFrom(benchVIP, 80).String())
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()

	// The kernel's defaults (havip's before) and havip's, from conf.
	base := conf.Sync{Interface: benchSyncDev, SyncID: 77, Group: netip.MustParseAddr(conf.DefaultSyncGroup), Port: conf.DefaultSyncPort, TTL: 1}
	old := base
	old.MaxLen, old.Version, old.Threshold, old.Period, old.RefreshPeriod, old.Retries, old.Flush = 0, 1, 3, 50, 0, 0, 0
	cur := base
	cur.MaxLen, cur.Version, cur.Threshold, cur.Period, cur.RefreshPeriod, cur.Flush = conf.DefaultSyncMaxLen, conf.DefaultSyncVersion,
		conf.DefaultSyncThreshold, conf.DefaultSyncPeriod, conf.DefaultSyncRefreshPeriod, conf.DefaultSyncFlush
	one := cur
	one.MaxLen = 1 // one entry a message
	settings := []struct {
		name string
		cfg  conf.Sync
	}{
		{"kernel defaults (maxlen MTU, sync_threshold 3 50, no refresh, no flush)", old},
		{fmt.Sprintf("havip defaults (maxlen %d, sync_threshold %d %d, refresh %s, flush %s)", cur.MaxLen, cur.Threshold, cur.Period, cur.RefreshPeriod, cur.Flush), cur},
		{"havip defaults with maxlen 1", one},
	}
	type row struct {
		want, got          float64
		pps, vmCPU, thrCPU float64
	}
	results := map[string][]row{}
	for _, st := range settings {
		s, err := OpenSyncDaemons(st.cfg)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Follow(true); err != nil {
			b.Fatalf("%s: %v", st.name, err)
		}
		time.Sleep(500 * time.Millisecond) // the threads start, the flush service settles
		for _, rate := range []int{0, 100, 1000, 10000} {
			r := measureSync(b, rate, window)
			results[st.name] = append(results[st.name], r)
		}
		if err := s.Follow(false); err != nil { // stops the master and the flusher, removes the flush service
			b.Error(err)
		}
		s.Stop(RoleBackup)
		s.Close()
	}
	fmt.Printf("connection sync cost on the master (VM, TCG, 1 vCPU; %s per figure):\n", window)
	fmt.Printf("  %-78s %10s %10s %12s %8s %12s\n", "setting", "want/s", "new conn/s", "sync pkt/s", "VM CPU", "ipvs-m CPU")
	for _, st := range settings {
		for _, r := range results[st.name] {
			fmt.Printf("  %-78s %10.0f %10.0f %12.0f %7.1f%% %11.2f%%\n", st.name, r.want, r.got, r.pps, r.vmCPU, r.thrCPU)
		}
	}
	// Restore the kernel's sysctls for whatever runs next in this VM.
	if err := (&SyncDaemons{cfg: old, sysctlDir: SysctlDir}).applySysctls(); err != nil {
		b.Error(err)
	}
}

// measureSync opens rate new connections per second for window (each
// closed at once with a reset) and returns what it reached and cost.
func measureSync(b *testing.B, rate int, window time.Duration) (r struct {
	want, got          float64
	pps, vmCPU, thrCPU float64
}) {
	r.want = float64(rate)
	tx0 := sysCounter(b, "/sys/class/net/"+benchSyncDev+"/statistics/tx_packets")
	busy0, total0 := cpuJiffies(b)
	thr0 := kthreadJiffies(b, "ipvs-m:")
	start := time.Now()
	var done atomic.Int64
	if rate > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), window)
		tokens := make(chan struct{}, 1024)
		go func() { // pace in 10ms steps
			defer close(tokens)
			t := time.NewTicker(10 * time.Millisecond)
			defer t.Stop()
			owed := 0.0
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				owed += float64(rate) / 100
				for ; owed >= 1; owed-- {
					select {
					case tokens <- struct{}{}:
					default: // the workers are behind: the rate reached says so
					}
				}
			}
		}()
		var wg sync.WaitGroup
		addr := netip.AddrPortFrom(benchVIP, 80).String()
		for range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d := net.Dialer{Timeout: time.Second}
				for range tokens {
					c, err := d.Dial("tcp4", addr)
					if err != nil {
						continue
					}
					c.(*net.TCPConn).SetLinger(0)
					c.Close()
					done.Add(1)
				}
			}()
		}
		wg.Wait()
		cancel()
	} else {
		time.Sleep(window)
	}
	el := time.Since(start).Seconds()
	busy1, total1 := cpuJiffies(b)
	r.got = float64(done.Load()) / el
	r.pps = float64(sysCounter(b, "/sys/class/net/"+benchSyncDev+"/statistics/tx_packets")-tx0) / el
	r.vmCPU = 100 * (busy1 - busy0) / (total1 - total0)
	r.thrCPU = 100 * (kthreadJiffies(b, "ipvs-m:") - thr0) / (el * 100) // USER_HZ 100
	return r
}

func sysCounter(b *testing.B, path string) int64 {
	v, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(v)), 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// cpuJiffies reads the busy and total jiffies of all CPUs from /proc/stat.
func cpuJiffies(b *testing.B) (busy, total float64) {
	v, err := os.ReadFile("/proc/stat")
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(strings.SplitN(string(v), "\n", 2)[0]) // cpu user nice system idle iowait irq softirq steal
	for i, s := range f[1:] {
		n, _ := strconv.ParseFloat(s, 64)
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}

// kthreadJiffies sums utime+stime of the kernel threads whose name starts
// with prefix.
func kthreadJiffies(b *testing.B, prefix string) float64 {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	sum := 0.0
	for _, d := range dirs {
		comm, err := os.ReadFile(d + "/comm")
		if err != nil || !strings.HasPrefix(string(comm), prefix) {
			continue
		}
		st, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		s := string(st)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // fields from 3 (state) on
		u, _ := strconv.ParseFloat(f[11], 64)                    // utime, field 14
		k, _ := strconv.ParseFloat(f[12], 64)                    // stime, field 15
		sum += u + k
	}
	return sum
}

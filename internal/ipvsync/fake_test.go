package ipvsync

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/moby/ipvs"
	"golang.org/x/sys/unix"
)

// FakeKernel is an in-memory Kernel that refuses what the real one
// refuses (duplicates, missing services, a zero netmask or family) and
// counts writes, for tests here and in the daemon. Its methods are safe
// for concurrent use, so a test can break the table while Run reads it;
// its fields are not.
type FakeKernel struct {
	mu   sync.Mutex
	svcs []*fakeService

	// Writes counts successful and failed write calls; Reads counts the
	// read calls (each one netlink request).
	Writes, Reads int
	// Calls records every write call as "Op key [dest]".
	Calls []string
	// DumpErrs are returned, one each, by the next Services calls.
	DumpErrs []error
	// PartialDumps makes the next that many Services calls omit the last
	// service, as a dump racing with a writer can.
	PartialDumps int
}

type fakeService struct {
	svc   ipvs.Service
	dests []*ipvs.Destination
}

var _ Kernel = (*FakeKernel)(nil)

func (f *FakeKernel) find(s *ipvs.Service) (int, *fakeService) {
	k := keyOf(s)
	for i, fs := range f.svcs {
		if keyOf(&fs.svc) == k {
			return i, fs
		}
	}
	return -1, nil
}

func (f *FakeKernel) Services() ([]*ipvs.Service, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Reads++
	if len(f.DumpErrs) > 0 {
		err := f.DumpErrs[0]
		f.DumpErrs = f.DumpErrs[1:]
		return nil, err
	}
	var out []*ipvs.Service
	for _, fs := range f.svcs {
		s := fs.svc
		s.Flags |= flagHashed // as the kernel reports it
		out = append(out, &s)
	}
	if f.PartialDumps > 0 && len(out) > 0 {
		f.PartialDumps--
		out = out[:len(out)-1]
	}
	return out, nil
}

func (f *FakeKernel) Service(s *ipvs.Service) (*ipvs.Service, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Reads++
	_, fs := f.find(s)
	if fs == nil {
		return nil, nil
	}
	c := fs.svc
	c.Flags |= flagHashed
	return &c, nil
}

func (f *FakeKernel) Destinations(s *ipvs.Service) ([]*ipvs.Destination, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Reads++
	_, fs := f.find(s)
	if fs == nil {
		return nil, unix.ESRCH
	}
	var out []*ipvs.Destination
	for _, d := range fs.dests {
		c := *d
		out = append(out, &c)
	}
	return out, nil
}

func (f *FakeKernel) write(op string, s *ipvs.Service, d *ipvs.Destination) {
	f.Writes++
	c := op + " " + keyOf(s).String()
	if d != nil {
		c += " " + destAddr(d).String()
	}
	f.Calls = append(f.Calls, c)
}

func checkService(s *ipvs.Service) error {
	if s.AddressFamily != unix.AF_INET && s.AddressFamily != unix.AF_INET6 {
		return unix.EAFNOSUPPORT
	}
	if s.Netmask == 0 || s.SchedName == "" {
		return unix.EINVAL
	}
	if s.AddressFamily == unix.AF_INET6 && s.Netmask > 128 {
		return unix.EINVAL
	}
	return nil
}

func (f *FakeKernel) NewService(s *ipvs.Service) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.write("NewService", s, nil)
	if err := checkService(s); err != nil {
		return err
	}
	if _, fs := f.find(s); fs != nil {
		return unix.EEXIST
	}
	f.svcs = append(f.svcs, &fakeService{svc: cloneService(s)})
	return nil
}

func (f *FakeKernel) UpdateService(s *ipvs.Service) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.write("UpdateService", s, nil)
	if err := checkService(s); err != nil {
		return err
	}
	_, fs := f.find(s)
	if fs == nil {
		return unix.ESRCH
	}
	fs.svc = cloneService(s)
	return nil
}

func (f *FakeKernel) DelService(s *ipvs.Service) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.write("DelService", s, nil)
	i, fs := f.find(s)
	if fs == nil {
		return unix.ESRCH
	}
	f.svcs = slices.Delete(f.svcs, i, i+1)
	return nil
}

func (f *FakeKernel) findDest(fs *fakeService, d *ipvs.Destination) int {
	return slices.IndexFunc(fs.dests, func(x *ipvs.Destination) bool { return destAddr(x) == destAddr(d) })
}

func (f *FakeKernel) NewDestination(s *ipvs.Service, d *ipvs.Destination) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.write("NewDestination", s, d)
	_, fs := f.find(s)
	if fs == nil {
		return unix.ESRCH
	}
	if f.findDest(fs, d) >= 0 {
		return unix.EEXIST
	}
	fs.dests = append(fs.dests, cloneDest(d))
	return nil
}

func (f *FakeKernel) UpdateDestination(s *ipvs.Service, d *ipvs.Destination) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.write("UpdateDestination", s, d)
	_, fs := f.find(s)
	if fs == nil {
		return unix.ESRCH
	}
	i := f.findDest(fs, d)
	if i < 0 {
		return unix.ENOENT
	}
	nd := cloneDest(d)
	nd.ActiveConnections, nd.InactiveConnections = fs.dests[i].ActiveConnections, fs.dests[i].InactiveConnections
	fs.dests[i] = nd
	return nil
}

func (f *FakeKernel) DelDestination(s *ipvs.Service, d *ipvs.Destination) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.write("DelDestination", s, d)
	_, fs := f.find(s)
	if fs == nil {
		return unix.ESRCH
	}
	i := f.findDest(fs, d)
	if i < 0 {
		return unix.ENOENT
	}
	fs.dests = slices.Delete(fs.dests, i, i+1)
	return nil
}

// Flush empties the fake table like `ipvsadm -C`; it is not counted as a
// write by havip.
func (f *FakeKernel) Flush() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.svcs = nil
}

// SetConns sets the connection counters of a destination, as traffic would.
func (f *FakeKernel) SetConns(key ServiceKey, dest netip.AddrPort, active, inactive int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, fs := range f.svcs {
		if keyOf(&fs.svc) != key {
			continue
		}
		for _, d := range fs.dests {
			if destAddr(d) == dest {
				d.ActiveConnections, d.InactiveConnections = active, inactive
				return nil
			}
		}
	}
	return fmt.Errorf("fake: no %s -> %s", key, dest)
}

// ResetCounts forgets the recorded writes.
func (f *FakeKernel) ResetCounts() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Writes, f.Reads, f.Calls = 0, 0, nil
}

func cloneService(s *ipvs.Service) ipvs.Service {
	c := *s
	c.Address = slices.Clone(s.Address)
	if c.Address != nil {
		if v4 := net.IP(c.Address).To4(); v4 != nil && s.AddressFamily == unix.AF_INET {
			c.Address = v4
		}
	}
	return c
}

func cloneDest(d *ipvs.Destination) *ipvs.Destination {
	c := *d
	c.Address = slices.Clone(d.Address)
	return &c
}

// Write makes the writes one by one, as the kernel handles a batch.
func (f *FakeKernel) Write(ws []Write) []error {
	errs := make([]error, len(ws))
	for i, w := range ws {
		switch w.Op {
		case OpAddService:
			errs[i] = f.NewService(w.Service)
		case OpUpdateService:
			errs[i] = f.UpdateService(w.Service)
		case OpDelService:
			errs[i] = f.DelService(w.Service)
		case OpAddDest:
			errs[i] = f.NewDestination(w.Service, w.Dest)
		case OpUpdateDest:
			errs[i] = f.UpdateDestination(w.Service, w.Dest)
		case OpDelDest:
			errs[i] = f.DelDestination(w.Service, w.Dest)
		default:
			errs[i] = fmt.Errorf("fake: unknown write %q", w.Op)
		}
	}
	return errs
}

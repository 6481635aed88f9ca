package vmlab

import (
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
)

// cpioArchive builds an initramfs in the kernel's "newc" cpio format
// (Documentation/driver-api/early-userspace/buffer-format.rst). Entries are
// held in memory by path so a later Add replaces an earlier one, and parent
// directories are created implicitly.
type cpioArchive struct {
	entries map[string]cpioEntry
}

type cpioEntry struct {
	mode uint32 // type bits | permissions
	data []byte // file contents or symlink target
}

const (
	cpioDir  = 0o040000
	cpioFile = 0o100000
	cpioLink = 0o120000
)

func newCPIO() *cpioArchive { return &cpioArchive{entries: map[string]cpioEntry{}} }

func cleanArchivePath(p string) string {
	return strings.TrimPrefix(path.Clean("/"+p), "/")
}

func (a *cpioArchive) mkdirAll(p string) {
	for p = cleanArchivePath(p); p != "" && p != "."; p = path.Dir(p) {
		if e, ok := a.entries[p]; ok && e.mode&0o170000 != cpioDir {
			return // an existing symlink (e.g. lib64) stands in for the dir
		}
		a.entries[p] = cpioEntry{mode: cpioDir | 0o755}
	}
}

// AddFile adds a regular file with permissions perm.
func (a *cpioArchive) AddFile(p string, perm uint32, data []byte) {
	p = cleanArchivePath(p)
	a.mkdirAll(path.Dir(p))
	a.entries[p] = cpioEntry{mode: cpioFile | perm&0o7777, data: data}
}

// AddSymlink adds a symbolic link p pointing at target.
func (a *cpioArchive) AddSymlink(p, target string) {
	p = cleanArchivePath(p)
	a.mkdirAll(path.Dir(p))
	a.entries[p] = cpioEntry{mode: cpioLink | 0o777, data: []byte(target)}
}

// AddDir adds an empty directory.
func (a *cpioArchive) AddDir(p string) { a.mkdirAll(p) }

// Has reports whether p is in the archive.
func (a *cpioArchive) Has(p string) bool {
	_, ok := a.entries[cleanArchivePath(p)]
	return ok
}

// WriteTo writes the archive, parents before children, ending with the
// TRAILER!!! record.
func (a *cpioArchive) WriteTo(w io.Writer) (int64, error) {
	names := make([]string, 0, len(a.entries))
	for n := range a.entries {
		names = append(names, n)
	}
	sort.Strings(names) // "a" < "a/b": parents first
	cw := &countWriter{w: w}
	ino := uint32(1)
	for _, n := range names {
		e := a.entries[n]
		nlink := uint32(1)
		if e.mode&0o170000 == cpioDir {
			nlink = 2
		}
		writeCPIOHeader(cw, ino, e.mode, nlink, uint32(len(e.data)), n)
		cw.Write(e.data)
		cw.pad4()
		ino++
	}
	writeCPIOHeader(cw, 0, 0, 1, 0, "TRAILER!!!")
	return cw.n, cw.err
}

func writeCPIOHeader(cw *countWriter, ino, mode, nlink, size uint32, name string) {
	// magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
	// devminor, rdevmajor, rdevminor, namesize, check
	fmt.Fprintf(cw, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, len(name)+1, 0)
	cw.Write([]byte(name))
	cw.Write([]byte{0})
	cw.pad4()
}

type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
	return n, err
}

func (c *countWriter) pad4() {
	if r := c.n % 4; r != 0 {
		c.Write(make([]byte, 4-r))
	}
}

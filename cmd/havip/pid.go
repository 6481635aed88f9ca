package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// soAcceptCon is the flag /proc/net/unix shows for a listening socket
// (__SO_ACCEPTCON).
const soAcceptCon = 0x10000

// socketOfPID finds the control socket of the daemon with process id pid:
// the one unix socket with a path it listens on. systemd passes $MAINPID to
// ExecReload, so `havip reload --pid $MAINPID` reaches the daemon even
// after a reload moved its control_socket (the site file then names a
// socket the running daemon does not have yet).
func socketOfPID(pid int) (string, error) {
	dir := fmt.Sprintf("/proc/%d", pid)
	fds, err := os.ReadDir(filepath.Join(dir, "fd"))
	if err != nil {
		return "", fmt.Errorf("process %d: %w", pid, err)
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		l, err := os.Readlink(filepath.Join(dir, "fd", fd.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	f, err := os.Open(filepath.Join(dir, "net", "unix"))
	if err != nil {
		return "", fmt.Errorf("process %d: %w", pid, err)
	}
	defer f.Close()
	var found []string
	sc := bufio.NewScanner(f)
	sc.Scan() // header: Num RefCount Protocol Flags Type St Inode Path
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 8 || !inodes[fields[6]] {
			continue
		}
		flags, err := strconv.ParseUint(fields[3], 16, 32)
		if err != nil || flags&soAcceptCon == 0 || !strings.HasPrefix(fields[7], "/") {
			continue
		}
		found = append(found, fields[7])
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("process %d listens on no unix socket: is it havip run?", pid)
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("process %d listens on several unix sockets (%s): pass --socket", pid, strings.Join(found, ", "))
}

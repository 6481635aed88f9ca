package ctl

import (
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
)

func TestErrors(t *testing.T) {
	dial := func(errno syscall.Errno) error {
		return &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", errno)}
	}
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"EACCES", dialError("/s", dial(syscall.EACCES)), ErrPermission},
		{"EPERM", dialError("/s", dial(syscall.EPERM)), ErrPermission},
		{"ENOENT", dialError("/s", dial(syscall.ENOENT)), ErrNotRunning},
		{"ECONNREFUSED", dialError("/s", dial(syscall.ECONNREFUSED)), ErrNotRunning},
		{"daemon refuses a non-root peer", responseError(&Response{Error: "permission denied: root only"}), ErrPermission},
		{"daemon ok", responseError(&Response{OK: true}), nil},
	} {
		if !errors.Is(tc.err, tc.want) || (tc.want == nil) != (tc.err == nil) {
			t.Errorf("%s: %v, want %v", tc.name, tc.err, tc.want)
		}
	}
	err := responseError(&Response{Error: `unknown command "x"`})
	if err == nil || errors.Is(err, ErrPermission) || errors.Is(err, ErrNotRunning) {
		t.Errorf("other daemon error: %v", err)
	}
}

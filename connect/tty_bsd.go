//go:build darwin || freebsd

package connect

import (
	"syscall"

	"golang.org/x/sys/unix"
)

const (
	ioctlGetTermios = unix.TIOCGETA
	ioctlSetTermios = unix.TIOCSETA
)

func newSysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }

//go:build !linux

package core

import (
	"os"
	"syscall"
)

// childSysProcAttr puts a child in its own process group; without
// PR_SET_PDEATHSIG the child notices its parent's death by EOF on stdin.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// growPipe leaves the pipe's buffer as the system sizes it.
func growPipe(*os.File) {}

// GrowPipe leaves the pipe's buffer as the system sizes it (see the Linux
// version).
func GrowPipe(*os.File, int) {}

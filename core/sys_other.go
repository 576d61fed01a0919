//go:build !linux

package core

import "syscall"

// childSysProcAttr puts a child in its own process group; without
// PR_SET_PDEATHSIG the child notices its parent's death by EOF on stdin.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

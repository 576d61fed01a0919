//go:build unix && !linux

package builtins

import "syscall"

// execSysProcAttr puts a program started by exec in a process group of
// its own, so that a timeout can kill everything it started. (Only Linux
// has Pdeathsig to kill it when this process dies.)
func execSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

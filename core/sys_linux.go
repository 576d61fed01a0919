package core

import "syscall"

// childSysProcAttr puts a child in its own process group (so a terminal's
// ^C reaches only the master, which shuts the tree down in order) and has
// the kernel kill it if this process dies.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

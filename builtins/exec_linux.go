package builtins

import "syscall"

// execSysProcAttr puts a program started by exec in a process group of
// its own, so that a timeout can kill everything it started, and has
// the kernel kill it with SIGKILL when this process dies, so that no
// program outlives a context that was killed. (Pdeathsig fires when the
// OS thread that started the program exits; Go only ends threads whose
// goroutine exits while locked to them, which the goroutine calling
// exec never is.)
func execSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

package core

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// childSysProcAttr puts a child in its own process group (so a terminal's
// ^C reaches only the master, which shuts the tree down in order) and has
// the kernel kill it if this process dies.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// streamPipeSize is the kernel buffer asked for the pipes of a local
// child's stream: with the default 64 KiB, a 256 KiB message costs four
// wake-ups of each side.
const streamPipeSize = 1 << 20

// growPipe enlarges the kernel buffer of a local child's stream pipe.
func growPipe(f *os.File) { GrowPipe(f, streamPipeSize) }

// GrowPipe asks the kernel for a buffer of size bytes for the pipe f, best
// effort: without CAP_SYS_RESOURCE the limit is
// /proc/sys/fs/pipe-max-size, and other systems keep their own size.
// Transports (package connect) grow the pipes to their programs with it.
func GrowPipe(f *os.File, size int) {
	if rc, err := f.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { unix.FcntlInt(fd, unix.F_SETPIPE_SZ, size) })
	}
}

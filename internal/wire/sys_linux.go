package wire

import (
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// PipeSize is the kernel buffer GrowPipe asks for. With the default
// 64 KiB, a 256 KiB frame costs each side four wake-ups: large arguments
// travel faster with the larger buffer (docs/benchmarks.md, "Pipe
// buffers").
const PipeSize = 1 << 20

// GrowPipe asks the kernel for a PipeSize buffer for the pipe f, best
// effort: without CAP_SYS_RESOURCE the limit is
// /proc/sys/fs/pipe-max-size, a socket or terminal is left alone, and
// other systems keep their own size.
func GrowPipe(f *os.File) {
	if rc, err := f.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { unix.FcntlInt(fd, unix.F_SETPIPE_SZ, PipeSize) })
	}
}

// PrepareWait asks cmd's start to give the caller a pidfd of the
// process, for WaitExited. Call it before cmd.Start.
func PrepareWait(cmd *exec.Cmd) *int {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	fd := -1
	cmd.SysProcAttr.PidFD = &fd
	return &fd
}

// WaitExited returns once the process whose pidfd PrepareWait obtained has
// exited, without reaping it: cmd.Wait then returns at once. The wait is
// made in the runtime's poller, so a process that runs for hours holds
// no thread (os/exec's Wait blocks one thread per process in waitid, and
// a master with hundreds of children held hundreds of threads). Without
// a pidfd (an old kernel) it returns at once and cmd.Wait does the
// waiting. It closes the pidfd.
func WaitExited(pidfd *int) {
	fd := *pidfd
	if fd < 0 {
		return
	}
	*pidfd = -1
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	// The pidfd polls readable once the process has exited; the poller
	// waits for that, the callback only checks it.
	rc.Read(func(fd uintptr) bool {
		p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(p, 0)
		return err != nil || n > 0
	})
}

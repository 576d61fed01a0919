package files

import (
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Bulk file I/O without entering the scheduler's syscall state. A
// read(2) or write(2) made the ordinary way wakes the Go runtime's
// sysmon thread whenever the process was idle (waiting for credit or
// data between chunks); sysmon then polls every 20 µs while the process
// is busy and takes the P of a syscall longer than that to hand it to
// another thread. During a transfer over ssh on a 2-vCPU machine that
// churn was a fifth of each end's CPU, taken from ssh and sshd too.
//
// preadv2/pwritev2 with RWF_NOWAIT never wait (for the disk, a lock or
// dirty-page throttling): they fail with EAGAIN instead, and the caller
// then makes the ordinary call, which may block. Both use and advance
// the file's offset, as read and write do. A kernel or file system
// without RWF_NOWAIT (EOPNOTSUPP, EINVAL, ENOSYS) is remembered and not
// asked again.

var noWaitRead, noWaitWrite atomic.Bool // false: untried or supported

// readNoWait reads into b what f's page cache holds at its offset; ok
// false means nothing was read and f.Read must be used.
func readNoWait(f *os.File, b []byte) (n int, ok bool) {
	if len(b) == 0 || noWaitRead.Load() {
		return 0, false
	}
	return rwNoWait(f, b, unix.SYS_PREADV2, &noWaitRead)
}

// writeNoWait writes a prefix of b at f's offset unless that would
// wait; ok false means nothing was written and f.Write must be used.
func writeNoWait(f *os.File, b []byte) (n int, ok bool) {
	if len(b) == 0 || noWaitWrite.Load() {
		return 0, false
	}
	return rwNoWait(f, b, unix.SYS_PWRITEV2, &noWaitWrite)
}

func rwNoWait(f *os.File, b []byte, trap uintptr, unsupported *atomic.Bool) (n int, ok bool) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, false
	}
	rc.Control(func(fd uintptr) {
		iov := unix.Iovec{Base: &b[0]}
		iov.SetLen(len(b))
		// Offset -1 (both halves): the file's own offset.
		m, _, e := syscall.RawSyscall6(trap, fd, uintptr(unsafe.Pointer(&iov)), 1, ^uintptr(0), ^uintptr(0), unix.RWF_NOWAIT)
		switch {
		case e == 0 && m > 0:
			n, ok = int(m), true
		case e == unix.EOPNOTSUPP || e == unix.EINVAL || e == unix.ENOSYS:
			unsupported.Store(true)
		}
	})
	return n, ok
}

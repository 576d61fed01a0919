package core

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// writevFD is writev(2) on a non-blocking descriptor, made without
// telling the Go scheduler: it cannot block (a full pipe is EAGAIN),
// and a syscall made the ordinary way wakes the runtime's sysmon thread
// whenever the process was idle, which then polls every 20 µs while the
// process is busy (a fifth of the CPU of a bulk transfer on a 2-vCPU
// machine, taken from ssh too). At most 64 pieces a call: a batch with
// more is written on by the caller's loop.
func writevFD(fd uintptr, bufs [][]byte) (int, error) {
	var iov [64]unix.Iovec
	iovs := iov[:0]
	for _, b := range bufs {
		if len(iovs) == len(iov) {
			break
		}
		if len(b) == 0 {
			continue
		}
		v := unix.Iovec{Base: &b[0]}
		v.SetLen(len(b))
		iovs = append(iovs, v)
	}
	if len(iovs) == 0 {
		return 0, nil
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iovs[0])), uintptr(len(iovs)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// spliceMin is the size from which an fdWriter lends a piece to a pipe
// with vmsplice(2) instead of copying it in with writev (see lend.go).
const spliceMin = 1 << 20

// vmspliceFD lends b to the pipe fd without blocking (SPLICE_F_NONBLOCK):
// the pipe refers to b's pages until its reader has read them. It is
// made without telling the Go scheduler, as writevFD is.
func vmspliceFD(fd uintptr, b []byte) (int, error) {
	iov := unix.Iovec{Base: &b[0]}
	iov.SetLen(len(b))
	n, _, e := syscall.RawSyscall6(unix.SYS_VMSPLICE, fd, uintptr(unsafe.Pointer(&iov)), 1, unix.SPLICE_F_NONBLOCK, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// pipeUnread is how many bytes wait in the pipe fd (FIONREAD, which
// Linux names TIOCINQ).
func pipeUnread(fd uintptr) (int, error) {
	return unix.IoctlGetInt(int(fd), unix.TIOCINQ) // FIONREAD
}

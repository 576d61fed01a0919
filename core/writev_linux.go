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

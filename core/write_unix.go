//go:build unix

package core

import (
	"io"
	"syscall"

	"golang.org/x/sys/unix"
)

// nonBlockingConn returns the raw connection of w when w is a file
// descriptor in non-blocking mode (pipes from os.Pipe, the child's
// stream), for writes that must never block; nil otherwise.
func nonBlockingConn(w io.Writer) syscall.RawConn {
	sc, ok := w.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	nonblock := false
	if err := rc.Control(func(fd uintptr) {
		fl, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
		nonblock = err == nil && fl&unix.O_NONBLOCK != 0
	}); err != nil || !nonblock {
		return nil
	}
	return rc
}

// writeNonBlocking makes one write of b to fd and reports how much it
// took; a full pipe is 0 bytes, not an error.
func writeNonBlocking(fd uintptr, b []byte) (int, error) {
	for {
		n, err := unix.Write(int(fd), b)
		switch err {
		case nil:
			return n, nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return 0, nil
		default:
			return 0, err
		}
	}
}

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

// writevNonBlocking makes one writev of bufs to fd and reports how much
// it took; a full pipe is 0 bytes, not an error.
func writevNonBlocking(fd uintptr, bufs [][]byte) (int, error) {
	for {
		n, err := writevFD(fd, bufs[:min(len(bufs), maxIovec)])
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

// skipBytes returns bufs without their first n bytes, reslicing the
// element where n ends.
func skipBytes(bufs [][]byte, n int) [][]byte {
	for n > 0 && len(bufs) > 0 {
		if n < len(bufs[0]) {
			bufs[0] = bufs[0][n:]
			return bufs
		}
		n -= len(bufs[0])
		bufs = bufs[1:]
	}
	return bufs
}

// maxIovec is the most pieces one writev takes (IOV_MAX on Linux and
// the BSDs).
const maxIovec = 1024

// writevAll writes every byte of bufs to rc, a non-blocking fd, with
// writev: partial writes go on from where they stopped, and a full pipe
// waits in the runtime's poller until it can take more. bufs' elements
// are resliced as they are written.
func writevAll(rc syscall.RawConn, bufs [][]byte) error {
	var werr error
	err := rc.Write(func(fd uintptr) bool {
		for {
			for len(bufs) > 0 && len(bufs[0]) == 0 {
				bufs = bufs[1:]
			}
			if len(bufs) == 0 {
				return true
			}
			n, err := writevFD(fd, bufs[:min(len(bufs), maxIovec)])
			switch err {
			case nil:
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false
			default:
				werr = err
				return true
			}
			if n == 0 {
				werr = io.ErrShortWrite
				return true
			}
			bufs = skipBytes(bufs, n)
		}
	})
	if err == nil {
		err = werr
	}
	return err
}

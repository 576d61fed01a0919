//go:build unix

package core

import (
	"io"
	"syscall"

	"golang.org/x/sys/unix"
)

// nonBlockingConn returns the raw connection of f when f is a file
// descriptor in non-blocking mode (pipes from os.Pipe, the child's
// stream), for reads and writes that must never block; nil otherwise.
func nonBlockingConn(f any) syscall.RawConn {
	sc, ok := f.(syscall.Conn)
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

// writevNonBlocking makes one writev of bufs (at most maxIovec pieces)
// to fd and reports how much it took; a full pipe is 0 bytes, not an
// error.
func writevNonBlocking(fd uintptr, bufs [][]byte) (int, error) {
	for {
		n, err := writevFD(fd, bufs)
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

// pipeChunk is the most one writev of an fdWriter takes, and the most one
// read of a pipeReader asks for. Written and read whole, a 64 MiB payload
// crosses a 1 MiB pipe in turns: the writer fills the pipe and waits,
// the reader drains it and waits, and on a VM each wait ends with a
// wake-up of a halted vCPU. In 512 KiB pieces neither side finds the
// pipe full or empty for long, and both keep going: 64 MiB results
// 1,229-1,405 -> 1,459-1,658 MiB/s (docs/benchmarks.md, session 5).
// (256 KiB did as well for bulk, but split every 256 KiB byte-stream
// frame into its 256 KiB and a few bytes more.)
const pipeChunk = 512 << 10

// fdWriter writes to a non-blocking file descriptor through its
// RawConn. The callbacks it hands the RawConn are bound once, in
// newFDWriter: a closure per write, with the variables it shares with
// its caller, was three allocations per message. One goroutine at a time
// may use it (a stream's output has one owner at a time).
type fdWriter struct {
	rc    syscall.RawConn
	bufs  [][]byte // what the callback writes
	iov   [][]byte // the piece of bufs one writev takes (see chunk)
	n     int      // what tryWritev's callback wrote
	err   error    // the callback's error
	tryFn func(fd uintptr) bool
	allFn func(fd uintptr) bool
	lend  lentState // large pieces lent to a pipe (lend.go)
}

// newFDWriter returns an fdWriter of w when w is a non-blocking file
// descriptor (see nonBlockingConn), nil otherwise.
func newFDWriter(w io.Writer) *fdWriter {
	rc := nonBlockingConn(w)
	if rc == nil {
		return nil
	}
	fw := &fdWriter{rc: rc}
	fw.tryFn, fw.allFn = fw.try, fw.all
	return fw
}

// tryWritev makes one non-blocking writev of bufs and returns how much
// it took: 0, not an error, when the pipe is full.
func (w *fdWriter) tryWritev(bufs [][]byte) (int, error) {
	w.bufs, w.n, w.err = bufs, 0, nil
	err := w.rc.Write(w.tryFn)
	n, werr := w.n, w.err
	w.bufs, w.err = nil, nil
	if err == nil {
		err = werr
	}
	return n, err
}

func (w *fdWriter) try(fd uintptr) bool {
	w.n, w.err = writevNonBlocking(fd, w.chunk(w.bufs))
	clear(w.iov)
	w.wrote(w.n)
	return true
}

// chunk returns the first pipeChunk bytes of bufs (all of them when
// fewer) as an iovec of at most maxIovec pieces, in w.iov: bufs is left
// as it is. The caller clears w.iov after the write, so that it holds
// no payload past it.
func (w *fdWriter) chunk(bufs [][]byte) [][]byte {
	iov := w.iov[:0]
	room := pipeChunk
	for _, b := range bufs {
		if room == 0 || len(iov) == maxIovec {
			break
		}
		if len(b) > room {
			b = b[:room]
		}
		iov = append(iov, b)
		room -= len(b)
	}
	w.iov = iov
	return iov
}

// writevAll writes every byte of bufs with writev: partial writes go on
// from where they stopped, and a full pipe waits in the runtime's poller
// until it can take more. bufs' elements are resliced as they are
// written.
func (w *fdWriter) writevAll(bufs [][]byte) error {
	w.bufs, w.err = bufs, nil
	err := w.rc.Write(w.allFn)
	werr := w.err
	w.bufs, w.err = nil, nil
	if err == nil {
		err = werr
	}
	return err
}

func (w *fdWriter) all(fd uintptr) bool {
	for {
		for len(w.bufs) > 0 && len(w.bufs[0]) == 0 {
			w.bufs = w.bufs[1:]
		}
		if len(w.bufs) == 0 {
			return true
		}
		var n int
		var err error
		if w.spliceable(w.bufs[0]) {
			if n, err = w.splice(fd, w.bufs[0]); err == nil && n == 0 && w.lend.noSplice {
				continue // not a pipe: written below from now on
			}
		} else {
			n, err = writevFD(fd, w.chunk(w.bufs))
			clear(w.iov)
			w.wrote(n)
		}
		switch err {
		case nil:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			w.err = err
			return true
		}
		if n == 0 {
			w.err = io.ErrShortWrite
			return true
		}
		w.bufs = skipBytes(w.bufs, n)
	}
}

package core

import (
	"io"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pipeReader reads a stream from a pipe. On a
// non-blocking pipe each read(2) is made without telling the Go
// scheduler (it cannot block: an empty pipe is EAGAIN, and the
// goroutine then waits in the poller as os.File does). A syscall made
// the ordinary way wakes the runtime's sysmon thread whenever the
// process was idle, which then polls every 20 µs while the process is
// busy: on a 2-vCPU machine those wake-ups cost the master a fifth of
// its CPU during a bulk transfer and take CPU from ssh.
type pipeReader struct {
	f      *os.File
	rc     syscall.RawConn
	p      []byte // what readFn reads into
	n      int    // what readFn read
	err    error  // readFn's error
	readFn func(fd uintptr) bool
}

// NewPipeReader returns a reader of f that makes its read(2) calls
// without the scheduler (see pipeReader), or f itself unless f is a
// non-blocking descriptor. Streams read their pipes through it: a
// child its stdin, a parent the stdout of a child's process.
func NewPipeReader(f *os.File) io.Reader {
	rc := nonBlockingConn(f)
	if rc == nil {
		return f
	}
	r := &pipeReader{f: f, rc: rc}
	r.readFn = r.readFD // bound once: a closure per Read was three allocations
	return r
}

// WakeSysmon makes one system call through the Go runtime's syscall
// entry (getppid), which wakes the runtime's monitor thread, sysmon, if
// it sleeps. sysmon sleeps for up to a minute once every P is idle, and
// only a syscall made the ordinary way, a garbage collection or its own
// timeout wakes it; the raw reads of pipeReader do none of these. A
// goroutine that computes without yielding after such a wake-up is then
// never preempted: with GOMAXPROCS=1 no timer fires and no stream is read
// until it stops. Long computations (a Starlark thread, every so many
// steps) call WakeSysmon; a call costs well under a microsecond.
func WakeSysmon() {
	unix.Syscall(unix.SYS_GETPPID, 0, 0, 0)
}

// Read reads like read(2). Like any stream reader it is not for
// concurrent use.
func (r *pipeReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(p) > pipeChunk {
		p = p[:pipeChunk] // see pipeChunk
	}
	r.p, r.n, r.err = p, 0, nil
	err := r.rc.Read(r.readFn)
	n, rerr := r.n, r.err
	r.p, r.err = nil, nil
	if err != nil {
		return n, &os.PathError{Op: "read", Path: r.f.Name(), Err: err}
	}
	return n, rerr
}

func (r *pipeReader) readFD(fd uintptr) bool {
	p := r.p
	for {
		m, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch e {
		case 0:
			r.n = int(m)
			if r.n == 0 {
				r.err = io.EOF
			}
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		default:
			r.err = &os.PathError{Op: "read", Path: r.f.Name(), Err: e}
			return true
		}
	}
}

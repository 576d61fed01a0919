package connect

import (
	"io"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// methodPipeSize is the kernel buffer asked for the stream's pipes to a
// method's program (ssh, sudo, docker exec, ...). With the default 64
// KiB a 256 KiB byte-stream frame takes four wake-ups of the writer and
// of the program reading it; ssh reads its stdin 32 KiB at a time, so a
// larger pipe lets it read on without waiting for us between reads.
const methodPipeSize = 1 << 20

// growPipe enlarges the kernel buffer of a pipe (best effort: the limit
// is /proc/sys/fs/pipe-max-size for users without CAP_SYS_RESOURCE).
func growPipe(f *os.File) {
	if rc, err := f.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { unix.FcntlInt(fd, unix.F_SETPIPE_SZ, methodPipeSize) })
	}
}

// pipeReader reads the stream from a method's program. On a
// non-blocking pipe each read(2) is made without telling the Go
// scheduler (it cannot block: an empty pipe is EAGAIN, and the
// goroutine then waits in the poller as os.File does). A syscall made
// the ordinary way wakes the runtime's sysmon thread whenever the
// process was idle, which then polls every 20 µs while the process is
// busy: on a 2-vCPU machine those wake-ups cost the master a fifth of
// its CPU during a bulk transfer and take CPU from ssh.
type pipeReader struct {
	f  *os.File
	rc syscall.RawConn
}

// newPipeReader returns a pipeReader for f, or f itself unless it is a
// non-blocking descriptor.
func newPipeReader(f *os.File) io.Reader {
	rc, err := f.SyscallConn()
	if err != nil {
		return f
	}
	nonblock := false
	if err := rc.Control(func(fd uintptr) {
		fl, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
		nonblock = err == nil && fl&unix.O_NONBLOCK != 0
	}); err != nil || !nonblock {
		return f
	}
	return &pipeReader{f: f, rc: rc}
}

func (r *pipeReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var n int
	var rerr error
	err := r.rc.Read(func(fd uintptr) bool {
		for {
			m, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
			switch e {
			case 0:
				n = int(m)
				if n == 0 {
					rerr = io.EOF
				}
				return true
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false
			default:
				rerr = &os.PathError{Op: "read", Path: r.f.Name(), Err: e}
				return true
			}
		}
	})
	if err != nil {
		return n, &os.PathError{Op: "read", Path: r.f.Name(), Err: err}
	}
	return n, rerr
}

//go:build unix

package wire

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// TakeStdio moves a child's stream off descriptors 0 and 1 so that
// nothing else in the process can write into it: 0 becomes /dev/null and
// 1 a copy of 2 (stderr, which the parent captures and logs). The
// returned files are non-blocking, read and written through the runtime's
// poller, so that closing them wakes their reader and writer.
func TakeStdio() (in, out *os.File, err error) {
	inFD, err := syscall.Dup(0)
	if err != nil {
		return nil, nil, fmt.Errorf("dup stdin: %w", err)
	}
	outFD, err := syscall.Dup(1)
	if err != nil {
		return nil, nil, fmt.Errorf("dup stdout: %w", err)
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		return nil, nil, err
	}
	if err := unix.Dup2(int(null.Fd()), 0); err != nil {
		return nil, nil, fmt.Errorf("redirecting stdin: %w", err)
	}
	null.Close()
	if err := unix.Dup2(2, 1); err != nil {
		return nil, nil, fmt.Errorf("redirecting stdout: %w", err)
	}
	syscall.CloseOnExec(inFD)
	syscall.CloseOnExec(outFD)
	syscall.SetNonblock(inFD, true)
	syscall.SetNonblock(outFD, true)
	in, out = os.NewFile(uintptr(inFD), "stream-in"), os.NewFile(uintptr(outFD), "stream-out")
	// A pipe from a program this child did not start (sshd, sudo, docker
	// exec) has the system's default size: grow it as a local parent
	// grows its pipes.
	GrowPipe(in)
	GrowPipe(out)
	return in, out, nil
}

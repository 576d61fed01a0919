package core

import (
	"fmt"
	"os"
	"syscall"
)

// takeStdio moves the stream off fds 0 and 1 so that nothing else in the
// child can write into it: fd 0 becomes /dev/null and fd 1 a copy of
// stderr (which the parent captures and logs). The returned files are
// non-blocking so that closing them wakes their reader and writer.
func takeStdio() (in, out *os.File, err error) {
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
	if err := dup2(int(null.Fd()), 0); err != nil {
		return nil, nil, fmt.Errorf("redirecting stdin: %w", err)
	}
	null.Close()
	if err := dup2(2, 1); err != nil {
		return nil, nil, fmt.Errorf("redirecting stdout: %w", err)
	}
	syscall.CloseOnExec(inFD)
	syscall.CloseOnExec(outFD)
	syscall.SetNonblock(inFD, true)
	syscall.SetNonblock(outFD, true)
	in, out = os.NewFile(uintptr(inFD), "stream-in"), os.NewFile(uintptr(outFD), "stream-out")
	// A pipe from a program this child did not start (sshd, sudo, docker
	// exec) has the system's default 64 KiB: grow it as a local parent
	// grows its pipes, so that large frames arrive in fewer reads (best
	// effort; a socket or terminal is left alone).
	growPipe(in)
	growPipe(out)
	return in, out, nil
}

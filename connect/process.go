package connect

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/mitostar/mitostar/core"
	"github.com/mitostar/mitostar/internal/wire"
)

// killGrace is how long a method's process may take to exit once its
// pipes are closed before its process group is killed.
const killGrace = 3 * time.Second

// ttyMode says which of a process's descriptors are a pseudo-terminal.
// A pty is used only where a prompt is possible: a terminal is what
// sudo, doas and ssh read passwords from.
type ttyMode int

const (
	noTTY     ttyMode = iota // stdin, stdout and stderr are pipes
	hybridTTY                // stdin and stdout are pipes; stderr and the controlling terminal a pty
	fullTTY                  // stdin, stdout, stderr and the controlling terminal are a raw pty
)

// An endpoint is the near end of a started connection as the bootstrap
// drives it: a local program (proc) or a session of a native ssh
// connection (sshSession).
type endpoint interface {
	ends() *streamEnds
	// close releases the connection and lets the far end exit; it does
	// not block and may be called more than once.
	close()
	// kill ends a connection that failed, at once.
	kill()
	// exitStatus describes how the far end's program ended, waiting at
	// most d for it; "" when it is not known yet.
	exitStatus(d time.Duration) string
}

// streamEnds are the streams of an endpoint.
type streamEnds struct {
	stdin  io.Writer
	stdout io.Reader
	diag   io.Reader // stderr (a pipe, or the pty in hybridTTY); nil in fullTTY
	tty    io.Writer // where answers to prompts are typed; nil without a terminal

	exited chan struct{} // closed once the program (or session) has ended
}

func (e *streamEnds) ends() *streamEnds { return e }

// A proc is a started method process as the bootstrap sees it.
type proc struct {
	streamEnds
	cmd   *exec.Cmd
	state *os.ProcessState

	closeOnce sync.Once
	closers   []io.Closer
}

// startProc starts cmd with its stdio arranged as mode says. The process
// leads its own process group (its own session with a pty) and gets
// SIGKILL if this process dies; a goroutine owned by r reaps it.
func startProc(r *core.Router, cmd *exec.Cmd, mode ttyMode) (*proc, error) {
	p := &proc{cmd: cmd}
	p.exited = make(chan struct{})
	var childEnds []io.Closer
	fail := func(err error) (*proc, error) {
		for _, c := range childEnds {
			c.Close()
		}
		for _, c := range p.closers {
			c.Close()
		}
		return nil, err
	}
	attr := newSysProcAttr()
	var tty, master *os.File
	if mode != noTTY {
		var slave *os.File
		var err error
		master, slave, err = pty.Open()
		if err != nil {
			return fail(fmt.Errorf("opening a pty: %w", err))
		}
		p.tty = master
		p.closers = append(p.closers, master)
		childEnds = append(childEnds, slave)
		if err := makeRaw(slave); err != nil {
			return fail(fmt.Errorf("setting the pty to raw mode: %w", err))
		}
		tty = slave
		attr.Setsid = true
		attr.Setctty = true
	} else {
		attr.Setpgid = true
	}
	if mode == fullTTY {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
		attr.Ctty = 0
		p.stdin, p.stdout = master, master
	} else {
		inR, inW, err := os.Pipe()
		if err != nil {
			return fail(err)
		}
		p.closers = append(p.closers, inW)
		childEnds = append(childEnds, inR)
		outR, outW, err := os.Pipe()
		if err != nil {
			return fail(err)
		}
		p.closers = append(p.closers, outR)
		childEnds = append(childEnds, outW)
		wire.GrowPipe(inW)
		wire.GrowPipe(outR)
		cmd.Stdin, cmd.Stdout = inR, outW
		p.stdin, p.stdout = inW, outR
		if mode == hybridTTY {
			cmd.Stderr = tty
			attr.Ctty = 2
			p.diag = master
		} else {
			errR, errW, err := os.Pipe()
			if err != nil {
				return fail(err)
			}
			p.closers = append(p.closers, errR)
			childEnds = append(childEnds, errW)
			cmd.Stderr = errW
			p.diag = errR
		}
	}
	cmd.SysProcAttr = attr
	pidfd := wire.PrepareWait(cmd)
	if err := cmd.Start(); err != nil {
		return fail(fmt.Errorf("starting %s: %w", cmd.Path, err))
	}
	for _, c := range childEnds {
		c.Close()
	}
	r.Go(func() {
		wire.WaitExited(pidfd)
		cmd.Wait()
		p.state = cmd.ProcessState
		close(p.exited)
	})
	return p, nil
}

// close closes this side of the process's stdio and, if the process has
// not exited after a grace period, kills its process group. It does not
// block and may be called more than once.
func (p *proc) close() {
	p.closeOnce.Do(func() {
		for _, c := range p.closers {
			c.Close()
		}
		go func() {
			select {
			case <-p.exited:
			case <-time.After(killGrace):
				syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			}
		}()
	})
}

// kill closes the process's stdio and kills its process group at once:
// for a connection that failed.
func (p *proc) kill() {
	p.close()
	select {
	case <-p.exited:
	default:
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
}

// exitStatus describes how the process ended, waiting at most d for it.
func (p *proc) exitStatus(d time.Duration) string {
	select {
	case <-p.exited:
	case <-time.After(d):
		return ""
	}
	if ws, ok := p.state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return fmt.Sprintf("%s was killed by signal %s", p.cmd.Args[0], ws.Signal())
	}
	return fmt.Sprintf("%s exited with status %d", p.cmd.Args[0], p.state.ExitCode())
}

// makeRaw puts a terminal in raw mode without echo, as cfmakeraw(3) does:
// what crosses it arrives unchanged, and a typed password is not echoed.
func makeRaw(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ioErr error
	err = rc.Control(func(fd uintptr) {
		t, err := unix.IoctlGetTermios(int(fd), ioctlGetTermios)
		if err != nil {
			ioErr = err
			return
		}
		t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON | unix.IXOFF | unix.INPCK | unix.IMAXBEL
		t.Oflag &^= unix.OPOST
		t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ECHOE | unix.ECHOK | unix.ICANON | unix.ISIG | unix.IEXTEN | unix.TOSTOP
		t.Cflag &^= unix.CSIZE | unix.PARENB
		t.Cflag |= unix.CS8 | unix.CREAD
		t.Cc[unix.VMIN] = 1
		t.Cc[unix.VTIME] = 0
		ioErr = unix.IoctlSetTermios(int(fd), ioctlSetTermios, t)
	})
	if err != nil {
		return err
	}
	return ioErr
}

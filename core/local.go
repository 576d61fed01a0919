package core

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/mitostar/mitostar/internal/wire"
)

// killGrace is how long a child may take to exit after its stream closed
// before it is killed.
const killGrace = 3 * time.Second

// localTransport starts this executable again in the child role. fork is
// the same process start with the parent's module cache passed in the
// handshake (Go cannot fork a running runtime).
type localTransport struct {
	method     string // "local" or "fork": the default name is METHOD.PID
	path       string
	remoteName string // argv[0] of the child, as shown by ps
}

func newLocalTransport(r *Router, opts *ConnectOptions) (Transport, error) {
	return newSelfTransport("local", opts)
}

// newForkTransport is fork's: local's, named fork.PID as Mitogen names it.
func newForkTransport(r *Router, opts *ConnectOptions) (Transport, error) {
	return newSelfTransport("fork", opts)
}

func newSelfTransport(method string, opts *ConnectOptions) (Transport, error) {
	t := &localTransport{method: method}
	for k, v := range opts.Kwargs {
		switch k {
		case "remote_name":
			s, ok := v.(string)
			if !ok {
				return nil, fmt.Errorf("%s: remote_name must be a string, got %T", method, v)
			}
			t.remoteName = s
		default:
			return nil, fmt.Errorf("%s: unexpected keyword %q", method, k)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("%s: finding this executable: %w", method, err)
	}
	t.path = exe
	return t, nil
}

func (t *localTransport) DefaultName() string { return "" }

func (t *localTransport) Start(ctx context.Context, env *StartEnv) (*Conn, error) {
	cmd := exec.Command(t.path)
	if t.remoteName != "" {
		cmd.Args[0] = "mitostar:" + t.remoteName
	}
	cmd.Env = append(os.Environ(), RoleEnv+"=child")
	conn, err := StartCommand(ctx, env, cmd, func(pid int) {
		if env.Name == "" {
			env.Name = fmt.Sprintf("%s.%d", t.method, pid)
		}
	})
	if conn != nil {
		conn.HelloNow = true
	}
	return conn, err
}

// StartCommand runs cmd with pipes for stdin, stdout and stderr, in its
// own process group and (on Linux) killed if this process dies. Lines on
// its stderr are logged as the child's output. onStart, if set, sees the
// pid before anything is read. The returned Conn's Close closes the pipes
// and kills the process if it has not exited after a grace period; the
// process is reaped by a goroutine owned by env.Router.
func StartCommand(ctx context.Context, env *StartEnv, cmd *exec.Cmd, onStart func(pid int)) (*Conn, error) {
	var files []*os.File // this side's ends, closed on failure
	var theirs []*os.File
	fail := func(err error) (*Conn, error) {
		for _, f := range append(files, theirs...) {
			f.Close()
		}
		return nil, err
	}
	pipe := func() (r, w *os.File, err error) {
		r, w, err = os.Pipe()
		if err == nil {
			files, theirs = append(files, r), append(theirs, w)
		}
		return r, w, err
	}
	inR, inW, err := pipe()
	if err != nil {
		return fail(err)
	}
	outR, outW, err := pipe()
	if err != nil {
		return fail(err)
	}
	errR, errW, err := pipe()
	if err != nil {
		return fail(err)
	}
	files, theirs = []*os.File{inW, outR, errR}, []*os.File{inR, outW, errW}
	wire.GrowPipe(inW)
	wire.GrowPipe(outR)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	cmd.SysProcAttr = childSysProcAttr()
	pidfd := wire.PrepareWait(cmd)
	if err := cmd.Start(); err != nil {
		return fail(fmt.Errorf("starting %s: %w", cmd.Path, err))
	}
	for _, f := range theirs {
		f.Close()
	}
	if onStart != nil {
		onStart(cmd.Process.Pid)
	}
	exited := make(chan struct{})
	errDone := make(chan struct{})
	r := env.Router
	r.Go(func() {
		defer close(errDone)
		scanLines(errR, env.Output)
	})
	r.Go(func() {
		wire.WaitExited(pidfd)
		cmd.Wait()
		close(exited)
		select {
		case <-errDone:
		case <-time.After(time.Second):
		}
		errR.Close()
	})
	var once sync.Once
	closeConn := func() {
		once.Do(func() {
			inW.Close()
			outR.Close()
			r.Go(func() {
				t := time.NewTimer(killGrace)
				defer t.Stop()
				select {
				case <-exited:
				case <-t.C:
					cmd.Process.Kill()
				}
			})
		})
	}
	return &Conn{Stdout: outR, Stdin: inW, Close: closeConn, Exited: exited}, nil
}

// maxLine is the longest line of a child's output logged whole; the rest
// of a longer line is dropped with a note saying how long it was.
const maxLine = 16 << 10

// scanLines calls emit with each line r yields (without its line end),
// until r ends. It never stops reading early, so a writer is never
// blocked by a line it cannot take: a line longer than maxLine is logged
// as its first maxLine bytes and a note of its length.
func scanLines(r io.Reader, emit func(string)) {
	br := bufio.NewReaderSize(r, maxLine)
	var head []byte // the first maxLine bytes of a long line
	long := 0       // bytes of the long line seen so far
	for {
		b, err := br.ReadSlice('\n')
		switch {
		case err == bufio.ErrBufferFull:
			if long == 0 {
				head = append(head[:0], b...)
			}
			long += len(b)
			continue
		case long > 0:
			long += len(b)
			emit(fmt.Sprintf("%s… [a line of %d bytes, cut at %d]", head, long-len(lineEnd(b)), maxLine))
			long = 0
		case len(b) > 0:
			emit(string(b[:len(b)-len(lineEnd(b))]))
		}
		if err != nil {
			return
		}
	}
}

// lineEnd is the "\n" or "\r\n" that ends b, if any.
func lineEnd(b []byte) []byte {
	switch {
	case bytes.HasSuffix(b, []byte("\r\n")):
		return b[len(b)-2:]
	case bytes.HasSuffix(b, []byte("\n")):
		return b[len(b)-1:]
	}
	return nil
}

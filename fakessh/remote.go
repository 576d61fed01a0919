package fakessh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/mitostar/mitostar/core"
)

func init() {
	core.RegisterFunc("fakessh.exec", serveExec)
}

// sftpServers are where Debian, Red Hat and others keep sftp-server.
var sftpServers = []string{
	"/usr/lib/openssh/sftp-server",
	"/usr/libexec/openssh/sftp-server",
	"/usr/lib/sftp-server",
	"/usr/libexec/sftp-server",
	"/usr/lib/ssh/sftp-server",
}

// remoteCommand is the argv that serves a request in this context.
func remoteCommand(command string, subsystem bool) ([]string, error) {
	if !subsystem {
		return []string{"/bin/sh", "-c", command}, nil
	}
	if command != "sftp" {
		return nil, fmt.Errorf("fakessh: unknown subsystem %q (only sftp is served)", command)
	}
	for _, p := range sftpServers {
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return []string{p}, nil
		}
	}
	return nil, fmt.Errorf("fakessh: subsystem sftp: no sftp-server found (looked in %v)", sftpServers)
}

// serveExec is fakessh.exec: start the command with its stdio bridged to
// the caller's byte streams and return the handle that takes signals.
// The command runs on after the call returns; its exit status is sent
// to the caller's Exit handle once its output has been delivered.
func serveExec(ctx context.Context, c *core.Call) (any, error) {
	var args struct {
		_    struct{} `cbor:",toarray"`
		Exec execArgs
	}
	if err := c.Args(&args); err != nil {
		return nil, fmt.Errorf("fakessh.exec: %w", err)
	}
	a := args.Exec
	argv, err := remoteCommand(a.Command, a.Subsystem)
	if err != nil {
		return nil, err
	}
	r := c.Router
	caller := r.ContextByID(c.Msg.SrcID)
	cmd := exec.Command(argv[0], argv[1:]...)
	if home, err := os.UserHomeDir(); err == nil {
		if st, err := os.Stat(home); err == nil && st.IsDir() {
			cmd.Dir = home
		}
	}
	cmd.Env = os.Environ()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	stdio, err := r.DialByteStream(ctx, a.Stdio, nil)
	if err != nil {
		return nil, err
	}
	errs, err := r.DialByteStream(ctx, a.Stderr, nil)
	if err != nil {
		stdio.Close()
		return nil, err
	}
	sigs, err := r.NewReceiver(core.ReceiverOptions{Respondent: caller, Policy: func(m *core.Message) bool { return m.SrcID == caller.ID }})
	if err != nil {
		stdio.Close()
		errs.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		stdio.Abort(err)
		errs.Abort(err)
		sigs.Close()
		return nil, fmt.Errorf("fakessh.exec: starting %s: %w", argv[0], err)
	}
	p := &process{r: r, cmd: cmd, caller: caller, exit: a.Exit, stdio: stdio, errs: errs, sigs: sigs}
	r.Go(func() { p.run(stdin, stdout, stderr) })
	return execReply{Signals: sigs.Handle()}, nil
}

// process is a running remote command.
type process struct {
	r      *core.Router
	cmd    *exec.Cmd
	caller *core.Context
	exit   uint32
	stdio  *core.ByteStream
	errs   *core.ByteStream
	sigs   *core.Receiver

	killOnce sync.Once
}

// kill ends the command's process group: SIGHUP, as sshd does when the
// connection drops, then SIGKILL after a grace period.
func (p *process) kill(exited <-chan struct{}) {
	p.killOnce.Do(func() {
		pg := -p.cmd.Process.Pid
		syscall.Kill(pg, syscall.SIGHUP)
		syscall.Kill(pg, syscall.SIGCONT)
		go func() {
			select {
			case <-exited:
			case <-time.After(killGrace):
			}
			syscall.Kill(pg, syscall.SIGKILL)
		}()
	})
}

func (p *process) run(stdin io.WriteCloser, stdout, stderr io.Reader) {
	defer p.stdio.Close()
	defer p.errs.Close()
	defer p.sigs.Close()
	exited := make(chan struct{})
	broken := make(chan struct{})
	var brokeOnce sync.Once
	brk := func() { brokeOnce.Do(func() { close(broken) }) }
	var in, outs sync.WaitGroup
	in.Add(2)
	go func() { // stdin
		defer in.Done()
		_, err := p.stdio.WriteTo(stdin)
		stdin.Close()
		select {
		case <-exited:
		default:
			if err != nil && !errors.Is(err, syscall.EPIPE) {
				brk()
			}
		}
	}()
	go func() { // signals from the caller
		defer in.Done()
		for {
			var sig int
			if err := p.sigs.GetData(p.r.Lifetime(), &sig); err != nil {
				select {
				case <-exited:
				default:
					brk()
				}
				return
			}
			if sig > 0 && sig < 65 {
				syscall.Kill(-p.cmd.Process.Pid, syscall.Signal(sig))
			}
		}
	}()
	out := func(s *core.ByteStream, rd io.Reader) {
		defer outs.Done()
		buf := make([]byte, 256<<10)
		if _, err := io.CopyBuffer(s, rd, buf); err != nil {
			brk()
			io.Copy(io.Discard, rd)
			return
		}
		if err := s.CloseWrite(); err != nil {
			brk()
		}
	}
	outs.Add(2)
	go out(p.stdio, stdout)
	go out(p.errs, stderr)
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		select {
		case <-broken:
		case <-p.r.Lifetime().Done():
		case <-exited:
			return
		}
		p.kill(exited)
		cause := errors.New("fakessh: session ended")
		p.stdio.Abort(cause)
		p.errs.Abort(cause)
	}()
	// Output first (Wait would close the pipes under the readers), then
	// the status; the streams' EOFs precede the exit message on the wire.
	outs.Wait()
	err := p.cmd.Wait()
	close(exited)
	<-watchDone
	p.sigs.Close()
	p.stdio.Close() // ends the stdin pump if the caller still has stdin open
	in.Wait()
	ex := execExit{Code: p.cmd.ProcessState.ExitCode()}
	if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		ex.Signal = int(ws.Signal())
	}
	if err != nil && ex.Code < 0 && ex.Signal == 0 {
		ex.Code = 255
	}
	// The exit status is the last word: a caller that stopped reading
	// gets a minute before it is dropped.
	ctx, cancel := context.WithTimeout(p.caller.Router().Lifetime(), time.Minute)
	defer cancel()
	core.NewSender(p.caller, p.exit).Send(ctx, ex)
}

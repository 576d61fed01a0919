package core

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
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
	if os.Getenv("GOMAXPROCS") == "" {
		// The child runs with one P (tuneChildRuntime). Starting it with
		// one spares it shrinking from two, which flushes the second P's
		// span cache and touches ~70 fresh pages (~2 ms on small VMs).
		// RunRole removes both variables again, so that commands the
		// child runs do not inherit them.
		cmd.Env = append(cmd.Env, "GOMAXPROCS=1", unsetProcsEnv+"=1")
	}
	cmd.Env = append(cmd.Env, noMemProfileEnv()...)
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
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		return nil, err
	}
	growPipe(inW)
	growPipe(outR)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	cmd.SysProcAttr = childSysProcAttr()
	err = cmd.Start()
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		return nil, fmt.Errorf("starting %s: %w", cmd.Path, err)
	}
	if onStart != nil {
		onStart(cmd.Process.Pid)
	}
	name := env.Name
	exited := make(chan struct{})
	errDone := make(chan struct{})
	r := env.Router
	r.Go(func() {
		defer close(errDone)
		sc := bufio.NewScanner(errR)
		sc.Buffer(nil, 1<<20) // starts at 4 KiB: children rarely write much to stderr
		for sc.Scan() {
			r.EmitAs(name, levelOutput, strings.TrimRight(sc.Text(), "\r"))
		}
	})
	r.Go(func() {
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
			go func() {
				select {
				case <-exited:
				case <-time.After(killGrace):
					cmd.Process.Kill()
				}
			}()
		})
	}
	return &Conn{Stdout: NewPipeReader(outR), Stdin: inW, Close: closeConn, Exited: exited}, nil
}

// noMemProfileEnv returns the variables that start a local child with
// heap profiling off, unless this process profiles (--profile) or the
// user's GODEBUG sets memprofilerate. Turning it off from Go code is too
// late: the runtime records a sample at the first allocation after the
// rate changes (stack unwound, the profile's 1.4 MiB bucket table mapped
// and touched), ~0.5 ms of a child's start on the benchmark VMs, while
// GODEBUG is read before the first allocation. RunRole puts GODEBUG back
// as it was, so that commands the child runs see the user's.
func noMemProfileEnv() []string {
	if os.Getenv(ProfileDirEnv) != "" {
		return nil
	}
	old, set := os.LookupEnv("GODEBUG")
	if strings.Contains(old, "memprofilerate=") {
		return nil
	}
	v := "memprofilerate=0"
	restore := "unset"
	if set {
		restore = "set:" + old
		if old != "" {
			v = old + "," + v
		}
	}
	return []string{"GODEBUG=" + v, restoreGodebugEnv + "=" + restore}
}

package builtins

// The exec module: run a program, wait for it, and return its exit
// status and output (docs/reference.md, "exec").
//
// Semantics follow Python's subprocess.run(capture_output=True):
//   - argv is a list (or tuple) of strings; a program name without a
//     slash is looked up in PATH — the PATH of env when env is given
//     (or "/bin:/usr/bin" when env has none), else this process's —
//     as Go's exec.LookPath looks it up (internal/lookpath): the first
//     match wins, and one found through a relative entry ("", ".") is
//     refused, never run from the current directory.
//   - env=None inherits this context's environment; a dict *replaces*
//     it: the program sees exactly those variables and no others.
//   - stdin=None gives the program /dev/null (never this context's own
//     stdin, which may be the stream to its parent); a string or bytes
//     is written to it.
//   - rc is the exit status, or minus the signal number when a signal
//     killed the program (Python's returncode).
//   - stdout and stderr are captured whole, up to execOutputLimit each;
//     bytes that are not UTF-8 are kept as they are in the strings.
//
// Every program runs in a process group of its own (Setpgid) and, on
// Linux, with Pdeathsig SIGKILL so that it dies with this process. A
// timeout, the thread's cancellation or an output overflow kills the
// whole group; what it leaves running in its group is killed when the
// context ends, however it ends (exec_keeper.go). Programs that leave a background process holding stdout
// or stderr open do not hang the call: output is read for at most
// execWaitDelay after the program itself exits.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/mitostar/mitostar/core"
	"github.com/mitostar/mitostar/internal/lookpath"
)

func init() {
	Register("exec.run", execRun)
	Register("exec.shell", execShell)
}

// Tunables (variables so that tests can lower them).
var (
	execOutputLimit  = 64 << 20               // bytes captured from each of stdout and stderr
	execWaitDelay    = 500 * time.Millisecond // how long output is read after the program exits
	execPollInterval = 25 * time.Millisecond  // how often a thread's Cancel is looked for
)

// execTailLines and execTailBytes bound the stderr quoted by check=True.
const (
	execTailLines = 10
	execTailBytes = 2048
)

// execDefaultPath is the PATH used for lookups when env replaces the
// environment without one (Python's os.defpath, without its ".").
const execDefaultPath = "/bin:/usr/bin"

// execRequest is one program to run, from the arguments of run or shell.
type execRequest struct {
	fn      string // the builtin's name, for errors
	what    string // the command as the user wrote it, quoted for errors
	argv    []string
	stdin   []byte // nil: /dev/null
	env     []string
	cwd     string
	timeout time.Duration // < 0: none
	check   bool
}

// run(argv, stdin=None, env=None, cwd=None, timeout=None, check=False)
func execRun(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var argv starlark.Value
	req, err := execUnpack(b, args, kwargs, "argv", &argv)
	if err != nil {
		return nil, err
	}
	var seq starlark.Indexable
	switch v := argv.(type) {
	case *starlark.List:
		seq = v
	case starlark.Tuple:
		seq = v
	default:
		return nil, fmt.Errorf("%s: argv must be a list of strings, got %s (use exec.shell for a command line)", b.Name(), argv.Type())
	}
	if seq.Len() == 0 {
		return nil, fmt.Errorf("%s: argv is empty", b.Name())
	}
	for i := range seq.Len() {
		s, ok := seq.Index(i).(starlark.String)
		if !ok {
			return nil, fmt.Errorf("%s: argv[%d] must be a string, got %s", b.Name(), i, seq.Index(i).Type())
		}
		if strings.IndexByte(string(s), 0) >= 0 {
			return nil, fmt.Errorf("%s: argv[%d] contains a NUL byte", b.Name(), i)
		}
		req.argv = append(req.argv, string(s))
	}
	if req.argv[0] == "" {
		return nil, fmt.Errorf("%s: argv[0] is an empty string", b.Name())
	}
	req.what = argv.String()
	return execStart(thread, req)
}

// shell(cmd, stdin=None, env=None, cwd=None, timeout=None, check=False)
// runs /bin/sh -c cmd.
func execShell(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var cmd string
	req, err := execUnpack(b, args, kwargs, "cmd", &cmd)
	if err != nil {
		return nil, err
	}
	if strings.IndexByte(cmd, 0) >= 0 {
		return nil, fmt.Errorf("%s: cmd contains a NUL byte", b.Name())
	}
	req.argv = []string{"/bin/sh", "-c", cmd}
	req.what = starlark.String(cmd).String()
	return execStart(thread, req)
}

// execUnpack unpacks the first parameter (named first, into dst) and the
// keyword parameters run and shell share.
func execUnpack(b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple, first string, dst any) (*execRequest, error) {
	var stdin, env, cwd, timeout starlark.Value = starlark.None, starlark.None, starlark.None, starlark.None
	req := &execRequest{fn: b.Name(), timeout: -1}
	if err := starlark.UnpackArgs(b.Name(), args, kwargs,
		first, dst, "stdin?", &stdin, "env?", &env, "cwd?", &cwd, "timeout?", &timeout, "check?", &req.check); err != nil {
		return nil, err
	}
	switch v := stdin.(type) {
	case starlark.NoneType:
	case starlark.String:
		req.stdin = []byte(v)
	case starlark.Bytes:
		req.stdin = []byte(v)
	default:
		return nil, fmt.Errorf("%s: stdin must be a string, bytes or None, got %s", b.Name(), stdin.Type())
	}
	switch v := env.(type) {
	case starlark.NoneType:
	case *starlark.Dict:
		req.env = make([]string, 0, v.Len())
		for _, kv := range v.Items() {
			k, kok := kv[0].(starlark.String)
			val, vok := kv[1].(starlark.String)
			if !kok || !vok {
				return nil, fmt.Errorf("%s: env must map strings to strings, got %s: %s", b.Name(), kv[0].Type(), kv[1].Type())
			}
			if k == "" || strings.ContainsAny(string(k), "=\x00") {
				return nil, fmt.Errorf("%s: invalid environment variable name %s", b.Name(), k)
			}
			if strings.IndexByte(string(val), 0) >= 0 {
				return nil, fmt.Errorf("%s: environment variable %s contains a NUL byte", b.Name(), k)
			}
			req.env = append(req.env, string(k)+"="+string(val))
		}
	default:
		return nil, fmt.Errorf("%s: env must be a dict or None, got %s", b.Name(), env.Type())
	}
	switch v := cwd.(type) {
	case starlark.NoneType:
	case starlark.String:
		if v == "" {
			return nil, fmt.Errorf("%s: cwd is an empty string", b.Name())
		}
		req.cwd = string(v)
	default:
		return nil, fmt.Errorf("%s: cwd must be a string or None, got %s", b.Name(), cwd.Type())
	}
	if timeout != starlark.None {
		secs, ok := starlark.AsFloat(timeout)
		if !ok || math.IsNaN(secs) || secs < 0 || secs > math.MaxInt64/float64(time.Second) {
			return nil, fmt.Errorf("%s: timeout must be a non-negative number of seconds, got %s", b.Name(), timeout)
		}
		req.timeout = time.Duration(secs * float64(time.Second))
	}
	return req, nil
}

// execStart runs req to completion and returns struct(rc, stdout, stderr).
func execStart(thread *starlark.Thread, req *execRequest) (starlark.Value, error) {
	base := ThreadContext(thread)
	if err := context.Cause(base); err != nil {
		return nil, fmt.Errorf("%s: %s not started: %w", req.fn, req.what, err)
	}
	path, err := execLookPath(req.argv[0], req.env)
	if err != nil {
		return nil, OSError(req.fn, req.argv[0], err)
	}
	if req.cwd != "" {
		// Checked here because a failing chdir in the new process is
		// reported as an error of the program's path.
		if fi, err := os.Stat(req.cwd); err != nil {
			return nil, OSError(req.fn, req.cwd, err)
		} else if !fi.IsDir() {
			return nil, OSError(req.fn, req.cwd, syscall.ENOTDIR)
		}
	}

	// kill stops the program for good: its cause says why (timeout,
	// overflow, cancellation).
	kctx, kill := context.WithCancelCause(base)
	defer kill(nil)
	overflow := errors.New("output limit")
	stdout := &execCapture{limit: execOutputLimit, full: func() { kill(overflow) }}
	stderr := &execCapture{limit: execOutputLimit, full: func() { kill(overflow) }}
	cmd := &exec.Cmd{
		Path:        path,
		Args:        req.argv,
		Env:         req.env,
		Dir:         req.cwd,
		Stdout:      stdout,
		Stderr:      stderr,
		SysProcAttr: execSysProcAttr(),
		WaitDelay:   execWaitDelay,
	}
	if req.stdin != nil {
		cmd.Stdin = bytes.NewReader(req.stdin)
	}
	if err := cmd.Start(); err != nil {
		return nil, OSError(req.fn, req.argv[0], err)
	}
	if r, err := RouterOf(thread); err == nil {
		// Whatever the program leaves running dies with this context.
		k := keeperOf(r)
		k.add(cmd.Process.Pid)
		defer k.finished(cmd.Process.Pid)
	}
	var timedOut *core.RemoteError
	if req.timeout >= 0 {
		timedOut = &core.RemoteError{Kind: "TimeoutError",
			Message: fmt.Sprintf("%s: %s timed out after %gs", req.fn, req.what, req.timeout.Seconds())}
		t := time.AfterFunc(req.timeout, func() { kill(timedOut) })
		defer t.Stop()
	}

	// The thread's cancellation must stop the program. The runtime
	// cancels a thread by cancelling the context it attached with
	// SetThreadContext, which kctx derives from. A thread may also be
	// cancelled with thread.Cancel alone (an embedding Go program, a
	// step limit), and go.starlark.net offers no way to observe that
	// but running Starlark code on the thread: so every
	// execPollInterval this goroutine, which owns the thread, calls an
	// empty Starlark function on it, which fails at once on a
	// cancelled thread.
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	tick := time.NewTicker(execPollInterval)
	defer tick.Stop()
	stop := kctx.Done()
	killed := false
	var werr error
wait:
	for {
		select {
		case werr = <-waited:
			break wait
		case <-stop:
			stop = nil
			killed = true
			execKillGroup(cmd.Process)
		case <-tick.C:
			if _, err := starlark.Call(thread, execProbe(), nil, nil); err != nil {
				kill(err)
			}
		}
	}

	rc := 0
	var exit *exec.ExitError
	switch {
	case killed:
		cause := context.Cause(kctx)
		switch {
		case cause == timedOut:
			return nil, timedOut
		case cause == overflow:
			return nil, execOverflowError(req, stdout, stderr)
		}
		return nil, fmt.Errorf("%s: %s stopped: %w", req.fn, req.what, cause)
	case stdout.over || stderr.over:
		return nil, execOverflowError(req, stdout, stderr)
	case errors.As(werr, &exit):
		rc = exit.ExitCode()
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			rc = -int(ws.Signal())
		}
	case werr != nil && !errors.Is(werr, exec.ErrWaitDelay):
		return nil, fmt.Errorf("%s: %s: %v", req.fn, req.what, werr)
	}
	errText := stderr.String()
	if req.check && rc != 0 {
		msg := fmt.Sprintf("%s: %s exited with rc %d", req.fn, req.what, rc)
		if tail := execTail(errText); tail != "" {
			msg += ": " + tail
		}
		return nil, errors.New(msg)
	}
	return starlarkstruct.FromStringDict(starlarkstruct.Default, starlark.StringDict{
		"rc":     starlark.MakeInt(rc),
		"stdout": starlark.String(stdout.String()),
		"stderr": starlark.String(errText),
	}), nil
}

// execProbe returns an empty Starlark function; calling it on a thread
// fails when the thread has been cancelled (see execStart).
var execProbe = sync.OnceValue(func() starlark.Callable {
	const src = "def cancelled():\n    pass\n"
	globals, err := starlark.ExecFile(&starlark.Thread{Name: "exec.probe"}, "<exec>", src, nil)
	if err != nil {
		panic("exec: compiling the cancellation probe: " + err.Error())
	}
	globals.Freeze()
	return globals["cancelled"].(starlark.Callable)
})

// execKillGroup kills p and every process of its group with SIGKILL.
// The group id is p's pid, which cannot be reused before Wait reaps p.
func execKillGroup(p *os.Process) {
	_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
	_ = p.Kill()
}

func execOverflowError(req *execRequest, stdout, stderr *execCapture) error {
	stream := "stdout"
	if stderr.over && !stdout.over {
		stream = "stderr"
	}
	return fmt.Errorf("%s: %s wrote more than %d MiB to %s; it was killed", req.fn, req.what, execOutputLimit>>20, stream)
}

// execLookPath finds the program file for argv[0] as described at the
// top of this file; env is the program's environment (nil: ours).
func execLookPath(file string, env []string) (string, error) {
	pathList := os.Getenv("PATH")
	if env != nil {
		pathList = execDefaultPath
		for _, kv := range env {
			if v, ok := strings.CutPrefix(kv, "PATH="); ok {
				pathList = v
			}
		}
	}
	return lookpath.Find(file, pathList)
}

// execCapture collects up to limit bytes of a program's output in
// chunks (so that a big output is neither copied nor cleared again and
// again as one buffer grows); past limit it calls full once and fails,
// which stops the copy. os/exec copies the pipe with io.Copy, which
// reads straight into the chunks through ReadFrom. fs.read uses it too.
type execCapture struct {
	chunks [][]byte
	n      int
	limit  int
	full   func()
	over   bool
}

var errExecOverflow = errors.New("output limit exceeded")

// room returns the free tail of the last chunk, adding a chunk (4 KiB,
// doubling up to 1 MiB) when it is full; it holds at most one byte
// more than the limit, by which an overflow is seen.
func (c *execCapture) room() []byte {
	if len(c.chunks) > 0 {
		if last := c.chunks[len(c.chunks)-1]; len(last) < cap(last) {
			return last[len(last):cap(last)]
		}
	}
	size := 4 << 10
	if len(c.chunks) > 0 {
		size = min(2*cap(c.chunks[len(c.chunks)-1]), 1<<20)
	}
	size = min(size, c.limit+1-c.n)
	c.chunks = append(c.chunks, make([]byte, 0, size))
	return c.chunks[len(c.chunks)-1][:size]
}

// grew records k bytes added to the last chunk; it reports the overflow.
func (c *execCapture) grew(k int) error {
	last := &c.chunks[len(c.chunks)-1]
	*last = (*last)[:len(*last)+k]
	c.n += k
	if c.n > c.limit {
		*last = (*last)[:len(*last)-(c.n-c.limit)]
		c.n = c.limit
		if !c.over {
			c.over = true
			c.full()
		}
		return errExecOverflow
	}
	return nil
}

func (c *execCapture) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		k := copy(c.room(), p)
		if err := c.grew(k); err != nil {
			return written, err
		}
		written += k
		p = p[k:]
	}
	return written, nil
}

func (c *execCapture) ReadFrom(r io.Reader) (int64, error) {
	var total int64
	for {
		k, err := r.Read(c.room())
		if gerr := c.grew(k); gerr != nil {
			return total, gerr
		}
		total += int64(k)
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// String returns the output captured.
func (c *execCapture) String() string {
	var b strings.Builder
	b.Grow(c.n)
	for _, ch := range c.chunks {
		b.Write(ch)
	}
	return b.String()
}

// execTail returns the last lines of a program's stderr for an error
// message: at most execTailLines lines and execTailBytes bytes.
func execTail(s string) string {
	s = strings.TrimRight(s, " \t\r\n")
	lines := 0
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '\n' {
			if lines++; lines == execTailLines {
				s = s[i+1:]
				break
			}
		}
	}
	if len(s) > execTailBytes {
		s = "..." + s[len(s)-execTailBytes:]
	}
	return s
}

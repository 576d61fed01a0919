package connect

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mitostar/mitostar/core"
)

// noiseLines is how many of the target's last output lines a failed
// connection reports.
const noiseLines = 20

// StartCommand starts cmd, whose stdin and stdout must reach
// `sh -c stub.Script()` at the far end (for example
// `docker exec -i CONTAINER` followed by stub.Argv()), and runs the
// bootstrap through it: the binary is shipped only if the target does
// not have it cached. It returns once the far end prints mitostar's
// ready line; core.Router then sends the handshake. Lines the command
// writes on stderr are logged as the new context's output. Failures are
// *core.StreamError values naming env.Name and the command, with the
// last lines the target printed. It gives up when ctx ends.
//
// A container method is this and nothing more:
//
//	stub, err := connect.NewStub()
//	...
//	cmd := exec.Command("docker", append([]string{"exec", "-i", name}, stub.Argv()...)...)
//	return connect.StartCommand(ctx, env, cmd, stub)
func StartCommand(ctx context.Context, env *core.StartEnv, cmd *exec.Cmd, stub *Stub) (*core.Conn, error) {
	return start(ctx, env, cmd, stub, startSpec{describe: filepath.Base(cmd.Args[0])})
}

// A prompter watches what a method's program prints before the child is
// up: it answers the prompts meant for it and recognises failures.
type prompter interface {
	// see is called with each complete line (partial false) and with an
	// unfinished line that has not changed since the last read (partial
	// true: a prompt waiting for input). It returns text to type into
	// the terminal, or an error that ends the connection.
	see(line string, partial bool) (answer string, err error)
}

// startSpec is how a method starts its program.
type startSpec struct {
	describe string // the program and target, for messages: "ssh to bob@host port 22"
	mode     ttyMode
	prompt   prompter // nil: nothing to answer
}

// A BootstrapReport describes one finished bootstrap, for
// ObserveBootstraps.
type BootstrapReport struct {
	Name     string        // the new context's name
	Shipped  bool          // the binary was sent (it was not cached)
	Written  int64         // bytes written to the target before the handshake
	Platform string        // the target's goos/goarch, when it was asked for
	Elapsed  time.Duration // from start to the ready line
}

// observers holds each router's bootstrap observer, until it closes.
var observers sync.Map // *core.Router → func(BootstrapReport)

// ObserveBootstraps has fn called after each successful bootstrap of a
// child of r (benchmarks and tests count the bytes shipped).
func ObserveBootstraps(r *core.Router, fn func(BootstrapReport)) {
	if _, had := observers.Swap(r, fn); !had {
		context.AfterFunc(r.Lifetime(), func() { observers.Delete(r) })
	}
}

// cachedModuleObservers holds each router's observer of the modules its
// new children's targets have cached, until it closes.
var cachedModuleObservers sync.Map // *core.Router → func(uint32, []string)

// ObserveCachedModules has fn called, before the handshake of each new
// child of r that starts from the target's binary cache, with the
// sha256s of the modules cached beside that binary (ModuleCacheDir):
// its calls need not carry their source. The runtime registers it.
func ObserveCachedModules(r *core.Router, fn func(id uint32, shas []string)) {
	if _, had := cachedModuleObservers.Swap(r, fn); !had {
		context.AfterFunc(r.Lifetime(), func() { cachedModuleObservers.Delete(r) })
	}
}

func start(ctx context.Context, env *core.StartEnv, cmd *exec.Cmd, stub *Stub, spec startSpec) (*core.Conn, error) {
	began := time.Now()
	p, err := startProc(env.Router, cmd, spec.mode)
	if err != nil {
		return nil, &core.StreamError{Op: "connect " + env.Name, Err: fmt.Errorf("%s: %w", spec.describe, err)}
	}
	return bootstrap(ctx, env, p, stub, spec, began)
}

// bootstrap runs the stub's exchange over a started endpoint whose stdin
// and stdout reach `sh -c STUB` at the far end, until the child's ready
// line; on failure it kills the endpoint.
func bootstrap(ctx context.Context, env *core.StartEnv, ep endpoint, stub *Stub, spec startSpec, began time.Time) (*core.Conn, error) {
	serveDist(env.Router)
	p := ep.ends()
	s := &session{ctx: ctx, env: env, stub: stub, spec: spec, ep: ep, p: p, diagDone: make(chan struct{})}
	s.active.Store(spec.prompt != nil)
	s.in = &countingWriter{w: p.stdin}
	if p.diag != nil {
		env.Router.Go(s.readDiag)
	} else {
		close(s.diagDone)
	}
	stop := context.AfterFunc(ctx, func() {
		if ctx.Err() == context.DeadlineExceeded {
			s.fail(fmt.Errorf("timed out %s", s.waitingFor()))
			return
		}
		s.fail(fmt.Errorf("gave up waiting for the target: %w", context.Cause(ctx)))
	})
	defer stop()
	out, err := s.run()
	s.active.Store(false)
	s.up.Store(err == nil)
	if err != nil {
		ep.kill()
		return nil, &core.StreamError{Op: "connect " + env.Name, Err: fmt.Errorf("%s: %w", spec.describe, err), Noise: s.noise()}
	}
	if fn, ok := cachedModuleObservers.Load(env.Router); ok && len(s.cached) > 0 {
		fn.(func(uint32, []string))(env.ID, s.cached)
	}
	if fn, ok := observers.Load(env.Router); ok {
		fn.(func(BootstrapReport))(BootstrapReport{
			Name: env.Name, Shipped: s.shipped, Written: s.in.n.Load(),
			Platform: s.platform, Elapsed: time.Since(began),
		})
	}
	env.Router.Logger().Debug("bootstrap finished", "name", env.Name, "shipped", s.shipped, "written", s.in.n.Load(), "elapsed", time.Since(began))
	return &core.Conn{Stdout: out, Stdin: p.stdin, Close: ep.close, Exited: p.exited}, nil
}

// A session is the master's side of one bootstrap.
type session struct {
	ctx   context.Context
	env   *core.StartEnv
	stub  *Stub
	spec  startSpec
	ep    endpoint
	p     *streamEnds
	in    *countingWriter
	ttyMu sync.Mutex // serialises answers typed into the terminal

	active   atomic.Bool // prompts are answered until the child is up
	up       atomic.Bool // the ready line was seen
	diagDone chan struct{}

	mu        sync.Mutex
	failure   error
	outLines  []string // the last lines of stdout that were not the stub's
	diagLines []string // the last lines of stderr

	ship     *binary // the binary for the target's platform
	shipped  bool
	platform string
	cached   []string // the sha256s of the modules cached on the target
	stage    string   // what the bootstrap waits for now, under mu (see waitingFor)
	typed    bool     // an answer was typed into a prompt, under mu
	heard    bool     // the target printed something, under mu
}

// setStage records what the bootstrap waits for from now on.
func (s *session) setStage(stage string) {
	s.mu.Lock()
	s.stage = stage
	s.mu.Unlock()
}

// waitingFor says what the bootstrap was waiting for, for the message of
// a connect_timeout that passed.
func (s *session) waitingFor() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.stage != "":
		return s.stage
	case s.typed:
		return "waiting for the target after typing an answer to its prompt"
	case s.heard:
		return "waiting for the target to start the bootstrap (it printed only what is quoted below)"
	}
	return "with nothing received from the target (is it reachable, and is the program connecting to it answering?)"
}

// fail records the first cause of failure and closes the process, which
// ends the reads.
func (s *session) fail(err error) {
	s.mu.Lock()
	if s.failure == nil {
		s.failure = err
	}
	s.mu.Unlock()
	s.ep.close()
}

func (s *session) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failure
}

func keepLast(lines []string, line string) []string {
	lines = append(lines, line)
	if len(lines) > noiseLines {
		lines = lines[len(lines)-noiseLines:]
	}
	return lines
}

// noise is the target's last output lines: stdout's, then stderr's.
func (s *session) noise() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	all := append(append([]string(nil), s.outLines...), s.diagLines...)
	if len(all) > noiseLines {
		all = all[len(all)-noiseLines:]
	}
	return strings.Join(all, "\n")
}

// answer shows a line to the prompter and types its answer.
func (s *session) answer(line string, partial bool) {
	if !s.active.Load() {
		return
	}
	text, err := s.spec.prompt.see(line, partial)
	if err != nil {
		s.fail(err)
		return
	}
	if text == "" {
		return
	}
	s.ttyMu.Lock()
	_, err = io.WriteString(s.p.tty, text)
	s.ttyMu.Unlock()
	s.mu.Lock()
	s.typed = true
	s.mu.Unlock()
	if err != nil {
		s.fail(fmt.Errorf("typing into the terminal: %w", err))
	}
}

// lineSplitter cuts a byte stream into lines; what follows the last
// newline stays pending (a prompt, or a line still arriving).
type lineSplitter struct {
	buf     []byte
	partial string // the pending text last shown as a prompt
}

// next returns the next complete line without its line ending.
func (l *lineSplitter) next() (string, bool) {
	i := bytes.IndexByte(l.buf, '\n')
	if i < 0 {
		return "", false
	}
	line := string(bytes.TrimRight(l.buf[:i], "\r"))
	l.buf = l.buf[i+1:]
	l.partial = ""
	return line, true
}

// prompt returns the pending text if it is new since the last call.
func (l *lineSplitter) prompt() (string, bool) {
	if len(l.buf) == 0 || string(l.buf) == l.partial {
		return "", false
	}
	l.partial = string(l.buf)
	return strings.TrimLeft(l.partial, "\r"), true
}

// readDiag reads stderr (or the pty) until it ends: each line is logged
// as the child's output and, until the child is up, shown to the
// prompter.
func (s *session) readDiag() {
	defer close(s.diagDone)
	var ls lineSplitter
	var head string // the start of a long line being dropped
	long := 0       // bytes of that line so far
	buf := make([]byte, 4096)
	for {
		n, err := s.p.diag.Read(buf)
		ls.buf = append(ls.buf, buf[:n]...)
		if long > 0 {
			i := bytes.IndexByte(ls.buf, '\n')
			if i < 0 && err == nil {
				long += len(ls.buf)
				ls.buf = ls.buf[:0]
				continue
			}
			if i < 0 {
				i = len(ls.buf)
			}
			s.logDiag(fmt.Sprintf("%s… [a line of %d bytes, cut at %d]", head, long+i, maxDiagLine))
			ls.buf, long = ls.buf[min(i+1, len(ls.buf)):], 0
		}
		for {
			line, ok := ls.next()
			if !ok {
				break
			}
			s.logDiag(line)
			s.answer(line, false)
		}
		if err != nil {
			if len(ls.buf) > 0 {
				s.logDiag(string(bytes.TrimRight(ls.buf, "\r")))
			}
			return
		}
		if text, ok := ls.prompt(); ok {
			s.answer(text, true)
		}
		if len(ls.buf) > maxDiagLine {
			// No prompt is this long: keep reading, so the program is
			// never blocked, and drop the rest of the line.
			head, long = string(ls.buf[:maxDiagLine]), len(ls.buf)
			ls.buf = ls.buf[:0]
		}
	}
}

// maxDiagLine is the longest line of a method's stderr kept whole.
const maxDiagLine = 16 << 10

func (s *session) logDiag(line string) {
	if strings.TrimSpace(line) == "" {
		return
	}
	s.mu.Lock()
	s.diagLines = keepLast(s.diagLines, line)
	s.heard = true
	s.mu.Unlock()
	// Until the child is up, what the program says (prompts, banners,
	// login noise) is quoted in the error if the connection fails, and
	// otherwise only of interest when debugging.
	level := slog.LevelInfo
	if !s.up.Load() || strings.HasPrefix(line, "debug1:") || strings.HasPrefix(line, "debug2:") || strings.HasPrefix(line, "debug3:") {
		level = slog.LevelDebug
	}
	s.env.Log(level, line)
}

// readyPrefix is the start of the line a child prints when it is up.
var readyPrefix = func() string {
	l := strings.TrimSpace(string(core.ReadyLine()))
	return l[:strings.LastIndexByte(l, ' ')+1]
}()

// run drives the stub protocol until the child's ready line, and returns
// a reader that yields that line (with the noise before it) and then the
// rest of the stream.
func (s *session) run() (io.Reader, error) {
	marker := s.stub.marker()
	var ls lineSplitter
	var replay bytes.Buffer
	buf := make([]byte, 32<<10)
	for {
		n, rerr := s.p.stdout.Read(buf)
		ls.buf = append(ls.buf, buf[:n]...)
		for {
			line, ok := ls.next()
			if !ok {
				break
			}
			if i := strings.Index(line, readyPrefix); i >= 0 {
				replay.WriteString(line)
				replay.WriteByte('\n')
				replay.Write(ls.buf)
				return io.MultiReader(&replay, s.p.stdout), nil
			}
			if i := strings.Index(line, marker); i >= 0 {
				if pre := line[:i]; strings.TrimSpace(pre) != "" {
					s.noteOutput(pre, &replay)
				}
				if err := s.handle(line[i+len(marker):]); err != nil {
					return nil, err
				}
				continue
			}
			s.noteOutput(line, &replay)
			if s.p.diag == nil && s.spec.prompt != nil {
				s.answer(line, false)
			}
		}
		if rerr != nil {
			return nil, s.endedEarly(rerr)
		}
		if s.p.diag == nil && s.spec.prompt != nil {
			if text, ok := ls.prompt(); ok {
				s.answer(text, true)
			}
		}
		if err := s.failed(); err != nil {
			return nil, err
		}
	}
}

// noteOutput keeps a line the target printed before the child was up:
// for error messages, and replayed to core as the noise before the ready
// line.
func (s *session) noteOutput(line string, replay *bytes.Buffer) {
	if strings.TrimSpace(line) == "" {
		return
	}
	s.mu.Lock()
	s.outLines = keepLast(s.outLines, line)
	s.heard = true
	s.mu.Unlock()
	if replay.Len() < 16<<10 {
		replay.WriteString(line)
		replay.WriteByte('\n')
	}
}

// diagGrace is how long a connection whose stdout ended early waits for
// the end of its stderr (or terminal), whose last lines say why.
const diagGrace = 2 * time.Second

// endedEarly explains why stdout ended before the ready line.
func (s *session) endedEarly(rerr error) error {
	if err := s.failed(); err != nil {
		return err
	}
	// stderr says why (ssh's "Permission denied", "Host key verification
	// failed."): let the prompter see the last of it.
	diagOpen := false
	select {
	case <-s.diagDone:
	case <-time.After(diagGrace):
		diagOpen = true
	}
	if err := s.failed(); err != nil {
		return err
	}
	why := "the connection closed before mitostar started"
	if !errors.Is(rerr, io.EOF) {
		why += " (" + rerr.Error() + ")"
	}
	if st := s.ep.exitStatus(time.Second); st != "" {
		why += ": " + st
	}
	if diagOpen {
		// Its last words may be missing below: say so.
		why += fmt.Sprintf("; its stderr was still open %v later", diagGrace)
	}
	return errors.New(why)
}

// handle serves one message of the stub: "have SHA256...", "stage2 UID
// SYSNAME MACHINE", "send GZIP" or "error TEXT".
func (s *session) handle(msg string) error {
	verb, rest, _ := strings.Cut(msg, " ")
	switch verb {
	case "have":
		for _, f := range strings.Fields(rest) {
			if len(f) == 64 && strings.Trim(f, "0123456789abcdef") == "" {
				s.cached = append(s.cached, f)
			}
		}
		return nil
	case "stage2":
		f := strings.Fields(rest)
		if len(f) != 3 {
			return fmt.Errorf("bootstrap: malformed stage2 request %q", msg)
		}
		goos, goarch, err := platformOf(f[1], f[2])
		if err != nil {
			return err
		}
		s.platform = goos + "/" + goarch
		bin, err := binaryFor(s.ctx, s.env.Router, goos, goarch)
		if err != nil {
			return err
		}
		info, err := bin.info()
		if err != nil {
			return err
		}
		s.ship = bin
		script := stage2Script(info.hash, info.size)
		s.setStage("sending the second stage of the bootstrap to the target (" + s.platform + ")")
		_, err = fmt.Fprintf(s.in, "%d\n%s", len(script), script)
		s.setStage("waiting for the target to find mitostar in its cache, or ask for it, and start it")
		return s.writeErr(err)
	case "send":
		if s.ship == nil {
			return errors.New("bootstrap: the stub asked for the binary before naming its platform")
		}
		s.shipped = true
		s.setStage("sending the mitostar binary to the target")
		defer s.setStage("waiting for mitostar to start on the target after sending it")
		if strings.TrimSpace(rest) == "1" {
			gz, err := s.ship.gzipped()
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintf(s.in, "%d\n", len(gz)); err != nil {
				return s.writeErr(err)
			}
			_, err = s.in.Write(gz)
			return s.writeErr(err)
		}
		info, _ := s.ship.info()
		f, err := s.ship.open()
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := fmt.Fprintf(s.in, "%d\n", info.size); err != nil {
			return s.writeErr(err)
		}
		_, err = io.Copy(s.in, f)
		return s.writeErr(err)
	case "error":
		return errors.New("bootstrap failed on the target: " + rest)
	}
	return fmt.Errorf("bootstrap: unknown request %q from the stub", msg)
}

func (s *session) writeErr(err error) error {
	if err == nil {
		return nil
	}
	if f := s.failed(); f != nil {
		return f
	}
	return fmt.Errorf("sending to the target: %w", err)
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

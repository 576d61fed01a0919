package core

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mitostar/mitostar/internal/wire"
)

// BuildVersion identifies the build; the Makefile sets it with -ldflags.
var BuildVersion = "dev"

// RoleEnv names the environment variable that selects the role a
// re-executed mitostar binary plays ("child", "fakessh", ...).
const RoleEnv = "MITOSTAR_ROLE"

// A Transport starts the process at the far end of a new child stream:
// a command line with a stdin and a stdout, plus a bootstrap step.
// Implementations live in package connect, one file per method.
type Transport interface {
	// DefaultName is the context name used when the caller gives none.
	DefaultName() string
	// Start starts the process and runs its bootstrap (password prompts,
	// shipping the binary) until mitostar runs in the child role at the
	// far end. It must give up when ctx ends.
	Start(ctx context.Context, env *StartEnv) (*Conn, error)
}

// StartEnv is what a Transport may use while starting a child.
type StartEnv struct {
	Router *Router // the router that will own the child's stream
	Name   string  // the new context's name
	ID     uint32  // the new context's id
	Debug  bool
}

// Output logs one line that the new child's process wrote on stderr,
// tagged with its name.
func (e *StartEnv) Output(line string) { e.Log(levelOutput, line) }

// Log logs text at level as the new child: tagged with its name, and
// forwarded to the master as a record about the child's id.
func (e *StartEnv) Log(level slog.Level, text string) {
	e.Router.emitFor(e.ID, e.Name, level, text)
}

// levelOutput is the level of a child's stdout/stderr lines: visible by
// default.
const levelOutput = slog.LevelInfo

// A Conn is a started child process as its parent sees it.
type Conn struct {
	// Stdout yields what the far end writes: noise, the ready marker, frames.
	Stdout io.Reader
	// Stdin carries frames to the far end.
	Stdin io.Writer
	// Close releases the connection: closes the pipes and makes sure the
	// process ends (terminating it after a grace period). It must not
	// block and may be called more than once.
	Close func()
	// HelloNow says that the far end reads nothing from Stdin before it
	// prints the ready marker (it is this binary in the child role from
	// its first instruction), so the handshake can be written at once,
	// while the child starts, instead of after its marker arrives.
	HelloNow bool
	// Exited, if set, is closed once the local process of the connection
	// (the child itself, or ssh, sudo, ...) has exited and been reaped.
	// The router announces the context gone only after that, so that
	// "gone" means no process is left.
	Exited <-chan struct{}
}

// ConnectOptions are the keywords common to every connection method.
type ConnectOptions struct {
	Name           string         `cbor:"1,keyasint,omitempty"`
	ConnectTimeout time.Duration  `cbor:"2,keyasint,omitempty"` // default 30 s
	Debug          bool           `cbor:"3,keyasint,omitempty"`
	Unidirectional bool           `cbor:"4,keyasint,omitempty"`
	Kwargs         map[string]any `cbor:"5,keyasint,omitempty"` // method-specific keywords
	Via            *Context       `cbor:"-"`
}

// A MethodFactory builds the Transport of a connection method from its
// keywords; unknown or ill-typed keywords are an error.
type MethodFactory func(r *Router, opts *ConnectOptions) (Transport, error)

var (
	methodsMu sync.RWMutex
	methods   = map[string]MethodFactory{}
)

// RegisterMethod makes a connection method available by name, in every
// context of the binary (so it works as a via= hop).
func RegisterMethod(name string, f MethodFactory) {
	methodsMu.Lock()
	defer methodsMu.Unlock()
	if _, dup := methods[name]; dup {
		panic("core: RegisterMethod called twice for " + name)
	}
	methods[name] = f
}

// Methods lists the registered method names.
func Methods() []string {
	methodsMu.RLock()
	defer methodsMu.RUnlock()
	var names []string
	for n := range methods {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func init() {
	RegisterMethod("local", newLocalTransport)
	RegisterMethod("fork", newForkTransport)
	RegisterFunc("core.connect", serveConnect)
}

// connectReply is the result of core.connect in a via context.
type connectReply struct {
	ID   uint32 `cbor:"1,keyasint"`
	Name string `cbor:"2,keyasint"`
}

func serveConnect(ctx context.Context, c *Call) (any, error) {
	var args struct {
		_      struct{} `cbor:",toarray"`
		Method string
		Opts   ConnectOptions
	}
	if err := c.Args(&args); err != nil {
		return nil, fmt.Errorf("core.connect: %w", err)
	}
	child, err := c.Router.Connect(ctx, args.Method, &args.Opts)
	if err != nil {
		return nil, err
	}
	return connectReply{ID: child.ID, Name: child.Name()}, nil
}

// Connect starts a child context with the named method. With opts.Via
// set, the via context makes the connection and the new context is its
// child; the call returns once the child has answered the handshake.
func (r *Router) Connect(ctx context.Context, method string, opts *ConnectOptions) (*Context, error) {
	if opts == nil {
		opts = &ConnectOptions{}
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 30 * time.Second
	}
	if via := opts.Via; via != nil && via.ID != r.id {
		o := *opts
		o.Via = nil
		var rep connectReply
		cctx, cancel := context.WithTimeout(ctx, o.ConnectTimeout+5*time.Second)
		defer cancel()
		if err := via.Call(cctx, &rep, "core.connect", method, o); err != nil {
			return nil, err
		}
		r.mu.Lock()
		c := r.contextLocked(rep.ID, rep.Name)
		r.mu.Unlock()
		c.via.Store(via)
		return c, nil
	}
	methodsMu.RLock()
	factory := methods[method]
	methodsMu.RUnlock()
	if factory == nil {
		return nil, fmt.Errorf("unknown connection method %q (known: %s)", method, strings.Join(Methods(), ", "))
	}
	t, err := factory(r, opts)
	if err != nil {
		return nil, err
	}
	if opts.Name == "" {
		opts.Name = t.DefaultName()
	}
	id, err := r.AllocateID(ctx)
	if err != nil {
		return nil, err
	}
	return r.startChild(ctx, t, id, method, opts)
}

// SetHelloExt installs fn, called for each new child to fill
// helloRequest.Ext (the runtime passes module roots, argv and, for fork,
// its module cache).
func (r *Router) SetHelloExt(fn func(method string) []byte) {
	r.mu.Lock()
	r.helloExt = fn
	r.mu.Unlock()
}

func (r *Router) startChild(ctx context.Context, t Transport, id uint32, method string, opts *ConnectOptions) (*Context, error) {
	ctx, cancel := context.WithTimeout(ctx, opts.ConnectTimeout)
	defer cancel()
	env := &StartEnv{Router: r, Name: opts.Name, ID: id, Debug: opts.Debug}
	conn, err := t.Start(ctx, env)
	name := env.Name
	op := "connect " + name
	if name == "" {
		op = "connect " + method
	}
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			err = fmt.Errorf("connection timed out after %s: %w", opts.ConnectTimeout, err)
		}
		var se *StreamError
		if errors.As(err, &se) {
			return nil, err
		}
		return nil, &StreamError{Op: op, Err: err}
	}
	stop := context.AfterFunc(ctx, conn.Close)
	fail := func(err error, noise string) (*Context, error) {
		stop()
		conn.Close()
		if ctx.Err() == context.DeadlineExceeded {
			err = fmt.Errorf("connection timed out after %s (%v)", opts.ConnectTimeout, err)
		}
		return nil, &StreamError{Op: op, Err: err, Noise: noise}
	}

	hello := helloRequest{
		Protocol: ProtocolVersion, Version: BuildVersion, ID: id,
		ParentIDs:      append([]uint32{r.id}, r.parentIDs...),
		Name:           name,
		MaxMessageSize: r.MaxMessageSize(),
		LogLevel:       int(r.LogLevel()),
		Debug:          opts.Debug || r.debug.Load(),
		Unidirectional: opts.Unidirectional || r.Unidirectional(),
	}
	r.mu.Lock()
	helloExt := r.helloExt
	r.mu.Unlock()
	if helloExt != nil {
		hello.Ext = helloExt(method)
	}
	data, err := Marshal(&hello)
	if err != nil {
		return fail(fmt.Errorf("encoding the handshake: %w", err), "")
	}
	helloMsg := &Message{DstID: id, SrcID: r.id, AuthID: r.id, Handle: handleHello, Data: data}
	var early error // writing the handshake before the marker failed
	if conn.HelloNow {
		early = writeMessage(conn.Stdin, helloMsg)
	}
	br := bufio.NewReaderSize(conn.Stdout, 64<<10)
	noise, err := readUntilReady(br)
	if err != nil {
		// A child that died at once also broke the pipe of an early
		// handshake; what it printed says more than EPIPE.
		return fail(err, noise)
	}
	if noise != "" {
		r.log.Debug("output before handshake", "context", name, "text", noise)
	}
	if !conn.HelloNow {
		early = writeMessage(conn.Stdin, helloMsg)
	}
	if early != nil {
		return fail(fmt.Errorf("sending handshake: %w", early), noise)
	}
	m, err := readMessage(br, 1<<20)
	if err != nil {
		return fail(fmt.Errorf("reading handshake reply: %w", err), noise)
	}
	var reply helloReply
	if m.Handle != handleHello {
		return fail(fmt.Errorf("handshake: got a frame for handle %d", m.Handle), noise)
	}
	if err := Unmarshal(m.Data, &reply); err != nil {
		return fail(fmt.Errorf("handshake: %w", err), noise)
	}
	if reply.Error != "" {
		return fail(errors.New(reply.Error), noise)
	}
	if !stop() {
		return fail(errors.New("handshake finished too late"), noise)
	}
	r.log.Debug("child started", "name", name, "id", id, "pid", reply.PID, "version", reply.Version)
	s := newStream(r, id, name, false, hello.MaxMessageSize, br, conn.Stdin, conn.Close)
	s.exited = conn.Exited
	select {
	case <-r.closed:
		conn.Close()
		return nil, &ChannelError{Reason: msgRouterClosed}
	default:
	}
	r.addChild(s)
	return r.ContextByID(id), nil
}

// readUntilReady consumes the far end's output up to and including the
// ready marker line, returning what came before it (the last 20 lines).
func readUntilReady(br *bufio.Reader) (noise string, err error) {
	var lines []string
	keep := func(l string) {
		lines = append(lines, strings.TrimRight(l, "\r\n"))
		if len(lines) > 20 {
			lines = lines[1:]
		}
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if line != "" {
				keep(line)
			}
			noise := strings.Join(lines, "\n")
			if err == io.EOF {
				return noise, errors.New("EOF on stream before the child was ready")
			}
			return noise, err
		}
		if i := strings.Index(line, readyMarker+" "); i >= 0 {
			if pre := line[:i]; strings.TrimSpace(pre) != "" {
				keep(pre)
			}
			v := strings.TrimSpace(line[i+len(readyMarker)+1:])
			if v != strconv.Itoa(ProtocolVersion) {
				return strings.Join(lines, "\n"), fmt.Errorf("protocol version mismatch: the child speaks mitostar protocol %s, this binary speaks %d (different mitostar builds?)", v, ProtocolVersion)
			}
			return strings.Join(lines, "\n"), nil
		}
		keep(line)
	}
}

// ReadyLine is the marker line a child prints before its first frame.
func ReadyLine() []byte {
	return []byte(readyMarker + " " + strconv.Itoa(ProtocolVersion) + "\n")
}

var (
	rolesMu sync.RWMutex
	roles   = map[string]func() int{}
)

// RegisterRole registers a role a re-executed binary can play.
func RegisterRole(name string, fn func() int) {
	rolesMu.Lock()
	defer rolesMu.Unlock()
	roles[name] = fn
}

// RunRole runs the role named by $MITOSTAR_ROLE and exits with its
// status; it returns at once when the variable is unset. Call it first
// thing in main (and in TestMain of packages whose tests start children).
func RunRole() {
	name := os.Getenv(RoleEnv)
	if name == "" {
		return
	}
	os.Unsetenv(RoleEnv)
	rolesMu.RLock()
	fn := roles[name]
	rolesMu.RUnlock()
	if fn == nil {
		fmt.Fprintf(os.Stderr, "mitostar: unknown role %q\n", name)
		os.Exit(2)
	}
	os.Exit(fn())
}

// A ChildHook runs in a new child after the handshake and before its
// stream starts; ext is helloRequest.Ext. The runtime registers one.
type ChildHook func(r *Router, ext []byte) error

var childHooks []ChildHook

// RegisterChildHook adds a hook run in every child (call it from init).
func RegisterChildHook(h ChildHook) { childHooks = append(childHooks, h) }

func init() { RegisterRole("child", runChild) }

// runChild is the child role: the stream is on fds 0 and 1.
func runChild() int {
	defer startProfiles()()
	in, out, err := wire.TakeStdio()
	if err != nil {
		fmt.Fprintf(os.Stderr, "mitostar child: %v\n", err)
		return 1
	}
	// No PR_SET_PDEATHSIG here: a local child has it from its parent's
	// fork (childSysProcAttr), and a child behind a transport exits on
	// EOF from its stream. Its parent process is the transport's, and
	// under docker exec the runc process that starts it exits at once
	// (the process moves to the shim): a parent-death signal set here,
	// before that, killed the child during its handshake.
	if _, err := out.Write(ReadyLine()); err != nil {
		return 1
	}
	br := bufio.NewReaderSize(in, 64<<10)
	timer := time.AfterFunc(60*time.Second, func() {
		fmt.Fprintln(os.Stderr, "mitostar child: no handshake from the parent within 60s")
		os.Exit(1)
	})
	m, err := readMessage(br, 64<<20)
	timer.Stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "mitostar child: reading handshake: %v\n", err)
		return 1
	}
	var hello helloRequest
	reply := helloReply{Protocol: ProtocolVersion, Version: BuildVersion, PID: os.Getpid()}
	if m.Handle != handleHello {
		reply.Error = fmt.Sprintf("expected a handshake, got a frame for handle %d", m.Handle)
	} else if err := Unmarshal(m.Data, &hello); err != nil {
		reply.Error = "bad handshake: " + err.Error()
	} else if hello.Protocol != ProtocolVersion {
		reply.Error = fmt.Sprintf("protocol version mismatch: parent speaks %d, child speaks %d", hello.Protocol, ProtocolVersion)
	} else if len(hello.ParentIDs) == 0 || hello.ID == 0 || slices.Contains(hello.ParentIDs, hello.ID) {
		reply.Error = fmt.Sprintf("bad handshake: context id %d with ancestors %v", hello.ID, hello.ParentIDs)
	}
	data, _ := Marshal(&reply)
	var buf bytes.Buffer
	writeMessage(&buf, &Message{DstID: m.SrcID, SrcID: hello.ID, AuthID: hello.ID, Handle: handleHello, Data: data})
	if _, err := out.Write(buf.Bytes()); err != nil || reply.Error != "" {
		return 1
	}
	r := newRouter(hello.ID, hello.ParentIDs, Options{
		Name:           hello.Name,
		MaxMessageSize: hello.MaxMessageSize,
		LogLevel:       0,
		Unidirectional: hello.Unidirectional,
		Debug:          hello.Debug,
	})
	r.logLevel.Store(int64(hello.LogLevel))
	if hello.Debug {
		r.log = slog.New(NewLogHandler(r))
	}
	r.parent = newStream(r, hello.ParentIDs[0], "parent", true, hello.MaxMessageSize, br, out, func() { in.Close(); out.Close() })
	for _, h := range childHooks {
		if err := h(r, hello.Ext); err != nil {
			r.parent.start()
			r.Emit(slog.LevelError, "child start failed: "+err.Error())
			r.parent.flush(time.Second)
			return 1
		}
	}
	r.parent.start()
	<-r.Done()
	return 0
}

// ProfileDirEnv names a directory where every context of the tree writes
// CPU and heap profiles (child-PID.cpu.prof, child-PID.heap.prof) when it
// exits; `mitostar --profile DIR` sets it.
const ProfileDirEnv = "MITOSTAR_PROFILE_DIR"

// startProfiles starts the CPU profile of this child if $MITOSTAR_PROFILE_DIR
// is set, and returns the function that writes both profiles.
func startProfiles() func() {
	dir := os.Getenv(ProfileDirEnv)
	if dir == "" {
		return func() {}
	}
	return StartProfiles(dir, fmt.Sprintf("child-%d", os.Getpid()))
}

// StartProfiles starts a CPU profile written to DIR/NAME.cpu.prof and
// returns a function that stops it and writes DIR/NAME.heap.prof.
// Failures are reported on stderr: profiling never stops the program.
func StartProfiles(dir, name string) func() {
	cpu, err := os.Create(filepath.Join(dir, name+".cpu.prof"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "mitostar: profile: %v\n", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(cpu); err != nil {
		fmt.Fprintf(os.Stderr, "mitostar: profile: %v\n", err)
	}
	return func() {
		pprof.StopCPUProfile()
		cpu.Close()
		heap, err := os.Create(filepath.Join(dir, name+".heap.prof"))
		if err != nil {
			fmt.Fprintf(os.Stderr, "mitostar: profile: %v\n", err)
			return
		}
		pprof.Lookup("allocs").WriteTo(heap, 0)
		heap.Close()
	}
}

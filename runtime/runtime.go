// Package runtime runs Starlark in every context of a mitostar tree: it
// executes the master's script, serves calls of top-level functions and
// registered Go builtins arriving from parents (one at a time, in arrival
// order, each on a fresh thread), ships modules on demand with their
// identity (root-relative path + sha256), and predeclares SPEC §3's names.
//
// A Go program embeds mitostar by building a master core.Router, a
// Runtime on it, registering builtins with RegisterBuiltin and running a
// script:
//
//	r := core.NewMaster(core.Options{})
//	defer r.Close()
//	rt := runtime.New(r, runtime.Options{Roots: []string{"scripts"}})
//	err := rt.RunScript(ctx, "scripts/deploy.star")
package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.starlark.net/lib/json"
	"go.starlark.net/lib/math"
	sltime "go.starlark.net/lib/time"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/mitostar/mitostar/builtins"
	// Connection methods register themselves with core; every context
	// needs them, since any context can be a via= hop.
	"github.com/mitostar/mitostar/connect"
	"github.com/mitostar/mitostar/core"
	// fakessh registers the fakessh role, fakessh.exec and fakessh.run.
	_ "github.com/mitostar/mitostar/fakessh"
	"github.com/mitostar/mitostar/files"
)

const slogError = slog.LevelError

// Options configure a Runtime.
type Options struct {
	// Roots are the module roots (master only): the main script's
	// directory first, then each -I directory.
	Roots []string
	// Argv is the script's argument list, the same in every context.
	Argv []string
	// Stdout receives the master's print() output (os.Stdout by default).
	Stdout io.Writer
	// SSHTransport is the transport of ssh connections that name none
	// ("openssh" or "native"; "" for connect's default), in this context
	// and every child.
	SSHTransport string
}

// Runtime is the Starlark runtime of one context.
type Runtime struct {
	r           *core.Router
	opts        Options
	predeclared starlark.StringDict
	decoder     *builtins.Decoder

	mu      sync.Mutex
	modules map[string]*module
	partial map[string][]byte            // "path@sha" → LOAD_MODULE bytes so far
	sent    map[uint32]map[moduleID]bool // target id → modules already pushed
	cached  map[uint32]map[string]bool   // child id → sha256s in its target's module cache
	disk    *moduleCache                 // this child's module cache; nil in the master and local children
	stdout  sync.Mutex

	loadFn  func(*starlark.Thread, string) (starlark.StringDict, error)
	printFn func(*starlark.Thread, string)
	// lifetimeThreads are the running threads bound to the router's
	// lifetime (see newThread). A plain map under a mutex: a sync.Map
	// allocated an entry for every call.
	threadsMu       sync.Mutex
	lifetimeThreads map[*starlark.Thread]*builtins.ThreadState

	// resolved caches what resolve found for a "star:" reference: the
	// module of a path and sha executes once, so the function it defines
	// under a name never changes.
	resolved sync.Map // reference → starlark.Callable
}

// RegisterBuiltin makes fn callable from Starlark in every context under
// a dotted name ("mymod.fn"), locally and as ctx.call(mymod.fn). Call it
// from init (or before any context starts): children are this same binary
// and must register the same names.
func RegisterBuiltin(name string, fn builtins.Func) { builtins.Register(name, fn) }

// New returns the runtime of r's context and installs its handlers: calls,
// module requests and pushes.
func New(r *core.Router, opts Options) *Runtime {
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	rt := &Runtime{r: r, opts: opts, modules: map[string]*module{}, partial: map[string][]byte{}, sent: map[uint32]map[moduleID]bool{},
		cached: map[uint32]map[string]bool{}, lifetimeThreads: map[*starlark.Thread]*builtins.ThreadState{}}
	if !r.IsMaster() {
		rt.disk = openModuleCache()
	}
	connect.ObserveCachedModules(r, rt.noteCached)
	rt.decoder = &builtins.Decoder{Router: r, Resolve: rt.resolveRef}
	rt.loadFn, rt.printFn = rt.load, rt.print // method values, made once
	context.AfterFunc(r.Lifetime(), rt.cancelLifetimeThreads)
	rt.predeclared = rt.makePredeclared()
	r.SetExt(runtimeKey{}, rt)
	if opts.SSHTransport != "" {
		if err := connect.SetDefaultSSHTransport(r, opts.SSHTransport); err != nil {
			r.Emit(slogError, "runtime: "+err.Error())
		}
	}
	r.SetCallHandler(rt.handleCall)
	r.SetHelloExt(rt.helloExt)
	r.AddHandler(rt.onGetModule, core.HandlerOptions{Handle: core.HandleGetModule, Policy: r.IsImmediateChild})
	r.AddHandler(rt.onLoadModule, core.HandlerOptions{Handle: core.HandleLoadModule, Policy: r.HasParentAuthority})
	if r.IsMaster() {
		// Children install their FileService at start (files registers a
		// child hook); a master gets it here.
		if _, err := files.Install(r); err != nil {
			r.Logger().Error("installing the file service", "err", err)
		}
	}
	return rt
}

type runtimeKey struct{}

// noteCached records the modules a new child's target has cached.
func (rt *Runtime) noteCached(id uint32, shas []string) {
	set := make(map[string]bool, len(shas))
	for _, s := range shas {
		set[s] = true
	}
	rt.mu.Lock()
	rt.cached[id] = set
	rt.mu.Unlock()
}

// Of returns the runtime attached to r, if any.
func Of(r *core.Router) *Runtime {
	v, _ := r.Ext(runtimeKey{})
	rt, _ := v.(*Runtime)
	return rt
}

// Router is the context's router.
func (rt *Runtime) Router() *core.Router { return rt.r }

// Decoder implements builtins.Runtime.
func (rt *Runtime) Decoder() *builtins.Decoder { return rt.decoder }

func (rt *Runtime) isPredeclared(name string) bool {
	_, ok := rt.predeclared[name]
	return ok
}

func (rt *Runtime) makePredeclared() starlark.StringDict {
	d := builtins.Predeclared()
	r := rt.r
	d["router"] = &builtins.Router{R: r}
	d["context_id"] = starlark.MakeUint(uint(r.ID()))
	parents := r.ParentIDs()
	if len(parents) > 0 {
		d["parent_id"] = starlark.MakeUint(uint(parents[0]))
	} else {
		d["parent_id"] = starlark.None
	}
	pl := make([]starlark.Value, len(parents))
	for i, p := range parents {
		pl[i] = starlark.MakeUint(uint(p))
	}
	d["parent_ids"] = starlark.NewList(pl)
	d["is_master"] = starlark.Bool(r.IsMaster())
	argv := make([]starlark.Value, len(rt.opts.Argv))
	for i, a := range rt.opts.Argv {
		argv[i] = starlark.String(a)
	}
	d["argv"] = starlark.NewList(argv)
	d["json"] = json.Module
	d["math"] = math.Module
	d["struct"] = starlark.NewBuiltin("struct", starlarkstruct.Make)
	tm := starlark.StringDict{}
	for k, v := range sltime.Module.Members {
		tm[k] = v
	}
	tm["sleep"] = starlark.NewBuiltin("time.sleep", timeSleep)
	d["time"] = &starlarkstruct.Module{Name: "time", Members: tm}
	d.Freeze()
	return d
}

func timeSleep(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var v starlark.Value
	if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &v); err != nil {
		return nil, err
	}
	secs, ok := starlark.AsFloat(v) // int or float, as Python's time.sleep
	if !ok || secs != secs {
		return nil, fmt.Errorf("time.sleep: want a number of seconds, got %s", v.Type())
	}
	if secs < 0 {
		return nil, fmt.Errorf("time.sleep: negative duration %g", secs)
	}
	t := time.NewTimer(time.Duration(secs * float64(time.Second)))
	defer t.Stop()
	ctx := builtins.ThreadContext(thread)
	select {
	case <-t.C:
		return starlark.None, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("time.sleep: %w", ctx.Err())
	}
}

// newThread returns a thread for this context, bound to ctx: cancelling
// ctx cancels the thread (and catch cannot swallow that).
func (rt *Runtime) newThread(name string, ctx context.Context) (*starlark.Thread, func()) {
	thread := &starlark.Thread{Name: name, Load: rt.loadFn, Print: rt.printFn, OnMaxSteps: stepsDone}
	thread.SetMaxExecutionSteps(wakeSteps)
	st := &builtins.ThreadState{Router: rt.r, Runtime: rt, Ctx: ctx}
	builtins.SetThreadState(thread, st)
	if ctx == rt.r.Lifetime() {
		// Most calls have no timeout: rather than a callback on the
		// router's lifetime per call, the one installed by New cancels
		// whichever such thread runs when the router closes.
		rt.threadsMu.Lock()
		rt.lifetimeThreads[thread] = st
		rt.threadsMu.Unlock()
		if ctx.Err() != nil {
			cancelThread(ctx, thread, st)
		}
		return thread, func() {
			rt.threadsMu.Lock()
			delete(rt.lifetimeThreads, thread)
			rt.threadsMu.Unlock()
		}
	}
	stop := context.AfterFunc(ctx, func() { cancelThread(ctx, thread, st) })
	return thread, func() { stop() }
}

// wakeSteps is how many Starlark steps a thread runs between calls of
// core.WakeSysmon (~1–3 ms of computation): a thread that loops without
// blocking must be preemptible, or no timer (its _timeout among them)
// fires and no message is routed while it runs.
const wakeSteps = 1 << 16

// stepsDone is every thread's OnMaxSteps: it wakes sysmon and sets the
// next mark. A caller that wants a real step limit sets OnMaxSteps to
// nil first.
func stepsDone(thread *starlark.Thread) {
	thread.SetMaxExecutionSteps(thread.ExecutionSteps() + wakeSteps)
	core.WakeSysmon()
}

// cancelThread stops thread because ctx ended.
func cancelThread(ctx context.Context, thread *starlark.Thread, st *builtins.ThreadState) {
	st.Cancelled.Store(true)
	thread.Cancel(context.Cause(ctx).Error())
}

// cancelLifetimeThreads cancels the threads bound to the router's
// lifetime, which has ended.
func (rt *Runtime) cancelLifetimeThreads() {
	ctx := rt.r.Lifetime()
	rt.threadsMu.Lock()
	defer rt.threadsMu.Unlock()
	for thread, st := range rt.lifetimeThreads {
		cancelThread(ctx, thread, st)
	}
}

// NewThread implements builtins.Runtime for handlers: the thread lives
// as long as the router.
func (rt *Runtime) NewThread(name string) (*starlark.Thread, func()) {
	return rt.newThread(name, rt.r.Lifetime())
}

func builtinsThreadContext(t *starlark.Thread) context.Context { return builtins.ThreadContext(t) }

func (rt *Runtime) print(thread *starlark.Thread, msg string) {
	if rt.r.IsMaster() {
		rt.stdout.Lock()
		defer rt.stdout.Unlock()
		io.WriteString(rt.opts.Stdout, msg+"\n")
		return
	}
	rt.r.Emit(slog.LevelInfo, msg)
}

// Function references travel as "star:SHA:NAME:PATH" or "builtin:NAME".
const (
	refStar    = "star:"
	refBuiltin = "builtin:"
)

func init() {
	builtins.FuncRefOf = funcRefOf
}

// funcRefOf says how fn travels, or why it cannot.
func funcRefOf(fn *starlark.Function) (path, sha, name string, err error) {
	r, err := starRefOf(fn)
	if err != nil {
		return "", "", "", err
	}
	return r.path, r.sha, fn.Name(), nil
}

// A starRef is how a top-level Starlark function travels: its module's
// path and sha256, and the reference string of a CallRequest.
type starRef struct{ path, sha, ref string }

// starRefOf says how fn travels, or why it cannot; the answer for a
// top-level function is worked out once and cached.
func starRefOf(fn *starlark.Function) (*starRef, error) {
	if r, ok := topLevel.Load(fn); ok {
		return r.(*starRef), nil
	}
	name := fn.Name()
	if name == "lambda" {
		return nil, errors.New("cannot call a lambda in another context: functions travel by reference (module path and name), and an anonymous function has none; define it with def at the top level of a module")
	}
	// Globals copies the module's globals into a new map: do it once per
	// function, not once per call.
	if g := fn.Globals(); g[name] != fn {
		return nil, fmt.Errorf("cannot call nested function %s in another context: only top-level functions of a module travel by reference; move it to the top level of its module", name)
	}
	path := fn.Position().Filename()
	rt := moduleOwner.Load()
	if rt == nil {
		return nil, errors.New("no runtime knows the module of " + name)
	}
	rt.mu.Lock()
	m, ok := rt.modules[path]
	rt.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("function %s: module %s is not known to this context", name, path)
	}
	r := &starRef{path: path, sha: m.sha, ref: refStar + m.sha + ":" + name + ":" + path}
	topLevel.Store(fn, r)
	return r, nil
}

// topLevel holds the functions funcRefOf found to be top-level functions
// of their module (a global binding never changes once made), with how
// they travel.
var topLevel sync.Map // *starlark.Function → *starRef

// moduleOwner is the runtime of this process (one context per process).
var moduleOwner atomic.Pointer[Runtime]

// CallRequest implements builtins.Runtime: fn as a reference plus the
// modules target lacks (the function's module and its transitive loads).
func (rt *Runtime) CallRequest(target *core.Context, fn starlark.Value, args starlark.Tuple, kwargs []starlark.Tuple) (*core.CallRequest, error) {
	req := &core.CallRequest{}
	var mod *module
	switch f := fn.(type) {
	case *starlark.Builtin:
		if !builtins.IsRegistered(f) {
			return nil, fmt.Errorf("call: %s is not a registered builtin, so it cannot run in another context", f.Name())
		}
		req.Func = refBuiltin + f.Name()
	case *starlark.Function:
		ref, err := starRefOf(f)
		if err != nil {
			return nil, err
		}
		req.Func = ref.ref
		rt.mu.Lock()
		mod = rt.modules[ref.path]
		rt.mu.Unlock()
	case builtins.FuncRefValue:
		path, sha, name := f.FuncRef()
		req.Func = refStar + sha + ":" + name + ":" + path
		m, err := rt.moduleSource(path)
		if err != nil {
			return nil, err
		}
		mod = m
	default:
		return nil, fmt.Errorf("call: want a top-level function or a registered builtin, got %s", fn.Type())
	}
	var err error
	if req.Args, req.ArgsTail, err = builtins.EncodeArgs(args, kwargs); err != nil {
		return nil, fmt.Errorf("call: %w", err)
	}
	if mod != nil && target.ID != rt.r.ID() {
		blobs, err := rt.modulesFor(target.ID, mod)
		if err != nil {
			return nil, err
		}
		// Small modules ride with the call; larger ones go ahead of it as
		// LOAD_MODULE chunks that fit any message size limit. Either way
		// the first call costs one round trip. Those the target has in
		// its module cache (no source here) always ride with the call.
		if len(blobs) > 0 {
			ext := encodeModuleBlobs(blobs)
			if len(ext) > moduleChunkSize {
				var full, named []moduleBlob
				for _, b := range blobs {
					if b.Source == nil {
						named = append(named, b)
					} else {
						full = append(full, b)
					}
				}
				if err := rt.pushModules(target, full); err != nil {
					return nil, err
				}
				ext = nil
				if len(named) > 0 {
					ext = encodeModuleBlobs(named)
				}
			}
			req.Ext = ext
		}
	}
	return req, nil
}

// modulesFor returns the modules target still lacks, and marks them as
// sent. Those in the target's module cache come without their source.
func (rt *Runtime) modulesFor(target uint32, m *module) ([]moduleBlob, error) {
	// A module goes with its transitive loads: once it is sent, they are.
	rt.mu.Lock()
	done := rt.sent[target][moduleID{m.path, m.sha}]
	rt.mu.Unlock()
	if done {
		return nil, nil
	}
	mods, err := rt.closure(m)
	if err != nil {
		return nil, err
	}
	rt.mu.Lock()
	sent := rt.sent[target]
	if sent == nil {
		sent = map[moduleID]bool{}
		rt.sent[target] = sent
	}
	var blobs []moduleBlob
	for _, m := range mods {
		key := moduleID{m.path, m.sha}
		if !sent[key] {
			sent[key] = true
			b := moduleBlob{Path: m.path, SHA256: m.sha, Source: m.src}
			if rt.cached[target][m.sha] {
				b.Source = nil
			}
			blobs = append(blobs, b)
		}
	}
	rt.mu.Unlock()
	return blobs, nil
}

// resolveRef turns a reference received in a value into the function.
func (rt *Runtime) resolveRef(path, sha, name string) (starlark.Value, error) {
	return &funcRef{rt: rt, path: path, sha: sha, name: name}, nil
}

// resolve finds what a CallRequest names, executing its module if needed.
func (rt *Runtime) resolve(thread *starlark.Thread, ref string) (starlark.Callable, error) {
	if name, ok := strings.CutPrefix(ref, refBuiltin); ok {
		b, found := builtins.Lookup(name)
		if !found {
			return nil, fmt.Errorf("no builtin named %q in this binary", name)
		}
		return b, nil
	}
	if fn, ok := rt.resolved.Load(ref); ok {
		return fn.(starlark.Callable), nil
	}
	rest, ok := strings.CutPrefix(ref, refStar)
	if !ok {
		return nil, fmt.Errorf("unknown function reference %q", ref)
	}
	parts := strings.SplitN(rest, ":", 3)
	if len(parts) != 3 {
		return nil, fmt.Errorf("malformed function reference %q", ref)
	}
	sha, name, path := parts[0], parts[1], parts[2]
	m, err := rt.moduleSource(path)
	if err != nil {
		return nil, err
	}
	if m.sha != sha {
		return nil, fmt.Errorf("module %s: this context has sha256 %s, the caller has %s", path, m.sha, sha)
	}
	g, err := rt.execModule(thread, m)
	if err != nil {
		return nil, err
	}
	fn, ok := g[name].(starlark.Callable)
	if !ok {
		return nil, fmt.Errorf("module %s has no function %s", path, name)
	}
	rt.resolved.Store(ref, fn)
	return fn, nil
}

// handleCall serves a CALL_FUNCTION naming Starlark or a builtin.
func (rt *Runtime) handleCall(ctx context.Context, c *core.Call) ([]byte, core.Pieces, error) {
	if len(c.Request.Ext) > 0 {
		blobs, err := decodeModuleBlobs(c.Request.Ext)
		if err != nil {
			return nil, nil, fmt.Errorf("call: modules: %w", err)
		}
		for _, b := range blobs {
			if _, err := rt.addBlob(b); err != nil {
				return nil, nil, err
			}
		}
	}
	thread, done := rt.newThread("call "+c.Request.Func, ctx)
	defer done()
	fn, err := rt.resolve(thread, c.Request.Func)
	if err != nil {
		return nil, nil, builtins.RemoteOf(err, rt.r.Name())
	}
	args, kwargs, err := rt.decoder.DecodeArgs(c.Request.Args)
	if err != nil {
		return nil, nil, err
	}
	v, err := starlark.Call(thread, fn, args, kwargs)
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return nil, nil, &core.RemoteError{Kind: "TimeoutError", Message: fmt.Sprintf("call timed out after %gs", c.Request.Timeout), Context: rt.r.Name()}
		}
		return nil, nil, builtins.RemoteOf(err, rt.r.Name())
	}
	head, tail, err := builtins.EncodePieces(core.ReplyOK, v)
	if err != nil {
		return nil, nil, &core.RemoteError{Kind: core.CallError, Message: "encoding the result: " + err.Error(), Context: rt.r.Name()}
	}
	return head, tail, nil
}

// warmCall is the call a new child runs before its first real one
// (core.Router.SetWarmCall): os.getpid, a builtin with no effects, takes
// the whole path of a call (thread, builtin lookup, arguments decoded,
// result encoded) except reading and writing the stream.
var warmCall = func() *core.CallRequest {
	args, _, err := builtins.EncodeArgs(nil, nil)
	if err != nil {
		panic(err)
	}
	return &core.CallRequest{Func: refBuiltin + "os.getpid", Args: args}
}()

// helloExt is what a new child receives in its handshake.
type helloExt struct {
	Argv         []string     `cbor:"1,keyasint"`
	Modules      []moduleBlob `cbor:"2,keyasint,omitempty"` // fork: the parent's module cache
	SSHTransport string       `cbor:"3,keyasint,omitempty"` // Options.SSHTransport
}

// readHelloExt reads the common extension, {1: argv} without modules,
// as Marshal writes it, without the reflecting decoder (whose first use
// in a new child costs it ~0.2 ms); false means another layout.
func readHelloExt(data []byte, h *helloExt) bool {
	major, _, n, rest, err := core.ReadHead(data)
	if err != nil || major != 5 || n != 1 || len(rest) == 0 || rest[0] != 0x01 {
		return false
	}
	rest = rest[1:]
	if len(rest) > 0 && rest[0] == 0xf6 { // null: no argv
		return len(rest) == 1
	}
	if major, _, n, rest, err = core.ReadHead(rest); err != nil || major != 4 || n > uint64(len(rest)) {
		return false
	}
	argv := make([]string, n)
	for i := range argv {
		var size uint64
		if major, _, size, rest, err = core.ReadHead(rest); err != nil || major != 3 || size > uint64(len(rest)) {
			return false
		}
		argv[i], rest = string(rest[:size]), rest[size:]
	}
	if len(rest) != 0 {
		return false
	}
	h.Argv = argv
	return true
}

func (rt *Runtime) helloExt(method string) []byte {
	ext := helloExt{Argv: rt.opts.Argv, SSHTransport: rt.opts.SSHTransport}
	if method == "fork" {
		rt.mu.Lock()
		for _, m := range rt.modules {
			ext.Modules = append(ext.Modules, moduleBlob{Path: m.path, SHA256: m.sha, Source: m.src})
		}
		rt.mu.Unlock()
	}
	data, _ := core.Marshal(&ext)
	return data
}

func init() {
	core.RegisterChildHook(func(r *core.Router, ext []byte) error {
		var h helloExt
		if len(ext) > 0 && !readHelloExt(ext, &h) {
			h = helloExt{}
			if err := core.Unmarshal(ext, &h); err != nil {
				return fmt.Errorf("runtime: handshake extension: %w", err)
			}
		}
		rt := New(r, Options{Argv: h.Argv, SSHTransport: h.SSHTransport})
		moduleOwner.Store(rt)
		r.SetWarmCall(warmCall)
		for _, b := range h.Modules {
			if _, err := rt.addBlob(b); err != nil {
				return err
			}
		}
		return nil
	})
}

// RunScript runs the master's script: its top level as a module, then
// main() if it defines one. The script's directory must be Roots[0] (New
// is given it by the CLI); its module path is its base name.
func (rt *Runtime) RunScript(ctx context.Context, script string) error {
	if !rt.r.IsMaster() {
		return errors.New("RunScript: only the master runs scripts")
	}
	moduleOwner.Store(rt)
	dir, base := filepath.Split(script)
	if dir == "" {
		dir = "."
	}
	if len(rt.opts.Roots) == 0 || filepath.Clean(rt.opts.Roots[0]) != filepath.Clean(dir) {
		rt.opts.Roots = append([]string{dir}, rt.opts.Roots...)
	}
	thread, done := rt.newThread("main", ctx)
	defer done()
	m, err := rt.moduleSource(base)
	if err != nil {
		return err
	}
	g, err := rt.execModule(thread, m)
	if err != nil {
		return err
	}
	if mainFn, ok := g["main"]; ok {
		fn, ok := mainFn.(starlark.Callable)
		if !ok {
			return fmt.Errorf("%s: main is a %s, not a function", base, mainFn.Type())
		}
		if _, err := starlark.Call(thread, fn, nil, nil); err != nil {
			return err
		}
	}
	return nil
}

// funcRef is a function reference received in a value: calling it runs
// the function here, loading its module first.
type funcRef struct {
	rt              *Runtime
	path, sha, name string
}

var (
	_ starlark.Callable     = (*funcRef)(nil)
	_ builtins.FuncRefValue = (*funcRef)(nil)
)

func (f *funcRef) String() string        { return fmt.Sprintf("<function %s from %s>", f.name, f.path) }
func (f *funcRef) Type() string          { return "function" }
func (f *funcRef) Freeze()               {}
func (f *funcRef) Truth() starlark.Bool  { return true }
func (f *funcRef) Hash() (uint32, error) { return starlark.String(f.path + ":" + f.name).Hash() }
func (f *funcRef) Name() string          { return f.name }

// FuncRef implements builtins.FuncRefValue.
func (f *funcRef) FuncRef() (string, string, string) { return f.path, f.sha, f.name }

// CallInternal runs the referenced function in this context.
func (f *funcRef) CallInternal(thread *starlark.Thread, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	fn, err := f.rt.resolve(thread, refStar+f.sha+":"+f.name+":"+f.path)
	if err != nil {
		return nil, err
	}
	return starlark.Call(thread, fn, args, kwargs)
}

// Package runtime runs Starlark in every context of a mitostar tree: it
// executes the master's script, serves calls of top-level functions and
// registered Go builtins arriving from parents (one at a time, in arrival
// order, each on a fresh thread), ships modules on demand with their
// identity (root-relative path + sha256), and predeclares the names of
// docs/reference.md.
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
	// ops registers the operations (ops.file, ...) and facts.
	_ "github.com/mitostar/mitostar/ops"
)

const slogError = slog.LevelError

// Options configure a Runtime.
type Options struct {
	// Roots are the module roots (master only): the main script's
	// directory first, then each -I directory.
	Roots []string
	// Argv is the script's argument list, the same in every context.
	Argv []string
	// Stdout receives the master's print() output (os.Stdout by default),
	// and the diffs of operations when Diff is set.
	Stdout io.Writer
	// SSHTransport is the transport of ssh connections that name none
	// ("openssh" or "native"; "" for connect's default), in this context
	// and every child.
	SSHTransport string
	// Predeclared are names this context predeclares besides the common
	// ones (the command line adds inventory, connect and each to the
	// master's); they win over a common name they repeat.
	Predeclared starlark.StringDict
	// CheckMode makes operations report what they would change and
	// change nothing (check_mode in every context of the tree).
	CheckMode bool
	// Diff prints each change an operation makes in any context of the
	// tree, with its diff, on the master's Stdout (master only).
	Diff bool
}

// Runtime is the Starlark runtime of one context.
type Runtime struct {
	r       *core.Router
	opts    Options
	decoder *builtins.Decoder

	// predeclared is replaced whole (Predeclare), never changed in place:
	// a module keeps the dict it was initialised with.
	predMu      sync.Mutex
	predeclared starlark.StringDict

	mu      sync.Mutex
	modules map[string]*module
	partial map[string][]byte            // "path@sha" → LOAD_MODULE bytes so far
	sent    map[uint32]map[moduleID]bool // target id → modules already pushed (forgotten when it is gone)
	srcs    map[string]*srcFile          // src files by root-relative path
	cached  map[uint32]map[string]bool   // child id → sha256s in its target's module cache (same)
	// moduleRequests counts the GET_MODULE requests being served per
	// requesting context.
	moduleRequests map[uint32]int
	disk           *moduleCache // this child's module cache; nil in the master and local children
	stdout         sync.Mutex

	stdoutErr error // the first failed write of print(), under stdout

	// diffHandle is the master's handle for changes to show (0: diffs
	// are not shown); children learn it in the handshake.
	diffHandle uint32

	svcMu    sync.Mutex
	services map[string]bool // Starlark service modules served here

	loadFn  func(*starlark.Thread, string) (starlark.StringDict, error)
	printFn func(*starlark.Thread, string)
	// lifetimeThreads are the running threads bound to the router's
	// lifetime (see newThread). A plain map under a mutex: a sync.Map
	// allocated an entry for every call.
	threadsMu       sync.Mutex
	lifetimeThreads map[*starlark.Thread]*builtins.ThreadState
	// current is the state of the thread serving the call the executor
	// runs now (CurrentCall).
	current atomic.Pointer[builtins.ThreadState]
	// spareThread is the thread the last call left for the next one
	// (callThread).
	spareThread atomic.Pointer[starlark.Thread]

	// resolved caches what resolve found for a "star:" reference: the
	// module of a path and sha executes once, so the function it defines
	// under a name never changes.
	resolved sync.Map // reference → starlark.Callable
	// topLevel caches how this context's top-level functions travel.
	topLevel sync.Map // *starlark.Function → *starRef

	calls calls // the calls served here, for their callers to cancel
}

var (
	predeclMu    sync.Mutex
	predeclFuncs []func(r *core.Router) starlark.StringDict
)

// RegisterPredeclared adds names that every context of the binary
// predeclares, computed for each context's router (call it from init).
// A module compiles the same way everywhere, so a name that only works
// in the master (connect) must still be declared in children, where it
// can say why it fails. Options.Predeclared wins over these.
func RegisterPredeclared(fn func(r *core.Router) starlark.StringDict) {
	predeclMu.Lock()
	defer predeclMu.Unlock()
	predeclFuncs = append(predeclFuncs, fn)
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
		srcs: map[string]*srcFile{}, cached: map[uint32]map[string]bool{}, moduleRequests: map[uint32]int{}, lifetimeThreads: map[*starlark.Thread]*builtins.ThreadState{},
		services: map[string]bool{}}
	if !r.IsMaster() {
		rt.disk = openModuleCache()
	}
	connect.ObserveCachedModules(r, rt.noteCached)
	rt.decoder = &builtins.Decoder{Router: r, Resolve: rt.resolveRef}
	rt.loadFn, rt.printFn = rt.load, rt.print // method values, made once
	context.AfterFunc(r.Lifetime(), rt.cancelLifetimeThreads)
	rt.predeclared = rt.makePredeclared()
	if opts.SSHTransport != "" {
		if err := connect.SetDefaultSSHTransport(r, opts.SSHTransport); err != nil {
			r.Emit(slogError, "runtime: "+err.Error())
		}
	}
	r.SetCallHandler(rt.handleCall)
	r.SetHelloExt(rt.helloExt)
	runtimes.Store(r, rt)
	context.AfterFunc(r.Lifetime(), func() { runtimes.Delete(r) })
	r.AddHandler(rt.onGetModule, core.HandlerOptions{Handle: core.HandleGetModule, Policy: r.IsImmediateChild})
	// Ids are never reused: what was pushed to a context that is gone is
	// of no more use.
	r.OnGone(func(id uint32) {
		rt.mu.Lock()
		delete(rt.sent, id)
		delete(rt.cached, id)
		rt.mu.Unlock()
	})
	r.AddHandler(rt.onLoadModule, core.HandlerOptions{Handle: core.HandleLoadModule, Policy: r.HasParentAuthority})
	rt.installActivator()
	rt.registerSrcService()
	if r.IsMaster() && opts.Diff {
		rt.installDiffHandler()
	}
	rt.installCanceller()
	if r.IsMaster() {
		// Children install their FileService at start (files registers a
		// child hook); a master gets it here.
		if _, err := files.Install(r); err != nil {
			r.Logger().Error("installing the file service", "err", err)
		}
	}
	return rt
}

// runtimes holds the runtime of each router, until the router closes.
var runtimes sync.Map // *core.Router → *Runtime

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
	v, _ := runtimes.Load(r)
	rt, _ := v.(*Runtime)
	return rt
}

// Router is the context's router.
func (rt *Runtime) Router() *core.Router { return rt.r }

// Decoder implements builtins.Runtime.
func (rt *Runtime) Decoder() *builtins.Decoder { return rt.decoder }

// Predeclared returns the names every script of this context sees
// (frozen): the reference documents each (docs/reference.md).
func (rt *Runtime) Predeclared() starlark.StringDict { return rt.predeclared }

func (rt *Runtime) isPredeclared(name string) bool {
	_, ok := rt.predeclaredNames()[name]
	return ok
}

func (rt *Runtime) predeclaredNames() starlark.StringDict {
	rt.predMu.Lock()
	defer rt.predMu.Unlock()
	return rt.predeclared
}

// Predeclare binds name to v for the modules this context executes from
// now on (those executed before keep what they saw). The fan-out gives a
// context it started its host record this way, before any module runs
// there.
func (rt *Runtime) Predeclare(name string, v starlark.Value) {
	v.Freeze()
	rt.predMu.Lock()
	defer rt.predMu.Unlock()
	d := make(starlark.StringDict, len(rt.predeclared)+1)
	for k, old := range rt.predeclared {
		d[k] = old
	}
	d[name] = v
	rt.predeclared = d
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
	d["store"] = builtins.StoreOf(r)
	argv := make([]starlark.Value, len(rt.opts.Argv))
	for i, a := range rt.opts.Argv {
		argv[i] = starlark.String(a)
	}
	d["argv"] = starlark.NewList(argv)
	d["check_mode"] = starlark.Bool(rt.opts.CheckMode)
	if facts, ok := builtins.Lookup("ops.facts"); ok {
		d["facts"] = facts
	}
	d["json"] = json.Module
	d["math"] = math.Module
	d["struct"] = starlark.NewBuiltin("struct", starlarkstruct.Make)
	tm := starlark.StringDict{}
	for k, v := range sltime.Module.Members {
		tm[k] = v
	}
	tm["sleep"] = starlark.NewBuiltin("time.sleep", timeSleep)
	d["time"] = &starlarkstruct.Module{Name: "time", Members: tm}
	// host is the inventory record of a context that connect() started
	// (set with Predeclare); None everywhere else.
	d["host"] = starlark.None
	predeclMu.Lock()
	funcs := predeclFuncs
	predeclMu.Unlock()
	for _, fn := range funcs {
		for k, v := range fn(r) {
			d[k] = v
		}
	}
	for k, v := range rt.opts.Predeclared {
		d[k] = v
	}
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

// Close shuts the context down: the scripts' router.on_shutdown
// callbacks run first, while the tree still works, then the router
// closes, waiting at most wait for the children to go. A Go program
// that embeds mitostar calls it instead of the router's Close.
func (rt *Runtime) Close(wait time.Duration) {
	builtins.FireShutdown(rt.r, wait)
	rt.r.CloseTimeout(wait)
}

// newThread returns a thread for this context, bound to ctx: cancelling
// ctx cancels the thread (and catch cannot swallow that).
func (rt *Runtime) newThread(name string, ctx context.Context) (*starlark.Thread, func()) {
	thread := &starlark.Thread{Name: name, Load: rt.loadFn, Print: rt.printFn}
	_, done := rt.startThread(thread, ctx, ctx)
	return thread, func() { done() }
}

// startThread gives thread a new state whose context is ctx, derived
// from parent: the thread is cancelled when parent ends. Whoever ends
// ctx otherwise cancels the thread itself (cancelThread). done ends the
// thread's work; it reports whether the thread was never cancelled and
// no canceller can reach it any more, so that it may serve another call.
func (rt *Runtime) startThread(thread *starlark.Thread, ctx, parent context.Context) (*builtins.ThreadState, func() bool) {
	st := &builtins.ThreadState{Router: rt.r, Runtime: rt, Ctx: ctx}
	builtins.SetThreadState(thread, st)
	if parent == rt.r.Lifetime() {
		// Most calls have no timeout: rather than a callback on the
		// router's lifetime per call, the one installed by New cancels
		// whichever such thread runs when the router closes.
		rt.threadsMu.Lock()
		rt.lifetimeThreads[thread] = st
		rt.threadsMu.Unlock()
		if parent.Err() != nil {
			cancelThread(parent, thread, st)
		}
		return st, func() bool {
			st.Finished.Store(true)
			rt.threadsMu.Lock()
			delete(rt.lifetimeThreads, thread)
			rt.threadsMu.Unlock()
			// cancelLifetimeThreads marks a thread under threadsMu.
			return !st.Cancelled.Load()
		}
	}
	stop := context.AfterFunc(parent, func() { cancelThread(parent, thread, st) })
	return st, func() bool {
		st.Finished.Store(true)
		if !stop() {
			return false // the callback cancelled the thread, or is doing so
		}
		if parent.Err() != nil {
			// parent ended, and the thread saw it (a wait it was in
			// returned) and finished before the callback ran: the calls
			// it leaves unanswered are cancelled all the same.
			builtins.CancelCalls(st)
			return false
		}
		return !st.Cancelled.Load()
	}
}

// callThread returns a thread for serving a call: the one an earlier
// call left (calls run one at a time, so one is kept), or a new one.
// Reusing it saves a thread and its locals per call.
func (rt *Runtime) callThread(name string) *starlark.Thread {
	if t := rt.spareThread.Swap(nil); t != nil {
		t.Name = name
		return t
	}
	return &starlark.Thread{Name: name, Load: rt.loadFn, Print: rt.printFn}
}

// keepThread keeps thread, whose call has ended without it being
// cancelled, for the next call.
func (rt *Runtime) keepThread(thread *starlark.Thread) {
	thread.Steps = 0
	rt.spareThread.Store(thread)
}

// cancelThread stops thread because ctx ended.
func cancelThread(ctx context.Context, thread *starlark.Thread, st *builtins.ThreadState) {
	st.Cancelled.Store(true)
	thread.Cancel(context.Cause(ctx).Error())
	builtins.CancelCalls(st) // and the calls it waits for
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

// NewThread implements builtins.Runtime for policies: the thread lives
// as long as the router.
func (rt *Runtime) NewThread(name string) (*starlark.Thread, func()) {
	return rt.newThread(name, rt.r.Lifetime())
}

// CurrentCall is the state of the thread serving the call the executor
// runs now, nil between calls.
func (rt *Runtime) CurrentCall() *builtins.ThreadState { return rt.current.Load() }

// NewThreadContext implements builtins.Runtime for callbacks: the thread
// is cancelled when ctx ends.
func (rt *Runtime) NewThreadContext(name string, ctx context.Context) (*starlark.Thread, func()) {
	return rt.newThread(name, ctx)
}

func builtinsThreadContext(t *starlark.Thread) context.Context { return builtins.ThreadContext(t) }

func (rt *Runtime) print(thread *starlark.Thread, msg string) {
	if rt.r.IsMaster() {
		rt.stdout.Lock()
		_, err := io.WriteString(rt.opts.Stdout, msg+"\n")
		if err != nil && rt.stdoutErr == nil {
			rt.stdoutErr = err
		}
		rt.stdout.Unlock()
		if err != nil {
			// print has no way to fail: the thread stops instead, as a
			// Python program stops on its first failed write.
			builtins.Cancel(thread, "print: writing to stdout: "+err.Error())
		}
		return
	}
	rt.r.Emit(slog.LevelInfo, msg)
}

// Function references travel as "star:SHA:NAME:PATH" or "builtin:NAME".
const (
	refStar    = "star:"
	refBuiltin = "builtin:"
)

// FuncRef implements builtins.FuncRefs: how fn travels, or why it cannot.
func (rt *Runtime) FuncRef(fn *starlark.Function) (path, sha, name string, err error) {
	r, err := rt.starRefOf(fn)
	if err != nil {
		return "", "", "", err
	}
	return r.path, r.sha, fn.Name(), nil
}

// A starRef is how a top-level Starlark function travels: its module's
// path and sha256, and the reference string of a CallRequest.
type starRef struct{ path, sha, ref string }

// starRefOf says how fn travels, or why it cannot; the answer for a
// top-level function is worked out once and cached (a global binding
// never changes once made).
func (rt *Runtime) starRefOf(fn *starlark.Function) (*starRef, error) {
	if r, ok := rt.topLevel.Load(fn); ok {
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
	rt.mu.Lock()
	m, ok := rt.modules[path]
	rt.mu.Unlock()
	if !ok && strings.HasPrefix(path, "<") {
		// mitostar repl's prompt ("<stdin>"), or a chunk run by a Go program.
		return nil, fmt.Errorf("cannot call %s in another context: it was defined in %s, not in a module, and functions travel by reference to their module; define it in a module file and load() it", name, path)
	}
	if !ok {
		return nil, fmt.Errorf("function %s: module %s is not known to this context", name, path)
	}
	r := &starRef{path: path, sha: m.sha, ref: refStar + m.sha + ":" + name + ":" + path}
	rt.topLevel.Store(fn, r)
	return r, nil
}

// CallRequest implements builtins.Runtime: fn as a reference plus the
// modules target lacks (the function's module and its transitive loads).
func (rt *Runtime) CallRequest(ctx context.Context, target *core.Context, fn starlark.Value, args starlark.Tuple, kwargs []starlark.Tuple) (*core.CallRequest, error) {
	req := &core.CallRequest{}
	var mod *module
	switch f := fn.(type) {
	case *starlark.Builtin:
		if !builtins.IsRegistered(f) {
			return nil, fmt.Errorf("call: %s is not a registered builtin, so it cannot run in another context", f.Name())
		}
		req.Func = refBuiltin + f.Name()
	case *starlark.Function:
		ref, err := rt.starRefOf(f)
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
	if req.Args, req.ArgsTail, err = builtins.EncodeArgs(rt, args, kwargs); err != nil {
		return nil, fmt.Errorf("call: %w", err)
	}
	var blobs []moduleBlob
	if mod != nil && target.ID != rt.r.ID() {
		if blobs, err = rt.modulesFor(target.ID, mod); err != nil {
			return nil, err
		}
	}
	if b, ok := fn.(*starlark.Builtin); ok && target.ID != rt.r.ID() {
		if src := builtinSrc(b.Name(), args, kwargs); src != "" {
			blobs = append(blobs, rt.srcBlobs(target.ID, []string{src})...)
		}
	}
	// Small modules ride with the call; larger ones go ahead of it as
	// LOAD_MODULE chunks that fit any message size limit. Either way the
	// first call costs one round trip. Those the target has in its module
	// cache (no source here) always ride with the call.
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
			if err := rt.pushModules(ctx, target, full); err != nil {
				return nil, err
			}
			ext = nil
			if len(named) > 0 {
				ext = encodeModuleBlobs(named)
			}
		}
		req.Ext = ext
	}
	return req, nil
}

// modulesFor returns the modules target still lacks, and marks them as
// sent. Those in the target's module cache come without their source.
func (rt *Runtime) modulesFor(target uint32, m *module) ([]moduleBlob, error) {
	// A module goes with its transitive loads: once it is sent, they are.
	rt.mu.Lock()
	done := rt.sent[target][moduleID{path: m.path, sha: m.sha}]
	rt.mu.Unlock()
	if done {
		return nil, nil
	}
	mods, err := rt.closure(m)
	if err != nil {
		return nil, err
	}
	for _, m := range mods {
		m.blob() // encodes its program once, outside the lock
	}
	rt.mu.Lock()
	sent := rt.sent[target]
	if sent == nil {
		sent = map[moduleID]bool{}
		rt.sent[target] = sent
	}
	var blobs []moduleBlob
	var srcs []string
	for _, m := range mods {
		key := moduleID{path: m.path, sha: m.sha}
		if !sent[key] {
			sent[key] = true
			b := moduleBlob{Path: m.path, SHA256: m.sha}
			if !rt.cached[target][m.sha] {
				b = m.blob()
			}
			blobs = append(blobs, b)
			srcs = append(srcs, m.srcs...)
		}
	}
	rt.mu.Unlock()
	return append(blobs, rt.srcBlobs(target, srcs)...), nil
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
func (rt *Runtime) handleCall(ctx context.Context, c *core.Call) ([]byte, []string, error) {
	if len(c.Request.Ext) > 0 {
		blobs, err := decodeModuleBlobs(c.Request.Ext)
		if err != nil {
			return nil, nil, fmt.Errorf("call: modules: %w", err)
		}
		for _, b := range blobs {
			if _, err := rt.addAny(b); err != nil {
				return nil, nil, err
			}
		}
	}
	// A call with a reply can be cancelled by its caller: its thread runs
	// under a context of its own.
	callCtx, cancel := ctx, context.CancelCauseFunc(nil)
	if c.Msg.ReplyTo != 0 {
		callCtx, cancel = context.WithCancelCause(ctx)
		defer cancel(nil)
	}
	thread := rt.callThread("call " + c.Request.Func)
	st, done := rt.startThread(thread, callCtx, ctx)
	defer func() {
		// After rt.calls.finish (deferred below, so run first): a
		// canceller that found the call marked it cancelled by then.
		if done() {
			rt.keepThread(thread)
		}
	}()
	if c.Msg.ReplyTo != 0 {
		key := callKey{src: c.Msg.SrcID, handle: c.Msg.ReplyTo}
		if !rt.calls.start(key, &runningCall{cancel: cancel, thread: thread, st: st}) {
			return nil, nil, &core.RemoteError{Kind: core.CallError, Message: errCancelledByCaller.Error(), Context: rt.r.Name()}
		}
		defer rt.calls.finish(key)
	}
	ctx = callCtx
	rt.current.Store(st)
	defer rt.current.Store(nil)
	fn, err := rt.resolve(thread, c.Request.Func)
	if err != nil {
		return nil, nil, builtins.RemoteOf(err, rt.r.Name())
	}
	args, kwargs, err := rt.decoder.DecodeArgs(c.Request.Args)
	if err != nil {
		return nil, nil, err
	}
	v, err := starlark.Call(thread, fn, args, kwargs)
	if context.Cause(ctx) == errCancelledByCaller {
		return nil, nil, &core.RemoteError{Kind: core.CallError, Message: errCancelledByCaller.Error(), Context: rt.r.Name()}
	}
	if ctx.Err() == context.DeadlineExceeded {
		// Even when the function returned: a wait its deadline ended
		// (an iteration over a channel) may let it finish before the
		// thread's cancellation is seen.
		return nil, nil, &core.RemoteError{Kind: "TimeoutError", Message: fmt.Sprintf("call timed out after %gs", c.Request.Timeout), Context: rt.r.Name()}
	}
	if err != nil {
		return nil, nil, builtins.RemoteOf(err, rt.r.Name())
	}
	head, tail, err := builtins.EncodePieces(rt, core.ReplyOK, v)
	if err != nil {
		return nil, nil, &core.RemoteError{Kind: core.CallError, Message: "encoding the result: " + err.Error(), Context: rt.r.Name()}
	}
	return head, tail, nil
}

// helloExt is what a new child receives in its handshake: a CBOR array
// of argv, for fork the parent's module and src cache, check mode
// (--check), the master's handle for changes to show (--diff; 0 for
// none), and the default ssh transport.
type helloExt struct {
	_            struct{} `cbor:",toarray"`
	Argv         []string
	Modules      []moduleBlob
	CheckMode    bool
	DiffHandle   uint32
	SSHTransport string // Options.SSHTransport
}

func (rt *Runtime) helloExt(method string) []byte {
	ext := helloExt{Argv: rt.opts.Argv, CheckMode: rt.opts.CheckMode, DiffHandle: rt.diffHandle, SSHTransport: rt.opts.SSHTransport}
	if method == "fork" {
		rt.mu.Lock()
		for _, m := range rt.modules {
			ext.Modules = append(ext.Modules, m.blob())
		}
		for _, f := range rt.srcs {
			ext.Modules = append(ext.Modules, moduleBlob{Path: f.path, SHA256: f.sha, Source: f.data, Kind: kindSrc})
		}
		rt.mu.Unlock()
	}
	data, _ := core.Marshal(&ext)
	return data
}

func init() {
	core.RegisterChildHook(func(r *core.Router, ext []byte) error {
		var h helloExt
		if len(ext) > 0 {
			if err := core.Unmarshal(ext, &h); err != nil {
				return fmt.Errorf("runtime: handshake extension: %w", err)
			}
		}
		rt := New(r, Options{Argv: h.Argv, CheckMode: h.CheckMode, SSHTransport: h.SSHTransport})
		rt.diffHandle = h.DiffHandle
		for _, b := range h.Modules {
			if _, err := rt.addAny(b); err != nil {
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
	dir, base := filepath.Split(script)
	if dir == "" {
		dir = "."
	}
	if len(rt.opts.Roots) == 0 || filepath.Clean(rt.opts.Roots[0]) != filepath.Clean(dir) {
		rt.opts.Roots = append([]string{dir}, rt.opts.Roots...)
	}
	for _, root := range rt.opts.Roots {
		if err := checkRoot(root); err != nil {
			return err
		}
	}
	err := rt.runMain(ctx, base)
	rt.stdout.Lock()
	werr := rt.stdoutErr
	rt.stdout.Unlock()
	if werr != nil {
		// What the script saw (a cancelled thread) follows from this.
		return fmt.Errorf("print: writing to stdout: %w", werr)
	}
	return err
}

// runMain runs the script's module, then its main().
func (rt *Runtime) runMain(ctx context.Context, base string) error {
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
			return fmt.Errorf("%s: main is %s %s, not a function", base, article(mainFn.Type()), mainFn.Type())
		}
		if _, err := starlark.Call(thread, fn, nil, nil); err != nil {
			return err
		}
	}
	return nil
}

// checkRoot says why root cannot be a module root: it must be an
// existing directory.
func checkRoot(root string) error {
	fi, err := os.Stat(root)
	if err != nil {
		return fmt.Errorf("module root: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("module root %s is not a directory", root)
	}
	return nil
}

// article is "an" before a type name that starts with a vowel, else "a".
func article(typeName string) string {
	if typeName != "" && strings.ContainsRune("aeiouAEIOU", rune(typeName[0])) {
		return "an"
	}
	return "a"
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

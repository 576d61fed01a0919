package builtins

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"

	"go.starlark.net/starlark"

	"github.com/mitostar/mitostar/core"
)

// Runtime is what the builtins need from the runtime of their context:
// the runtime package implements it and attaches it to every thread.
type Runtime interface {
	// FuncRefs says how this context's Starlark functions travel.
	FuncRefs
	// Decoder decodes values received in this context.
	Decoder() *Decoder
	// CallRequest builds the request for calling fn in target: fn travels
	// as a reference, with the modules target still lacks (pushed ahead
	// of the call when large, waiting for room until ctx ends).
	CallRequest(ctx context.Context, target *core.Context, fn starlark.Value, args starlark.Tuple, kwargs []starlark.Tuple) (*core.CallRequest, error)
	// NewThread returns a thread for running Starlark code (a policy)
	// that lives as long as the router, and a function to call when done
	// with it.
	NewThread(name string) (*starlark.Thread, func())
	// NewThreadContext is NewThread for a thread cancelled when ctx ends.
	NewThreadContext(name string, ctx context.Context) (*starlark.Thread, func())
	// CurrentCall is the state of the thread serving the call this
	// context runs now (calls run one at a time), nil between calls.
	CurrentCall() *ThreadState
}

// refsOf is how functions encoded on thread travel: its runtime, or nil
// (they cannot) on a thread without one.
func refsOf(thread *starlark.Thread) FuncRefs {
	if rt := runtimeOf(thread); rt != nil {
		return rt
	}
	return nil
}

func mustRuntime(thread *starlark.Thread, fn string) (Runtime, error) {
	rt := runtimeOf(thread)
	if rt == nil {
		return nil, fmt.Errorf("%s: no mitostar runtime on this thread", fn)
	}
	return rt, nil
}

// Router is the Starlark face of this context's core.Router (type "router").
type Router struct {
	R *core.Router
}

func (r *Router) String() string        { return fmt.Sprintf("Router(%s)", r.R.Name()) }
func (r *Router) Type() string          { return "router" }
func (r *Router) Freeze()               {}
func (r *Router) Truth() starlark.Bool  { return true }
func (r *Router) Hash() (uint32, error) { return r.R.ID(), nil }

// firstParam names the keyword a connection method's first positional
// argument binds to.
var firstParam = map[string]string{
	"ssh": "hostname", "sudo": "username", "su": "username", "doas": "username",
	"docker": "container", "podman": "container", "buildah": "container",
	"lxc": "container", "lxd": "container", "incus": "container", "jail": "container",
	"setns": "container", "kubectl": "pod",
}

// Methods lists the connection factories every router offers.
var factoryNames = []string{"local", "fork", "ssh", "sudo", "su", "doas", "docker", "podman", "buildah",
	"lxc", "lxd", "incus", "jail", "kubectl", "setns"}

var routerMethods = methodTable{
	"connect": func(t *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if len(args) < 1 {
			return nil, fmt.Errorf("connect: missing method name")
		}
		method, ok := starlark.AsString(args[0])
		if !ok {
			return nil, fmt.Errorf("connect: method must be a string, got %s", args[0].Type())
		}
		return b.Receiver().(*Router).connect(t, "connect", method, args[1:], kwargs)
	},
	"context_by_id": func(t *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var id uint32
		var viaID starlark.Value = starlark.None
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, "id", &id, "via_id?", &viaID); err != nil {
			return nil, err
		}
		c := b.Receiver().(*Router).R.ContextByID(id)
		if viaID != starlark.None {
			var via uint32
			if err := starlark.AsInt(viaID, &via); err != nil {
				return nil, fmt.Errorf("%s: via_id must be a context id or None, got %s", b.Name(), viaID)
			}
			learnVia(c, via)
		}
		return NewContext(c), nil
	},
	"myself": func(t *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		return NewContext(b.Receiver().(*Router).R.Myself()), starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0)
	},
	"allocate_id": func(t *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
			return nil, err
		}
		id, err := b.Receiver().(*Router).R.AllocateID(ThreadContext(t))
		if err != nil {
			return nil, err
		}
		return starlark.MakeUint(uint(id)), nil
	},
	"add_handler": routerAddHandler,
	"del_handler": routerDelHandler,
	"disconnect":  routerDisconnect,
	"disconnect_all": func(t *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		b.Receiver().(*Router).R.DisconnectAll()
		return starlark.None, starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0)
	},
	"enable_debug": func(t *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		b.Receiver().(*Router).R.EnableDebug()
		return starlark.None, starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0)
	},
	"route": func(t *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var m *Message
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &m); err != nil {
			return nil, err
		}
		cp := *m.M
		if err := b.Receiver().(*Router).R.Route(ThreadContext(t), &cp); err != nil {
			return nil, fmt.Errorf("route: %w", err)
		}
		return starlark.None, nil
	},
}

func init() {
	for _, name := range factoryNames {
		method := name
		routerMethods[name] = func(t *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			return b.Receiver().(*Router).connect(t, method, method, args, kwargs)
		}
	}
}

// Attr returns the router's attributes and methods.
func (r *Router) Attr(name string) (starlark.Value, error) {
	switch name {
	case "unidirectional":
		return starlark.Bool(r.R.Unidirectional()), nil
	case "max_message_size":
		return starlark.MakeInt(r.R.MaxMessageSize()), nil
	case "id":
		return starlark.MakeUint(uint(r.R.ID())), nil
	case "name":
		return starlark.String(r.R.Name()), nil
	}
	return routerMethods.attr(r, name)
}

// AttrNames lists the router's attributes.
func (r *Router) AttrNames() []string {
	return routerMethods.names("id", "max_message_size", "name", "unidirectional")
}

// SetField sets the writable attributes unidirectional and max_message_size.
func (r *Router) SetField(name string, v starlark.Value) error {
	switch name {
	case "unidirectional":
		b, ok := v.(starlark.Bool)
		if !ok {
			return fmt.Errorf("router.unidirectional must be a bool, got %s", v.Type())
		}
		r.R.SetUnidirectional(bool(b))
		return nil
	case "max_message_size":
		var n int
		if err := starlark.AsInt(v, &n); err != nil {
			return fmt.Errorf("router.max_message_size: %w", err)
		}
		return r.R.SetMaxMessageSize(n)
	}
	return starlark.NoSuchAttrError(fmt.Sprintf("router has no writable attribute %q", name))
}

// connect implements every factory: the common keywords become
// core.ConnectOptions, the rest travel to the method as Kwargs.
func (r *Router) connect(thread *starlark.Thread, fname, method string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	opts := &core.ConnectOptions{Kwargs: map[string]any{}}
	if len(args) > 1 {
		return nil, fmt.Errorf("%s: takes at most 1 positional argument, got %d", fname, len(args))
	}
	if len(args) == 1 {
		p, ok := firstParam[method]
		if !ok {
			return nil, fmt.Errorf("%s: takes no positional arguments", fname)
		}
		kwargs = append([]starlark.Tuple{{starlark.String(p), args[0]}}, kwargs...)
	}
	var onStart, onFork starlark.Value
	profile, profileDir := false, "" // profiling=: on, into this directory of the child's host ("": its temporary directory)
	for _, kv := range kwargs {
		k := string(kv[0].(starlark.String))
		v := kv[1]
		var err error
		switch k {
		case "name", "remote_name":
			if v == starlark.None {
				continue
			}
			s, ok := starlark.AsString(v)
			if !ok {
				return nil, fmt.Errorf("%s: %s must be a string, got %s", fname, k, v.Type())
			}
			if k == "name" {
				opts.Name = s
			} else {
				opts.Kwargs[k] = s
			}
		case "connect_timeout":
			secs, ok := starlark.AsFloat(v)
			if !ok || secs <= 0 || math.IsNaN(secs) {
				return nil, fmt.Errorf("%s: connect_timeout must be a positive number of seconds, got %s", fname, v)
			}
			opts.ConnectTimeout = time.Duration(secs * float64(time.Second))
		case "debug":
			opts.Debug = bool(v.Truth())
		case "unidirectional":
			opts.Unidirectional = bool(v.Truth())
		case "via":
			if v == starlark.None {
				continue
			}
			if opts.Via, err = ToContext(v, fname+": via"); err != nil {
				return nil, err
			}
		case "profiling":
			switch p := v.(type) {
			case starlark.NoneType:
			case starlark.Bool:
				profile = bool(p)
			case starlark.String:
				if p == "" {
					return nil, fmt.Errorf("%s: profiling must be True, False or a directory, got an empty string", fname)
				}
				profile, profileDir = true, string(p)
			default:
				return nil, fmt.Errorf("%s: profiling must be True, False or a directory, got %s", fname, v.Type())
			}
		case "on_start", "on_fork":
			if method != "fork" {
				return nil, fmt.Errorf("%s: unexpected keyword %s", fname, k)
			}
			if k == "on_start" {
				onStart = v
			} else {
				onFork = v
			}
		default:
			if opts.Kwargs[k], err = ToGo(refsOf(thread), v); err != nil {
				return nil, fmt.Errorf("%s: %s: %w", fname, k, err)
			}
		}
	}
	ctx := ThreadContext(thread)
	c, err := r.R.Connect(ctx, method, opts)
	if err != nil {
		return nil, err
	}
	if opts.Via == nil {
		routerStateOf(r.R).noteStarted(c)
	}
	if profile {
		var files []string
		if err := c.Call(ctx, &files, ProfileFunc, profileDir); err != nil {
			c.Shutdown()
			return nil, fmt.Errorf("%s: profiling: %w", fname, err)
		}
		r.R.Emit(slog.LevelInfo, fmt.Sprintf("profiling %s: its CPU and heap profiles are written to %s when it exits", c.Name(), strings.Join(files, " and ")))
	}
	// What fork runs in its child before any other call reaches it, as
	// Mitogen's fork: on_fork() first, then on_start(). A failure shuts
	// the new context down: the caller never gets it.
	for _, f := range []struct {
		kw string
		fn starlark.Value
	}{{"on_fork", onFork}, {"on_start", onStart}} {
		if f.fn == nil || f.fn == starlark.None {
			continue
		}
		if _, err := callIn(thread, c, f.fn, nil, nil, 0); err != nil {
			c.Shutdown()
			var re *core.RemoteError
			if errors.As(err, &re) { // keep its kind and frames, say where it arose
				out := *re
				out.Message = fmt.Sprintf("fork: %s: %s", f.kw, re.Message)
				return nil, &out
			}
			return nil, fmt.Errorf("fork: %s: %w", f.kw, err)
		}
	}
	return NewContext(c), nil
}

func routerAddHandler(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	r := b.Receiver().(*Router)
	var fn starlark.Callable
	var handle uint32
	persist := true
	var respondent, policy starlark.Value = starlark.None, starlark.None
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "fn", &fn, "handle?", &handle, "persist?", &persist,
		"respondent?", &respondent, "policy?", &policy); err != nil {
		return nil, err
	}
	rt, err := mustRuntime(thread, b.Name())
	if err != nil {
		return nil, err
	}
	opts := core.ReceiverOptions{Handle: handle, Once: !persist}
	if respondent != starlark.None {
		if opts.Respondent, err = ToContext(respondent, "add_handler: respondent"); err != nil {
			return nil, err
		}
	}
	if policy != starlark.None {
		if opts.Policy, err = policyOf(r.R, rt, policy); err != nil {
			return nil, err
		}
	}
	// The messages wait for fn in a Receiver: bounded as every Receiver
	// is, a sender that floods the handle is refused.
	rv, err := r.R.NewReceiver(opts)
	if err != nil {
		return nil, fmt.Errorf("add_handler: %w", err)
	}
	key := handlerKey{r.R, rv.Handle()}
	handlerReceivers.Store(key, rv)
	r.R.Go(func() {
		defer handlerReceivers.CompareAndDelete(key, rv)
		for {
			m, _ := rv.Get(r.R.Lifetime(), true)
			if m == nil {
				return // closed (del_handler, once), or the router ends
			}
			runCallback(r.R, rt, "handler", r.R.Lifetime(), callback{fn: fn, args: starlark.Tuple{&Message{M: m}}})
			if m.IsDead() || !persist {
				return
			}
		}
	})
	return starlark.MakeUint(uint(rv.Handle())), nil
}

// handlerReceivers are the receivers of router.add_handler, for
// del_handler to close.
var handlerReceivers sync.Map // handlerKey → *core.Receiver

type handlerKey struct {
	r      *core.Router
	handle uint32
}

func routerDelHandler(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var handle uint32
	if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &handle); err != nil {
		return nil, err
	}
	r := b.Receiver().(*Router).R
	if v, ok := handlerReceivers.LoadAndDelete(handlerKey{r, handle}); ok {
		rv := v.(*core.Receiver)
		existed := !rv.Closed()
		rv.Close() // its callback loop ends once what is queued has run
		return starlark.Bool(existed), nil
	}
	return starlark.Bool(r.DelHandler(handle)), nil
}

func routerDisconnect(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var c *Context
	if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &c); err != nil {
		return nil, err
	}
	noteShutdown(c.C)
	b.Receiver().(*Router).R.Disconnect(c.C)
	return starlark.None, nil
}

// policyOf maps policy.has_parent_authority / policy.is_immediate_child
// to core policies; any other callable is run on a fresh thread with a
// step limit and must return a truth value.
func policyOf(r *core.Router, rt Runtime, v starlark.Value) (core.Policy, error) {
	if b, ok := v.(*starlark.Builtin); ok {
		switch b.Name() {
		case "policy.has_parent_authority":
			return r.HasParentAuthority, nil
		case "policy.is_immediate_child":
			return r.IsImmediateChild, nil
		case "policy.allow_any":
			return core.AllowAny, nil
		}
	}
	fn, ok := v.(starlark.Callable)
	if !ok {
		return nil, fmt.Errorf("add_handler: policy must be callable, got %s", v.Type())
	}
	return func(m *core.Message) bool {
		thread, done := rt.NewThread("policy")
		defer done()
		thread.OnMaxSteps = nil // the default: cancel at the limit
		thread.SetMaxExecutionSteps(1_000_000)
		res, err := starlark.Call(thread, fn, starlark.Tuple{&Message{M: m}}, nil)
		if err != nil {
			r.Logger().Error("policy failed; refusing message", "err", err)
			return false
		}
		return bool(res.Truth())
	}, nil
}

// ---- Context methods ----

func init() {
	contextMethods["call"] = func(t *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		fn, rest, timeout, err := callArgs(b.Name(), args, kwargs)
		if err != nil {
			return nil, err
		}
		return callIn(t, b.Receiver().(*Context).C, fn, rest, stripTimeout(kwargs), timeout)
	}
	contextMethods["call_async"] = func(t *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		fn, rest, timeout, err := callArgs(b.Name(), args, kwargs)
		if err != nil {
			return nil, err
		}
		c := b.Receiver().(*Context).C
		rv, err := startCall(t, c, fn, rest, stripTimeout(kwargs), timeout, false)
		if err != nil {
			return nil, err
		}
		return newReceiverValue(t, rv, true), nil
	}
	contextMethods["call_no_reply"] = func(t *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		fn, rest, timeout, err := callArgs(b.Name(), args, kwargs)
		if err != nil {
			return nil, err
		}
		c := b.Receiver().(*Context).C
		req, err := buildRequest(t, c, fn, rest, stripTimeout(kwargs), timeout)
		if err != nil {
			return nil, err
		}
		m, err := core.NewCallMessage(req)
		if err != nil {
			return nil, err
		}
		ctx, cancel := callContext(t, timeout)
		defer cancel()
		if err := c.Send(ctx, m); err != nil {
			return nil, callError(c, err, timeout)
		}
		return starlark.None, nil
	}
	contextMethods["send"] = func(t *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var m *Message
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &m); err != nil {
			return nil, err
		}
		cp := *m.M
		return starlark.None, b.Receiver().(*Context).C.Send(ThreadContext(t), &cp)
	}
	contextMethods["send_async"] = func(t *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var m *Message
		persist := false
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, "msg", &m, "persist?", &persist); err != nil {
			return nil, err
		}
		cp := *m.M
		rv, err := b.Receiver().(*Context).C.SendAsync(ThreadContext(t), &cp, persist)
		if err != nil {
			return nil, err
		}
		return newReceiverValue(t, rv, false), nil
	}
	contextMethods["send_await"] = func(t *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var m *Message
		var deadline starlark.Value = starlark.None
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, "msg", &m, "deadline?", &deadline); err != nil {
			return nil, err
		}
		ctx, cancel, err := withTimeout(t, b.Name(), deadline)
		if err != nil {
			return nil, err
		}
		defer cancel()
		cp := *m.M
		reply, err := b.Receiver().(*Context).C.SendAwait(ctx, &cp)
		if err != nil {
			return nil, err
		}
		return (&Message{M: reply}).decode(t, true)
	}
	contextMethods["shutdown"] = func(t *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		wait := false
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, "wait?", &wait); err != nil {
			return nil, err
		}
		c := b.Receiver().(*Context).C
		noteShutdown(c)
		l := c.Shutdown()
		if wait {
			if err := c.ShutdownWait(ThreadContext(t)); err != nil {
				return nil, err
			}
		}
		return &Latch{L: l}, nil
	}
	contextMethods["call_service"] = callService
}

// callArgs splits call's arguments into the function, its positional
// arguments and the _timeout keyword.
func callArgs(name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, starlark.Tuple, float64, error) {
	if len(args) == 0 {
		return nil, nil, 0, fmt.Errorf("%s: missing function argument", name)
	}
	var timeout float64
	for _, kv := range kwargs {
		if kv[0].(starlark.String) == "_timeout" {
			secs, ok := starlark.AsFloat(kv[1])
			if !ok || secs <= 0 || math.IsNaN(secs) {
				return nil, nil, 0, fmt.Errorf("%s: _timeout must be a positive number of seconds, got %s", name, kv[1])
			}
			timeout = secs
		}
	}
	return args[0], args[1:], timeout, nil
}

func stripTimeout(kwargs []starlark.Tuple) []starlark.Tuple {
	out := kwargs[:0:0]
	for _, kv := range kwargs {
		if kv[0].(starlark.String) != "_timeout" {
			out = append(out, kv)
		}
	}
	return out
}

func buildRequest(thread *starlark.Thread, c *core.Context, fn starlark.Value, args starlark.Tuple, kwargs []starlark.Tuple, timeout float64) (*core.CallRequest, error) {
	rt, err := mustRuntime(thread, "call")
	if err != nil {
		return nil, err
	}
	req, err := rt.CallRequest(ThreadContext(thread), c, fn, args, kwargs)
	if err != nil {
		return nil, err
	}
	req.Timeout = timeout
	return req, nil
}

// callContext bounds what a call with _timeout seconds (0: none) waits
// for locally: the script's own context, and the call's deadline.
func callContext(t *starlark.Thread, timeout float64) (context.Context, context.CancelFunc) {
	ctx := ThreadContext(t)
	if timeout > 0 {
		return context.WithTimeout(ctx, time.Duration(timeout*float64(time.Second)))
	}
	return ctx, func() {}
}

// callTimeoutError is how a call that passed its _timeout fails, whether
// the callee said so or the caller's own deadline passed first (a callee
// that stopped reading never answers).
func callTimeoutError(c *core.Context, timeout float64) error {
	return &core.RemoteError{Kind: "TimeoutError", Message: fmt.Sprintf("call timed out after %gs", timeout), Context: c.Name()}
}

// callError turns a local timeout of a call into its TimeoutError.
func callError(c *core.Context, err error, timeout float64) error {
	var te *core.TimeoutError
	if timeout > 0 && errors.As(err, &te) {
		return callTimeoutError(c, timeout)
	}
	return err
}

// startCall sends a call of fn to c and returns the receiver of its
// reply. With a timeout, the send waits for room in a full queue only
// until the call's deadline, and the receiver yields the call's
// TimeoutError at the deadline if no reply came: the remote thread is
// cancelled at the same time.
//
// With owned, the receiver is the caller's own (callIn), which closes it
// through finishCall; else it is the script's (call_async).
func startCall(thread *starlark.Thread, c *core.Context, fn starlark.Value, args starlark.Tuple, kwargs []starlark.Tuple, timeout float64, owned bool) (*core.Receiver, error) {
	req, err := buildRequest(thread, c, fn, args, kwargs, timeout)
	if err != nil {
		return nil, err
	}
	ctx, cancel := callContext(thread, timeout)
	defer cancel()
	var start time.Time
	if timeout > 0 {
		start = time.Now()
	}
	rv, err := c.CallAsync(ctx, req)
	if err != nil {
		return nil, callError(c, err, timeout)
	}
	if timeout > 0 {
		rv.Expire(time.Duration(timeout*float64(time.Second))-time.Since(start), callTimeoutError(c, timeout))
	}
	if st := stateOf(thread); st != nil {
		st.trackCall(c, rv, owned)
	}
	return rv, nil
}

// callIn calls fn in c and waits for the result, until the call's
// _timeout if it has one.
func callIn(thread *starlark.Thread, c *core.Context, fn starlark.Value, args starlark.Tuple, kwargs []starlark.Tuple, timeout float64) (starlark.Value, error) {
	rv, err := startCall(thread, c, fn, args, kwargs, timeout, true)
	if err != nil {
		return nil, err
	}
	ctx := ThreadContext(thread)
	m, err := rv.Get(ctx, true)
	finishCall(thread, c, rv, err != nil && ctx.Err() != nil)
	if err != nil {
		return nil, err
	}
	val, err := core.DecodeCallReply(m)
	if err != nil {
		return nil, err
	}
	return runtimeOf(thread).Decoder().Decode(val)
}

// finishCall closes the receiver of a call callIn waited for; when the
// thread was cancelled while it waited, the call is cancelled too.
func finishCall(thread *starlark.Thread, c *core.Context, rv *core.Receiver, cancelled bool) {
	st := stateOf(thread)
	switch {
	case st != nil && !st.untrackCall(rv):
		// CancelCalls took it, and closes it.
	case cancelled:
		cancelCall(c, rv, true)
	default:
		rv.Close()
	}
}

// ---- plain Go values (keywords of connection methods and services) ----

// ToGo converts a Starlark value to plain Go data (functions by refs) (nil, bool, int64 or
// *big.Int, float64, string, []byte, []any, map[string]any), or names the
// type it cannot convert.
func ToGo(refs FuncRefs, v starlark.Value) (any, error) {
	switch x := v.(type) {
	case starlark.NoneType:
		return nil, nil
	case starlark.Bool:
		return bool(x), nil
	case starlark.Int:
		if i, ok := x.Int64(); ok {
			return i, nil
		}
		return x.BigInt(), nil
	case starlark.Float:
		return float64(x), nil
	case starlark.String:
		return string(x), nil
	case starlark.Bytes:
		return []byte(x), nil
	case *starlark.List, starlark.Tuple:
		var out []any
		iter := x.(starlark.Iterable).Iterate()
		defer iter.Done()
		var e starlark.Value
		for iter.Next(&e) {
			g, err := ToGo(refs, e)
			if err != nil {
				return nil, err
			}
			out = append(out, g)
		}
		return out, nil
	case *starlark.Dict:
		out := map[string]any{}
		for _, kv := range x.Items() {
			k, ok := starlark.AsString(kv[0])
			if !ok {
				return nil, fmt.Errorf("dict keys must be strings here, got %s", kv[0].Type())
			}
			g, err := ToGo(refs, kv[1])
			if err != nil {
				return nil, err
			}
			out[k] = g
		}
		return out, nil
	case *starlark.Function, *starlark.Builtin, FuncRefValue:
		return refTree(refs, x)
	}
	return nil, fmt.Errorf("cannot use a value of type %s here", v.Type())
}

// FromGo converts plain decoded Go data back to Starlark; the value
// copies what it keeps.
func FromGo(v any) (starlark.Value, error) {
	if sv, ok := fromScalar(v); ok {
		return sv, nil
	}
	switch x := v.(type) {
	case []any:
		out := make([]starlark.Value, len(x))
		for i, e := range x {
			s, err := FromGo(e)
			if err != nil {
				return nil, err
			}
			out[i] = s
		}
		return starlark.NewList(out), nil
	case map[any]any:
		d := starlark.NewDict(len(x))
		for k, e := range x {
			sk, err := FromGo(k)
			if err != nil {
				return nil, err
			}
			se, err := FromGo(e)
			if err != nil {
				return nil, err
			}
			if err := d.SetKey(sk, se); err != nil {
				return nil, err
			}
		}
		return d, nil
	case map[string]any:
		d := starlark.NewDict(len(x))
		for k, e := range x {
			se, err := FromGo(e)
			if err != nil {
				return nil, err
			}
			d.SetKey(starlark.String(k), se)
		}
		return d, nil
	}
	return nil, fmt.Errorf("cannot convert %T to a Starlark value", v)
}

// ProfileFunc is the registered Go function (core.RegisterFunc, by the
// runtime) that starts CPU and heap profiling in a context for the rest
// of its life: the profiling= keyword of the connection methods. Its
// argument is a directory of the context's host ("": its temporary
// directory); it returns the two files it writes when the context exits.
const ProfileFunc = "runtime.profile"

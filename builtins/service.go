package builtins

// Services, as Mitogen's mitogen.service: named sets of methods that a
// context serves to others with a bounded pool of workers, each method
// with a policy saying who may call it, reached with ctx.call_service.
// Go services are registered with core.Router.RegisterService; Starlark
// services are modules that bind SERVICE = service(...) at their top
// level (docs/reference.md, "Services").

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.starlark.net/starlark"

	"github.com/mitostar/mitostar/core"
)

// ActivatorService is the Go service every context registers (the
// runtime does) to start serving a Starlark service module: method
// "activate" with keyword path, parent authority only.
const ActivatorService = "mitostar.services"

// Service is a Starlark service's description (type "service"): what
// service(*functions, policy=None, workers=4, max_queue=1000) returns.
// A module binds it as SERVICE to be served.
type Service struct {
	Methods  []ServiceMethod
	Workers  int
	MaxQueue int
	path     string // the module of its functions
}

// A ServiceMethod is one exposed function and its policy (None: parent
// authority; policy.has_parent_authority, policy.is_immediate_child,
// policy.allow_any, or a callable run as add_handler's policies are).
type ServiceMethod struct {
	Fn     starlark.Callable
	Policy starlark.Value
}

var _ starlark.HasAttrs = (*Service)(nil)

func (s *Service) String() string {
	names := make([]string, len(s.Methods))
	for i, m := range s.Methods {
		names[i] = m.Fn.Name()
	}
	return fmt.Sprintf("service(%s of %s, workers=%d)", strings.Join(names, ", "), s.path, s.Workers)
}
func (s *Service) Type() string          { return "service" }
func (s *Service) Freeze()               {}
func (s *Service) Truth() starlark.Bool  { return true }
func (s *Service) Hash() (uint32, error) { return starlark.String(s.path).Hash() }

// Path is the module the service's functions belong to: its name for
// ctx.call_service.
func (s *Service) Path() string { return s.path }

// Attr returns path, methods, workers and max_queue.
func (s *Service) Attr(name string) (starlark.Value, error) {
	switch name {
	case "path":
		return starlark.String(s.path), nil
	case "methods":
		out := make([]starlark.Value, len(s.Methods))
		for i, m := range s.Methods {
			out[i] = starlark.String(m.Fn.Name())
		}
		return starlark.NewList(out), nil
	case "workers":
		return starlark.MakeInt(s.Workers), nil
	case "max_queue":
		return starlark.MakeInt(s.MaxQueue), nil
	}
	return nil, nil
}

// AttrNames lists the service's attributes.
func (s *Service) AttrNames() []string { return []string{"max_queue", "methods", "path", "workers"} }

// newService is service(*functions, policy=None, workers=4, max_queue=1000).
func newService(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var policy starlark.Value = starlark.None
	s := &Service{Workers: 4, MaxQueue: 1000}
	if err := starlark.UnpackArgs(b.Name(), nil, kwargs, "policy?", &policy, "workers?", &s.Workers, "max_queue?", &s.MaxQueue); err != nil {
		return nil, err
	}
	if len(args) == 0 {
		return nil, errors.New("service: name at least one function to expose")
	}
	if s.Workers < 1 || s.MaxQueue < 1 {
		return nil, fmt.Errorf("service: workers and max_queue must be at least 1, got %d and %d", s.Workers, s.MaxQueue)
	}
	seen := map[string]bool{}
	for i, a := range args {
		m := ServiceMethod{Policy: policy}
		if t, ok := a.(starlark.Tuple); ok && len(t) == 2 {
			a, m.Policy = t[0], t[1]
		}
		fn, ok := a.(*starlark.Function)
		if !ok {
			return nil, fmt.Errorf("service: argument %d: want a function or a (function, policy) pair, got %s", i+1, a.Type())
		}
		if fn.Name() == "lambda" || fn.Globals()[fn.Name()] != fn {
			return nil, fmt.Errorf("service: %s is not a top-level function of its module", fn.Name())
		}
		if m.Policy != starlark.None {
			if _, ok := m.Policy.(starlark.Callable); !ok {
				return nil, fmt.Errorf("service: the policy of %s must be callable or None, got %s", fn.Name(), m.Policy.Type())
			}
		}
		path := fn.Position().Filename()
		if s.path == "" {
			s.path = path
		} else if path != s.path {
			return nil, fmt.Errorf("service: %s is from %s, not %s: a service's functions are one module's", fn.Name(), path, s.path)
		}
		if seen[fn.Name()] {
			return nil, fmt.Errorf("service: %s is named twice", fn.Name())
		}
		seen[fn.Name()] = true
		m.Fn = fn
		s.Methods = append(s.Methods, m)
	}
	return s, nil
}

// CoreService returns the core service that serves s in r's context:
// run turns one call into Starlark (the runtime runs it on a thread of
// its own, with the call's keyword arguments decoded).
func (s *Service) CoreService(r *core.Router, rt Runtime, run func(ctx context.Context, fn starlark.Callable, call *core.ServiceCall) (any, error)) (*core.Service, error) {
	cs := &core.Service{Name: s.path, Workers: s.Workers, MaxQueue: s.MaxQueue, Methods: map[string]core.ServiceMethod{}}
	for _, m := range s.Methods {
		fn := m.Fn
		var policy core.Policy
		if m.Policy != starlark.None {
			p, err := policyOf(r, rt, m.Policy)
			if err != nil {
				return nil, fmt.Errorf("service %s: %s: %w", s.path, fn.Name(), err)
			}
			policy = p
		}
		cs.Methods[fn.Name()] = core.ServiceMethod{Policy: policy, Fn: func(ctx context.Context, call *core.ServiceCall) (any, error) {
			return run(ctx, fn, call)
		}}
	}
	return cs, nil
}

// callService is ctx.call_service(service, method, **kwargs).
func callService(t *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if len(args) != 2 {
		return nil, fmt.Errorf("%s: want the service and the method, got %d positional arguments", b.Name(), len(args))
	}
	method, ok := starlark.AsString(args[1])
	if !ok {
		return nil, fmt.Errorf("%s: the method must be a string, got %s", b.Name(), args[1].Type())
	}
	c := b.Receiver().(*Context).C
	var path string
	switch s := args[0].(type) {
	case *Service:
		path = s.path
	case starlark.String:
		if !strings.HasSuffix(string(s), ".star") {
			return callGoService(t, c, string(s), method, kwargs)
		}
		path = string(s)
	default:
		return nil, fmt.Errorf("%s: the service must be a name or a service value, got %s", b.Name(), args[0].Type())
	}
	return callStarService(t, c, path, method, kwargs)
}

// callGoService calls a service registered in Go: keyword arguments and
// result as plain data.
func callGoService(t *starlark.Thread, c *core.Context, service, method string, kwargs []starlark.Tuple) (starlark.Value, error) {
	kw := map[string]any{}
	for _, kv := range kwargs {
		v, err := ToGo(refsOf(t), kv[1])
		if err != nil {
			return nil, fmt.Errorf("call_service: %s: %w", kv[0], err)
		}
		kw[string(kv[0].(starlark.String))] = v
	}
	var out any
	if err := c.CallService(ThreadContext(t), &out, service, method, kw); err != nil {
		return nil, err
	}
	return FromGo(out)
}

// callStarService calls a Starlark service: activated in c at the first
// call from here, its keyword arguments and result carried as any value
// that crosses contexts.
func callStarService(t *starlark.Thread, c *core.Context, path, method string, kwargs []starlark.Tuple) (starlark.Value, error) {
	ctx := ThreadContext(t)
	rs := routerStateOf(c.Router())
	key := activation{c.ID, path}
	rs.mu.Lock()
	done := rs.activated[key]
	rs.mu.Unlock()
	if !done {
		// As Mitogen: a context with parent authority activates a service
		// on its first call; others can only call one that is active.
		// A dead answer (refused by policy, the context gone) leaves the
		// call itself to say what is wrong; a failed activation (no such
		// module, no SERVICE) is the answer.
		err := c.CallService(ctx, nil, ActivatorService, "activate", map[string]any{"path": path})
		var ce *core.ChannelError
		switch {
		case err == nil:
			rs.mu.Lock()
			rs.activated[key] = true
			rs.mu.Unlock()
		case !errors.As(err, &ce):
			return nil, fmt.Errorf("call_service: activating %s in %s: %w", path, c.Name(), err)
		}
	}
	kw, err := encodeJoined(refsOf(t), nil, kwargs)
	if err != nil {
		return nil, fmt.Errorf("call_service: %w", err)
	}
	val, err := c.CallServiceRaw(ctx, path, method, kw)
	if err != nil {
		return nil, err
	}
	return decoderOf(t).Decode(val)
}

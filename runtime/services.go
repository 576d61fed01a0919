package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/fxamacker/cbor/v2"
	"go.starlark.net/starlark"

	"github.com/mitostar/mitostar/builtins"
	"github.com/mitostar/mitostar/core"
)

// installActivator registers the service that starts serving Starlark
// service modules in this context (builtins.ActivatorService).
func (rt *Runtime) installActivator() {
	err := rt.r.RegisterService(&core.Service{
		Name:    builtins.ActivatorService,
		Workers: 2,
		Methods: map[string]core.ServiceMethod{
			"activate": {Fn: rt.activate}, // parent authority, as Mitogen's activation
		},
	})
	if err != nil {
		rt.r.Logger().Error("installing the service activator", "err", err)
	}
}

// activate serves module path's SERVICE in this context, once: the module
// comes from the parent like any other (from the module roots in the
// master), and its top level runs here.
func (rt *Runtime) activate(ctx context.Context, call *core.ServiceCall) (any, error) {
	var args struct {
		Path string `cbor:"path"`
	}
	if err := call.Kwargs(&args); err != nil {
		return nil, fmt.Errorf("activate: %w", err)
	}
	if !strings.HasSuffix(args.Path, ".star") {
		return nil, fmt.Errorf("activate: %q is not a module path (NAME.star)", args.Path)
	}
	rt.svcMu.Lock()
	defer rt.svcMu.Unlock() // one activation at a time: RegisterService once per module
	if rt.services[args.Path] {
		return nil, nil
	}
	svc, err := rt.serviceOf(ctx, args.Path)
	if err != nil {
		return nil, err
	}
	cs, err := svc.CoreService(rt.r, rt, rt.serveMethod)
	if err != nil {
		return nil, err
	}
	if err := rt.r.RegisterService(cs); err != nil {
		return nil, err
	}
	rt.services[args.Path] = true
	return nil, nil
}

// serviceOf runs module path and returns its SERVICE.
func (rt *Runtime) serviceOf(ctx context.Context, path string) (*builtins.Service, error) {
	m, err := rt.moduleSource(path)
	if err != nil {
		return nil, err
	}
	thread, done := rt.newThread("activate "+path, ctx)
	defer done()
	g, err := rt.execModule(thread, m)
	if err != nil {
		return nil, fmt.Errorf("service %s: %w", path, err)
	}
	v, ok := g["SERVICE"]
	if !ok {
		return nil, fmt.Errorf("module %s is not a service: it binds no SERVICE = service(...) at its top level", path)
	}
	svc, ok := v.(*builtins.Service)
	if !ok {
		return nil, fmt.Errorf("module %s: SERVICE is %s %s, not a service(...)", path, article(v.Type()), v.Type())
	}
	if svc.Path() != path {
		return nil, fmt.Errorf("module %s: SERVICE exposes the functions of %s", path, svc.Path())
	}
	return svc, nil
}

// serveMethod runs one call of a Starlark service method on a thread of
// its own: keyword arguments and result travel as values do.
func (rt *Runtime) serveMethod(ctx context.Context, fn starlark.Callable, call *core.ServiceCall) (any, error) {
	var kwargs []starlark.Tuple
	if len(call.Request.Kwargs) > 0 {
		args, kw, err := rt.decoder.DecodeArgs(call.Request.Kwargs)
		if err != nil {
			return nil, fmt.Errorf("service %s.%s: %w", call.Request.Service, call.Request.Method, err)
		}
		if len(args) > 0 {
			return nil, errors.New("service methods take keyword arguments only")
		}
		kwargs = kw
	}
	thread, done := rt.newThread("service "+call.Request.Service+" "+call.Request.Method, ctx)
	defer done()
	v, err := starlark.Call(thread, fn, nil, kwargs)
	if err != nil {
		return nil, builtins.RemoteOf(err, rt.r.Name())
	}
	data, err := builtins.Encode(rt, v)
	if err != nil {
		return nil, &core.RemoteError{Kind: core.CallError, Message: "encoding the result: " + err.Error(), Context: rt.r.Name()}
	}
	return cbor.RawMessage(data), nil
}

func init() {
	core.RegisterFunc(builtins.ProfileFunc, startProfiling)
}

// startProfiling is builtins.ProfileFunc: CPU and heap profiles of this
// context, written into a directory of its host when its router closes,
// as `mitostar --profile` writes every local context's.
func startProfiling(ctx context.Context, c *core.Call) (any, error) {
	var args []string
	if err := c.Args(&args); err != nil || len(args) != 1 {
		return nil, fmt.Errorf("profiling: want one directory argument (%v)", err)
	}
	name := fmt.Sprintf("child-%d", os.Getpid())
	if dir := os.Getenv(core.ProfileDirEnv); dir != "" {
		// --profile has it write its profiles already: those are the ones.
		base := filepath.Join(dir, name)
		return []string{base + ".cpu.prof", base + ".heap.prof"}, nil
	}
	dir := args[0]
	if dir == "" {
		dir = os.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	stop := core.StartProfiles(dir, name)
	r := c.Router
	r.Go(func() {
		<-r.Lifetime().Done()
		stop()
	})
	base := filepath.Join(dir, name)
	return []string{base + ".cpu.prof", base + ".heap.prof"}, nil
}

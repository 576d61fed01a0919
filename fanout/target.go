package fanout

import (
	"context"
	"errors"
	"fmt"

	"go.starlark.net/starlark"

	"github.com/mitostar/mitostar/builtins"
	"github.com/mitostar/mitostar/core"
	"github.com/mitostar/mitostar/runtime"
)

// What every context of the binary registers for the fan-out.
const (
	// funcSetHost gives a context connect started its host record
	// (args: [record]); it is the first call the context serves, so
	// every module it executes sees host.
	funcSetHost = "fanout.set_host"
	// callName is the wrapper each runs on a target:
	// fanout.call(fn, *args, **kwargs) → (value, changed count).
	callName = "fanout.call"
	// serviceName is the relay's service: connect (kwargs method, opts)
	// makes a connection from the relay, many at a time, where the
	// CALL_FUNCTION core.connect would queue them one after another.
	serviceName = "mitostar.fanout"
)

func init() {
	core.RegisterFunc(funcSetHost, setHost)
	runtime.RegisterBuiltin(callName, callWrapper)
	core.RegisterChildHook(func(r *core.Router, _ []byte) error { return registerService(r) })
}

func setHost(ctx context.Context, c *core.Call) (any, error) {
	var args struct {
		_   struct{} `cbor:",toarray"`
		Rec record
	}
	if err := c.Args(&args); err != nil {
		return nil, fmt.Errorf("%s: %w", funcSetHost, err)
	}
	rt := runtime.Of(c.Router)
	if rt == nil {
		return nil, fmt.Errorf("%s: no runtime in %s", funcSetHost, c.Router.Name())
	}
	h, err := hostValue(&args.Rec)
	if err != nil {
		return nil, err
	}
	rt.Predeclare("host", h)
	return nil, nil
}

// callWrapper runs fn here on this call's thread and returns (value,
// changed): how many operations fn ran changed this host
// (builtins.MarkChanged).
func callWrapper(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if len(args) == 0 {
		return nil, errors.New("fanout.call: missing function argument")
	}
	fn, ok := args[0].(starlark.Callable)
	if !ok {
		return nil, fmt.Errorf("fanout.call: first argument must be callable, got %s", args[0].Type())
	}
	before := builtins.ChangedCount(thread)
	v, err := starlark.Call(thread, fn, args[1:], kwargs)
	if err != nil {
		return nil, err
	}
	return starlark.Tuple{v, starlark.MakeInt64(builtins.ChangedCount(thread) - before)}, nil
}

// relayWorkers bounds the connections one relay makes at once.
const relayWorkers = 256

func registerService(r *core.Router) error {
	return r.RegisterService(&core.Service{
		Name:    serviceName,
		Workers: relayWorkers,
		Methods: map[string]core.ServiceMethod{"connect": {Fn: serveConnect}},
	})
}

type connectArgs struct {
	Method string              `cbor:"method"`
	Opts   core.ConnectOptions `cbor:"opts"`
}

type connectReply struct {
	ID   uint32 `cbor:"1,keyasint"`
	Name string `cbor:"2,keyasint"`
}

func serveConnect(ctx context.Context, call *core.ServiceCall) (any, error) {
	var a connectArgs
	if err := call.Kwargs(&a); err != nil {
		return nil, fmt.Errorf("%s.connect: %w", serviceName, err)
	}
	c, err := call.Router.Connect(ctx, a.Method, &a.Opts)
	if err != nil {
		return nil, err
	}
	return connectReply{ID: c.ID, Name: c.Name()}, nil
}

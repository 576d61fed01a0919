package fakessh

import (
	"fmt"
	"math"
	"time"

	"go.starlark.net/starlark"

	"github.com/mitostar/mitostar/builtins"
)

func init() { builtins.Register("fakessh.run", starlarkRun) }

// starlarkRun is fakessh.run(context, argv, deadline=None) → exit status.
func starlarkRun(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var ctxV starlark.Value
	var argvV *starlark.List
	var deadlineV starlark.Value = starlark.None
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "context", &ctxV, "argv", &argvV, "deadline?", &deadlineV); err != nil {
		return nil, err
	}
	target, err := builtins.ToContext(ctxV, b.Name())
	if err != nil {
		return nil, err
	}
	argv := make([]string, argvV.Len())
	for i := range argv {
		s, ok := starlark.AsString(argvV.Index(i))
		if !ok {
			return nil, fmt.Errorf("%s: argv[%d] must be a string, got %s", b.Name(), i, argvV.Index(i).Type())
		}
		argv[i] = s
	}
	if len(argv) == 0 {
		return nil, fmt.Errorf("%s: argv is empty", b.Name())
	}
	var deadline time.Duration
	if deadlineV != starlark.None {
		secs, ok := starlark.AsFloat(deadlineV)
		if !ok || secs <= 0 || math.IsNaN(secs) || math.IsInf(secs, 0) {
			return nil, fmt.Errorf("%s: deadline must be a positive number of seconds, got %s", b.Name(), deadlineV)
		}
		deadline = time.Duration(secs * float64(time.Second))
	}
	r, err := builtins.RouterOf(thread)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	status, err := Run(builtins.ThreadContext(thread), r, target, argv, deadline)
	if err != nil {
		return nil, err
	}
	return starlark.MakeInt(status), nil
}

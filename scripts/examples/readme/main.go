// Command readme is the program of the README's "Embedding in Go": a Go
// builtin that scripts call here and in every child, and a script run by
// the program's own master router.
//
//	go run ./scripts/examples/readme scripts/examples/readme/deploy.star [ARG...]
package main

import (
	"context"
	"fmt"
	"os"

	"go.starlark.net/starlark"

	"github.com/mitostar/mitostar/builtins"
	"github.com/mitostar/mitostar/core"
	"github.com/mitostar/mitostar/runtime"
)

func init() {
	// From init, before main: children are this binary re-executed, and
	// must know the same builtins. Scripts call deploy.targets() here and
	// ctx.call(deploy.targets) in any child.
	runtime.RegisterBuiltin("deploy.targets", targets)
}

func targets(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if err := starlark.UnpackArgs(b.Name(), args, kwargs); err != nil {
		return nil, err
	}
	return starlark.NewList([]starlark.Value{starlark.String("web1"), starlark.String("web2")}), nil
}

func main() {
	core.RunRole() // in a re-executed child: serve the parent, then exit
	os.Exit(run())
}

func run() int {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: readme SCRIPT.star [ARG...]")
		return 2
	}
	r := core.NewMaster(core.Options{Sink: core.NewWriterSink(os.Stderr)})
	defer r.Close() // shuts every child down
	rt := runtime.New(r, runtime.Options{Argv: os.Args[2:]})
	if err := rt.RunScript(context.Background(), os.Args[1]); err != nil {
		fmt.Fprint(os.Stderr, builtins.Backtrace(err))
		return 1
	}
	return 0
}

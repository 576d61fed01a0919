// Command embed shows a Go program embedding mitostar: it registers a Go
// builtin that Starlark can call here and in any child context, then runs
// a script with its own master router.
//
//	go run ./scripts/examples/embed [ARG...]
//
// The three things an embedding program must do:
//
//  1. register its builtins from init (children are this same executable
//     re-executed, and must know the same names);
//  2. call core.RunRole first thing in main, so that a re-executed child
//     serves its parent instead of running main;
//  3. build a master router and a runtime.Runtime on it, and run a script.
package main

import (
	"context"
	_ "embed"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	goruntime "runtime"
	"time"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/mitostar/mitostar/builtins"
	"github.com/mitostar/mitostar/core"
	"github.com/mitostar/mitostar/runtime"
)

//go:embed inventory.star
var inventoryScript []byte

func init() {
	// inventory.facts() is predeclared in every context as a member of the
	// inventory module, and travels by name: ctx.call(inventory.facts).
	runtime.RegisterBuiltin("inventory.facts", facts)
}

// facts returns a few facts about the process it runs in.
func facts(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	label := "anonymous"
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "label?", &label); err != nil {
		return nil, err
	}
	host, err := os.Hostname()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	return starlarkstruct.FromStringDict(starlarkstruct.Default, starlark.StringDict{
		"label":    starlark.String(label),
		"pid":      starlark.MakeInt(os.Getpid()),
		"hostname": starlark.String(host),
		"platform": starlark.String(goruntime.GOOS + "/" + goruntime.GOARCH),
	}), nil
}

func main() {
	core.RunRole() // in a child, serves the parent and exits
	os.Exit(run())
}

func run() int {
	// The script travels to children by module path and hash, so it needs
	// a module root: write the embedded copy to a directory of its own.
	dir, err := os.MkdirTemp("", "mitostar-embed-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "embed:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "inventory.star")
	if err := os.WriteFile(script, inventoryScript, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "embed:", err)
		return 1
	}

	// The master's router; logs from every context go to stderr, tagged
	// with the context's name. Closing it shuts every child down.
	r := core.NewMaster(core.Options{Sink: core.NewWriterSink(os.Stderr)})
	defer r.CloseTimeout(5 * time.Second)
	rt := runtime.New(r, runtime.Options{Roots: []string{dir}, Argv: os.Args[1:], Stdout: os.Stdout})

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := rt.RunScript(ctx, script); err != nil {
		fmt.Fprint(os.Stderr, builtins.Backtrace(err))
		return 1
	}
	return 0
}

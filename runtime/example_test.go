package runtime_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.starlark.net/starlark"

	"github.com/mitostar/mitostar/builtins"
	"github.com/mitostar/mitostar/core"
	"github.com/mitostar/mitostar/internal/testbed"
	"github.com/mitostar/mitostar/runtime"
)

// Children started by the examples are this test binary re-executed.
func TestMain(m *testing.M) {
	core.RunRole()
	testbed.QuickRaceExit() // children exit at once under -race
	os.Exit(m.Run())
}

// Builtins are registered from init, so that every context — children
// are this same executable — knows the same names.
func init() {
	runtime.RegisterBuiltin("greeter.greet", func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var name string
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name); err != nil {
			return nil, err
		}
		r, err := builtins.RouterOf(thread)
		if err != nil {
			return nil, err
		}
		return starlark.String(fmt.Sprintf("hello %s, from context %d", name, r.ID())), nil
	})
}

// writeScript puts src in a fresh directory as name and returns its path.
func writeScript(name, src string) (string, func()) {
	dir, err := os.MkdirTemp("", "mitostar-example-")
	if err != nil {
		panic(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		panic(err)
	}
	return path, func() { os.RemoveAll(dir) }
}

// A Go builtin registered with RegisterBuiltin is predeclared in every
// context as a member of its module (greeter.greet) and travels by name,
// so a script can call it locally or run it in a child with ctx.call.
func ExampleRegisterBuiltin() {
	script, cleanup := writeScript("greet.star", `
def main():
    print(greeter.greet("master"))
    child = router.local()
    print(child.call(greeter.greet, name = "child"))
`)
	defer cleanup()

	r := core.NewMaster(core.Options{})
	defer r.CloseTimeout(5 * time.Second)
	rt := runtime.New(r, runtime.Options{Stdout: os.Stdout})
	if err := rt.RunScript(context.Background(), script); err != nil {
		fmt.Print(builtins.Backtrace(err))
	}
	// Output:
	// hello master, from context 0
	// hello child, from context 1
}

// Running a script from Go: a master router, a runtime on it with the
// module roots and argv, and RunScript, which runs the top level and
// then main(). A failure comes back as an error; builtins.Backtrace
// renders it with the remote frames of every context it crossed.
func ExampleRuntime_RunScript() {
	script, cleanup := writeScript("deploy.star", `
def where():
    return [context_id, argv]

def broken(n):
    fail("cannot deploy %d" % n)

def main():
    child = router.local(name = "worker")
    print("child says", child.call(where))
    child.call(broken, 3)
`)
	defer cleanup()

	r := core.NewMaster(core.Options{})
	defer r.CloseTimeout(5 * time.Second)
	rt := runtime.New(r, runtime.Options{
		Roots:  []string{filepath.Dir(script)}, // the script's directory is the first module root
		Argv:   []string{"--dry-run"},
		Stdout: os.Stdout,
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := rt.RunScript(ctx, script)
	fmt.Print(builtins.Backtrace(err))
	// Output:
	// child says [1, ["--dry-run"]]
	// Traceback (most recent call last):
	//   deploy.star:11:15: in main
	//   <builtin>: in call
	// Remote Traceback (most recent call last):
	//   [worker] deploy.star:6:9: in broken
	// CallError: fail: cannot deploy 3 (in worker)
}

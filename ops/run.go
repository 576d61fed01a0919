package ops

import (
	"fmt"
	"os"
	"os/exec"
	"strings"

	"go.starlark.net/starlark"

	"github.com/mitostar/mitostar/builtins"
)

// proc is what a program run by an operation returned.
type proc struct {
	rc             int
	stdout, stderr string
}

// run runs argv with the exec.run builtin (so it gets its process group,
// and stops with the thread), with extra environment variables added to
// the context's own and, unless cwd is "", in cwd. check turns a
// non-zero rc into an error quoting the tail of stderr.
func (o *op) run(argv []string, env []string, cwd string, check bool) (proc, error) {
	fn, ok := builtins.Lookup("exec.run")
	if !ok {
		return proc{}, fmt.Errorf("%s: the exec.run builtin is missing", o.name)
	}
	list := make([]starlark.Value, len(argv))
	for i, a := range argv {
		list[i] = starlark.String(a)
	}
	kwargs := []starlark.Tuple{{starlark.String("check"), starlark.Bool(check)}}
	if len(env) > 0 {
		d := starlark.NewDict(len(env) + 32)
		for _, kv := range append(os.Environ(), env...) {
			if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
				d.SetKey(starlark.String(k), starlark.String(v))
			}
		}
		kwargs = append(kwargs, starlark.Tuple{starlark.String("env"), d})
	}
	if cwd != "" {
		kwargs = append(kwargs, starlark.Tuple{starlark.String("cwd"), starlark.String(cwd)})
	}
	v, err := starlark.Call(o.thread, fn, starlark.Tuple{starlark.NewList(list)}, kwargs)
	if err != nil {
		return proc{}, fmt.Errorf("%s %s: %w", o.name, o.target, err)
	}
	return procOf(v)
}

// runner returns a function that runs argv (env added, checked), for
// change and changeAll.
func (o *op) runner(env []string, argv ...string) func() error {
	return func() error {
		_, err := o.run(argv, env, "", true)
		return err
	}
}

// changeRun records a change made by running argv.
func (o *op) changeRun(what string, env []string, argv ...string) error {
	return o.change(what, o.runner(env, argv...))
}

// procOf reads exec.run's struct(rc, stdout, stderr).
func procOf(v starlark.Value) (proc, error) {
	s, ok := v.(starlark.HasAttrs)
	if !ok {
		return proc{}, fmt.Errorf("exec.run returned %s", v.Type())
	}
	var p proc
	rc, _ := s.Attr("rc")
	out, _ := s.Attr("stdout")
	errs, _ := s.Attr("stderr")
	if err := starlark.AsInt(rc, &p.rc); err != nil {
		return proc{}, fmt.Errorf("exec.run returned rc %v", rc)
	}
	p.stdout, _ = starlark.AsString(out)
	p.stderr, _ = starlark.AsString(errs)
	return p, nil
}

// cEnv makes programs whose output operations parse speak English.
var cEnv = []string{"LC_ALL=C", "LANG=C"}

// lookPath reports whether a program is on this context's PATH.
func lookPath(name string) bool {
	_, err := exec.LookPath(name)
	return err == nil
}

// quoteArgv shows a command line for messages.
func quoteArgv(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`*?[]{}();<>|&!#~") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

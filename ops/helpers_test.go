package ops

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/mitostar/mitostar/builtins"
	"github.com/mitostar/mitostar/core"
)

// fakeEnv is the runtime of the threads of these unit tests: check mode
// on demand, src files from a map, a predeclared host, and the changes
// shown.
type fakeEnv struct {
	check bool
	srcs  map[string]string
	host  starlark.Value

	mu    sync.Mutex
	shown []string
}

var (
	_ Env              = (*fakeEnv)(nil)
	_ builtins.Runtime = (*fakeEnv)(nil)
)

func (e *fakeEnv) CheckMode() bool { return e.check }

func (e *fakeEnv) ShowChange(_ context.Context, op, target, msg, diff string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.shown = append(e.shown, op+" "+target+": "+msg+"\n"+diff)
}

func (e *fakeEnv) Source(_ context.Context, path string) ([]byte, error) {
	if s, ok := e.srcs[path]; ok {
		return []byte(s), nil
	}
	return nil, fmt.Errorf("src %q not found", path)
}

func (e *fakeEnv) PredeclaredValue(name string) starlark.Value {
	if name == "host" && e.host != nil {
		return e.host
	}
	return nil
}

func (e *fakeEnv) Decoder() *builtins.Decoder { return nil }

func (e *fakeEnv) CallRequest(context.Context, *core.Context, starlark.Value, starlark.Tuple, []starlark.Tuple) (*core.CallRequest, error) {
	return nil, errors.New("the unit tests make no calls")
}

func (e *fakeEnv) FuncRef(*starlark.Function) (string, string, string, error) {
	return "", "", "", errors.New("the unit tests send no functions")
}

func (e *fakeEnv) NewThread(name string) (*starlark.Thread, func()) {
	return &starlark.Thread{Name: name}, func() {}
}

func (e *fakeEnv) CurrentCall() *builtins.ThreadState { return nil }

func (e *fakeEnv) NewThreadContext(name string, _ context.Context) (*starlark.Thread, func()) {
	return e.NewThread(name)
}

// exec runs src with the registered builtin modules (ops, fs, exec, ...)
// predeclared, on a thread whose runtime is env, and returns its globals.
func (e *fakeEnv) exec(t *testing.T, src string) (starlark.StringDict, error) {
	t.Helper()
	thread := &starlark.Thread{Name: t.Name()}
	builtins.SetRuntime(thread, e)
	predeclared := builtins.Modules()
	predeclared["struct"] = starlark.NewBuiltin("struct", starlarkstruct.Make)
	return starlark.ExecFile(thread, "test.star", src, predeclared)
}

// mustExec is exec failing the test on an error.
func (e *fakeEnv) mustExec(t *testing.T, src string) starlark.StringDict {
	t.Helper()
	g, err := e.exec(t, src)
	if err != nil {
		t.Fatalf("%v\nin:\n%s", err, src)
	}
	return g
}

// res reads a result struct.
type res struct {
	changed   bool
	diff, msg string
}

func resultOf(t *testing.T, v starlark.Value) res {
	t.Helper()
	s, ok := v.(starlark.HasAttrs)
	if !ok {
		t.Fatalf("result is a %s, want a struct", v.Type())
	}
	var r res
	changed, _ := s.Attr("changed")
	diff, _ := s.Attr("diff")
	msg, _ := s.Attr("msg")
	r.changed = bool(changed.(starlark.Bool))
	r.diff = string(diff.(starlark.String))
	r.msg = string(msg.(starlark.String))
	return r
}

// wantResult checks the result bound to name in g.
func wantResult(t *testing.T, g starlark.StringDict, name string, changed bool, msg string) res {
	t.Helper()
	r := resultOf(t, g[name])
	if r.changed != changed || (msg != "" && r.msg != msg) {
		t.Errorf("%s: changed=%v msg=%q, want changed=%v msg=%q", name, r.changed, r.msg, changed, msg)
	}
	return r
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// q quotes a Go string as a Starlark string literal.
func q(s string) string { return starlark.String(s).String() }

func lines(s ...string) string { return strings.Join(s, "\n") + "\n" }

func statT(t *testing.T, path string) os.FileInfo {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

func symlinkT(t *testing.T, target, path string) {
	t.Helper()
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
}

func readlinkT(t *testing.T, path string) string {
	t.Helper()
	target, err := os.Readlink(path)
	if err != nil {
		t.Fatal(err)
	}
	return target
}

// matches reports whether s matches the regular expression pattern.
func matches(pattern, s string) bool { return regexp.MustCompile(pattern).MatchString(s) }

// wantErrors runs each source of cases after prelude and checks that it
// fails with an error matching its pattern.
func (e *fakeEnv) wantErrors(t *testing.T, prelude string, cases map[string]string) {
	t.Helper()
	for src, pattern := range cases {
		_, err := e.exec(t, prelude+src)
		if err == nil || !matches(pattern, err.Error()) {
			t.Errorf("%s: error %v, want one matching %q", src, err, pattern)
		}
	}
}

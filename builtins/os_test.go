package builtins

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"slices"
	"syscall"
	"testing"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
	"go.starlark.net/syntax"
	"golang.org/x/sys/unix"

	"github.com/mitostar/mitostar/core"
)

// osTestOptions is the scripts' dialect (runtime.FileOptions).
var osTestOptions = &syntax.FileOptions{Set: true, While: true, TopLevelControl: true, GlobalReassign: true, Recursion: true}

// osTestExec runs src on thread with the registered modules predeclared.
func osTestExec(thread *starlark.Thread, src string) (starlark.StringDict, error) {
	return starlark.ExecFileOptions(osTestOptions, thread, "test.star", src, Modules())
}

// osTestRun runs src and returns its globals, failing t on an error.
func osTestRun(t testing.TB, src string) starlark.StringDict {
	t.Helper()
	g, err := osTestExec(&starlark.Thread{Name: t.Name()}, src)
	if err != nil {
		t.Fatalf("script failed: %v\n%s", err, src)
	}
	return g
}

// osTestFail runs src, which must fail, and returns the kind and message
// of its error.
func osTestFail(t testing.TB, src string) (kind, msg string) {
	t.Helper()
	_, err := osTestExec(&starlark.Thread{Name: t.Name()}, src)
	if err == nil {
		t.Fatalf("script succeeded, want an error:\n%s", src)
	}
	return osTestError(err)
}

// osTestError returns the error kind and the message of a script's error.
func osTestError(err error) (kind, msg string) {
	var re *core.RemoteError
	if errors.As(err, &re) {
		return re.Kind, re.Message
	}
	var ee *starlark.EvalError
	if errors.As(err, &ee) && ee.Unwrap() != nil {
		return core.KindOf(err), ee.Unwrap().Error()
	}
	return core.KindOf(err), err.Error()
}

// osTestWantError checks the kind and message of src's error.
func osTestWantError(t testing.TB, src, wantKind, wantMsg string) {
	t.Helper()
	kind, msg := osTestFail(t, src)
	if kind != wantKind || msg != wantMsg {
		t.Errorf("%s\n got %s: %q\nwant %s: %q", src, kind, msg, wantKind, wantMsg)
	}
}

// osTestGet returns global name of g as a Go value of type T.
func osTestGet[T starlark.Value](t testing.TB, g starlark.StringDict, name string) T {
	t.Helper()
	v, ok := g[name].(T)
	if !ok {
		var zero T
		t.Fatalf("global %s = %v (%T), want a %T", name, g[name], g[name], zero)
	}
	return v
}

func osTestInt(t testing.TB, g starlark.StringDict, name string) int {
	t.Helper()
	n, err := starlark.AsInt32(g[name])
	if err != nil {
		t.Fatalf("global %s = %v: %v", name, g[name], err)
	}
	return n
}

func osTestAttr(t testing.TB, v starlark.Value, name string) starlark.Value {
	t.Helper()
	s, ok := v.(*starlarkstruct.Struct)
	if !ok {
		t.Fatalf("%v is a %s, want a struct", v, v.Type())
	}
	a, err := s.Attr(name)
	if err != nil {
		t.Fatalf("%v.%s: %v", v, name, err)
	}
	return a
}

func TestOsModulesRegistered(t *testing.T) {
	mods := Modules()
	want := map[string][]string{
		"os":   {"environ", "getcwd", "getenv", "geteuid", "getpid", "getppid", "getuid", "hostname", "kill", "uname", "username"},
		"exec": {"run", "shell"},
		"fs": {"chmod", "chown", "exists", "listdir", "mkdir", "read", "readlink", "remove", "rename",
			"sha256", "stat", "symlink", "write"},
	}
	for mod, names := range want {
		m, ok := mods[mod].(*starlarkstruct.Module)
		if !ok {
			t.Fatalf("module %s missing from Modules()", mod)
		}
		for _, n := range names {
			b, ok := m.Members[n].(*starlark.Builtin)
			if !ok {
				t.Errorf("%s.%s missing", mod, n)
				continue
			}
			if b.Name() != mod+"."+n || !IsRegistered(b) {
				t.Errorf("%s.%s: name %q, registered %v", mod, n, b.Name(), IsRegistered(b))
			}
		}
	}
}

func TestOsIdentity(t *testing.T) {
	g := osTestRun(t, `
pid, ppid, uid, euid = os.getpid(), os.getppid(), os.getuid(), os.geteuid()
name, host, cwd = os.username(), os.hostname(), os.getcwd()
`)
	for name, want := range map[string]int{"pid": os.Getpid(), "ppid": os.Getppid(), "uid": os.Getuid(), "euid": os.Geteuid()} {
		if got := osTestInt(t, g, name); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	wd, _ := os.Getwd()
	for name, want := range map[string]string{"name": u.Username, "host": host, "cwd": wd} {
		if got := string(osTestGet[starlark.String](t, g, name)); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	osTestWantError(t, `os.getpid(1)`, "Error", "os.getpid: got 1 arguments, want 0")
	osTestWantError(t, `os.hostname(x=1)`, "Error", "os.hostname: unexpected keyword arguments")
}

func TestOsEnv(t *testing.T) {
	t.Setenv("MITOSTAR_OS_TEST", "a=b c")
	t.Setenv("MITOSTAR_OS_EMPTY", "")
	os.Unsetenv("MITOSTAR_OS_UNSET")
	g := osTestRun(t, `
v = os.getenv("MITOSTAR_OS_TEST")
empty = os.getenv("MITOSTAR_OS_EMPTY", "default")
unset = os.getenv("MITOSTAR_OS_UNSET")
dflt = os.getenv(name="MITOSTAR_OS_UNSET", default=42)
env = os.environ()
env["MITOSTAR_OS_TEST"] = "changed"  # a fresh, mutable dict
again = os.environ()["MITOSTAR_OS_TEST"]
keys = list(env.keys())
`)
	if got := string(osTestGet[starlark.String](t, g, "v")); got != "a=b c" {
		t.Errorf("getenv = %q", got)
	}
	if got := string(osTestGet[starlark.String](t, g, "empty")); got != "" {
		t.Errorf("getenv of an empty variable = %q, want \"\"", got)
	}
	if g["unset"] != starlark.None {
		t.Errorf("getenv of an unset variable = %v, want None", g["unset"])
	}
	if osTestInt(t, g, "dflt") != 42 {
		t.Errorf("getenv default = %v, want 42", g["dflt"])
	}
	if got := string(osTestGet[starlark.String](t, g, "again")); got != "a=b c" {
		t.Errorf("environ() after changing a copy = %q", got)
	}
	env := osTestGet[*starlark.Dict](t, g, "env")
	if env.Len() != len(os.Environ()) {
		t.Errorf("environ() has %d entries, the process %d", env.Len(), len(os.Environ()))
	}
	var keys []string
	for k := range osTestGet[*starlark.List](t, g, "keys").Elements() {
		keys = append(keys, string(k.(starlark.String)))
	}
	if !slices.IsSorted(keys) || !slices.Contains(keys, "MITOSTAR_OS_EMPTY") {
		t.Errorf("environ() keys %v: want sorted, with MITOSTAR_OS_EMPTY", keys)
	}
	osTestWantError(t, `os.getenv()`, "Error", "os.getenv: missing argument for name")
	osTestWantError(t, `os.getenv(1)`, "Error", "os.getenv: for parameter name: got int, want string")
}

func TestOsUname(t *testing.T) {
	g := osTestRun(t, `u = os.uname()`)
	var want unix.Utsname
	if err := unix.Uname(&want); err != nil {
		t.Fatal(err)
	}
	u := g["u"]
	for name, w := range map[string][]byte{"sysname": want.Sysname[:], "nodename": want.Nodename[:], "release": want.Release[:], "machine": want.Machine[:]} {
		got := string(osTestAttr(t, u, name).(starlark.String))
		if got != unix.ByteSliceToString(w) || got == "" {
			t.Errorf("uname().%s = %q, want %q", name, got, unix.ByteSliceToString(w))
		}
	}
	if got := string(osTestAttr(t, u, "sysname").(starlark.String)); got != "Linux" && got != "Darwin" && got != "FreeBSD" {
		t.Errorf("sysname %q", got)
	}
}

func TestOsKill(t *testing.T) {
	start := func() *exec.Cmd {
		cmd := exec.Command("sleep", "30")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd
	}
	wantSignal := func(cmd *exec.Cmd, sig syscall.Signal) {
		t.Helper()
		err := cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("wait: %v, want killed by %v", err, sig)
		}
		if ws := ee.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != sig {
			t.Errorf("process ended with %v, want signal %v", ws, sig)
		}
	}

	cmd := start()
	osTestRun(t, fmt.Sprintf("os.kill(%d, 0)\nos.kill(%d)", cmd.Process.Pid, cmd.Process.Pid))
	wantSignal(cmd, syscall.SIGTERM)

	cmd = start()
	osTestRun(t, fmt.Sprintf("os.kill(pid=%d, sig=9)", cmd.Process.Pid))
	wantSignal(cmd, syscall.SIGKILL)

	// cmd is reaped now: its pid names no process (pids are not reused
	// this fast).
	dead := cmd.Process.Pid
	osTestWantError(t, fmt.Sprintf("os.kill(%d)", dead), "OSError", fmt.Sprintf("os.kill %d: no such process", dead))
	cmd = start()
	osTestWantError(t, fmt.Sprintf("os.kill(%d, 999)", cmd.Process.Pid), "OSError", fmt.Sprintf("os.kill %d: invalid argument", cmd.Process.Pid))
	osTestWantError(t, `os.kill(0)`, "Error", "os.kill: refusing pid 0 (it would signal every process of a group or of the system)")
	osTestWantError(t, `os.kill(-1, 9)`, "Error", "os.kill: refusing pid -1 (it would signal every process of a group or of the system)")
	osTestWantError(t, `os.kill(1, -3)`, "Error", "os.kill: invalid signal number -3")
	osTestWantError(t, `os.kill("1")`, "Error", "os.kill: for parameter pid: got string, want int")
	if os.Geteuid() != 0 {
		// pid 1 belongs to root.
		osTestWantError(t, `os.kill(1, 0)`, "OSError", "os.kill 1: operation not permitted")
	}
}

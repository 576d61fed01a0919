package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.starlark.net/starlark"

	"github.com/mitostar/mitostar/builtins"
	"github.com/mitostar/mitostar/core"
	"github.com/mitostar/mitostar/docs"
	"github.com/mitostar/mitostar/internal/testbed"
	"github.com/mitostar/mitostar/runtime"
)

// cliEnv makes this test binary behave as the mitostar command: the CLI
// tests run it as a subprocess (signals and exit codes are real), and its
// children are the same binary in the child role.
const cliEnv = "MITOSTAR_TEST_CLI"

func TestMain(m *testing.M) {
	core.RunRole()
	if os.Getenv(cliEnv) == "1" {
		main()
	}
	testbed.QuickRaceExit()
	if signal.Ignored(syscall.SIGHUP) {
		// Run under nohup: a handler here makes the commands the tests
		// start begin with SIGHUP at its default, as from a terminal (an
		// ignored signal stays ignored across exec, and a test that
		// hangs up a master would wait for its timeout).
		signal.Notify(make(chan os.Signal, 1), syscall.SIGHUP)
	}
	os.Exit(m.Run())
}

// result is what one run of the command produced.
type result struct {
	code           int
	stdout, stderr string
}

// mitostar runs the command with args in dir and waits for it (30 s at most).
func mitostar(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	return runFile(t, dir, os.Args[0], env, args...)
}

// runFile runs the executable bin with args in dir, as the mitostar
// command (this test binary, or a bundle made of it), and waits for it
// (30 s at most).
func runFile(t *testing.T, dir, bin string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := commandOf(ctx, bin, dir, env, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("running %s %v: %v", bin, args, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("%s %v did not finish in 30s; stderr:\n%s", bin, args, stderr.String())
	}
	if strings.Contains(stderr.String(), "DATA RACE") {
		t.Errorf("%s %v: a process reported a data race:\n%s", bin, args, stderr.String())
	}
	return result{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
}

func command(ctx context.Context, dir string, env []string, args ...string) *exec.Cmd {
	return commandOf(ctx, os.Args[0], dir, env, args...)
}

func commandOf(ctx context.Context, bin, dir string, env []string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), cliEnv+"=1"), env...)
	return cmd
}

// script writes files (name → source) into a fresh directory and returns it.
func script(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, src := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func (r result) want(t *testing.T, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
}

func contains(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s does not contain %q; it is:\n%s", what, sub, s)
		}
	}
}

func matches(t *testing.T, what, s string, patterns ...string) {
	t.Helper()
	for _, p := range patterns {
		if !regexp.MustCompile(p).MatchString(s) {
			t.Errorf("%s does not match %q; it is:\n%s", what, p, s)
		}
	}
}

func TestVersionAndHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}, {"--version", "ignored.star"}} {
		r := mitostar(t, "", nil, args...)
		r.want(t, 0)
		matches(t, fmt.Sprint(args), r.stdout, `^mitostar \S+ \(protocol 4, go1\.\d+\S* \w+/\w+\)\n$`)
	}

	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}, {"run", "-h"}} {
		r := mitostar(t, "", nil, args...)
		r.want(t, 0)
		contains(t, fmt.Sprint(args), r.stdout, "usage: mitostar [flags] SCRIPT.star [ARG...]", "-I DIR", "--log-level",
			"--log-file", "--max-message-size", "--shutdown-timeout", "--check", "--diff", "exit status",
			"mitostar repl [flags]", "mitostar check [-I DIR] SCRIPT.star",
			"mitostar bundle SCRIPT.star -o FILE [--target OS/ARCH] [-i INVENTORY] [-I DIR]")
		if r.stderr != "" {
			t.Errorf("%v wrote to stderr: %s", args, r.stderr)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	dir := script(t, map[string]string{"ok.star": "print('ran')\n"})
	f, err := os.Create(filepath.Join(dir, "sparse.star"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(65 << 20); err != nil { // sparse: no disk space used
		t.Fatal(err)
	}
	f.Close()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "mitostar: missing script"},
		{[]string{"run"}, "mitostar: missing script"},
		// Flags are named as they were typed, with one dash or two.
		{[]string{"--bogus", "ok.star"}, "mitostar: flag provided but not defined: --bogus\n"},
		{[]string{"-bogus", "ok.star"}, "mitostar: flag provided but not defined: -bogus\n"},
		{[]string{"--chekc", "ok.star"}, "mitostar: flag provided but not defined: --chekc\n"},
		{[]string{"-I"}, "flag needs an argument: -I\n"},
		{[]string{"ok.star", "--log-level"}, ""}, // after the script: the script's argument
		{[]string{"--log-level"}, "flag needs an argument: --log-level\n"},
		{[]string{"nosuch.star"}, "mitostar: stat nosuch.star: no such file or directory"},
		// A directory or a device is as bad a script as a missing file.
		{[]string{"."}, "mitostar: . is a directory, not a script\n"},
		{[]string{"/dev/zero"}, "mitostar: /dev/zero is a character device, not a script\n"},
		{[]string{"sparse.star"}, "mitostar: sparse.star is 68157440 bytes, over the 64 MiB limit of a script or module\n"},
		{[]string{"-I", "/nonexistent", "ok.star"}, "mitostar: -I /nonexistent: no such file or directory\n"},
		{[]string{"-I", "ok.star", "ok.star"}, "mitostar: -I ok.star: not a directory\n"},
		{[]string{"--log-level", "loud", "ok.star"}, `mitostar: --log-level: unknown log level "loud"`},
		{[]string{"--max-message-size", "100", "ok.star"}, "mitostar: --max-message-size must be at least 4096 bytes"},
		{[]string{"--max-message-size", "lots", "ok.star"}, `invalid value "lots" for flag --max-message-size: parse error`},
		{[]string{"--max-message-size=lots", "ok.star"}, `invalid value "lots" for flag --max-message-size: parse error`},
		{[]string{"-max-message-size", "lots", "ok.star"}, `invalid value "lots" for flag -max-message-size: parse error`},
		{[]string{"--shutdown-timeout", "-1", "ok.star"}, "mitostar: --shutdown-timeout must not be negative"},
		{[]string{"--ssh-transport", "telnet", "ok.star"}, `mitostar: --ssh-transport must be openssh or native, got "telnet"`},
		{[]string{"--log-file", "/nonexistent/dir/log", "ok.star"}, "mitostar: --log-file: open /nonexistent/dir/log: no such file or directory"},
	} {
		r := mitostar(t, dir, nil, tc.args...)
		if tc.want == "" {
			r.want(t, 0)
			continue
		}
		if r.code != 2 {
			t.Errorf("%v: exit status %d, want 2\nstderr:\n%s", tc.args, r.code, r.stderr)
		}
		contains(t, fmt.Sprintf("stderr of %v", tc.args), r.stderr, tc.want)
		if strings.Contains(r.stdout, "ran") {
			t.Errorf("%v: the script ran", tc.args)
		}
	}
	r := mitostar(t, dir, []string{"MITOSTAR_LOG_LEVEL=chatty"}, "ok.star")
	r.want(t, 2)
	contains(t, "stderr", r.stderr, `mitostar: MITOSTAR_LOG_LEVEL: unknown log level "chatty"`)
}

const outputScript = `
def child_side(tag):
    print("child print", tag, argv)
    log.info("child info", tag)
    log.warning("child warning", tag)
    log.debug("child debug", tag)
    return os.getpid()

def main():
    print("master print", argv)
    c = router.local()
    pid = c.call(child_side, "x")
    print("child pid", pid, c.name)
    log.info("master info")
`

func TestOutput(t *testing.T) {
	t.Parallel()
	dir := script(t, map[string]string{"out.star": outputScript})
	r := mitostar(t, dir, nil, "out.star", "a1", "a 2")
	r.want(t, 0)
	m := regexp.MustCompile(`(?m)^child pid (\d+) (local\.\d+)$`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("no child pid line in stdout:\n%s", r.stdout)
	}
	name := m[2]
	if name != "local."+m[1] {
		t.Errorf("child name %s, want local.%s", name, m[1])
	}
	// The master's print is a bare line on stdout; nothing else is there.
	want := fmt.Sprintf("master print [\"a1\", \"a 2\"]\nchild pid %s %s\n", m[1], name)
	if r.stdout != want {
		t.Errorf("stdout = %q, want %q", r.stdout, want)
	}
	contains(t, "stderr", r.stderr,
		fmt.Sprintf("[%s] INFO child print x [\"a1\", \"a 2\"]\n", name),
		fmt.Sprintf("[%s] INFO child info x\n", name),
		fmt.Sprintf("[%s] WARNING child warning x\n", name),
		"[master] INFO master info\n")
	if strings.Contains(r.stderr, "child debug") {
		t.Errorf("debug line shown at the default level:\n%s", r.stderr)
	}

	// `run` is the same command.
	r2 := mitostar(t, dir, nil, "run", "out.star", "a1", "a 2")
	r2.want(t, 0)
	contains(t, "stdout of run", r2.stdout, "master print [\"a1\", \"a 2\"]\n")
}

func TestLogOptions(t *testing.T) {
	t.Parallel()
	dir := script(t, map[string]string{"out.star": outputScript})

	r := mitostar(t, dir, nil, "--log-level", "warning", "out.star")
	r.want(t, 0)
	contains(t, "stderr", r.stderr, "WARNING child warning x")
	for _, s := range []string{"child info", "child print", "master info"} {
		if strings.Contains(r.stderr, s) {
			t.Errorf("--log-level warning shows %q:\n%s", s, r.stderr)
		}
	}

	r = mitostar(t, dir, []string{"MITOSTAR_LOG_LEVEL=error"}, "out.star")
	r.want(t, 0)
	if strings.Contains(r.stderr, "child warning") {
		t.Errorf("MITOSTAR_LOG_LEVEL=error shows warnings:\n%s", r.stderr)
	}

	// A flag beats the environment, both ways.
	r = mitostar(t, dir, []string{"MITOSTAR_LOG_LEVEL=debug"}, "--log-level", "error", "out.star")
	r.want(t, 0)
	if strings.Contains(r.stderr, "child warning") || strings.Contains(r.stderr, "child debug") {
		t.Errorf("--log-level error with MITOSTAR_LOG_LEVEL=debug shows warnings or debug lines:\n%s", r.stderr)
	}
	r = mitostar(t, dir, []string{"MITOSTAR_LOG_LEVEL=error"}, "--log-level=info", "out.star")
	r.want(t, 0)
	contains(t, "stderr with --log-level=info over MITOSTAR_LOG_LEVEL=error", r.stderr, "INFO child info x")
	r = mitostar(t, dir, []string{"MITOSTAR_LOG_LEVEL=error"}, "-v", "out.star")
	r.want(t, 0)
	contains(t, "stderr with -v over MITOSTAR_LOG_LEVEL=error", r.stderr, "DEBUG child debug x")

	r = mitostar(t, dir, nil, "-v", "out.star")
	r.want(t, 0)
	matches(t, "stderr with -v", r.stderr, `\[local\.\d+\] DEBUG child debug x\n`, `\[master\] DEBUG child started name=local\.\d+`)

	logFile := filepath.Join(t.TempDir(), "mitostar.log")
	r = mitostar(t, dir, nil, "--log-file", logFile, "out.star")
	r.want(t, 0)
	if r.stderr != "" {
		t.Errorf("with --log-file, stderr = %q", r.stderr)
	}
	contains(t, "stdout", r.stdout, "master print []\n")
	data, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	matches(t, "log file", string(data), `(?m)^\[local\.\d+\] INFO child print x \[\]$`, `(?m)^\[master\] INFO master info$`)
}

func TestMaxMessageSize(t *testing.T) {
	t.Parallel()
	dir := script(t, map[string]string{"size.star": `
def limit():
    return router.max_message_size

def big(n):
    return "x" * n

def main():
    c = router.local()
    print(router.max_message_size, c.call(limit))
    _, err = catch(c.call, big, 10000)
    print(err)
    print(len(c.call(big, 1000)))
`})
	r := mitostar(t, dir, nil, "--max-message-size", "8192", "size.star")
	r.want(t, 0)
	if want := "8192 8192\nChannelError: message too large (max 8192 bytes)\n1000\n"; r.stdout != want {
		t.Errorf("stdout = %q, want %q\nstderr:\n%s", r.stdout, want, r.stderr)
	}
}

const failingScript = `
load("lib/helpers.star", "deeper")

def remote_part(n):
    return deeper(n)

def middle(c):
    return c.call(remote_part, 3)

def main():
    c = router.local(name = "worker")
    print("before")
    middle(c)
    print("not reached")
`

const helpersModule = `
def deeper(n):
    if n == 0:
        fail("gave up at the bottom")
    return deeper(n - 1)
`

func TestFailingScript(t *testing.T) {
	t.Parallel()
	dir := script(t, map[string]string{"fails.star": failingScript, "lib/helpers.star": helpersModule})
	r := mitostar(t, dir, nil, "fails.star")
	r.want(t, 1)
	if r.stdout != "before\n" {
		t.Errorf("stdout = %q", r.stdout)
	}
	// The whole backtrace: local frames, then the remote ones labelled
	// with the context's name, then the error.
	matches(t, "stderr", r.stderr,
		`(?s)Traceback \(most recent call last\):\n`+
			`  fails.star:13:11: in main\n`+
			`  fails.star:8:18: in middle\n`+
			`.*Remote Traceback \(most recent call last\):\n`+
			`  \[worker\] fails.star:5:18: in remote_part\n`+
			`  \[worker\] lib/helpers.star:5:18: in deeper\n`+
			`(  \[worker\] lib/helpers.star:5:18: in deeper\n){2}`+
			`  \[worker\] lib/helpers.star:4:13: in deeper\n`+
			`CallError: fail: gave up at the bottom \(in worker\)\n$`)

	// A failure in the master alone.
	dir = script(t, map[string]string{"local.star": "def main():\n    x = {}\n    x['missing']\n"})
	r = mitostar(t, dir, nil, "local.star")
	r.want(t, 1)
	matches(t, "stderr", r.stderr, `(?s)Traceback \(most recent call last\):\n  local.star:3:6: in main\nError: key "missing" not in dict\n$`)

	// A top-level failure, without main.
	dir = script(t, map[string]string{"top.star": "print('top')\nfail('at top level')\n"})
	r = mitostar(t, dir, nil, "top.star")
	r.want(t, 1)
	contains(t, "stdout", r.stdout, "top\n")
	matches(t, "stderr", r.stderr, `top.star:2:5: in <toplevel>`, `Error: fail: at top level\n$`)

	// main that is not a function.
	dir = script(t, map[string]string{"nomain.star": "main = 3\n"})
	r = mitostar(t, dir, nil, "nomain.star")
	r.want(t, 1)
	contains(t, "stderr", r.stderr, "Error: nomain.star: main is an int, not a function\n")

	// A syntax error.
	dir = script(t, map[string]string{"syntax.star": "def main(:\n    pass\n"})
	r = mitostar(t, dir, nil, "syntax.star")
	r.want(t, 1)
	matches(t, "stderr", r.stderr, `^Error: syntax.star:1:\d+: got ':', want '\)'\n$`)
}

// docs/reference.md documents every predeclared name, every member of a
// predeclared module, every method and attribute of mitostar's types,
// every connection method and error kind, and the subcommands.
func TestReferenceCoversEverything(t *testing.T) {
	entries, _ := docs.Parse(docs.Reference)
	have := map[string]bool{}
	for _, e := range entries {
		have[e.Name] = true
	}
	var missing []string
	need := func(name string) {
		if !have[name] {
			missing = append(missing, name)
		}
	}
	r := core.NewMaster(core.Options{})
	defer r.Close()
	pre := runtime.New(r, runtime.Options{}).Predeclared()
	for _, name := range pre.Keys() {
		if name == "fotest" {
			continue // a builtin of this package's tests (fanout_test.go), not of mitostar
		}
		need(name)
		if _, ok := pre[name].(*starlark.List); ok {
			continue // argv and parent_ids: Starlark's list methods
		}
		if h, ok := pre[name].(starlark.HasAttrs); ok {
			for _, a := range h.AttrNames() {
				need(name + "." + a)
			}
		}
	}
	for prefix, v := range map[string]starlark.HasAttrs{
		"Context": &builtins.Context{}, "Receiver": &builtins.Receiver{}, "Sender": &builtins.Sender{},
		"Channel": &builtins.Channel{}, "Select": &builtins.Select{}, "Latch": &builtins.Latch{},
		"Message": &builtins.Message{}, "Error": &builtins.Error{}, "service": &builtins.Service{},
	} {
		need(prefix)
		for _, a := range v.AttrNames() {
			need(prefix + "." + a)
		}
	}
	for _, m := range core.Methods() {
		need("router." + m)
	}
	for _, k := range []string{"CallError", "ChannelError", "StreamError", "TimeoutError", "PasswordError",
		"HostKeyError", "OSError", "LatchError", "Error"} {
		need(k)
	}
	for _, c := range []string{"mitostar", "mitostar version", "mitostar doc", "mitostar help",
		"mitostar repl", "mitostar check", "mitostar bundle"} {
		need(c)
	}
	if len(missing) > 0 {
		t.Errorf("docs/reference.md has no entry for %d names:\n%s", len(missing), strings.Join(missing, "\n"))
	}
}

func TestDoc(t *testing.T) {
	t.Parallel()
	r := mitostar(t, "", nil, "doc")
	r.want(t, 0)
	if r.stdout != docs.Reference {
		t.Errorf("mitostar doc does not print docs/reference.md")
	}
	for _, tc := range []struct{ args, want []string }{
		{[]string{"Receiver.get"}, []string{"`Receiver.get(timeout=None, block=True)`\n    the next message"}},
		{[]string{"receiver.GET"}, []string{"`Receiver.get(timeout=None, block=True)`"}},
		{[]string{"ctx.call"}, []string{"### `Context.call(fn, *args, _timeout=None, **kwargs)`\n"}},
		{[]string{"router.ssh"}, []string{"### `router.ssh(hostname, **keywords)`", "check_host_keys"}},
		{[]string{"CallError"}, []string{"### `CallError`\n"}},
		{[]string{"Error"}, []string{"`Error.kind`", "The kind `Error` itself is everything refused locally"}},
		{[]string{"mitostar", "doc"}, []string{"### `mitostar doc [NAME]`"}},
		{[]string{"services"}, []string{"## Services\n", "### `service(*functions"}},
		{[]string{"store.incr"}, []string{"`store.incr(key, by=1)`"}},
	} {
		r := mitostar(t, "", nil, append([]string{"doc"}, tc.args...)...)
		r.want(t, 0)
		contains(t, fmt.Sprintf("doc %v", tc.args), r.stdout, tc.want...)
	}
	r = mitostar(t, "", nil, "doc", "Receiver.gett")
	r.want(t, 1)
	contains(t, "stderr", r.stderr, `mitostar doc: nothing is named "Receiver.gett" in the reference; entries that start alike: `, "Receiver.get_data")
}

// An uncaught error ends with "KIND: message", the kind named once.
func TestErrorKinds(t *testing.T) {
	t.Parallel()
	dir := script(t, map[string]string{
		"stream.star":  "def main():\n    router.docker(container = 'x', docker_path = '/nonexistent/docker')\n",
		"remote.star":  "def main():\n    router.connect('bogus', via = router.local(name = 'hop'))\n",
		"channel.star": "def main():\n    Receiver(router).get(timeout = 0.01)\n",
		"local.star":   "def main():\n    fail('plain')\n",
	})
	for _, tc := range []struct{ script, last string }{
		{"stream.star", "StreamError: connect docker.x: docker exec: starting /nonexistent/docker: "},
		{"remote.star", `Error: unknown connection method "bogus" (known: `},
		{"channel.star", "TimeoutError: get: timed out\n"},
		{"local.star", "Error: fail: plain\n"},
	} {
		r := mitostar(t, dir, nil, tc.script)
		r.want(t, 1)
		lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
		if last := lines[len(lines)-1] + "\n"; !strings.HasPrefix(last, tc.last) {
			t.Errorf("%s: last line %q, want it to start with %q", tc.script, last, tc.last)
		}
		if strings.Contains(r.stderr, "Error: Error:") || strings.Contains(r.stderr, "Error: StreamError") {
			t.Errorf("%s: kind named twice:\n%s", tc.script, r.stderr)
		}
	}
}

// router.on_shutdown callbacks of the master run when main() is over,
// before the children are told to go: they can still call them.
func TestShutdownCallbacks(t *testing.T) {
	t.Parallel()
	dir := script(t, map[string]string{"bye.star": `
def pid():
    return os.getpid()

def bye(c):
    print("on_shutdown: the child still answers:", c.call(pid) > 0)

def main():
    c = router.local(name = "kid")
    router.on_shutdown(lambda: bye(c))
    router.on_shutdown(lambda: fail("a failing callback is logged"))
    print("main done")
`})
	r := mitostar(t, dir, nil, "bye.star")
	r.want(t, 0)
	if want := "main done\non_shutdown: the child still answers: True\n"; r.stdout != want {
		t.Errorf("stdout = %q, want %q\nstderr:\n%s", r.stdout, want, r.stderr)
	}
	contains(t, "stderr", r.stderr, "[master] ERROR on_shutdown callback failed: ", "fail: a failing callback is logged")
}

// A failed write on stdout (a full disk) is an error, not a silent loss.
func TestStdoutErrors(t *testing.T) {
	t.Parallel()
	dir := script(t, map[string]string{"many.star": "def main():\n    for i in range(3):\n        print('line', i)\n    fs.write(argv[0], 'after the prints')\n"})
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		testbed.Unavailable(t, "no /dev/full: %v", err)
	}
	defer full.Close()
	run := func(args ...string) (int, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := command(ctx, dir, nil, args...)
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = full, &stderr
		cmd.Run()
		return cmd.ProcessState.ExitCode(), stderr.String()
	}
	marker := filepath.Join(t.TempDir(), "marker")
	code, stderr := run("many.star", marker)
	if code != 1 {
		t.Errorf("many.star > /dev/full: exit status %d, want 1; stderr:\n%s", code, stderr)
	}
	contains(t, "stderr", stderr, "Error: print: writing to stdout: write /dev/stdout: no space left on device\n")
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("the script went on after its first print failed")
	}
	for _, args := range [][]string{{"version"}, {"--version"}, {"help"}, {"doc"}, {"doc", "Receiver.get"}} {
		code, stderr := run(args...)
		if code != 1 {
			t.Errorf("%v > /dev/full: exit status %d, want 1", args, code)
		}
		contains(t, fmt.Sprint(args), stderr, "mitostar: writing to stdout: write /dev/stdout: no space left on device\n")
	}
}

func TestLoads(t *testing.T) {
	t.Parallel()
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret.star"), []byte("secret = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	extra := script(t, map[string]string{"lib/extra.star": "def extra():\n    return 'from -I'\n"})
	dir := script(t, map[string]string{
		"uses_extra.star": "load('lib/extra.star', 'extra')\ndef f():\n    return extra()\n" +
			"def main():\n    print(extra(), router.local().call(f))\n",
		"missing.star":           "load('lib/nope.star', 'x')\n",
		"abs.star":               fmt.Sprintf("load(%q, 'secret')\n", filepath.Join(outside, "secret.star")),
		"dotdot.star":            "load('../secret.star', 'secret')\n",
		"symlink.star":           "load('escape.star', 'secret')\n",
		"transit.star":           "load('lib/bad.star', 'secret')\n",
		"lib/bad.star":           "load('../../secret.star', 'secret')\n",
		"lib/local.txt":          "not a module\n",
		"chain.star":             "load('lib/outer.star', 'v')\n",
		"lib/outer.star":         "# loads inner\nload('lib/inner.star', 'v')\n",
		"lib/inner.star":         "x = {}\n\nv = x['nope']\n",
		"chain_missing.star":     "load('lib/loads_missing.star', 'v')\n",
		"lib/loads_missing.star": "load('lib/nope.star', 'v')\n",
		"fifo.star":              "load('lib/fifo.star', 'v')\n",
		"huge.star":              "load('lib/huge.star', 'v')\n",
	})
	if err := syscall.Mkfifo(filepath.Join(dir, "lib", "fifo.star"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "lib", "huge.star"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(dir, "lib", "huge.star"), 65<<20); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "secret.star"), filepath.Join(dir, "escape.star")); err != nil {
		t.Fatal(err)
	}

	r := mitostar(t, dir, nil, "-I", extra, "uses_extra.star")
	r.want(t, 0)
	if r.stdout != "from -I from -I\n" {
		t.Errorf("stdout = %q", r.stdout)
	}
	r = mitostar(t, dir, nil, "uses_extra.star")
	r.want(t, 1)
	contains(t, "stderr", r.stderr, `module "lib/extra.star" not found in the module roots`)

	// A load that fails inside a loaded module shows every load of the
	// chain, down to the failing line.
	r = mitostar(t, dir, nil, "chain.star")
	r.want(t, 1)
	matches(t, "stderr", r.stderr, `^Traceback \(most recent call last\):\n`+
		`  chain\.star:1:1: in <toplevel>\n`+
		`  lib/outer\.star:2:1: in <toplevel>\n`+
		`  lib/inner\.star:3:6: in <toplevel>\n`+
		`Error: cannot load lib/outer\.star: cannot load lib/inner\.star: key "nope" not in dict\n$`)
	r = mitostar(t, dir, nil, "chain_missing.star")
	r.want(t, 1)
	matches(t, "stderr", r.stderr, `^Traceback \(most recent call last\):\n`+
		`  chain_missing\.star:1:1: in <toplevel>\n`+
		`  lib/loads_missing\.star:1:1: in <toplevel>\n`+
		`Error: cannot load lib/loads_missing\.star: cannot load lib/nope\.star: module "lib/nope\.star" not found in the module roots`)

	for _, tc := range []struct{ script, want string }{
		{"fifo.star", `cannot load lib/fifo.star: module "lib/fifo.star" is a named pipe, not a file`},
		{"huge.star", `cannot load lib/huge.star: module "lib/huge.star" is 68157440 bytes, over the 64 MiB limit of a script, module or file`},
		{"missing.star", `module "lib/nope.star" not found in the module roots`},
		{"abs.star", fmt.Sprintf(`module path %q is absolute`, filepath.Join(outside, "secret.star"))},
		{"dotdot.star", `module path "../secret.star" escapes its module root`},
		{"symlink.star", `module "escape.star" resolves outside its module root`},
		{"transit.star", `module path "../../secret.star" escapes its module root`},
	} {
		r := mitostar(t, dir, nil, tc.script)
		if r.code != 1 {
			t.Errorf("%s: exit status %d, want 1; stderr:\n%s", tc.script, r.code, r.stderr)
		}
		contains(t, tc.script+" stderr", r.stderr, tc.want)
	}
}

// treeScript starts three children and a grandchild, prints every pid,
// then waits to be interrupted.
const treeScript = `
def pid():
    return os.getpid()

def main():
    kids = [router.local() for _ in range(3)]
    kids.append(router.local(via = kids[0]))
    print("master", os.getpid())
    for k in kids:
        print("child", k.call(pid))
    print("ready")
    time.sleep(600)
`

func TestSignals(t *testing.T) {
	for _, tc := range []struct {
		sig  syscall.Signal
		code int
	}{
		{syscall.SIGINT, 130},
		{syscall.SIGTERM, 143},
		{syscall.SIGKILL, -1},
	} {
		t.Run(tc.sig.String(), func(t *testing.T) {
			dir := script(t, map[string]string{"tree.star": treeScript})
			tr := startTree(t, dir, "child", 4, "tree.star")
			for _, p := range tr.pids {
				if !alive(p) {
					t.Fatalf("child %d not running before the signal", p)
				}
			}
			sent := time.Now()
			if err := tr.cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			err := tr.cmd.Wait()
			if code := tr.cmd.ProcessState.ExitCode(); code != tc.code {
				t.Errorf("exit status %d (%v), want %d; stderr:\n%s", code, err, tc.code, tr.stderr.String())
			}
			// No process of the tree is left 2 s after the signal.
			goneWithin(t, tc.sig.String()+": the tree", tr.pids, sent, 2*time.Second)
		})
	}
}

// A tree is a running mitostar command and the pids it printed.
type tree struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	pids   []int
}

// startTree runs the command with args in dir and reads the pids of its
// stdout lines "WORD PID" until a line "ready"; it wants n of them. The
// rest of stdout is drained, so the command never blocks on it.
func startTree(t *testing.T, dir, word string, n int, args ...string) *tree {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	tr := &tree{cmd: command(ctx, dir, nil, args...), stderr: &bytes.Buffer{}}
	tr.cmd.Stderr = tr.stderr
	out, err := tr.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if line == "ready" {
			break
		}
		if f := strings.Fields(line); len(f) == 2 && f[0] == word {
			if p, err := strconv.Atoi(f[1]); err == nil {
				tr.pids = append(tr.pids, p)
			}
		}
	}
	go func() {
		for sc.Scan() {
		}
	}()
	if len(tr.pids) != n {
		tr.cmd.Process.Kill()
		tr.cmd.Wait()
		t.Fatalf("got %s pids %v before ready, want %d; stderr:\n%s", word, tr.pids, n, tr.stderr.String())
	}
	return tr
}

// goneWithin fails unless every process of pids is gone within limit of
// since; those left are killed.
func goneWithin(t *testing.T, what string, pids []int, since time.Time, limit time.Duration) {
	t.Helper()
	for {
		var left []int
		for _, p := range pids {
			if alive(p) {
				left = append(left, p)
			}
		}
		if len(left) == 0 {
			t.Logf("%s: gone %v after", what, time.Since(since).Round(time.Millisecond))
			return
		}
		if time.Since(since) > limit {
			for _, p := range left {
				syscall.Kill(p, syscall.SIGKILL)
			}
			t.Fatalf("%s: processes %v still alive %v after", what, left, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// bgScript leaves a `sleep 300 &` behind in the master and in a child,
// prints their pids, then waits to be ended (or ends at once with
// argv[0] == "exit").
const bgScript = `
def spawn():
    return int(exec.shell("sleep 300 >/dev/null 2>&1 & echo $!", check = True).stdout.strip())

def main():
    c = router.local()
    print("bg", c.call(spawn))
    print("bg", spawn())
    print("ready")
    # Long enough for the test to see the background processes alive
    # before the script ends on its own.
    time.sleep(600 if argv[0] != "exit" else 1)
`

// What exec.shell leaves running in the background dies with its
// context: however the master ends (kill -9, a hangup, a normal exit),
// no sleep 300 survives it.
func TestBackgroundProcessesDie(t *testing.T) {
	for _, tc := range []struct {
		name string
		sig  syscall.Signal // 0: the script ends by itself
	}{{"SIGKILL", syscall.SIGKILL}, {"SIGHUP", syscall.SIGHUP}, {"exit", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := script(t, map[string]string{"bg.star": bgScript})
			tr := startTree(t, dir, "bg", 2, "bg.star", tc.name)
			t.Cleanup(func() {
				for _, p := range tr.pids {
					syscall.Kill(p, syscall.SIGKILL)
				}
			})
			for _, p := range tr.pids {
				if !alive(p) {
					t.Fatalf("background process %d is not running while its context lives", p)
				}
			}
			sent := time.Now()
			if tc.sig != 0 {
				tr.cmd.Process.Signal(tc.sig)
			}
			tr.cmd.Wait()
			goneWithin(t, tc.name+": the background processes", tr.pids, sent, 3*time.Second)
		})
	}
}

// alive reports whether pid is a live process: not gone and not a zombie.
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	state := s[i+2]
	return state != 'Z' && state != 'X'
}

const opsScript = `
def deploy(path):
    r = ops.file(path, content = "v2\n")
    return [check_mode, r.changed, r.msg]

def main():
    c = router.local(name = "web1", via = router.local(name = "relay"))
    print("master check_mode", check_mode)
    print("web1", c.call(deploy, argv[0]))
`

// TestCheckAndDiff runs an operation in a grandchild with --check and
// --diff (check_mode everywhere, nothing changed, the diff printed under
// the grandchild's name), then for real, then again (nothing to show).
func TestCheckAndDiff(t *testing.T) {
	t.Parallel()
	dir := script(t, map[string]string{"ops.star": opsScript, "target.txt": "v1\n"})
	target := filepath.Join(dir, "target.txt")
	diff := "--- before: " + target + "\n+++ after: " + target + "\n@@ -1 +1 @@\n-v1\n+v2\n"

	r := mitostar(t, dir, nil, "--check", "--diff", "ops.star", target)
	r.want(t, 0)
	want := "master check_mode True\n[web1] ops.file " + target + ": would update content\n" + diff +
		"web1 [True, True, \"would update content\"]\n"
	if r.stdout != want {
		t.Errorf("--check --diff: stdout = %q, want %q", r.stdout, want)
	}
	if data, _ := os.ReadFile(target); string(data) != "v1\n" {
		t.Errorf("--check changed the file: %q", data)
	}

	r = mitostar(t, dir, nil, "--diff", "ops.star", target)
	r.want(t, 0)
	want = "master check_mode False\n[web1] ops.file " + target + ": update content\n" + diff +
		"web1 [False, True, \"update content\"]\n"
	if r.stdout != want {
		t.Errorf("--diff: stdout = %q, want %q", r.stdout, want)
	}

	r = mitostar(t, dir, nil, "--diff", "ops.star", target)
	r.want(t, 0)
	if want := "master check_mode False\nweb1 [False, False, \"ok: file as asked\"]\n"; r.stdout != want {
		t.Errorf("second run: stdout = %q, want %q", r.stdout, want)
	}
	r = mitostar(t, dir, nil, "ops.star", target)
	r.want(t, 0)
	contains(t, "stdout", r.stdout, "web1 [False, False,")
	if strings.Contains(r.stdout, "[web1]") {
		t.Errorf("a change was shown without --diff:\n%s", r.stdout)
	}
}

// sshTransportScript connects over ssh with an ssh_path that does not
// exist, which only the native transport does not need, and then
// through that context again: the hop uses the master's default too.
const sshTransportScript = `
def who():
    return os.username()

def main():
    kw = dict(hostname = "127.0.0.1", port = int(argv[0]), username = "root", identity_file = argv[1],
              ssh_args = ["-o", "UserKnownHostsFile=" + argv[2]], ssh_path = "/nonexistent/ssh")
    a = router.ssh(**kw)
    b = router.ssh(via = a, **kw)
    print(a.call(who), b.call(who))
`

func TestSSHTransportFlag(t *testing.T) {
	s := testbed.SSHD(t)
	dir := script(t, map[string]string{"tr.star": sshTransportScript})
	args := []string{"tr.star", strconv.Itoa(s.Port), s.IdentityFile, s.KnownHosts}
	r := mitostar(t, dir, nil, append([]string{"--ssh-transport", "native"}, args...)...)
	r.want(t, 0)
	if r.stdout != "root root\n" {
		t.Errorf("stdout %q", r.stdout)
	}
	for _, flags := range [][]string{nil, {"--ssh-transport", "openssh"}} {
		r = mitostar(t, dir, nil, append(flags, args...)...)
		r.want(t, 1)
		contains(t, "stderr", r.stderr, "Error: connect ssh.127.0.0.1:", "starting /nonexistent/ssh")
	}
}

// A message for a handle nobody listens on is refused with a warning
// that names its sender, at the default log level (no -v).
func TestInvalidHandleWarnsByDefault(t *testing.T) {
	t.Parallel()
	dir := script(t, map[string]string{"s.star": `
def poke():
    rv = Receiver(router)
    router.route(Message.encoded("x", dst_id = 0, handle = 77777, reply_to = rv.handle))
    _, err = catch(rv.get, timeout = 10)
    return str(err)

def main():
    print(router.local(name = "probe").call(poke))
`})
	r := mitostar(t, dir, nil, "s.star")
	r.want(t, 0)
	contains(t, "stdout", r.stdout, "ChannelError: invalid handle\n")
	if !regexp.MustCompile(`\[master\] WARNING refused a message from probe \(context \d+\) for handle 77777: invalid handle`).MatchString(r.stderr) {
		t.Errorf("no warning naming the sender at the default log level:\n%s", r.stderr)
	}
}

// --profile DIR: the master and every context of the tree write their
// CPU and heap profiles there when they exit. A context made with
// profiling=DIR writes its own into DIR — under --profile into --profile's
// directory, since a process has one CPU profile, and the log says where.
func TestProfileFlag(t *testing.T) {
	t.Parallel()
	own := t.TempDir()
	dir := script(t, map[string]string{"p.star": `
def main():
    a = router.local(name = "a")
    b = router.local(name = "b", profiling = argv[0])
    print(a.call(os.getpid), b.call(os.getpid))
`})
	pids := func(r result) (int, int) {
		t.Helper()
		var pa, pb int
		if _, err := fmt.Sscan(r.stdout, &pa, &pb); err != nil {
			t.Fatalf("stdout %q: %v", r.stdout, err)
		}
		return pa, pb
	}
	exist := func(paths ...string) {
		t.Helper()
		for _, p := range paths {
			if st, err := os.Stat(p); err != nil || st.Size() == 0 {
				t.Errorf("profile %s: %v", p, err)
			}
		}
	}
	prof := t.TempDir()
	r := mitostar(t, dir, nil, "--profile", prof, "p.star", own)
	r.want(t, 0)
	pa, pb := pids(r)
	exist(filepath.Join(prof, "master.cpu.prof"), filepath.Join(prof, "master.heap.prof"))
	for _, pid := range []int{pa, pb} {
		exist(filepath.Join(prof, fmt.Sprintf("child-%d.cpu.prof", pid)), filepath.Join(prof, fmt.Sprintf("child-%d.heap.prof", pid)))
	}
	contains(t, "stderr", r.stderr, fmt.Sprintf("INFO profiling b: its CPU and heap profiles are written to %s/child-%d.cpu.prof", prof, pb))

	r = mitostar(t, dir, nil, "p.star", own)
	r.want(t, 0)
	_, pb = pids(r)
	exist(filepath.Join(own, fmt.Sprintf("child-%d.cpu.prof", pb)), filepath.Join(own, fmt.Sprintf("child-%d.heap.prof", pb)))
	if left, _ := os.ReadDir(own); len(left) != 2 {
		t.Errorf("%s holds %d files, want b's two profiles", own, len(left))
	}
}

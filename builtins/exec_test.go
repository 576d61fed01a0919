package builtins

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.starlark.net/starlark"
)

// execTestResult returns rc, stdout and stderr of the struct in global name.
func execTestResult(t testing.TB, g starlark.StringDict, name string) (int, string, string) {
	t.Helper()
	rc, err := starlark.AsInt32(osTestAttr(t, g[name], "rc"))
	if err != nil {
		t.Fatal(err)
	}
	return rc, string(osTestAttr(t, g[name], "stdout").(starlark.String)), string(osTestAttr(t, g[name], "stderr").(starlark.String))
}

// execTestGone waits up to 3 s for process pid to be gone (or a zombie
// no one reaps) and fails t if it is still running.
func execTestGone(t testing.TB, pid int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return
		}
		// The state follows the command name, which is in parentheses.
		if i := strings.LastIndexByte(string(stat), ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("process %d still running: %s", pid, stat)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// execTestPid waits up to 3 s for file to hold a pid and returns it.
func execTestPid(t testing.TB, file string) int {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		b, _ := os.ReadFile(file)
		if s := strings.TrimSpace(string(b)); strings.HasSuffix(string(b), "\n") {
			pid, err := strconv.Atoi(s)
			if err != nil {
				t.Fatalf("%s holds %q", file, b)
			}
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pid in %s after 3s", file)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestExecRun(t *testing.T) {
	g := osTestRun(t, `
a = exec.run(["echo", "hello", "world"])
b = exec.run(("sh", "-c", "echo out; echo err >&2; exit 3"))
c = exec.shell("kill -9 $$")
d = exec.run(["true"], check=True, timeout=5)
e = exec.shell("printf 'a\\377b'; printf '\\000z' >&2")
`)
	for _, tc := range []struct {
		name, stdout, stderr string
		rc                   int
	}{
		{"a", "hello world\n", "", 0},
		{"b", "out\n", "err\n", 3},
		{"c", "", "", -9},
		{"d", "", "", 0},
		{"e", "a\xffb", "\x00z", 0},
	} {
		rc, stdout, stderr := execTestResult(t, g, tc.name)
		if rc != tc.rc || stdout != tc.stdout || stderr != tc.stderr {
			t.Errorf("%s: rc %d stdout %q stderr %q, want %d %q %q", tc.name, rc, stdout, stderr, tc.rc, tc.stdout, tc.stderr)
		}
	}
}

func TestExecStdinEnvCwd(t *testing.T) {
	t.Setenv("MITOSTAR_EXEC_INHERITED", "yes")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	const big = 4 << 20 // more than a pipe holds
	g := osTestRun(t, fmt.Sprintf(`
s = exec.run(["cat"], stdin="from a string")
b = exec.run(["cat"], stdin=b"\x00\x01bytes")
n = exec.run(["cat"])  # /dev/null: must not hang
big = exec.run(["wc", "-c"], stdin="0123456789abcdef" * (%d // 16))
inherit = exec.shell("echo $MITOSTAR_EXEC_INHERITED")
replaced = exec.run(["env"], env={"ONLY": "this", "AND": "x=y"})
empty = exec.run(["/usr/bin/env"], env={})
path = exec.shell("echo $PATH", env={"PATH": "/bin"})
cwd = exec.run(["pwd"], cwd=%q)
rel = exec.shell("cat f", cwd=%q)
`, big, dir, dir))
	for _, tc := range []struct{ name, stdout string }{
		{"s", "from a string"},
		{"b", "\x00\x01bytes"},
		{"n", ""},
		{"big", fmt.Sprintf("%d\n", big)},
		{"inherit", "yes\n"},
		{"replaced", "ONLY=this\nAND=x=y\n"},
		{"empty", ""},
		{"path", "/bin\n"},
		{"cwd", dir + "\n"},
		{"rel", "x"},
	} {
		rc, stdout, stderr := execTestResult(t, g, tc.name)
		if rc != 0 || stdout != tc.stdout {
			t.Errorf("%s: rc %d stdout %q stderr %q, want stdout %q", tc.name, rc, stdout, stderr, tc.stdout)
		}
	}
}

func TestExecBigOutput(t *testing.T) {
	g := osTestRun(t, `
r = exec.shell("head -c 20000000 /dev/zero; head -c 3000000 /dev/zero >&2")
out, err = len(r.stdout), len(r.stderr)
`)
	if out, errs := osTestInt(t, g, "out"), osTestInt(t, g, "err"); out != 20000000 || errs != 3000000 {
		t.Errorf("captured %d bytes of stdout and %d of stderr, want 20000000 and 3000000", out, errs)
	}

	old := execOutputLimit
	execOutputLimit = 1 << 20
	t.Cleanup(func() { execOutputLimit = old })
	start := time.Now()
	osTestWantError(t, `exec.shell("yes")`, "Error", `exec.shell: "yes" wrote more than 1 MiB to stdout; it was killed`)
	osTestWantError(t, `exec.run(["sh", "-c", "yes >&2"])`, "Error", `exec.run: ["sh", "-c", "yes >&2"] wrote more than 1 MiB to stderr; it was killed`)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("overflowing programs took %v to stop", d)
	}
	g = osTestRun(t, `n = len(exec.shell("head -c 1048576 /dev/zero").stdout)`)
	if n := osTestInt(t, g, "n"); n != 1<<20 {
		t.Errorf("output of exactly the limit: %d bytes", n)
	}
}

func TestExecCheck(t *testing.T) {
	osTestWantError(t, `exec.run(["false"], check=True)`, "Error", `exec.run: ["false"] exited with rc 1`)
	osTestWantError(t, `exec.shell("echo one >&2; echo two >&2; exit 4", check=True)`, "Error",
		`exec.shell: "echo one >&2; echo two >&2; exit 4" exited with rc 4: one`+"\ntwo")
	// Only the tail of a long stderr is quoted.
	_, msg := osTestFail(t, `exec.shell("for i in $(seq 1 30); do echo line$i >&2; done; exit 2", check=True)`)
	var want []string
	for i := 21; i <= 30; i++ {
		want = append(want, fmt.Sprintf("line%d", i))
	}
	if !strings.HasSuffix(msg, "exited with rc 2: "+strings.Join(want, "\n")) {
		t.Errorf("check message %q: want the last 10 lines", msg)
	}
	_, msg = osTestFail(t, `exec.shell("head -c 100000 /dev/zero | tr '\\0' x >&2; exit 1", check=True)`)
	if !strings.HasSuffix(msg, "exited with rc 1: ..."+strings.Repeat("x", execTailBytes)) {
		t.Errorf("check message of %d bytes: want the last %d bytes of stderr", len(msg), execTailBytes)
	}
	osTestWantError(t, `exec.shell("kill -TERM $$", check=True)`, "Error", `exec.shell: "kill -TERM $$" exited with rc -15`)
}

func TestExecCannotStart(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "script")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ src, want string }{
		{`exec.run(["mitostar-no-such-program", "x"])`, "exec.run mitostar-no-such-program: executable file not found in $PATH"},
		{`exec.run(["/nonexistent/prog"])`, "exec.run /nonexistent/prog: no such file or directory"},
		{fmt.Sprintf(`exec.run([%q])`, notExec), "exec.run " + notExec + ": permission denied"},
		{`exec.run(["sh"], env={"PATH": "/nonexistent"})`, "exec.run sh: executable file not found in $PATH"},
		{`exec.run(["sh"], env={"PATH": ".:bin"}, cwd="/")`, "exec.run sh: executable file not found in $PATH"},
		{`exec.run(["true"], cwd="/nonexistent")`, "exec.run /nonexistent: no such file or directory"},
		{fmt.Sprintf(`exec.shell("true", cwd=%q)`, file), "exec.shell " + file + ": not a directory"},
	} {
		osTestWantError(t, tc.src, "OSError", tc.want)
	}
	// Without PATH in env, the lookup uses /bin:/usr/bin.
	g := osTestRun(t, `r = exec.run(["sh", "-c", "echo ok"], env={})`)
	if _, stdout, _ := execTestResult(t, g, "r"); stdout != "ok\n" {
		t.Errorf("lookup without PATH: stdout %q", stdout)
	}
}

// A program found through a relative PATH entry is refused, as
// exec.LookPath refuses it, even when an absolute entry follows.
func TestExecRelativePath(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	if err := os.WriteFile(filepath.Join(dir, "prog"), []byte("#!/bin/sh\nexec /usr/bin/touch "+marker+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	for _, path := range []string{":" + dir, "." + ":" + dir} {
		osTestWantError(t, fmt.Sprintf(`exec.run(["prog"], env={"PATH": %q})`, path), "OSError",
			"exec.run prog: cannot run executable found relative to current directory")
	}
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("prog ran from the current directory")
	}
	g := osTestRun(t, fmt.Sprintf(`r = exec.run(["prog"], env={"PATH": %q})`, dir))
	if rc, _, _ := execTestResult(t, g, "r"); rc != 0 {
		t.Errorf("prog through an absolute entry: rc %d", rc)
	}
}

func TestExecBadArguments(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{`exec.run("ls -l")`, "exec.run: argv must be a list of strings, got string (use exec.shell for a command line)"},
		{`exec.run([])`, "exec.run: argv is empty"},
		{`exec.run(["ls", 1])`, "exec.run: argv[1] must be a string, got int"},
		{`exec.run(["ls", "a\0b"])`, "exec.run: argv[1] contains a NUL byte"},
		{`exec.run([""])`, "exec.run: argv[0] is an empty string"},
		{`exec.run()`, "exec.run: missing argument for argv"},
		{`exec.run(["true"], stdin=1)`, "exec.run: stdin must be a string, bytes or None, got int"},
		{`exec.run(["true"], env=["A=1"])`, "exec.run: env must be a dict or None, got list"},
		{`exec.run(["true"], env={"A": 1})`, "exec.run: env must map strings to strings, got string: int"},
		{`exec.run(["true"], env={"A=B": "1"})`, `exec.run: invalid environment variable name "A=B"`},
		{`exec.run(["true"], env={"": "1"})`, `exec.run: invalid environment variable name ""`},
		{`exec.run(["true"], env={"A": "\0"})`, `exec.run: environment variable "A" contains a NUL byte`},
		{`exec.run(["true"], cwd=1)`, "exec.run: cwd must be a string or None, got int"},
		{`exec.run(["true"], cwd="")`, "exec.run: cwd is an empty string"},
		{`exec.run(["true"], timeout=-1)`, "exec.run: timeout must be a non-negative number of seconds, got -1"},
		{`exec.run(["true"], timeout="1")`, `exec.run: timeout must be a non-negative number of seconds, got "1"`},
		{`exec.run(["true"], check="yes")`, `exec.run: for parameter "check": got string, want bool`},
		{`exec.run(["true"], shell=True)`, "exec.run: unexpected keyword argument \"shell\""},
		{`exec.shell(["ls"])`, "exec.shell: for parameter cmd: got list, want string"},
		{`exec.shell("a\0")`, "exec.shell: cmd contains a NUL byte"},
	} {
		osTestWantError(t, tc.src, "Error", tc.want)
	}
}

func TestExecTimeout(t *testing.T) {
	dir := t.TempDir()
	shPid, bgPid := filepath.Join(dir, "sh.pid"), filepath.Join(dir, "bg.pid")
	cmd := fmt.Sprintf("echo $$ > %s; sleep 30 & echo $! > %s; wait", shPid, bgPid)
	start := time.Now()
	osTestWantError(t, fmt.Sprintf(`exec.shell(%q, timeout=0.3)`, cmd), "TimeoutError",
		fmt.Sprintf(`exec.shell: %q timed out after 0.3s`, cmd))
	if d := time.Since(start); d < 300*time.Millisecond || d > 2*time.Second {
		t.Errorf("timeout=0.3 returned after %v", d)
	}
	// The program and what it started in its process group are gone.
	execTestGone(t, execTestPid(t, shPid))
	execTestGone(t, execTestPid(t, bgPid))

	osTestWantError(t, `exec.run(["sleep", "5"], timeout=0)`, "TimeoutError", `exec.run: ["sleep", "5"] timed out after 0s`)
	g := osTestRun(t, `r = exec.run(["echo", "fast"], timeout=10)`)
	if rc, stdout, _ := execTestResult(t, g, "r"); rc != 0 || stdout != "fast\n" {
		t.Errorf("fast program under a timeout: rc %d stdout %q", rc, stdout)
	}
}

// A program that leaves a background process holding its stdout does
// not hang the call.
func TestExecBackgroundHoldsOutput(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "bg.pid")
	start := time.Now()
	g := osTestRun(t, fmt.Sprintf(`r = exec.shell("sleep 30 & echo $! > %s; echo started")`, pidFile))
	pid := execTestPid(t, pidFile)
	t.Cleanup(func() {
		if p, err := os.FindProcess(pid); err == nil {
			p.Kill()
		}
	})
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("returned after %v", d)
	}
	if rc, stdout, _ := execTestResult(t, g, "r"); rc != 0 || stdout != "started\n" {
		t.Errorf("rc %d stdout %q", rc, stdout)
	}
}

func TestExecCancel(t *testing.T) {
	dir := t.TempDir()

	// The runtime cancels a thread's context.
	pidFile := filepath.Join(dir, "ctx.pid")
	ctx, cancel := context.WithCancel(context.Background())
	thread := &starlark.Thread{Name: "ctx"}
	SetThreadContext(thread, ctx)
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	_, err := osTestExec(thread, fmt.Sprintf(`exec.shell("echo $$ > %s; exec sleep 30")`, pidFile))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: err %v, want context.Canceled", err)
	}
	if _, msg := osTestError(err); msg != `exec.shell: "echo $$ > `+pidFile+`; exec sleep 30" stopped: context canceled` {
		t.Errorf("cancelled context: message %q", msg)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("cancelled after %v", d)
	}
	execTestGone(t, execTestPid(t, pidFile))

	// A context cancelled before the call starts nothing.
	_, err = osTestExec(thread, `exec.run(["true"])`)
	if _, msg := osTestError(err); msg != `exec.run: ["true"] not started: context canceled` {
		t.Errorf("call on a cancelled context: %v", err)
	}

	// thread.Cancel alone, as an embedding program or a step limit does.
	pidFile = filepath.Join(dir, "thread.pid")
	thread = &starlark.Thread{Name: "cancel"}
	time.AfterFunc(200*time.Millisecond, func() { thread.Cancel("enough") })
	start = time.Now()
	_, err = osTestExec(thread, fmt.Sprintf(`exec.shell("echo $$ > %s; exec sleep 30")`, pidFile))
	if _, msg := osTestError(err); !strings.HasSuffix(msg, "stopped: Starlark computation cancelled: enough") {
		t.Errorf("thread.Cancel: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("cancelled after %v", d)
	}
	execTestGone(t, execTestPid(t, pidFile))
}

// TestExecHelperProcess is the process TestExecDiesWithParent kills: it
// runs a program through exec and blocks.
func TestExecHelperProcess(t *testing.T) {
	pidFile := os.Getenv("MITOSTAR_EXEC_HELPER_PIDFILE")
	if pidFile == "" {
		return // not started by TestExecDiesWithParent
	}
	osTestExec(&starlark.Thread{}, fmt.Sprintf(`exec.shell("echo $$ > %s; exec sleep 30")`, pidFile))
	os.Exit(1)
}

// A program started by exec dies with the process that started it
// (Pdeathsig), so a killed context leaves no orphan.
func TestExecDiesWithParent(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	helper := exec.Command(os.Args[0], "-test.run=^TestExecHelperProcess$", "-test.count=1")
	helper.Env = append(os.Environ(), "MITOSTAR_EXEC_HELPER_PIDFILE="+pidFile)
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { helper.Process.Kill(); helper.Wait() })
	pid := execTestPid(t, pidFile)
	if err := helper.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	helper.Wait()
	execTestGone(t, pid)
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mitostar/mitostar/core"
	"github.com/mitostar/mitostar/internal/testbed"
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
	quickRaceExit()
	os.Exit(m.Run())
}

// quickRaceExit drops the race detector's 1 s sleep at exit
// (atexit_sleep_ms) for the processes these tests start: every child and
// CLI run would otherwise take a second longer to go. Races are still
// reported, on the child's stderr, which reaches the master's log.
func quickRaceExit() {
	if g := os.Getenv("GORACE"); !strings.Contains(g, "atexit_sleep_ms") {
		os.Setenv("GORACE", strings.TrimSpace(g+" atexit_sleep_ms=0"))
	}
}

// result is what one run of the command produced.
type result struct {
	code           int
	stdout, stderr string
}

// mitostar runs the command with args in dir and waits for it (30 s at most).
func mitostar(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := command(ctx, dir, env, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("running mitostar %v: %v", args, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("mitostar %v did not finish in 30s; stderr:\n%s", args, stderr.String())
	}
	if strings.Contains(stderr.String(), "DATA RACE") {
		t.Errorf("mitostar %v: a process reported a data race:\n%s", args, stderr.String())
	}
	return result{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
}

func command(ctx context.Context, dir string, env []string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
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
	r := mitostar(t, "", nil, "version")
	r.want(t, 0)
	matches(t, "version", r.stdout, `^mitostar \S+ \(protocol 1, go1\.\d+\S* \w+/\w+\)\n$`)

	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}, {"run", "-h"}} {
		r := mitostar(t, "", nil, args...)
		r.want(t, 0)
		contains(t, fmt.Sprint(args), r.stdout, "usage: mitostar [flags] SCRIPT.star [ARG...]", "-I DIR", "--log-level",
			"--log-file", "--max-message-size", "--shutdown-timeout", "exit status")
		if r.stderr != "" {
			t.Errorf("%v wrote to stderr: %s", args, r.stderr)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	dir := script(t, map[string]string{"ok.star": "print('ran')\n"})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "mitostar: missing script"},
		{[]string{"run"}, "mitostar: missing script"},
		{[]string{"--bogus", "ok.star"}, "flag provided but not defined: -bogus"},
		{[]string{"-I"}, "flag needs an argument: -I"},
		{[]string{"nosuch.star"}, "mitostar: stat nosuch.star: no such file or directory"},
		{[]string{"--log-level", "loud", "ok.star"}, `mitostar: --log-level: unknown log level "loud"`},
		{[]string{"--max-message-size", "100", "ok.star"}, "mitostar: --max-message-size must be at least 4096 bytes"},
		{[]string{"--max-message-size", "lots", "ok.star"}, `invalid value "lots" for flag -max-message-size`},
		{[]string{"--shutdown-timeout", "-1", "ok.star"}, "mitostar: --shutdown-timeout must not be negative"},
		{[]string{"--ssh-transport", "telnet", "ok.star"}, `mitostar: --ssh-transport must be openssh or native, got "telnet"`},
		{[]string{"--log-file", "/nonexistent/dir/log", "ok.star"}, "mitostar: --log-file: open /nonexistent/dir/log: no such file or directory"},
	} {
		r := mitostar(t, dir, nil, tc.args...)
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
			`Error: CallError: fail: gave up at the bottom \(in worker\)\n$`)

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
	contains(t, "stderr", r.stderr, "nomain.star: main is a int, not a function")

	// A syntax error.
	dir = script(t, map[string]string{"syntax.star": "def main(:\n    pass\n"})
	r = mitostar(t, dir, nil, "syntax.star")
	r.want(t, 1)
	matches(t, "stderr", r.stderr, `^Error: syntax.star:1:\d+: got ':', want '\)'\n$`)
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
		"missing.star":  "load('lib/nope.star', 'x')\n",
		"abs.star":      fmt.Sprintf("load(%q, 'secret')\n", filepath.Join(outside, "secret.star")),
		"dotdot.star":   "load('../secret.star', 'secret')\n",
		"symlink.star":  "load('escape.star', 'secret')\n",
		"transit.star":  "load('lib/bad.star', 'secret')\n",
		"lib/bad.star":  "load('../../secret.star', 'secret')\n",
		"lib/local.txt": "not a module\n",
	})
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

	for _, tc := range []struct{ script, want string }{
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
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := command(ctx, dir, nil, "tree.star")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var pids []int
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				line := sc.Text()
				if line == "ready" {
					break
				}
				if f := strings.Fields(line); len(f) == 2 {
					if p, err := strconv.Atoi(f[1]); err == nil && f[0] == "child" {
						pids = append(pids, p)
					}
				}
			}
			if len(pids) != 4 {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("got child pids %v before ready; stderr:\n%s", pids, stderr.String())
			}
			for _, p := range pids {
				if !alive(p) {
					t.Fatalf("child %d not running before the signal", p)
				}
			}
			sent := time.Now()
			if err := cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			go func() { // drain the rest of stdout so the master never blocks on it
				for sc.Scan() {
				}
			}()
			err = cmd.Wait()
			code := cmd.ProcessState.ExitCode()
			if code != tc.code {
				t.Errorf("exit status %d (%v), want %d; stderr:\n%s", code, err, tc.code, stderr.String())
			}
			// No process of the tree is left 2 s after the signal.
			deadline := sent.Add(2 * time.Second)
			for {
				var left []int
				for _, p := range pids {
					if alive(p) {
						left = append(left, p)
					}
				}
				if len(left) == 0 {
					t.Logf("%s: tree gone %v after the signal", tc.sig, time.Since(sent).Round(time.Millisecond))
					break
				}
				if time.Now().After(deadline) {
					for _, p := range left {
						syscall.Kill(p, syscall.SIGKILL)
					}
					t.Fatalf("%s: children %v still alive 2s after the signal", tc.sig, left)
				}
				time.Sleep(20 * time.Millisecond)
			}
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

package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
)

// A ptySession is the command running in a real terminal, typed into
// and read back.
type ptySession struct {
	t          *testing.T
	cmd        *exec.Cmd
	f          *os.File
	cols, rows int
	mu         sync.Mutex
	out        bytes.Buffer
	mark       int // where the output read since the last type begins
	readDone   chan struct{}
	exited     chan struct{} // closed when the command has exited
}

const replCols, replRows = 120, 60

// startPTY runs the command with args in dir in a terminal.
func startPTY(t *testing.T, dir string, env []string, args ...string) *ptySession {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	s := &ptySession{t: t, cmd: command(ctx, dir, append([]string{"TERM=xterm"}, env...), args...),
		cols: replCols, rows: replRows, readDone: make(chan struct{})}
	f, err := pty.StartWithSize(s.cmd, &pty.Winsize{Cols: uint16(s.cols), Rows: uint16(s.rows)})
	if err != nil {
		t.Fatal(err)
	}
	s.f = f
	s.exited = make(chan struct{})
	go func() { s.cmd.Wait(); close(s.exited) }()
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		<-s.exited
		f.Close()
	})
	go func() {
		defer close(s.readDone)
		buf := make([]byte, 32<<10)
		for {
			n, err := f.Read(buf)
			s.mu.Lock()
			s.out.Write(buf[:n])
			s.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return s
}

// typeIn types text; what the terminal shows from now on is what expect
// looks at.
func (s *ptySession) typeIn(text string) {
	s.t.Helper()
	s.mu.Lock()
	s.mark = s.out.Len()
	s.mu.Unlock()
	if _, err := s.f.WriteString(text); err != nil {
		s.t.Fatalf("typing %q: %v", text, err)
	}
}

// expect waits until the output since the last typeIn contains want,
// and returns that output.
func (s *ptySession) expect(want string) string {
	s.t.Helper()
	return s.waitUntil(strconv.Quote(want), func(since string) bool { return strings.Contains(since, want) })
}

// run types a line, waits for the next prompt and returns what the
// terminal got in between.
func (s *ptySession) run(line string) string {
	s.t.Helper()
	s.typeIn(line + "\r")
	return s.expectPrompt(">>>")
}

// expectPrompt waits until the line typed is submitted and the last line
// of the screen is the prompt p (trailing blanks removed), and returns
// the output since the last typeIn.
func (s *ptySession) expectPrompt(p string) string {
	s.t.Helper()
	return s.waitUntil("the prompt "+strconv.Quote(p), func(since string) bool {
		if !strings.Contains(since, "\n") {
			return false
		}
		lines := strings.Split(s.screen(), "\n")
		return lines[len(lines)-1] == p
	})
}

// waitUntil waits (a minute at most) until ok holds for the output since
// the last typeIn, and returns that output.
func (s *ptySession) waitUntil(what string, ok func(since string) bool) string {
	s.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		s.mu.Lock()
		since := s.out.String()[s.mark:]
		s.mu.Unlock()
		if ok(since) {
			return since
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("the terminal never showed %s; since the last input it got:\n%q\nscreen:\n%s", what, since, s.screen())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// screen is the emulated screen now.
func (s *ptySession) screen() string {
	s.mu.Lock()
	raw := bytes.Clone(s.out.Bytes())
	s.mu.Unlock()
	return strings.Join(screen(raw, s.cols, s.rows), "\n")
}

// screenHas fails unless the screen shows each line (whole lines).
func (s *ptySession) screenHas(lines ...string) {
	s.t.Helper()
	scr := s.screen()
	for _, l := range lines {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(l) + `$`).MatchString(scr) {
			s.t.Errorf("the screen lacks the line %q:\n%s", l, scr)
		}
	}
}

// intAfter runs line and returns the integer the screen shows on the
// line below it.
func (s *ptySession) intAfter(line string) int {
	s.t.Helper()
	s.run(line)
	lines := strings.Split(s.screen(), "\n")
	for i := len(lines) - 2; i >= 0; i-- {
		if lines[i] == ">>> "+line {
			n, err := strconv.Atoi(lines[i+1])
			if err != nil {
				s.t.Fatalf("no number below %q:\n%s", line, s.screen())
			}
			return n
		}
	}
	s.t.Fatalf("the screen has no line %q:\n%s", line, s.screen())
	return 0
}

// wait waits for the command to exit and returns its status.
func (s *ptySession) wait() int {
	s.t.Helper()
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		s.t.Fatalf("the command did not exit; screen:\n%s", s.screen())
	}
	<-s.readDone
	return s.cmd.ProcessState.ExitCode()
}

const replLib = `def slow(seconds):
    time.sleep(seconds)
    return "slept"

def double(x):
    return 2 * x
`

// TestREPL drives mitostar repl in a real terminal: contexts live across
// lines, completion of names and attributes, multi-line input, an error
// followed by a working line, history (within the session and in the
// history file), Ctrl-C of a long remote call, and Ctrl-D, which shuts
// the tree down and leaves no process behind.
func TestREPL(t *testing.T) {
	t.Parallel()
	dir := script(t, map[string]string{"mods/lib/work.star": replLib, "hosts.ini": "h1\nh2\n"})
	history := filepath.Join(t.TempDir(), "history")
	s := startPTY(t, dir, []string{"MITOSTAR_HISTORY=" + history}, "repl", "-I", "mods", "-i", "hosts.ini")
	s.expect(">>> ")

	// A context started on one line is called on the next.
	s.run(`web = router.local(name = "web")`)
	out := s.run(`web.call(os.getpid) != os.getpid()`)
	if !strings.Contains(out, "True") {
		t.Errorf("web.call: %q", out)
	}
	s.run(`pid = web.call(os.getpid)`)
	webPID := s.intAfter(`pid`)
	// The inventory of -i is loaded; a module of -I is loaded and its
	// functions run in the context.
	s.run(`load("lib/work.star", "slow", "double")`)
	s.run(`[h.name for h in inventory.hosts()]`)
	s.run(`web.call(double, 21)`)
	s.screenHas(`>>> web.call(os.getpid) != os.getpid()`, "True", `["h1", "h2"]`, "42")

	// Completion: a predeclared name, a Context's methods, a module's
	// functions; a global of the session.
	s.typeIn("rou\t")
	s.expect("router")
	s.typeIn(".loc\t")
	s.expect("local")
	s.typeIn("\x03") // drop the line
	s.expectPrompt(">>>")
	s.screenHas(">>> router.local^C")
	s.typeIn("web.call_a\t")
	s.expect("async")
	s.run("(double, 4).get_data()")
	s.screenHas(">>> web.call_async(double, 4).get_data()", "8")
	s.typeIn("fs.lis\t")
	s.expect("listdir")
	s.run(`("/") != []`)
	s.screenHas(`>>> fs.listdir("/") != []`)
	s.typeIn("web.call\t\t") // ambiguous: the candidates are listed
	out = s.expect("call_service")
	for _, c := range []string{"call_async", "call_no_reply", "call_service"} {
		if !strings.Contains(out, c) {
			t.Errorf("the candidates of web.call lack %s: %q", c, out)
		}
	}
	s.typeIn("\x7f\x03") // leave the list (Backspace), drop the line
	s.expectPrompt(">>>")
	s.typeIn("dou\t")
	s.expect("double")
	s.run("(5)")
	s.screenHas(">>> double(5)", "10")

	// Multi-line input: a def, its body, a blank line.
	s.typeIn("def add(a, b):\r")
	s.expectPrompt("...")
	s.typeIn("\treturn a + b\r") // Tab indents
	s.expectPrompt("...")
	s.run("")
	out = s.run("add(2, 3)")
	if !strings.Contains(out, "5") {
		t.Errorf("add(2, 3): %q", out)
	}
	s.screenHas(">>> def add(a, b):", "...     return a + b", ">>> add(2, 3)", "5")
	// A function defined at the prompt cannot travel, and says why.
	out = s.run("web.call(add, 1, 2)")
	if !strings.Contains(out, "it was defined in <stdin>, not in a module") {
		t.Errorf("web.call(add): %q", out)
	}

	// An error, then a line that works.
	out = s.run("print(nope)")
	if !strings.Contains(out, "undefined: nope") {
		t.Errorf("an undefined name: %q", out)
	}
	out = s.run(`web.call(double, 50)`)
	if !strings.Contains(out, "100") {
		t.Errorf("after an error: %q", out)
	}
	out = s.run(`fail("on purpose")`)
	if !strings.Contains(out, "Error: fail: on purpose") {
		t.Errorf("fail(): %q", out)
	}

	// History: Up recalls the last line.
	s.typeIn("\x1b[A")
	s.expect(`fail("on purpose")`)
	s.typeIn("\x1b[A")
	s.expect(`web.call(double, 50)`)
	out = s.run("")
	if !strings.Contains(out, "100") {
		t.Errorf("the recalled line: %q", out)
	}

	// Ctrl-C stops a long remote call, and the call in web with it: web
	// answers at once.
	s.typeIn("web.call(slow, 120)\r")
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	s.typeIn("\x03")
	s.expect("interrupted")
	s.expectPrompt(">>>")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Ctrl-C took %v", d)
	}
	start = time.Now()
	out = s.run(`web.call(double, 7)`)
	if !strings.Contains(out, "14") {
		t.Errorf("after Ctrl-C: %q", out)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("web answered after %v: its call was not cancelled", d)
	}

	// Ctrl-D ends the session and shuts the tree down.
	s.typeIn("\x04")
	sent := time.Now()
	if code := s.wait(); code != 0 {
		t.Errorf("exit status %d after Ctrl-D; screen:\n%s", code, s.screen())
	}
	goneWithin(t, "Ctrl-D: the context web", []int{webPID}, sent, 3*time.Second)
	if strings.Contains(s.screen(), "DATA RACE") {
		t.Errorf("a data race:\n%s", s.screen())
	}

	// The history file keeps the session's lines for the next one, for
	// its user alone.
	data, err := os.ReadFile(history)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(history); err != nil {
		t.Error(err)
	} else if st.Mode().Perm() != 0o600 {
		t.Errorf("the history file has mode %v, want 0600", st.Mode().Perm())
	}
	for _, l := range []string{`web = router.local(name = "web")`, "web.call(slow, 120)", "def add(a, b):"} {
		if !strings.Contains(string(data), l+"\n") {
			t.Errorf("the history file lacks %q:\n%s", l, data)
		}
	}
	s = startPTY(t, dir, []string{"MITOSTAR_HISTORY=" + history}, "repl")
	s.expect(">>> ")
	s.typeIn("\x1b[A")
	s.expect(`web.call(double, 7)`)
	s.typeIn("\x03")
	s.expectPrompt(">>>")

	// SIGTERM ends the session, and the tree with it.
	s.run("c = router.local()")
	pid := s.intAfter("c.call(os.getpid)")
	sent = time.Now()
	s.cmd.Process.Signal(syscall.SIGTERM)
	if code := s.wait(); code != 143 {
		t.Errorf("exit status %d after SIGTERM, want 143; screen:\n%s", code, s.screen())
	}
	goneWithin(t, "SIGTERM: the context", []int{pid}, sent, 3*time.Second)
}

// Without a terminal, mitostar repl reads statements from its input:
// values print on stdout, errors on stderr, and the session goes on to
// the end of the input.
func TestREPLPiped(t *testing.T) {
	t.Parallel()
	dir := script(t, map[string]string{"lib/m.star": "def inc(x):\n    return x + 1\n"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := command(ctx, dir, []string{"MITOSTAR_HISTORY=" + filepath.Join(t.TempDir(), "h")}, "repl")
	cmd.Stdin = strings.NewReader(`load("lib/m.star", "inc")
c = router.local()
c.call(inc, 41)
print(undefined_name)
def twice(x):
    return 2 * x

twice(c.call(inc, 1))
c.call(twice, 1)
`)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("mitostar repl: %v\nstderr:\n%s", err, stderr.String())
	}
	if want := "42\n4\n"; stdout.String() != want {
		t.Errorf("stdout %q, want %q", stdout.String(), want)
	}
	contains(t, "stderr", stderr.String(), "undefined: undefined_name",
		"cannot call twice in another context: it was defined in <stdin>, not in a module")

	r := mitostar(t, dir, nil, "repl", "x.star")
	r.want(t, 2)
	contains(t, "stderr", r.stderr, `mitostar repl: takes no script or argument, got "x.star"`)
}

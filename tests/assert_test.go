package tests

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"

	"github.com/mitostar/mitostar/builtins"
	"github.com/mitostar/mitostar/core"
)

// The assert module and a few test helpers are registered Go builtins, so
// they exist in every context of the tree (children are this test binary
// re-executed) and can be passed to ctx.call like os.getpid.
func init() {
	builtins.Register("assert.eq", assertEq)
	builtins.Register("assert.ne", assertNe)
	builtins.Register("assert.true", assertTrue)
	builtins.Register("assert.contains", assertContains)
	builtins.Register("assert.matches", assertMatches)
	builtins.Register("assert.fails", assertFails)
	builtins.Register("assert.run", assertRun)

	builtins.Register("testing.load_module", testLoad)
	builtins.Register("testing.count", testCount)
	builtins.Register("testing.log_lines", testLogLines)
	builtins.Register("testing.wait_log", testWaitLog)
	builtins.Register("testing.stdout", testStdout)
	builtins.Register("testing.busy", testBusy)
	builtins.Register("testing.compute", testCompute)
	builtins.Register("testing.unsendable", testUnsendable)
	builtins.Register("testing.write_fd", testWriteFD)

	// Every child serves the test service too.
	core.RegisterChildHook(func(r *core.Router, _ []byte) error { return r.RegisterService(testService()) })
}

// testService is a Go service (docs/reference.md, "Services") that every context
// of the suite registers: echo and whoami accept any caller, strict only
// a parent, fail always fails.
func testService() *core.Service {
	return &core.Service{
		Name: "test.svc",
		Methods: map[string]core.ServiceMethod{
			"echo": {Policy: core.AllowAny, Fn: func(ctx context.Context, c *core.ServiceCall) (any, error) {
				var kw map[string]any
				if err := c.Kwargs(&kw); err != nil {
					return nil, err
				}
				return kw, nil
			}},
			"whoami": {Policy: core.AllowAny, Fn: func(ctx context.Context, c *core.ServiceCall) (any, error) {
				return []any{c.Router.ID(), c.Caller().ID}, nil
			}},
			"strict": {Fn: func(ctx context.Context, c *core.ServiceCall) (any, error) { return "parent only", nil }},
			"fail": {Policy: core.AllowAny, Fn: func(ctx context.Context, c *core.ServiceCall) (any, error) {
				return nil, errors.New("the service failed on purpose")
			}},
		},
	}
}

func assertEq(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var got, want starlark.Value
	var msg string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "got", &got, "want", &want, "msg?", &msg); err != nil {
		return nil, err
	}
	eq, err := starlark.Equal(got, want)
	if err != nil {
		return nil, fmt.Errorf("%s: comparing %s and %s: %w", b.Name(), got.Type(), want.Type(), err)
	}
	if !eq {
		return nil, fmt.Errorf("%s: got %s, want %s%s", b.Name(), got, want, suffix(msg))
	}
	return starlark.None, nil
}

func assertNe(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var got, unwanted starlark.Value
	var msg string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "got", &got, "unwanted", &unwanted, "msg?", &msg); err != nil {
		return nil, err
	}
	eq, err := starlark.Equal(got, unwanted)
	if err != nil {
		return nil, fmt.Errorf("%s: comparing %s and %s: %w", b.Name(), got.Type(), unwanted.Type(), err)
	}
	if eq {
		return nil, fmt.Errorf("%s: got %s, want anything else%s", b.Name(), got, suffix(msg))
	}
	return starlark.None, nil
}

func assertTrue(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var cond starlark.Value
	var msg string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "cond", &cond, "msg?", &msg); err != nil {
		return nil, err
	}
	if !cond.Truth() {
		return nil, fmt.Errorf("%s: %s is not true%s", b.Name(), cond, suffix(msg))
	}
	return starlark.None, nil
}

// assert.contains(container, x): x in container (a substring for strings).
func assertContains(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var container, x starlark.Value
	var msg string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "container", &container, "x", &x, "msg?", &msg); err != nil {
		return nil, err
	}
	in, err := starlark.Binary(syntax.IN, x, container)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	if !in.Truth() {
		return nil, fmt.Errorf("%s: %s not in %s%s", b.Name(), x, container, suffix(msg))
	}
	return starlark.None, nil
}

// assert.matches(s, regex): s matches regex (re2 syntax, unanchored).
func assertMatches(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var s, pattern, msg string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "s", &s, "pattern", &pattern, "msg?", &msg); err != nil {
		return nil, err
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	if !re.MatchString(s) {
		return nil, fmt.Errorf("%s: %q does not match %q%s", b.Name(), s, pattern, suffix(msg))
	}
	return starlark.None, nil
}

// assert.fails(fn, *args, pattern=REGEX, **kwargs) calls fn and returns
// the Error it failed with; it fails itself when fn succeeds or when
// str(err) ("KIND: message") does not match pattern.
func assertFails(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if len(args) == 0 {
		return nil, fmt.Errorf("%s: missing function argument", b.Name())
	}
	fn, ok := args[0].(starlark.Callable)
	if !ok {
		return nil, fmt.Errorf("%s: first argument must be callable, got %s", b.Name(), args[0].Type())
	}
	pattern := ""
	var rest []starlark.Tuple
	for _, kv := range kwargs {
		if kv[0].(starlark.String) == "pattern" {
			p, ok := starlark.AsString(kv[1])
			if !ok {
				return nil, fmt.Errorf("%s: pattern must be a string, got %s", b.Name(), kv[1].Type())
			}
			pattern = p
			continue
		}
		rest = append(rest, kv)
	}
	if pattern == "" {
		return nil, fmt.Errorf("%s: pattern= is required", b.Name())
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	v, err := starlark.Call(thread, fn, args[1:], rest)
	if err == nil {
		return nil, fmt.Errorf("%s: %s succeeded (returned %s), want an error matching %q", b.Name(), fn.Name(), v, pattern)
	}
	if builtins.Cancelled(thread) {
		return nil, err // a cancelled thread stays cancelled
	}
	name := ""
	if r, rerr := builtins.RouterOf(thread); rerr == nil {
		name = r.Name()
	}
	e := builtins.ErrorOf(err, name)
	if !re.MatchString(e.String()) {
		return nil, fmt.Errorf("%s: %s failed with %q, want an error matching %q\n%s", b.Name(), fn.Name(), e.String(), pattern, builtins.Backtrace(err))
	}
	return e, nil
}

// assert.run(*fns) calls each test function in turn and fails at the end
// with the backtrace of every one that failed, so one broken test does
// not hide the others of its file.
func assertRun(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if len(kwargs) > 0 {
		return nil, fmt.Errorf("%s: unexpected keyword arguments", b.Name())
	}
	var failures []string
	for _, a := range args {
		fn, ok := a.(starlark.Callable)
		if !ok {
			return nil, fmt.Errorf("%s: %s is not callable", b.Name(), a.Type())
		}
		if _, err := starlark.Call(thread, fn, nil, nil); err != nil {
			if builtins.Cancelled(thread) {
				return nil, err
			}
			failures = append(failures, fmt.Sprintf("--- %s failed:\n%s", fn.Name(), indent(builtins.Backtrace(err))))
		}
	}
	if len(failures) > 0 {
		return nil, fmt.Errorf("%d of %d tests failed:\n%s", len(failures), len(args), strings.Join(failures, ""))
	}
	return starlark.None, nil
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ") + "\n"
}

func suffix(msg string) string {
	if msg == "" {
		return ""
	}
	return " (" + msg + ")"
}

// testing.load_module(path) loads a module as a load statement would, from the
// running context, and returns its globals as a dict: load errors can
// then be caught.
func testLoad(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var p string
	if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &p); err != nil {
		return nil, err
	}
	if thread.Load == nil {
		return nil, errors.New("testing.load_module: this thread cannot load modules")
	}
	g, err := thread.Load(thread, p)
	if err != nil {
		return nil, err
	}
	d := starlark.NewDict(len(g))
	for _, k := range g.Keys() {
		d.SetKey(starlark.String(k), g[k])
	}
	return d, nil
}

var (
	countMu sync.Mutex
	counts  = map[string]int{}
)

// resetCounts forgets the counts of earlier scripts run by this process
// (go test -count N runs each script N times in one process).
func resetCounts() {
	countMu.Lock()
	clear(counts)
	countMu.Unlock()
}

// testing.count(key, incr=True) counts, per process, how often key was
// counted: a module's top level calls it to show it ran once.
func testCount(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var key string
	incr := true
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "key", &key, "incr?", &incr); err != nil {
		return nil, err
	}
	countMu.Lock()
	defer countMu.Unlock()
	if incr {
		counts[key]++
	}
	return starlark.MakeInt(counts[key]), nil
}

// capture is what a master in TestStar logged and printed.
type capture struct {
	mu     sync.Mutex
	cond   *sync.Cond
	lines  []string
	stdout strings.Builder
}

func newCapture() *capture {
	c := &capture{}
	c.cond = sync.NewCond(&c.mu)
	return c
}

// Log implements core.LogSink, formatting records as the CLI does.
func (c *capture) Log(rec core.LogRecord) {
	var b strings.Builder
	core.NewWriterSink(&b).Log(rec)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lines = append(c.lines, strings.Split(strings.TrimRight(b.String(), "\n"), "\n")...)
	c.cond.Broadcast()
}

func (c *capture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stdout.Write(p)
}

var (
	capMu    sync.Mutex
	captures = map[*core.Router]*capture{}
)

func captureOf(thread *starlark.Thread, fn string) (*capture, error) {
	r, err := builtins.RouterOf(thread)
	if err != nil {
		return nil, err
	}
	capMu.Lock()
	defer capMu.Unlock()
	c := captures[r]
	if c == nil {
		return nil, fmt.Errorf("%s: no log capture in context %s (only TestStar's masters have one)", fn, r.Name())
	}
	return c, nil
}

// testing.log_lines() returns the master's log lines so far.
func testLogLines(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
		return nil, err
	}
	c, err := captureOf(thread, b.Name())
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]starlark.Value, len(c.lines))
	for i, l := range c.lines {
		out[i] = starlark.String(l)
	}
	return starlark.NewList(out), nil
}

// testing.wait_log(regex, timeout=10) waits for a master log line that
// matches regex and returns it; log records travel apart from replies.
func testWaitLog(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var pattern string
	timeout := 10.0
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "pattern", &pattern, "timeout?", &timeout); err != nil {
		return nil, err
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	c, err := captureOf(thread, b.Name())
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(time.Duration(timeout * float64(time.Second)))
	stop := time.AfterFunc(time.Until(deadline), func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer stop.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		for _, l := range c.lines {
			if re.MatchString(l) {
				return starlark.String(l), nil
			}
		}
		if !time.Now().Before(deadline) {
			return nil, fmt.Errorf("%s: no log line matching %q within %gs; the log has:\n%s", b.Name(), pattern, timeout, strings.Join(c.lines, "\n"))
		}
		c.cond.Wait()
	}
}

// testing.stdout() returns what the master's print() wrote so far.
func testStdout(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
		return nil, err
	}
	c, err := captureOf(thread, b.Name())
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return starlark.String(c.stdout.String()), nil
}

// testing.busy() spins in Go until its thread is cancelled, checking the
// cancellation flag as a long builtin would; it never returns otherwise.
func testBusy(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
		return nil, err
	}
	<-builtins.ThreadContext(thread).Done()
	return nil, fmt.Errorf("testing.busy: %w", builtins.ThreadContext(thread).Err())
}

// testing.compute(seconds) computes for that long without a system call
// or an allocation, as a long Go builtin does, and returns how many
// rounds it made.
func testCompute(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var secs float64
	if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &secs); err != nil {
		return nil, err
	}
	end := time.Now().Add(time.Duration(secs * float64(time.Second)))
	rounds, x := 0, uint64(1)
	for time.Now().Before(end) {
		for range 100000 {
			x = x*6364136223846793005 + 1442695040888963407
		}
		rounds++
	}
	return starlark.MakeInt(rounds + int(x&1)), nil
}

// testing.unsendable() returns a value of a type that cannot travel.
func testUnsendable(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	return unsendable{}, starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0)
}

type unsendable struct{}

func (unsendable) String() string        { return "<gadget>" }
func (unsendable) Type() string          { return "gadget" }
func (unsendable) Freeze()               {}
func (unsendable) Truth() starlark.Bool  { return true }
func (unsendable) Hash() (uint32, error) { return 0, nil }

// testing.write_fd(fd, text) writes text straight to file descriptor 1 or
// 2 of this process, as a misbehaving library would.
func testWriteFD(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var fd int
	var text string
	if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 2, &fd, &text); err != nil {
		return nil, err
	}
	f := map[int]*os.File{1: os.Stdout, 2: os.Stderr}[fd]
	if f == nil {
		return nil, fmt.Errorf("%s: fd must be 1 or 2, got %d", b.Name(), fd)
	}
	if _, err := f.WriteString(text); err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	return starlark.None, nil
}

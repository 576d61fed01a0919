package core

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Security, size limits and logging with real child processes.

func TestChildSecurity(t *testing.T) {
	r := newMaster(t)
	ctx := testCtx(t)
	a := connectLocal(t, r, nil, "a")
	b := connectLocal(t, r, nil, "b")
	var out string
	call := func(fn string, args ...any) string {
		t.Helper()
		if err := a.Call(ctx, &out, fn, args...); err != nil {
			t.Fatalf("%s%v: %v", fn, args, err)
		}
		return out
	}
	// A child's call into its parent, or into a sibling, is refused.
	if got := call("test.callctx", 0); got != "*core.ChannelError: refused by policy" {
		t.Fatalf("child → parent: %q", got)
	}
	if got := call("test.callctx", b.ID); got != "*core.ChannelError: refused by policy" {
		t.Fatalf("child → sibling: %q", got)
	}
	// Raw frames with a spoofed auth_id (the master's, the sibling's)
	// or src_id are dropped with a dead message.
	for _, f := range [][4]uint32{
		{0, a.ID, 0, handleCallFunction},
		{b.ID, a.ID, b.ID, handleCallFunction},
		{b.ID, b.ID, a.ID, 1000},
		{0, 0, 0, handleShutdown},
	} {
		if got := call("test.rawframe", f[0], f[1], f[2], f[3]); got != "dead: refused by policy" {
			t.Fatalf("raw frame dst=%d src=%d auth=%d handle=%d: %q", f[0], f[1], f[2], f[3], got)
		}
	}
	// An honest raw frame is routed (the frame helper works): the
	// sibling answers that nothing listens on that handle.
	if got := call("test.rawframe", b.ID, a.ID, a.ID, 54321); got != "dead: invalid handle" {
		t.Fatalf("honest raw frame: %q", got)
	}
	// Nothing happened to the master or the sibling.
	if pidOf(t, b) == 0 {
		t.Fatal("sibling")
	}
	select {
	case <-r.Done():
		t.Fatal("master closed")
	default:
	}
}

func TestChildUnidirectional(t *testing.T) {
	r := NewMaster(Options{Unidirectional: true})
	t.Cleanup(r.Close)
	ctx := testCtx(t)
	a := connectLocal(t, r, nil, "a")
	b := connectLocal(t, r, nil, "b")
	g := connectLocal(t, r, a, "a.g")
	var out string
	if err := a.Call(ctx, &out, "test.callctx", b.ID); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("*core.ChannelError: routing mode prevents forward of message from context %d to context %d via context 0", a.ID, b.ID)
	if out != want {
		t.Fatalf("sibling call: %q, want %q", out, want)
	}
	// Replies flow: calls from the master reach every context, the
	// grandchild's through its unidirectional parent.
	for _, c := range []*Context{a, b, g} {
		pidOf(t, c)
	}
}

func TestMessageSizeLimit(t *testing.T) {
	r := NewMaster(Options{MaxMessageSize: 64 << 10})
	t.Cleanup(r.Close)
	ctx := testCtx(t)
	c := connectLocal(t, r, nil, "sized")
	var n int
	if err := c.Call(ctx, &n, "test.maxsize"); err != nil || n != 64<<10 {
		t.Fatalf("child's limit: %d, %v", n, err)
	}
	// Refused at the sender.
	err := c.Call(ctx, nil, "test.echo", make([]byte, 70000))
	if err == nil || err.Error() != "message too large (max 65536 bytes)" {
		t.Fatalf("oversized call: %v", err)
	}
	// A reply over the limit: ChannelError at the caller.
	err = c.Call(ctx, nil, "test.bigreply", 70000)
	wantChannelError(t, err, "message too large (max 65536 bytes)")
	// Just under the limit both ways works, and the context is usable.
	var echo [][]byte
	if err := c.Call(ctx, &echo, "test.echo", make([]byte, 60000)); err != nil || len(echo[0]) != 60000 {
		t.Fatalf("call under the limit: %v", err)
	}
	var big []byte
	if err := c.Call(ctx, &big, "test.bigreply", 60000); err != nil || len(big) != 60000 {
		t.Fatalf("reply under the limit: %d %v", len(big), err)
	}
	// A grandchild inherits the limit, and its oversized reply is
	// refused where it starts.
	g := connectLocal(t, r, c, "sized.g")
	if err := g.Call(ctx, &n, "test.maxsize"); err != nil || n != 64<<10 {
		t.Fatalf("grandchild's limit: %d, %v", n, err)
	}
	wantChannelError(t, g.Call(ctx, nil, "test.bigreply", 70000), "message too large (max 65536 bytes)")
	pidOf(t, g)
	pidOf(t, c)

	// A relay whose limit was lowered after the grandchild started
	// refuses the grandchild's larger reply, and the caller hears it at
	// once instead of waiting for its timeout.
	if err := c.Call(ctx, nil, "test.setmax", 8192); err != nil {
		t.Fatal(err)
	}
	// A small reply first, so the relay's reader of the grandchild's
	// stream has read a frame since the limit changed: the grandchild
	// keeps to the limit it was told, and its stream stays open.
	if err := g.Call(ctx, &n, "test.maxsize"); err != nil || n != 64<<10 {
		t.Fatalf("grandchild's limit after its relay's changed: %d, %v", n, err)
	}
	start := time.Now()
	tctx, cancel := context.WithTimeout(ctx, 7*time.Second)
	defer cancel()
	wantChannelError(t, g.Call(tctx, nil, "test.bigreply", 20000), "message too large (max 8192 bytes)")
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the refused reply took %s to fail", d)
	}
}

func init() {
	// test.spew(a, b) writes a bytes of one line to stderr, then b more
	// bytes of the same line and its newline.
	RegisterFunc("test.spew", func(ctx context.Context, c *Call) (any, error) {
		var n []int
		if err := c.Args(&n); err != nil {
			return nil, err
		}
		os.Stderr.Write(bytes.Repeat([]byte("x"), n[0]))
		os.Stderr.Write(append(bytes.Repeat([]byte("y"), n[1]), '\n'))
		return nil, nil
	})
	RegisterFunc("test.setmax", func(ctx context.Context, c *Call) (any, error) {
		var args []int
		if err := c.Args(&args); err != nil {
			return nil, err
		}
		return nil, c.Router.SetMaxMessageSize(args[0])
	})
}

// recordSink keeps every record that reaches it.
type recordSink struct {
	mu   sync.Mutex
	recs []LogRecord
}

func (s *recordSink) Log(rec LogRecord) {
	s.mu.Lock()
	s.recs = append(s.recs, rec)
	s.mu.Unlock()
}

func (s *recordSink) waitFor(t testing.TB, want LogRecord) {
	t.Helper()
	waitUntil(t, 5*time.Second, fmt.Sprintf("no record %+v in %+v", want, s.snapshot()), func() bool {
		for _, r := range s.snapshot() {
			if r == want {
				return true
			}
		}
		return false
	})
}

// waitForPrefix waits for a record of context name whose text is text.
func (s *recordSink) waitForPrefix(t testing.TB, name, text string) {
	t.Helper()
	waitUntil(t, 5*time.Second, "no record of "+name+" with the long line", func() bool {
		for _, r := range s.snapshot() {
			if r.Context == name && r.Text == text {
				return true
			}
		}
		return false
	})
}

func (s *recordSink) snapshot() []LogRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]LogRecord(nil), s.recs...)
}

func init() {
	// test.forgelog(ids...) sends a warning record "forged" about each
	// context id, naming it as the last argument says.
	RegisterFunc("test.forgelog", func(ctx context.Context, c *Call) (any, error) {
		var args []any
		if err := c.Args(&args); err != nil {
			return nil, err
		}
		name := args[len(args)-1].(string)
		for _, id := range args[:len(args)-1] {
			data, _ := Marshal(LogRecord{Context: name, Level: int(slog.LevelWarn), Text: "forged", ID: uint32(id.(uint64))})
			c.Router.Route(context.Background(), &Message{DstID: 0, Handle: handleForwardLog, Data: data})
		}
		return nil, nil
	})
}

func TestChildOutputAndLogsReachMaster(t *testing.T) {
	sink := &recordSink{}
	r := NewMaster(Options{Sink: sink})
	t.Cleanup(r.Close)
	ctx := testCtx(t)
	c := connectLocal(t, r, nil, "talker")
	g := connectLocal(t, r, c, "talker.g")
	for _, x := range []*Context{c, g} {
		name := x.Name()
		if err := x.Call(ctx, nil, "test.output", "out of "+name, "err of "+name, "log of "+name); err != nil {
			t.Fatal(err)
		}
		sink.waitFor(t, LogRecord{Context: name, Level: int(slog.LevelInfo), Text: "out of " + name, ID: x.ID})
		sink.waitFor(t, LogRecord{Context: name, Level: int(slog.LevelInfo), Text: "err of " + name, ID: x.ID})
		sink.waitFor(t, LogRecord{Context: name, Level: int(slog.LevelWarn), Text: "log of " + name, ID: x.ID})
	}
	// Output of any shape never blocks its writer: a 1 MiB line without a
	// newline, then 4 MiB more on one line, is logged cut with a note.
	start := time.Now()
	if err := c.Call(ctx, nil, "test.spew", 1<<20, 4<<20); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("writing 5 MiB of one line to stderr took %s", d)
	}
	sink.waitForPrefix(t, "talker", strings.Repeat("x", 16384)+"… [a line of 5242880 bytes, cut at 16384]")
	// A failing call that wants no reply is logged where it failed.
	if err := c.CallNoReply(context.Background(), "test.fail"); err != nil {
		t.Fatal(err)
	}
	sink.waitFor(t, LogRecord{Context: "talker", Level: int(slog.LevelError), Text: "No-reply function call failed: Error: boom", ID: c.ID})
	// A child cannot log under another context's name: the master names
	// each record by the context that sent it (or a child of it).
	if err := c.Call(ctx, nil, "test.forgelog", c.ID, g.ID, r.ID(), "ssh.prod:22"); err != nil {
		t.Fatal(err)
	}
	sink.waitFor(t, LogRecord{Context: "talker", Level: int(slog.LevelWarn), Text: "forged", ID: c.ID})
	sink.waitFor(t, LogRecord{Context: "talker.g", Level: int(slog.LevelWarn), Text: "forged", ID: g.ID})
	sink.waitFor(t, LogRecord{Context: "talker/ssh.prod:22", Level: int(slog.LevelWarn), Text: "forged", ID: 0})
	// The default sink formats records as "[context] LEVEL text" lines.
	var b strings.Builder
	NewWriterSink(&b).Log(LogRecord{Context: "talker", Level: int(slog.LevelWarn), Text: "a\nb\n"})
	if b.String() != "[talker] WARNING a\n[talker] WARNING b\n" {
		t.Fatalf("writer sink: %q", b.String())
	}
}

func TestDefaultNameAndRemoteName(t *testing.T) {
	r := newMaster(t)
	ctx := testCtx(t)
	c, err := r.Connect(ctx, "local", &ConnectOptions{Kwargs: map[string]any{"remote_name": "probe"}})
	if err != nil {
		t.Fatal(err)
	}
	pid := pidOf(t, c)
	if c.Name() != fmt.Sprintf("local.%d", pid) {
		t.Fatalf("name %q, pid %d", c.Name(), pid)
	}
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if !strings.HasPrefix(string(cmdline), "mitostar:probe\x00") {
		t.Fatalf("argv = %q", cmdline)
	}
	_, err = r.Connect(ctx, "local", &ConnectOptions{Kwargs: map[string]any{"remote_nam": "x"}})
	if err == nil || err.Error() != `local: unexpected keyword "remote_nam"` {
		t.Fatalf("bad keyword: %v", err)
	}
	_, err = r.Connect(ctx, "nope", nil)
	if err == nil || !strings.HasPrefix(err.Error(), `unknown connection method "nope" (known: `) {
		t.Fatalf("unknown method: %v", err)
	}
}

func init() {
	RegisterRole("testmaster", runTestMaster)
}

// runTestMaster is a master with three children (one nested) that prints
// their pids and waits to be killed.
func runTestMaster() int {
	r := NewMaster(Options{})
	ctx := testCtx(nopTB{})
	a, err := r.Connect(ctx, "local", &ConnectOptions{Name: "a"})
	if err != nil {
		fmt.Println("ERR", err)
		return 1
	}
	b, err := r.Connect(ctx, "local", &ConnectOptions{Name: "b"})
	if err != nil {
		fmt.Println("ERR", err)
		return 1
	}
	g, err := r.Connect(ctx, "local", &ConnectOptions{Name: "a.g", Via: a})
	if err != nil {
		fmt.Println("ERR", err)
		return 1
	}
	var pids []string
	for _, c := range []*Context{a, b, g} {
		var pid int
		if err := c.Call(ctx, &pid, "test.pid"); err != nil {
			fmt.Println("ERR", err)
			return 1
		}
		pids = append(pids, fmt.Sprint(pid))
	}
	fmt.Println("PIDS", strings.Join(pids, " "))
	time.Sleep(time.Minute)
	return 0
}

// nopTB lets testCtx run outside a test.
type nopTB struct{ testing.TB }

func (nopTB) Cleanup(func()) {}

func TestKillMasterLeavesNoChild(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), RoleEnv+"=testmaster")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "PIDS ") {
		t.Fatalf("test master said %q (%v)", line, err)
	}
	var pids []int
	for _, f := range strings.Fields(line)[1:] {
		var p int
		fmt.Sscan(f, &p)
		pids = append(pids, p)
		killOnCleanup(t, p)
	}
	if len(pids) != 3 {
		t.Fatalf("pids %v", pids)
	}
	for _, p := range pids {
		if !alive(p) {
			t.Fatalf("child %d not running before the kill", p)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	waitDead(t, 2*time.Second, pids...)
	t.Logf("children gone %s after kill -9 of their master", time.Since(killed))
}

package core

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// In-process trees: routers wired together over kernel pipes inside the
// test process, with the same streams real children use. linkChild builds
// a child router; attachRaw gives the test the far end of a child stream
// to write arbitrary frames on.

// pipes returns the two ends of a duplex connection made of two pipes:
// a reads what b writes and the other way round.
func pipes(t testing.TB) (aR *os.File, aW *os.File, bR *os.File, bW *os.File) {
	t.Helper()
	r1, w1, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r2, w2, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	return r1, w2, r2, w1
}

// linkChild starts an in-process child router with the given id below
// parent, as the handshake would.
func linkChild(t testing.TB, parent *Router, id uint32, opts Options) *Router {
	t.Helper()
	if opts.Name == "" {
		opts.Name = fmt.Sprintf("child.%d", id)
	}
	pr, pw, cr, cw := pipes(t)
	child := newRouter(id, append([]uint32{parent.id}, parent.parentIDs...), opts)
	child.parent = newStream(child, parent.id, "parent", true, parent.MaxMessageSize(), bufio.NewReaderSize(cr, 64<<10), cw,
		func() { cr.Close(); cw.Close() })
	s := newStream(parent, id, opts.Name, false, parent.MaxMessageSize(), bufio.NewReaderSize(pr, 64<<10), pw,
		func() { pr.Close(); pw.Close() })
	grantUp(parent, id)
	parent.addChild(s)
	child.parent.start()
	t.Cleanup(child.Close)
	testTree.Lock()
	testTree.up[child] = parent
	testTree.stream[child] = s
	testTree.Unlock()
	return child
}

// testTree records how linkChild wired in-process routers, for grantUp.
var testTree = struct {
	sync.Mutex
	up     map[*Router]*Router
	stream map[*Router]*Stream // the parent's stream to the router
}{up: map[*Router]*Router{}, stream: map[*Router]*Stream{}}

// grantUp records id as allocated, in every ancestor of r, through the
// stream that leads to r, as ALLOCATE_ID would have: r may then announce
// a child with that id.
func grantUp(r *Router, id uint32) {
	testTree.Lock()
	defer testTree.Unlock()
	for {
		up, s := testTree.up[r], testTree.stream[r]
		if up == nil {
			return
		}
		up.mu.Lock()
		up.granted[s] = append(up.granted[s], idRange{id, id + 1})
		up.mu.Unlock()
		r = up
	}
}

// A rawPeer is the far end of a child stream driven by the test: it
// writes whatever frames the test builds and collects what arrives.
type rawPeer struct {
	t      testing.TB
	id     uint32
	w      *os.File
	r      *os.File
	frames chan *Message
	done   chan struct{}
}

// attachRaw registers a child stream for context id on parent whose far
// end the test drives.
func attachRaw(t testing.TB, parent *Router, id uint32, name string) *rawPeer {
	t.Helper()
	pr, pw, cr, cw := pipes(t)
	p := &rawPeer{t: t, id: id, w: cw, r: cr, frames: make(chan *Message, 1000), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		br := bufio.NewReader(cr)
		for {
			m, err := readMessage(br, DefaultMaxMessageSize)
			if err != nil {
				return
			}
			p.frames <- m
		}
	}()
	s := newStream(parent, id, name, false, parent.MaxMessageSize(), bufio.NewReaderSize(pr, 64<<10), pw,
		func() { pr.Close(); pw.Close() })
	grantUp(parent, id)
	parent.addChild(s)
	t.Cleanup(p.close)
	return p
}

// send writes m as it is, header fields included.
func (p *rawPeer) send(m *Message) {
	p.t.Helper()
	if err := writeMessage(p.w, m); err != nil {
		p.t.Fatalf("raw peer %d: %v", p.id, err)
	}
}

// expect returns the next frame that reaches the peer.
func (p *rawPeer) expect() *Message {
	p.t.Helper()
	select {
	case m := <-p.frames:
		return m
	case <-time.After(5 * time.Second):
		p.t.Fatalf("raw peer %d: no frame within 5s", p.id)
		return nil
	}
}

// expectNone checks that no frame arrives for a while.
func (p *rawPeer) expectNone(d time.Duration) {
	p.t.Helper()
	select {
	case m := <-p.frames:
		p.t.Fatalf("raw peer %d: unexpected frame %v", p.id, m)
	case <-time.After(d):
	}
}

// close ends the peer's side of the stream.
func (p *rawPeer) close() {
	p.w.Close()
	p.r.Close()
	<-p.done
}

// logCapture is a slog.Handler keeping every record's text.
type logCapture struct {
	mu    sync.Mutex
	lines []string
	wake  chan struct{}
}

func newLogCapture() *logCapture { return &logCapture{wake: make(chan struct{}, 1)} }

// Log implements LogSink: the records of every context of the tree.
func (c *logCapture) Log(rec LogRecord) {
	c.add(fmt.Sprintf("[%s] %s %s", rec.Context, LevelName(slog.Level(rec.Level)), rec.Text))
}

func (c *logCapture) add(line string) {
	c.mu.Lock()
	c.lines = append(c.lines, line)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (c *logCapture) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c *logCapture) WithGroup(string) slog.Handler            { return c }
func (c *logCapture) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	b.WriteString(rec.Level.String() + " " + rec.Message)
	rec.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%q", a.Key, a.Value.String())
		return true
	})
	c.add(b.String())
	return nil
}

// waitFor returns the first line containing every one of parts, failing
// the test after 5 s.
func (c *logCapture) waitFor(t testing.TB, parts ...string) string {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		c.mu.Lock()
		for _, l := range c.lines {
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(l, p)
			}
			if ok {
				c.mu.Unlock()
				return l
			}
		}
		all := strings.Join(c.lines, "\n")
		c.mu.Unlock()
		select {
		case <-c.wake:
		case <-deadline:
			t.Fatalf("no log line with %q; log:\n%s", parts, all)
		}
	}
}

// newLoggedMaster returns a master whose debug log, and the log of every
// context of its tree, is captured.
func newLoggedMaster(t testing.TB, opts Options) (*Router, *logCapture) {
	t.Helper()
	lc := newLogCapture()
	opts.Logger = slog.New(lc)
	opts.Sink = lc
	r := NewMaster(opts)
	t.Cleanup(r.Close)
	return r, lc
}

// waitUntil polls cond every 5 ms until it holds, failing after d.
func waitUntil(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// hasRoute reports whether r routes id to one of its child streams.
func hasRoute(r *Router, id uint32) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.routes[id]
	return ok
}

// deadReasonOf checks that m is a dead message for handle and returns its reason.
func deadReasonOf(t testing.TB, m *Message, dst, handle uint32) string {
	t.Helper()
	if !m.IsDead() || m.DstID != dst || m.Handle != handle {
		t.Fatalf("got %v, want a dead message to %d handle %d", m, dst, handle)
	}
	return m.DeadReason()
}

func slogOf(h slog.Handler) *slog.Logger { return slog.New(h) }

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// grant records id as allocated through r's stream to its child child.
func grant(r *Router, child, id uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.children[child]
	r.granted[s] = append(r.granted[s], idRange{id, id + 1})
}

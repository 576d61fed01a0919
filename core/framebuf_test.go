package core

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFramePoolNoReuseWhileReferenced moves byte stream data and calls
// through master → hop → leaf (in-process routers over pipes) with every
// recycled receive buffer poisoned: a buffer given back while a handler,
// a held ReadChunk slice or a queued frame still refers to it shows up as
// changed bytes.
func TestFramePoolNoReuseWhileReferenced(t *testing.T) {
	poisonRecycled.Store(true)
	t.Cleanup(func() { poisonRecycled.Store(false) })
	r := newMaster(t)
	hop := linkChild(t, r, 1, Options{})
	leaf := linkChild(t, hop, 2, Options{})
	waitUntil(t, 5*time.Second, "routes announced", func() bool { return hasRoute(r, 2) && hasRoute(hop, 2) })
	ctx := testCtx(t)
	recycledBefore := framesRecycled.Load()

	// A handler in the leaf that keeps the payloads it gets, as call
	// arguments and Starlark strings do.
	kept := make(chan *Message, 16)
	h, err := leaf.AddHandler(func(m *Message) { kept <- m }, HandlerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A handler in the hop that keeps what it gets and sends the same
	// message on to the leaf's handler: the hop's writer must not
	// recycle a buffer that was delivered here.
	var relayed [][]byte
	relay, err := hop.AddHandler(func(m *Message) {
		if m.IsDead() {
			return // the router closing at the end
		}
		if m.frame == nil {
			t.Errorf("relayed payload of %d bytes was not in a pooled buffer: the test would prove nothing", len(m.Data))
		}
		relayed = append(relayed, m.Data)
		m.DstID, m.Handle = leaf.id, h
		if err := hop.Route(m); err != nil {
			t.Error(err)
		}
	}, HandlerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var sentPayloads [][]byte
	for i, n := range []int{frameBufMin, 100 << 10, 200 << 10, chunkBufSize, 150 << 10, 250 << 10} {
		p := randomBytes(t, n)
		sentPayloads = append(sentPayloads, p)
		m := &Message{DstID: leaf.id, Handle: h, Data: bytes.Clone(p)}
		if i >= 4 {
			m.DstID, m.Handle = hop.id, relay
		}
		if err := r.Route(m); err != nil {
			t.Fatal(err)
		}
	}
	var got []*Message
	for range sentPayloads {
		select {
		case m := <-kept:
			if m.frame == nil {
				t.Fatalf("a %d-byte payload was not read into a pooled buffer: the test would prove nothing", len(m.Data))
			}
			got = append(got, m)
		case <-ctx.Done():
			t.Fatal("payloads did not arrive")
		}
	}

	// A byte stream from the master to the leaf, through the hop: the
	// hop recycles each forwarded frame once written, the leaf each
	// frame once consumed.
	l, err := leaf.NewByteStream(leaf.ContextByID(0), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	d, err := r.DialByteStream(ctx, l.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	data := randomBytes(t, 24<<20)
	werr := make(chan error, 1)
	go func() {
		_, err := d.ReadFrom(bytes.NewReader(data))
		if err == nil {
			err = d.CloseWrite()
		}
		werr <- err
	}()
	off := 0
	check := func(c []byte, how string) {
		t.Helper()
		if !bytes.Equal(c, data[off:off+len(c)]) {
			t.Fatalf("%s: %d bytes at offset %d differ from what was sent", how, len(c), off)
		}
		off += len(c)
	}
	// ReadChunk, holding three chunks (parts of frames and whole ones)
	// while later frames arrive and are recycled, released in order.
	for round := 0; round < 8; round++ {
		start := off
		var held [][]byte
		for _, max := range []int{100 << 10, 1 << 20, 50 << 10} {
			c, err := l.ReadChunk(ctx, max)
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, c)
		}
		// Let the rest of the window arrive, consumed by Read.
		buf := make([]byte, 300<<10)
		heldLen := 0
		for _, c := range held {
			heldLen += len(c)
		}
		off += heldLen
		n, err := io.ReadFull(l, buf[:min(len(buf), l.window-heldLen)])
		if err != nil {
			t.Fatal(err)
		}
		check(buf[:n], "Read while chunks are held")
		afterRead := off
		off = start
		for _, c := range held {
			check(c, "held ReadChunk slice")
			l.Release(len(c))
		}
		off = afterRead
	}
	// Then Read in odd sizes, then WriteTo.
	for i := 0; i < 20; i++ {
		buf := make([]byte, 77777)
		n, err := io.ReadFull(l, buf)
		if err != nil {
			t.Fatal(err)
		}
		check(buf[:n], "Read")
	}
	var rest bytes.Buffer
	if _, err := l.WriteTo(&rest); err != nil {
		t.Fatal(err)
	}
	check(rest.Bytes(), "WriteTo")
	if off != len(data) {
		t.Fatalf("received %d bytes, sent %d", off, len(data))
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}

	// The payloads the handlers kept were not touched by all that reuse.
	for i, m := range got {
		if !bytes.Equal(m.Data, sentPayloads[i]) {
			t.Fatalf("payload %d (%d bytes) kept by a handler was overwritten", i, len(m.Data))
		}
	}
	if len(relayed) != 2 {
		t.Fatalf("the hop relayed %d messages, want 2", len(relayed))
	}
	for i, p := range relayed {
		if !bytes.Equal(p, sentPayloads[4+i]) {
			t.Fatalf("payload %d kept by the hop's handler was recycled after it sent it on", i)
		}
	}
	if n := framesRecycled.Load() - recycledBefore; n < int64(len(data)/(maxStreamChunk)) {
		t.Fatalf("%d receive buffers recycled for %d bytes of stream: the pool is not in use", n, len(data))
	}
}

// TestFrameRecycleCallers checks the ownership rule of framebuf.go: only
// a stream's writer (forwarded frames), a byte stream (consumed frames)
// and ReadMessage (its own failed read) give receive buffers back.
func TestFrameRecycleCallers(t *testing.T) {
	allowed := map[string]bool{
		"framebuf.go:recycleFrame":     true, // putFrame
		"message.go:ReadMessage":       true,
		"stream.go:drain":              true,
		"stream.go:writeInline":        true,
		"bytestream.go:onFrame":        true,
		"bytestream.go:consumedLocked": true,
		"bytestream.go:Release":        true,
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	found := map[string]bool{}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				id, ok := call.Fun.(*ast.Ident)
				if !ok || (id.Name != "recycleFrame" && id.Name != "putFrame") {
					return true
				}
				where := name + ":" + fn.Name.Name
				found[where] = true
				if !allowed[where] {
					t.Errorf("%s: %s gives a receive buffer back; only the stream writer and the byte stream may (framebuf.go)", fset.Position(call.Pos()), id.Name)
				}
				return true
			})
		}
	}
	for where := range allowed {
		if !found[where] {
			t.Errorf("%s no longer recycles: update this test's list", where)
		}
	}
}

// TestWritevAllPartial writes more than a pipe holds in many pieces, so
// that writevAll waits for room and goes on after partial writes.
func TestWritevAllPartial(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	raw := newFDWriter(pw)
	if raw == nil {
		t.Fatal("os.Pipe's write end is not a non-blocking fd")
	}
	var want []byte
	var pieces [][]byte
	for i := 0; i < 2000; i++ { // more pieces than one writev takes
		p := randomBytes(t, 1+i*7%3000)
		if i%100 == 0 {
			p = nil // empty pieces are skipped
		}
		pieces = append(pieces, p)
		want = append(want, p...)
	}
	got := make(chan []byte, 1)
	go func() {
		time.Sleep(50 * time.Millisecond) // the pipe fills first
		b, _ := io.ReadAll(pr)
		got <- b
	}()
	if err := raw.writevAll(pieces); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	select {
	case b := <-got:
		if !bytes.Equal(b, want) {
			t.Fatalf("read %d bytes, want the %d written in order", len(b), len(want))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("reader did not finish")
	}
	pr.Close()
	if err := raw.writevAll([][]byte{[]byte("x")}); err == nil {
		t.Fatal("writev to a closed pipe succeeded")
	}
}

package core

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

func init() {
	// test.bsecho dials the stream and echoes everything back, then
	// half-closes; it returns at once and echoes on a router goroutine.
	RegisterFunc("test.bsecho", func(ctx context.Context, c *Call) (any, error) {
		var args struct {
			_    struct{} `cbor:",toarray"`
			Addr StreamAddr
		}
		if err := c.Args(&args); err != nil {
			return nil, err
		}
		s, err := c.Router.DialByteStream(ctx, args.Addr, nil)
		if err != nil {
			return nil, err
		}
		c.Router.Go(func() {
			defer s.Close()
			if _, err := io.Copy(s, s); err != nil {
				s.Abort(err)
				return
			}
			s.CloseWrite()
		})
		return nil, nil
	})
	// test.bssink reads everything and replies with its sha256 on the
	// stream, then closes.
	RegisterFunc("test.bssink", func(ctx context.Context, c *Call) (any, error) {
		var args struct {
			_    struct{} `cbor:",toarray"`
			Addr StreamAddr
		}
		if err := c.Args(&args); err != nil {
			return nil, err
		}
		s, err := c.Router.DialByteStream(ctx, args.Addr, nil)
		if err != nil {
			return nil, err
		}
		c.Router.Go(func() {
			defer s.Close()
			h := sha256.New()
			if _, err := s.WriteTo(h); err != nil {
				s.Abort(err)
				return
			}
			s.Write(h.Sum(nil))
			s.CloseWrite()
		})
		return nil, nil
	})
	// test.bsidle dials and then does nothing until the stream breaks.
	RegisterFunc("test.bsidle", func(ctx context.Context, c *Call) (any, error) {
		var args struct {
			_    struct{} `cbor:",toarray"`
			Addr StreamAddr
		}
		if err := c.Args(&args); err != nil {
			return nil, err
		}
		s, err := c.Router.DialByteStream(ctx, args.Addr, nil)
		if err != nil {
			return nil, err
		}
		c.Router.Go(func() {
			defer s.Close()
			io.Copy(io.Discard, s)
		})
		return nil, nil
	})
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// pair returns both ends of a stream inside one router.
func pair(t *testing.T, r *Router, opts *ByteStreamOptions) (listener, dialer *ByteStream) {
	t.Helper()
	l, err := r.NewByteStream(r.Myself(), opts)
	if err != nil {
		t.Fatal(err)
	}
	d, err := r.DialByteStream(testCtx(t), l.Addr(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(); d.Close() })
	return l, d
}

func TestByteStreamInProcess(t *testing.T) {
	r := newMaster(t)
	l, d := pair(t, r, &ByteStreamOptions{Window: 64 << 10})
	up := randomBytes(t, 3<<20)
	down := randomBytes(t, 1<<20+17)
	var wg sync.WaitGroup
	var gotUp, gotDown []byte
	var errUp, errDown error
	wg.Add(2)
	go func() {
		defer wg.Done()
		gotUp, errUp = io.ReadAll(l)
	}()
	go func() {
		defer wg.Done()
		gotDown, errDown = io.ReadAll(d)
	}()
	if _, err := d.Write(up); err != nil {
		t.Fatal(err)
	}
	if err := d.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Write(down); err != nil {
		t.Fatal(err)
	}
	if err := l.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if errUp != nil || errDown != nil {
		t.Fatalf("read errors: %v, %v", errUp, errDown)
	}
	if !bytes.Equal(gotUp, up) || !bytes.Equal(gotDown, down) {
		t.Fatalf("data differs: got %d/%d bytes, want %d/%d", len(gotUp), len(gotDown), len(up), len(down))
	}
	if _, err := d.Write([]byte("x")); !errors.Is(err, ErrStreamClosed) {
		t.Fatalf("write after CloseWrite: %v, want ErrStreamClosed", err)
	}
}

func TestByteStreamFlowControl(t *testing.T) {
	r := newMaster(t)
	const window = 16 << 10
	l, d := pair(t, r, &ByteStreamOptions{Window: window})
	// Nobody reads l: the writer must stop after one window.
	d.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	n, err := d.Write(make([]byte, 1<<20))
	if !IsTimeout(err) {
		t.Fatalf("write to a full window: n=%d err=%v, want a timeout", n, err)
	}
	if n != window || l.Buffered() != window {
		t.Fatalf("wrote %d, buffered %d; want both %d (the window)", n, l.Buffered(), window)
	}
	// A slow reader lets the writer go on, a quarter window at a time.
	d.SetWriteDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, err := d.Write(make([]byte, 4*window))
		done <- err
	}()
	buf := make([]byte, 1000)
	total := 0
	for total < 5*window {
		k, err := l.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		total += k
		if b := l.Buffered(); b > window {
			t.Fatalf("receiver buffers %d bytes, more than its window %d", b, window)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Read deadline and context.
	l.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := l.Read(buf); !IsTimeout(err) {
		t.Fatalf("read with nothing to read: %v, want a timeout", err)
	}
	l.SetReadDeadline(time.Time{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.ReadContext(ctx, buf); !errors.Is(err, context.Canceled) {
		t.Fatalf("read with cancelled ctx: %v", err)
	}
}

func TestByteStreamAbortAndClose(t *testing.T) {
	r := newMaster(t)
	l, d := pair(t, r, nil)
	d.Write([]byte("hello"))
	l.Abort(&RemoteError{Kind: "OSError", Message: "fs.put /x: permission denied"})
	_, err := d.Write([]byte("more"))
	var re *RemoteError
	if !errors.As(err, &re) || re.Kind != "OSError" || re.Message != "fs.put /x: permission denied" {
		t.Fatalf("write after peer abort: %v, want the peer's OSError", err)
	}
	if _, err := io.ReadAll(d); !errors.As(err, &re) {
		t.Fatalf("read after peer abort: %v", err)
	}

	l2, d2 := pair(t, r, nil)
	d2.Write([]byte("last words"))
	d2.Close()
	got, err := io.ReadAll(l2)
	if err != nil || string(got) != "last words" {
		t.Fatalf("read after peer close: %q, %v", got, err)
	}
	if _, err := l2.Write([]byte("x")); err == nil || !strings.Contains(err.Error(), "closed by peer") {
		t.Fatalf("write after peer close: %v, want closed by peer", err)
	}
	// A receiver that read everything may close before its sender
	// half-closes: that CloseWrite has nothing left to do.
	if err := l2.CloseWrite(); err != nil {
		t.Fatalf("CloseWrite after peer close: %v", err)
	}
}

func TestByteStreamBadAddr(t *testing.T) {
	r := newMaster(t)
	if _, err := r.DialByteStream(testCtx(t), StreamAddr{Context: 0, Handle: 5, Window: 1, MaxChunk: 1}, nil); err == nil {
		t.Fatal("dial to a reserved handle succeeded")
	}
	// A listener that is gone: the dialer's first operation fails.
	l, err := r.NewByteStream(r.Myself(), nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr()
	l.Close()
	d, err := r.DialByteStream(testCtx(t), addr, nil)
	if err == nil {
		defer d.Close()
		_, err = io.ReadAll(d)
	}
	if err == nil || !strings.Contains(err.Error(), "invalid handle") {
		t.Fatalf("dial to a closed listener: %v, want invalid handle", err)
	}
}

// streamTo opens a stream to c and starts fn in c on it.
func streamTo(t *testing.T, r *Router, c *Context, fn string, opts *ByteStreamOptions) *ByteStream {
	t.Helper()
	s, err := r.NewByteStream(c, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := c.Call(testCtx(t), nil, fn, s.Addr()); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestByteStreamChildEcho(t *testing.T) {
	r := newMaster(t)
	ctx := testCtx(t)
	c, err := r.Connect(ctx, "local", nil)
	if err != nil {
		t.Fatal(err)
	}
	s := streamTo(t, r, c, "test.bsecho", nil)
	data := randomBytes(t, 24<<20)
	errc := make(chan error, 1)
	go func() {
		_, err := s.Write(data)
		if err == nil {
			err = s.CloseWrite()
		}
		errc <- err
	}()
	got, err := io.ReadAll(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("echo differs: %d bytes back, want %d", len(got), len(data))
	}
}

func TestByteStreamViaSmallMessages(t *testing.T) {
	r := NewMaster(Options{MaxMessageSize: MinMaxMessageSize})
	t.Cleanup(r.Close)
	ctx := testCtx(t)
	hop, err := r.Connect(ctx, "local", nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := r.Connect(ctx, "local", &ConnectOptions{Via: hop})
	if err != nil {
		t.Fatal(err)
	}
	s := streamTo(t, r, leaf, "test.bssink", &ByteStreamOptions{Window: 64 << 10})
	data := randomBytes(t, 2<<20)
	if _, err := s.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := s.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(s)
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(data)
	if !bytes.Equal(got, want[:]) {
		t.Fatalf("sha256 from the leaf %x, want %x", got, want)
	}
}

func TestByteStreamPeerDies(t *testing.T) {
	r := newMaster(t)
	ctx := testCtx(t)
	c, err := r.Connect(ctx, "local", nil)
	if err != nil {
		t.Fatal(err)
	}
	s := streamTo(t, r, c, "test.bsidle", &ByteStreamOptions{Window: 8 << 10})
	readErr := make(chan error, 1)
	go func() {
		_, err := s.Read(make([]byte, 10))
		readErr <- err
	}()
	time.AfterFunc(100*time.Millisecond, func() { r.Disconnect(c) })
	select {
	case err := <-readErr:
		var se *StreamError
		if !errors.As(err, &se) || !strings.Contains(err.Error(), msgRespondentDisconnect) {
			t.Fatalf("read from a dead peer: %v, want StreamError %q", err, msgRespondentDisconnect)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("read did not fail after the peer died")
	}
	if _, err := s.Write(make([]byte, 100<<10)); err == nil {
		t.Fatal("write to a dead peer succeeded")
	}
}

func BenchmarkByteStreamChild(b *testing.B) {
	r := NewMaster(Options{})
	defer r.Close()
	ctx := context.Background()
	c, err := r.Connect(ctx, "local", nil)
	if err != nil {
		b.Fatal(err)
	}
	s, err := r.NewByteStream(c, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := c.Call(ctx, nil, "test.bssink", s.Addr()); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	s.CloseWrite()
	io.ReadAll(s)
}

// partialReader returns its data in reads of varying sizes, like a pipe.
type partialReader struct {
	data []byte
	i    int
}

func (r *partialReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	r.i++
	n := min(len(p), len(r.data), 1+(r.i*7919)%(100<<10))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

func TestByteStreamReadFrom(t *testing.T) {
	r := newMaster(t)
	l, d := pair(t, r, &ByteStreamOptions{Window: 64 << 10})
	data := randomBytes(t, 3<<20+5)
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(l)
		got <- b
	}()
	n, err := d.ReadFrom(&partialReader{data: data})
	if err != nil || n != int64(len(data)) {
		t.Fatalf("ReadFrom: %d, %v; want %d, nil", n, err, len(data))
	}
	// io.Copy uses ReadFrom too, and the stream goes on after it.
	if _, err := io.Copy(d, strings.NewReader("tail")); err != nil {
		t.Fatal(err)
	}
	d.CloseWrite()
	want := append(data, "tail"...)
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("received %d bytes, want %d (equal: false)", len(b), len(want))
	}

	// A reader's error stops ReadFrom; what it read before is sent.
	l2, d2 := pair(t, r, nil)
	boom := errors.New("boom")
	n, err = d2.ReadFrom(io.MultiReader(strings.NewReader("before"), iotestErrReader{boom}))
	if err != boom || n != 6 {
		t.Fatalf("ReadFrom of a failing reader: %d, %v; want 6, boom", n, err)
	}
	d2.CloseWrite()
	if b, err := io.ReadAll(l2); err != nil || string(b) != "before" {
		t.Fatalf("received %q, %v", b, err)
	}
	// After CloseWrite, ReadFrom fails at once.
	if _, err := d2.ReadFrom(strings.NewReader("x")); !errors.Is(err, ErrStreamClosed) {
		t.Fatalf("ReadFrom after CloseWrite: %v, want ErrStreamClosed", err)
	}
}

type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }

func TestByteStreamReadChunk(t *testing.T) {
	r := newMaster(t)
	const window = 256 << 10
	l, d := pair(t, r, &ByteStreamOptions{Window: window})
	if _, err := l.ReadChunk(testCtx(t), 0); err == nil {
		t.Fatal("ReadChunk of 0 bytes succeeded")
	}
	data := randomBytes(t, 8<<20)
	done := make(chan error, 1)
	go func() {
		// Writes of 40,000 bytes: each its own frame in a chunk buffer.
		var err error
		for p := data; len(p) > 0 && err == nil; p = p[min(len(p), 40000):] {
			_, err = d.Write(p[:min(len(p), 40000)])
		}
		if err == nil {
			err = d.CloseWrite()
		}
		done <- err
	}()
	// Chunks held without Release keep their credit: the writer stops
	// after one window.
	var held [][]byte
	total := 0
	for total < window {
		c, err := l.ReadChunk(testCtx(t), 30000)
		if err != nil {
			t.Fatal(err)
		}
		if len(c) > 30000 {
			t.Fatalf("ReadChunk(30000) returned %d bytes", len(c))
		}
		held = append(held, c)
		total += len(c)
	}
	time.Sleep(50 * time.Millisecond)
	if b := l.Buffered(); b != 0 {
		t.Fatalf("%d bytes arrived beyond the window while %d were held", b, total)
	}
	// Releasing a quarter of the window lets the sender reuse only the
	// buffers of what was released: the chunks still held stay intact
	// while it sends more. Then every later chunk is checked before its
	// release.
	off, i := 0, 0
	for ; off < window/4; i++ {
		c := held[i]
		if !bytes.Equal(c, data[off:off+len(c)]) {
			t.Fatalf("held chunk at %d changed", off)
		}
		off += len(c)
		l.Release(len(c))
	}
	time.Sleep(50 * time.Millisecond)
	if l.Buffered() == 0 {
		t.Fatal("the sender sent nothing after a quarter of the window was released")
	}
	for _, c := range held[i:] {
		if !bytes.Equal(c, data[off:off+len(c)]) {
			t.Fatalf("held chunk at %d changed while the sender went on", off)
		}
		off += len(c)
		l.Release(len(c))
	}
	for {
		c, err := l.ReadChunk(testCtx(t), 1<<20)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(c, data[off:off+len(c)]) {
			t.Fatalf("chunk at %d differs", off)
		}
		off += len(c)
		l.Release(len(c))
	}
	if off != len(data) {
		t.Fatalf("read %d bytes, want %d", off, len(data))
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("Release of more than held did not panic")
			}
		}()
		l.Release(1)
	}()
}

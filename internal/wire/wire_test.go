package wire

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestFrameRoundTrip(t *testing.T) {
	var b bytes.Buffer
	bw := bufio.NewWriterSize(&b, 4096)
	frames := []Frame{
		{Header: Header{Dst: 1, Src: 2, Auth: 3, Handle: 1000, ReplyTo: 1001}, Data: []byte("hello")},
		{Header: Header{Dst: 7}, Data: nil},
		{Header: Header{Dst: 9, Handle: 5}, Data: []byte{0x5a}, More: []string{strings.Repeat("x", 10000), "end"}},
	}
	for i := range frames {
		if err := WriteFrame(bw, &frames[i]); err != nil {
			t.Fatal(err)
		}
	}
	bw.Flush()
	raw := b.Bytes()
	for _, r := range []io.Reader{bufio.NewReader(bytes.NewReader(raw)), bytes.NewReader(raw)} {
		for _, want := range frames {
			h, p, err := ReadFrame(r, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			whole := append(append([]byte(nil), want.Data...), strings.Join(want.More, "")...)
			if h != want.Header || !bytes.Equal(p, whole) {
				t.Fatalf("read %+v %d bytes, want %+v %d bytes", h, len(p), want.Header, len(whole))
			}
		}
		if _, _, err := ReadFrame(r, 1<<20); err != io.EOF {
			t.Fatalf("after the last frame: %v, want io.EOF", err)
		}
	}
	if got := AppendFrame(nil, &frames[2]); !bytes.Equal(got, raw[len(raw)-len(got):]) {
		t.Fatal("AppendFrame differs from WriteFrame")
	}
}

func TestReadFrameErrors(t *testing.T) {
	good := AppendFrame(nil, &Frame{Header: Header{Src: 4}, Data: []byte("0123456789")})
	for n := 1; n < len(good); n++ {
		_, _, err := ReadFrame(bytes.NewReader(good[:n]), 100)
		want := "reading frame header: unexpected EOF"
		if n >= HeaderSize {
			want = "reading 10-byte frame payload: unexpected EOF"
		}
		if err == nil || err.Error() != want {
			t.Fatalf("cut at %d: %v, want %q", n, err, want)
		}
	}
	bad := append([]byte("HT"), good[2:]...)
	if _, _, err := ReadFrame(bytes.NewReader(bad), 100); !errors.Is(err, ErrCorrupt) ||
		err.Error() != "corrupt stream: bad frame magic 0x4854 (want 0x6d73)" {
		t.Fatalf("bad magic: %v", err)
	}
	_, _, err := ReadFrame(bufio.NewReader(bytes.NewReader(good)), 9)
	if !errors.Is(err, ErrTooLarge) || err.Error() != "message too large: frame of 10 bytes (max 9 bytes) from context 4" {
		t.Fatalf("oversized: %v", err)
	}
}

// pipeLink is a link whose writer is a pipe the test reads (or not) and
// whose reader is a pipe the test writes.
type pipeLink struct {
	*Link
	peerR *os.File // what the link writes
	peerW *os.File // what the link reads
	got   chan Header
}

func newPipeLink(t *testing.T, limit int) *pipeLink {
	t.Helper()
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	l := New(Config{Reader: inR, Writer: outW, QueueLimit: limit, MaxFrame: func() int { return 1 << 20 },
		Release: func() { inR.Close(); outW.Close() }})
	p := &pipeLink{Link: l, peerR: outR, peerW: inW, got: make(chan Header, 100)}
	l.Start(func(h Header, _ []byte, _ *Buf) { p.got <- h })
	t.Cleanup(func() {
		l.Close(nil)
		outR.Close()
		inW.Close()
		l.Wait()
	})
	return p
}

func TestLinkDelivers(t *testing.T) {
	p := newPipeLink(t, 0)
	for i := range 3 {
		if _, err := p.peerW.Write(AppendFrame(nil, &Frame{Header: Header{Handle: uint32(i)}})); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		if h := <-p.got; h.Handle != uint32(i) {
			t.Fatalf("frame %d has handle %d", i, h.Handle)
		}
	}
	ctx := context.Background()
	for i := range 3 {
		if err := p.Send(ctx, Frame{Header: Header{Handle: uint32(10 + i)}, Data: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		h, d, err := ReadFrame(p.peerR, 100)
		if err != nil || h.Handle != uint32(10+i) || string(d) != "x" {
			t.Fatalf("frame %d: %+v %q %v", i, h, d, err)
		}
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// The peer's end closing ends the link with io.EOF.
	p.peerW.Close()
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the link did not end at EOF")
	}
	if p.Err() != io.EOF {
		t.Fatalf("Err = %v, want io.EOF", p.Err())
	}
	if err := p.Send(ctx, Frame{}); err != io.EOF {
		t.Fatalf("Send after the end: %v, want io.EOF", err)
	}
}

// A peer that stops reading fills the queue: TrySend refuses at once,
// Send waits for its context, and neither blocks the other direction.
func TestLinkQueueBound(t *testing.T) {
	const limit = 256 << 10
	p := newPipeLink(t, limit)
	big := make([]byte, 64<<10)
	accepted := 0
	for {
		err := p.TrySend(Frame{Data: big}, 0)
		if err == ErrFull {
			// Full for good once the writer is stuck in a write: then
			// nothing it took drains any more.
			queued := p.Queued()
			time.Sleep(50 * time.Millisecond)
			if p.Queued() == queued && p.TrySend(Frame{Data: big}, 0) == ErrFull {
				break
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		accepted += HeaderSize + len(big)
		if accepted > 64<<20 {
			t.Fatal("a stalled peer's queue took 64 MiB")
		}
	}
	// The pipe's buffer, the writer's batch and the queue: bounded.
	if accepted > 2*(limit+len(big)+HeaderSize)+PipeSize {
		t.Fatalf("accepted %d bytes for a peer that reads nothing", accepted)
	}
	// Extra room takes a small frame past the limit, once.
	if err := p.TrySend(Frame{Data: []byte("dead")}, 1<<10); err != nil {
		t.Fatalf("a control frame with extra room: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := p.Send(ctx, Frame{Data: []byte("x")}); err != context.DeadlineExceeded {
		t.Fatalf("Send to a full queue: %v, want its context's deadline", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Send waited %s past a 100 ms deadline", d)
	}
	// Reading still works while the writer is stuck.
	p.peerW.Write(AppendFrame(nil, &Frame{Header: Header{Handle: 77}}))
	select {
	case h := <-p.got:
		if h.Handle != 77 {
			t.Fatalf("got handle %d", h.Handle)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a stuck writer blocked the reader")
	}
	// Once the peer reads, Send gets through and everything arrives.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		io.Copy(io.Discard, p.peerR)
	}()
	if err := p.Send(context.Background(), Frame{Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	fctx, fcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer fcancel()
	if err := p.Flush(fctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	p.Close(errors.New("done here"))
	p.Wait()
	if err := p.Err(); err == nil || err.Error() != "done here" {
		t.Fatalf("Err = %v, want the first cause", err)
	}
	p.Close(errors.New("second cause"))
	if err := p.Err(); err.Error() != "done here" {
		t.Fatalf("Err after a second Close = %v", err)
	}
	p.peerR.Close()
	wg.Wait()
}

// A frame larger than the limit goes into an empty queue: any frame the
// size limit allows can be sent.
func TestLinkLargeFrame(t *testing.T) {
	p := newPipeLink(t, 4096)
	done := make(chan []byte, 1)
	go func() {
		_, d, _ := ReadFrame(p.peerR, 1<<20)
		done <- d
	}()
	big := bytes.Repeat([]byte("y"), 512<<10)
	if err := p.TrySend(Frame{Data: big}, 0); err != nil {
		t.Fatal(err)
	}
	if d := <-done; !bytes.Equal(d, big) {
		t.Fatalf("read %d bytes back", len(d))
	}
}

// WaitExited returns once the process has exited, and cmd.Wait then
// reaps it.
func TestWaitExited(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sh, "-c", "sleep 0.2; exit 3")
	pidfd := PrepareWait(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	WaitExited(pidfd)
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("WaitExited returned after %s, before the process exited", d)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("Wait: %v, want exit status 3", err)
	}
	if *pidfd != -1 {
		t.Fatalf("pidfd %d left open", *pidfd)
	}
}

package core

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestPipeReader: a NewPipeReader waits for data in the poller, returns
// every byte in order and io.EOF once the writer closes; a blocking
// descriptor is read as it is.
func TestPipeReader(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	pr := NewPipeReader(r)
	if _, ok := pr.(*pipeReader); !ok {
		t.Fatalf("NewPipeReader of a pipe is %T", pr)
	}
	data := make([]byte, 3<<20)
	rand.Read(data)
	go func() {
		for rest := data; len(rest) > 0; {
			n := min(len(rest), 100<<10)
			w.Write(rest[:n])
			rest = rest[n:]
			time.Sleep(time.Millisecond)
		}
		w.Close()
	}()
	got, err := io.ReadAll(pr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, differing from the %d written", len(got), len(data))
	}

	// Closing the read end wakes a reader waiting in the poller.
	r2, w2, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	done := make(chan error, 1)
	go func() {
		_, err := NewPipeReader(r2).Read(make([]byte, 10))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	r2.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("read after close succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("closing the pipe did not wake its reader")
	}

	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if pr := NewPipeReader(f); pr != io.Reader(f) {
		t.Fatalf("NewPipeReader of a regular file is %T, want the file", pr)
	}
}

// TestPipeChunks: one read of a pipeReader asks for at most pipeChunk
// bytes, and one writev of an fdWriter takes at most pipeChunk bytes in
// at most maxIovec pieces, whatever it is given (see pipeChunk).
func TestPipeChunks(t *testing.T) {
	r, w := grownPipe(t)
	defer w.Close()
	data := make([]byte, pipeChunk+4096)
	rand.Read(data)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4*pipeChunk)
	n, err := NewPipeReader(r).Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != pipeChunk || !bytes.Equal(buf[:n], data[:n]) {
		t.Fatalf("one Read with %d bytes in the pipe returned %d, want the first %d", len(data), n, pipeChunk)
	}

	fw := newFDWriter(w)
	big := make([]byte, 3*pipeChunk)
	small := make([][]byte, 2*maxIovec)
	for i := range small {
		small[i] = []byte{byte(i)}
	}
	for _, c := range []struct {
		name   string
		bufs   [][]byte
		pieces int
		bytes  int
	}{
		{"header and a large payload", [][]byte{make([]byte, 26), big}, 2, pipeChunk},
		{"one large piece", [][]byte{big}, 1, pipeChunk},
		{"an empty piece first", [][]byte{nil, big}, 2, pipeChunk},
		{"many small pieces", small, maxIovec, maxIovec},
		{"less than a chunk", [][]byte{make([]byte, 10), make([]byte, 20)}, 2, 30},
	} {
		before := fmt.Sprint(len(c.bufs), len(c.bufs[len(c.bufs)-1]))
		iov := fw.chunk(c.bufs)
		total := 0
		for _, b := range iov {
			total += len(b)
		}
		if len(iov) != c.pieces || total != c.bytes {
			t.Errorf("%s: chunk gave %d pieces, %d bytes; want %d, %d", c.name, len(iov), total, c.pieces, c.bytes)
		}
		if after := fmt.Sprint(len(c.bufs), len(c.bufs[len(c.bufs)-1])); after != before {
			t.Errorf("%s: chunk changed its argument (%s, was %s)", c.name, after, before)
		}
	}
}

// grownPipe returns a pipe whose buffer has grown to streamPipeSize
// (growPipe), closing its read end when the test ends; the write end is
// the caller's, a non-blocking descriptor as newFDWriter wants.
func grownPipe(t *testing.T) (r, w *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	growPipe(w)
	size := 0
	rc, err := w.SyscallConn() // not w.Fd(), which makes the descriptor blocking
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(fd uintptr) { size, err = unix.FcntlInt(fd, unix.F_GETPIPE_SZ, 0) })
	if err != nil || size < streamPipeSize {
		t.Fatalf("pipe of %d bytes (%v), want %d", size, err, streamPipeSize)
	}
	if newFDWriter(w) == nil {
		t.Fatal("os.Pipe's write end is not a non-blocking fd")
	}
	return r, w
}

package core

import (
	"bytes"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
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

//go:build linux

package core

import (
	"bytes"
	"crypto/rand"
	"io"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// lentCount is how many pieces w has lent and not taken back.
func lentCount(w *fdWriter) int {
	w.lend.mu.Lock()
	defer w.lend.mu.Unlock()
	return len(w.lend.lent)
}

func isLender(w *fdWriter) bool {
	lenders.mu.Lock()
	defer lenders.mu.Unlock()
	_, ok := lenders.w[w]
	return ok
}

// TestLendLargePieces: a piece of spliceMin bytes or more goes to a pipe
// by vmsplice and stays referenced until the reader has read all of it;
// what the reader gets is the piece, in order with the copied pieces
// around it.
func TestLendLargePieces(t *testing.T) {
	r, w := grownPipe(t)
	fw := newFDWriter(w)
	head := []byte("head")
	big := make([]byte, 3*spliceMin+123)
	rand.Read(big)
	tail := []byte("tail")
	want := append(append(append([]byte(nil), head...), big...), tail...)

	got := make(chan []byte, 1)
	read := make(chan int, 1) // how much the reader has read so far, when asked
	proceed := make(chan struct{})
	go func() {
		var all []byte
		buf := make([]byte, 64<<10)
		for len(all) < len(want)/2 {
			n, err := r.Read(buf[:min(len(buf), len(want)/2-len(all))])
			if err != nil {
				break
			}
			all = append(all, buf[:n]...)
		}
		read <- len(all)
		<-proceed
		rest, _ := io.ReadAll(io.LimitReader(r, int64(len(want)-len(all))))
		got <- append(all, rest...)
	}()
	done := make(chan error, 1)
	go func() { done <- fw.writevAll([][]byte{head, big, tail}) }()

	// Half read: the writer waits for room, and lends on.
	<-read
	time.Sleep(50 * time.Millisecond)
	if lentCount(fw) == 0 || !isLender(fw) {
		t.Fatal("nothing is lent while the reader has read half")
	}
	releaseAllRead()
	if lentCount(fw) == 0 {
		t.Fatal("releaseAllRead took back pieces the reader had not read")
	}
	close(proceed)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	b := <-got
	if !bytes.Equal(b, want) {
		t.Fatalf("read %d bytes, differing from the %d written", len(b), len(want))
	}
	releaseAllRead()
	if n := lentCount(fw); n != 0 {
		t.Fatalf("%d pieces still lent after the reader read everything", n)
	}
	if isLender(fw) {
		t.Fatal("a writer with nothing lent is still registered")
	}
}

// TestLendKeepsUnreadAfterClose: a pipe closed by the writer while its
// reader still has lent data to read keeps the pieces referenced, and
// the reader still reads them intact.
func TestLendKeepsUnreadAfterClose(t *testing.T) {
	r, w := grownPipe(t)
	fw := newFDWriter(w)
	big := make([]byte, spliceMin)
	rand.Read(big)
	want := bytes.Clone(big)
	if err := fw.writevAll([][]byte{big}); err != nil {
		t.Fatal(err)
	}
	if lentCount(fw) == 0 {
		t.Fatal("a 1 MiB piece was not lent")
	}
	w.Close()
	releaseAllRead()
	if lentCount(fw) == 0 || !isLender(fw) {
		t.Fatal("closing the write end gave back pieces its reader had not read")
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b[len(b)-len(want):], want) {
		t.Fatal("the lent piece read after close differs")
	}
	lenders.mu.Lock()
	delete(lenders.w, fw) // this test's writer only
	lenders.mu.Unlock()
}

// TestLendNotAPipe: a descriptor vmsplice refuses (a socket) gets every
// piece copied, and nothing is lent.
func TestLendNotAPipe(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, b := os.NewFile(uintptr(fds[0]), "a"), os.NewFile(uintptr(fds[1]), "b")
	defer a.Close()
	defer b.Close()
	fw := newFDWriter(a)
	if fw == nil {
		t.Fatal("a non-blocking socket has no fdWriter")
	}
	big := make([]byte, 2*spliceMin)
	rand.Read(big)
	got := make(chan []byte, 1)
	go func() {
		all, _ := io.ReadAll(io.LimitReader(b, int64(len(big))))
		got <- all
	}()
	if err := fw.writevAll([][]byte{big}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(<-got, big) {
		t.Fatal("the socket's reader got other bytes")
	}
	if lentCount(fw) != 0 || !fw.lend.noSplice {
		t.Fatalf("lent %d pieces to a socket (noSplice %v)", lentCount(fw), fw.lend.noSplice)
	}
}

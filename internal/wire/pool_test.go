package wire

import (
	"bufio"
	"bytes"
	"context"
	"testing"
	"time"
)

func TestBufPool(t *testing.T) {
	b := GetBuf(1000)
	if len(b.B) != 1000 || cap(b.B) != PoolSize {
		t.Fatalf("GetBuf(1000): len %d cap %d", len(b.B), cap(b.B))
	}
	b.Free()
	if c := GetBuf(10); c != b {
		t.Error("a freed buffer was not handed out again")
	} else {
		c.Free()
	}
	func() {
		defer func() {
			if r := recover(); r != "wire: buffer freed twice" {
				t.Errorf("second Free: recovered %v", r)
			}
		}()
		b.Free()
	}()
	var none *Buf
	none.Free() // no buffer: nothing to do
}

// Kept buffers go once nothing asks for one for poolIdle.
func TestBufPoolTrims(t *testing.T) {
	GetBuf(1).Free()
	deadline := time.Now().Add(3 * poolIdle)
	for {
		pool.mu.Lock()
		n := len(pool.free)
		pool.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d buffers still kept after %s idle", n, 3*poolIdle)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A large payload is read into a pooled buffer, and a frame sent with one
// frees it once written, not before.
func TestLinkPooledPayloads(t *testing.T) {
	big := bytes.Repeat([]byte("y"), poolMin)
	_, d, buf, err := readFrame(bufio.NewReader(bytes.NewReader(AppendFrame(nil, &Frame{Data: big}))), 1<<20, true)
	if err != nil || buf == nil || !bytes.Equal(d, big) || &d[0] != &buf.B[0] {
		t.Fatalf("a %d-byte payload: buf %v, %v", len(big), buf != nil, err)
	}
	buf.Free()
	if _, _, buf, _ := readFrame(bytes.NewReader(AppendFrame(nil, &Frame{Data: []byte("small")})), 100, true); buf != nil {
		t.Error("a small payload came in a pooled buffer")
	}

	p := newPipeLink(t, 0)
	b := GetBuf(len(big))
	copy(b.B, big)
	if err := p.Send(context.Background(), Frame{Header: Header{Handle: 7}, Data: b.B, Buf: b}); err != nil {
		t.Fatal(err)
	}
	h, d, err := ReadFrame(p.peerR, 1<<20)
	if err != nil || h.Handle != 7 || !bytes.Equal(d, big) {
		t.Fatalf("the pooled frame arrived as %+v, %d bytes, %v", h, len(d), err)
	}
	if err := p.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	pool.mu.Lock()
	freed := b.free
	pool.mu.Unlock()
	if !freed {
		t.Error("the link did not free the buffer of a frame it wrote")
	}
}

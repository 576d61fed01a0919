package core

import (
	"bytes"
	"testing"
)

// TestMakeNoZero checks the non-clearing allocation large payloads are
// read into: exactly n bytes, all of them writable and kept (under -race
// checkptr also checks that the slice lies inside one heap object), and
// a fresh object each time.
func TestMakeNoZero(t *testing.T) {
	for _, n := range []int{1, noZeroMin - 1, noZeroMin, noZeroMin + 1, 3 << 20, 8<<20 + 12345} {
		a := makeNoZero(n)
		if len(a) != n || cap(a) != n {
			t.Fatalf("makeNoZero(%d): len %d cap %d, want %d and %d", n, len(a), cap(a), n, n)
		}
		for i := range a {
			a[i] = byte(i * 7)
		}
		b := makeNoZero(n)
		if &a[0] == &b[0] {
			t.Fatalf("makeNoZero(%d) returned the same memory twice while the first was live", n)
		}
		for i := range b {
			b[i] = 0xff
		}
		for i := range a {
			if a[i] != byte(i*7) {
				t.Fatalf("makeNoZero(%d): byte %d is %#x after writing another buffer, want %#x", n, i, a[i], byte(i*7))
			}
		}
	}
}

// TestPayloadBufferLarge reads a large frame whose payload buffer is not
// cleared: every byte comes from the stream, and a truncated payload is
// an error, never a message.
func TestPayloadBufferLarge(t *testing.T) {
	payload := bytes.Repeat([]byte("mitostar"), (1<<20)/8+3)
	m := &Message{DstID: 1, SrcID: 2, Handle: 3, Data: payload}
	frame := appendFrame(nil, m)
	got, err := ReadMessage(bytes.NewReader(frame), len(payload))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Data, payload) {
		t.Fatalf("large payload differs after the round trip (%d bytes, want %d)", len(got.Data), len(payload))
	}
	if _, err := ReadMessage(bytes.NewReader(frame[:len(frame)-1]), len(payload)); err == nil {
		t.Fatal("a payload one byte short was read as a message")
	}
}

// A call whose arguments were large leaves them for the collector to
// free before the next call runs (collectDropped), as a written large
// result does: the next call that makes a large value then reuses that
// memory instead of faulting in fresh pages.
func TestExecutorNotesLargeArguments(t *testing.T) {
	r := NewMaster(Options{})
	defer r.Close()
	e := newExecutor(r)
	run := func(argBytes int) int64 {
		largeDropped.Store(0)
		p, err := EncodeCallRequest(&CallRequest{Func: "bench.nop", Args: make([]byte, argBytes)})
		if err != nil {
			t.Fatal(err)
		}
		var data []byte
		for _, piece := range p {
			data = append(data, piece...)
		}
		e.run(&Message{Handle: HandleCallFunction, Data: data, router: r})
		return largeDropped.Load()
	}
	if got := run(reuseMin); got < reuseMin {
		t.Fatalf("after a call with %d bytes of arguments, largeDropped = %d, want at least %d", reuseMin, got, reuseMin)
	}
	if got := run(1 << 10); got != 0 {
		t.Fatalf("after a call with 1 KiB of arguments, largeDropped = %d, want 0", got)
	}
	largeDropped.Store(reuseMin)
	collectDropped()
	if got := largeDropped.Load(); got != 0 {
		t.Fatalf("collectDropped left largeDropped at %d, want 0", got)
	}
}

package core

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// Routing, dead messages and handler bookkeeping over in-process streams.

func TestDeadMessageReasons(t *testing.T) {
	r := newMaster(t)
	a := attachRaw(t, r, 5, "raw.5")
	ctx := testCtx(t)

	// No route: refused at the caller with ChannelError.
	_, err := r.ContextByID(77).SendAwait(ctx, &Message{Handle: 1000})
	var ce *ChannelError
	if !errors.As(err, &ce) || ce.Reason != "no route to 77, my ID is 0" {
		t.Fatalf("no route: %v", err)
	}
	// No route for a frame a child sent: a dead message back.
	a.send(&Message{DstID: 77, SrcID: 5, AuthID: 5, Handle: 1000, ReplyTo: 1500})
	if reason := deadReasonOf(t, a.expect(), 5, 1500); reason != "no route to 77, my ID is 0" {
		t.Fatalf("reason %q", reason)
	}
	// Invalid handle.
	a.send(&Message{DstID: 0, SrcID: 5, AuthID: 5, Handle: 54321, ReplyTo: 1501})
	if reason := deadReasonOf(t, a.expect(), 5, 1501); reason != "invalid handle" {
		t.Fatalf("reason %q", reason)
	}
	// A dead message to an invalid handle is dropped, never answered.
	a.send(&Message{DstID: 0, SrcID: 5, AuthID: 5, Handle: 54321, ReplyTo: IsDead, Data: mustMarshal(t, "x")})
	a.expectNone(50 * time.Millisecond)
	// A policy refusal.
	h, _ := r.AddHandler(func(*Message) {}, HandlerOptions{Policy: func(*Message) bool { return false }})
	a.send(&Message{DstID: 0, SrcID: 5, AuthID: 5, Handle: h, ReplyTo: 1502})
	if reason := deadReasonOf(t, a.expect(), 5, 1502); reason != "refused by policy" {
		t.Fatalf("reason %q", reason)
	}
	// A message over the limit between two streams.
	b := attachRaw(t, r, 6, "raw.6")
	r.SetMaxMessageSize(4096)
	a.send(&Message{DstID: 6, SrcID: 5, AuthID: 5, Handle: 1000, ReplyTo: 1503, Data: make([]byte, 4096)})
	if m := b.expect(); len(m.Data) != 4096 {
		t.Fatalf("frame at the limit: %v", m)
	}
	if err := r.SetMaxMessageSize(100); err == nil || err.Error() != "max_message_size must be at least 4096 bytes, got 100" {
		t.Fatalf("SetMaxMessageSize(100): %v", err)
	}
}

func TestOversizedFrameClosesStream(t *testing.T) {
	r, logs := newLoggedMaster(t, Options{MaxMessageSize: 8192})
	a := attachRaw(t, r, 5, "raw.5")
	c := r.ContextByID(5)
	a.send(&Message{DstID: 0, SrcID: 5, AuthID: 5, Handle: 1000, Data: make([]byte, 8193)})
	select {
	case <-c.Disconnected():
	case <-time.After(5 * time.Second):
		t.Fatal("stream stayed open after an oversized frame")
	}
	logs.waitFor(t, "WARNING closed the stream to raw.5 (id 5): it sent a message over the size limit", "frame of 8193 bytes (max 8192 bytes) from context 5")
	if got := c.DisconnectReason(); got != "the respondent Context has disconnected" {
		t.Fatalf("reason %q", got)
	}
	// The peer sees its stream closed.
	select {
	case <-a.done:
	case <-time.After(5 * time.Second):
		t.Fatal("peer not disconnected")
	}
}

func TestRespondentHandlers(t *testing.T) {
	r := newMaster(t)
	a := attachRaw(t, r, 5, "raw.5")
	c := r.ContextByID(5)
	got := make(chan *Message, 4)
	h, err := r.AddHandler(func(m *Message) { got <- m }, HandlerOptions{Respondent: c})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.AddHandler(func(*Message) {}, HandlerOptions{Handle: h}); err == nil || err.Error() != "cannot register a handle that already exists" {
		t.Fatalf("duplicate handle: %v", err)
	}
	once, _ := r.AddHandler(func(m *Message) { got <- m }, HandlerOptions{Once: true})
	a.send(&Message{DstID: 0, SrcID: 5, AuthID: 5, Handle: once, Data: mustMarshal(t, 1)})
	if m := <-got; m.Handle != once || m.IsDead() {
		t.Fatalf("got %v", m)
	}
	a.send(&Message{DstID: 0, SrcID: 5, AuthID: 5, Handle: once, ReplyTo: 1600})
	if reason := deadReasonOf(t, a.expect(), 5, 1600); reason != "invalid handle" {
		t.Fatalf("once handler: second message answered %q", reason)
	}

	a.close()
	select {
	case m := <-got:
		if !m.IsDead() || m.Handle != h || m.DeadReason() != "the respondent Context has disconnected" {
			t.Fatalf("got %v (%q)", m, m.DeadReason())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("respondent handler not told of the disconnect")
	}
	if r.DelHandler(h) {
		t.Fatal("respondent handler still registered after its respondent died")
	}
	// A handler registered after the respondent died is told at once.
	h2, _ := r.AddHandler(func(m *Message) { got <- m }, HandlerOptions{Respondent: c})
	if m := <-got; !m.IsDead() || m.Handle != h2 {
		t.Fatalf("late handler got %v", m)
	}
	// Sends to it fail locally.
	_, err = c.SendAwait(testCtx(t), &Message{Handle: 1000})
	var ce *ChannelError
	if !errors.As(err, &ce) || ce.Reason != "no route to 5, my ID is 0" {
		t.Fatalf("send to a dead context: %v", err)
	}
}

func TestStreamCloseKeepsFirstCause(t *testing.T) {
	r := newMaster(t)
	attachRaw(t, r, 5, "raw.5")
	r.mu.Lock()
	s := r.children[5]
	r.mu.Unlock()
	first := errors.New("first")
	s.close(first)
	s.close(errors.New("second"))
	s.Close()
	s.Close()
	if s.Err() != first {
		t.Fatalf("Err = %v, want the first cause", s.Err())
	}
	err := s.send(context.Background(), &Message{DstID: 5, Handle: 1000})
	var se *StreamError
	if !errors.As(err, &se) || se.Err != first || err.Error() != "send to raw.5: first" {
		t.Fatalf("send after close: %v", err)
	}
}

func TestPeerEOFEndsStreamWithEOF(t *testing.T) {
	r := newMaster(t)
	a := attachRaw(t, r, 5, "raw.5")
	r.mu.Lock()
	s := r.children[5]
	r.mu.Unlock()
	a.w.Close()
	select {
	case <-s.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("stream open after EOF")
	}
	if s.Err() != io.EOF {
		t.Fatalf("Err = %v, want EOF", s.Err())
	}
	// Garbage closes a stream with the decoder's reason.
	b := attachRaw(t, r, 6, "raw.6")
	r.mu.Lock()
	s6 := r.children[6]
	r.mu.Unlock()
	b.w.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
	<-s6.Done()
	if !strings.HasPrefix(s6.Err().Error(), "corrupt stream: bad frame magic 0x4854") {
		t.Fatalf("Err = %v", s6.Err())
	}
}

func TestInProcessTreeRoutes(t *testing.T) {
	r := newMaster(t)
	c1 := linkChild(t, r, 1, Options{})
	c2 := linkChild(t, c1, 2, Options{})
	c3 := linkChild(t, c2, 3, Options{})
	linkChild(t, c1, 4, Options{})
	waitUntil(t, 5*time.Second, "routes announced", func() bool {
		return hasRoute(r, 1) && hasRoute(r, 2) && hasRoute(r, 3) && hasRoute(r, 4) && hasRoute(c1, 3)
	})
	ctx := testCtx(t)
	for _, id := range []uint32{1, 2, 3, 4} {
		var out []uint32
		if err := r.ContextByID(id).Call(ctx, &out, "test.echo", id); err != nil || len(out) != 1 || out[0] != id {
			t.Fatalf("call %d: %v %v", id, out, err)
		}
	}
	// A grandchild can send to the master (not call it).
	rv, _ := r.NewReceiver(ReceiverOptions{})
	defer rv.Close()
	NewSender(c3.ContextByID(0), rv.Handle()).Send(context.Background(), "from 3")
	var s string
	if err := rv.GetData(ctx, &s); err != nil || s != "from 3" {
		t.Fatalf("%q %v", s, err)
	}
	// Closing 2 removes 2 and 3 everywhere, and fails their Contexts.
	c2.Close()
	for _, id := range []uint32{2, 3} {
		select {
		case <-r.ContextByID(id).Disconnected():
		case <-time.After(5 * time.Second):
			t.Fatalf("context %d still alive in the master", id)
		}
		if hasRoute(r, id) || hasRoute(c1, id) {
			t.Fatalf("route to %d kept", id)
		}
	}
	<-c3.Done()
	if err := r.ContextByID(4).Call(ctx, nil, "test.pid"); err != nil {
		t.Fatalf("sibling after the close: %v", err)
	}
}

// Streams over a transport that is not a file descriptor (net.Pipe:
// synchronous, no kernel buffer) go through the writer goroutine only.
func TestStreamOverNetPipe(t *testing.T) {
	r := newMaster(t)
	pc, cc := net.Pipe()
	child := newRouter(7, []uint32{0}, Options{Name: "piped"})
	child.parent = newStream(child, 0, "parent", true, r.MaxMessageSize(), bufio.NewReader(cc), cc, func() { cc.Close() })
	s := newStream(r, 7, "piped", false, r.MaxMessageSize(), bufio.NewReader(pc), pc, func() { pc.Close() })
	r.addChild(s)
	child.parent.start()
	t.Cleanup(child.Close)
	ctx := testCtx(t)
	c := r.ContextByID(7)
	errs := make(chan error, 50)
	for i := range 50 {
		go func() {
			var out [][]byte
			arg := bytes.Repeat([]byte{byte(i)}, i*1024)
			err := c.Call(ctx, &out, "test.echo", arg)
			if err == nil && !bytes.Equal(out[0], arg) {
				err = fmt.Errorf("call %d: echo differs", i)
			}
			errs <- err
		}()
	}
	for range 50 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

package core

import (
	"errors"
	"testing"
	"time"
)

// Security checks on inbound frames (docs/protocol.md), over in-process streams
// whose far end the test writes raw frames on.

func TestSpoofedAuthIDRefused(t *testing.T) {
	r, logs := newLoggedMaster(t, Options{})
	a := attachRaw(t, r, 5, "raw.5")
	b := attachRaw(t, r, 6, "raw.6")
	called := make(chan struct{}, 1)
	h, _ := r.AddHandler(func(m *Message) {
		if !m.IsDead() {
			called <- struct{}{}
		}
	}, HandlerOptions{})

	// Claiming to be the master itself, then a sibling.
	for i, auth := range []uint32{0, 6} {
		a.send(&Message{DstID: 0, SrcID: 5, AuthID: auth, Handle: h, ReplyTo: 2000 + uint32(i)})
		if reason := deadReasonOf(t, a.expect(), 5, 2000+uint32(i)); reason != "refused by policy" {
			t.Fatalf("auth_id %d: reason %q", auth, reason)
		}
	}
	logs.waitFor(t, "refused message", `why="bad auth_id: got 0 via stream to raw.5 (id 5)"`)
	logs.waitFor(t, "refused message", `why="bad auth_id: got 6 via stream to raw.5 (id 5)"`)
	select {
	case <-called:
		t.Fatal("a frame with a spoofed auth_id reached its handler")
	default:
	}
	b.expectNone(50 * time.Millisecond)
}

func TestSpoofedSrcIDRefused(t *testing.T) {
	r, logs := newLoggedMaster(t, Options{})
	a := attachRaw(t, r, 5, "raw.5")
	b := attachRaw(t, r, 6, "raw.6")
	h, _ := r.AddHandler(func(m *Message) {
		if !m.IsDead() {
			t.Error("a frame with a spoofed src_id reached its handler")
		}
	}, HandlerOptions{})

	// src_id of the sibling: the dead reply goes back to the stream it
	// came from, addressed to the neighbour there, never to the sibling.
	a.send(&Message{DstID: 0, SrcID: 6, AuthID: 5, Handle: h, ReplyTo: 2001})
	if reason := deadReasonOf(t, a.expect(), 5, 2001); reason != "refused by policy" {
		t.Fatalf("reason %q", reason)
	}
	logs.waitFor(t, "refused message", `why="bad src_id: got 6 via stream to raw.5 (id 5)"`)
	// src_id of the master.
	a.send(&Message{DstID: 6, SrcID: 0, AuthID: 5, Handle: 1000, ReplyTo: 2002})
	if reason := deadReasonOf(t, a.expect(), 5, 2002); reason != "refused by policy" {
		t.Fatalf("reason %q", reason)
	}
	b.expectNone(50 * time.Millisecond)

	// A frame without reply_to is dropped silently (and logged).
	a.send(&Message{DstID: 6, SrcID: 6, AuthID: 6, Handle: 1000})
	a.expectNone(50 * time.Millisecond)
	b.expectNone(time.Millisecond)
}

func TestSpoofedIDsBelowAChild(t *testing.T) {
	// master → child 1 (in-process) → raw grandchild 2: the grandchild
	// cannot speak for its grandparent or its parent.
	r := newMaster(t)
	lc := newLogCapture()
	c1 := linkChild(t, r, 1, Options{Logger: slogOf(lc)})
	g := attachRaw(t, c1, 2, "raw.2")
	waitUntil(t, 5*time.Second, "route to 2 in the master", func() bool { return hasRoute(r, 2) })
	for i, auth := range []uint32{0, 1} {
		g.send(&Message{DstID: 1, SrcID: 2, AuthID: auth, Handle: HandleShutdown, ReplyTo: 3000 + uint32(i)})
		if reason := deadReasonOf(t, g.expect(), 2, 3000+uint32(i)); reason != "refused by policy" {
			t.Fatalf("reason %q", reason)
		}
	}
	lc.waitFor(t, "bad auth_id: got 0 via stream to raw.2 (id 2)")
	select {
	case <-c1.Done():
		t.Fatal("a spoofed SHUTDOWN closed the child")
	case <-time.After(50 * time.Millisecond):
	}
	// The grandchild's honest messages are routed up: a reply to a
	// master's receiver arrives.
	rv, _ := r.NewReceiver(ReceiverOptions{})
	defer rv.Close()
	g.send(&Message{DstID: 0, SrcID: 2, AuthID: 2, Handle: rv.Handle(), Data: mustMarshal(t, "hello")})
	var s string
	if err := rv.GetData(testCtx(t), &s); err != nil || s != "hello" {
		t.Fatalf("honest frame: %q, %v", s, err)
	}
}

func TestChildCannotCallParentOrSibling(t *testing.T) {
	r := newMaster(t)
	sib := linkChild(t, r, 1, Options{})
	a := attachRaw(t, r, 2, "raw.2")
	req, _ := EncodeCallRequest(&CallRequest{Func: "test.pid", Args: mustMarshal(t, []any{})})
	for _, dst := range []uint32{0, 1} {
		for _, handle := range []uint32{HandleCallFunction, HandleShutdown} {
			a.send(&Message{DstID: dst, SrcID: 2, AuthID: 2, Handle: handle, ReplyTo: 4000 + handle, Data: req.Join()})
			if reason := deadReasonOf(t, a.expect(), 2, 4000+handle); reason != "refused by policy" {
				t.Fatalf("handle %d into %d: reason %q", handle, dst, reason)
			}
		}
	}
	select {
	case <-r.Done():
		t.Fatal("a child's SHUTDOWN closed the master")
	case <-sib.Done():
		t.Fatal("a sibling's SHUTDOWN closed a child")
	case <-time.After(50 * time.Millisecond):
	}
	// The master itself can call both.
	ctx := testCtx(t)
	if err := r.ContextByID(1).Call(ctx, nil, "test.pid"); err != nil {
		t.Fatal(err)
	}
}

func TestRouteAnnouncementsChecked(t *testing.T) {
	r, logs := newLoggedMaster(t, Options{})
	a := attachRaw(t, r, 5, "raw.5")
	b := attachRaw(t, r, 6, "raw.6")
	// A child cannot claim the master's id, or a sibling's.
	for _, id := range []uint32{0, 6} {
		a.send(&Message{DstID: 0, SrcID: 5, AuthID: 5, Handle: HandleAddRoute, Data: mustMarshal(t, RouteUpdate{ID: id})})
		logs.waitFor(t, "refused ADD_ROUTE", "stream to raw.5 (id 5)")
	}
	// Nor declare a sibling gone.
	a.send(&Message{DstID: 0, SrcID: 5, AuthID: 5, Handle: HandleDelRoute, Data: mustMarshal(t, RouteUpdate{ID: 6})})
	logs.waitFor(t, "refused DEL_ROUTE for a context not behind the sender", `id="6"`)
	if got := r.ContextByID(6).DisconnectReason(); got != "" {
		t.Fatalf("sibling marked gone: %q", got)
	}
	// Routing to 6 still goes to 6.
	r.ContextByID(6).Send(&Message{Handle: 1234})
	if m := b.expect(); m.Handle != 1234 || m.DstID != 6 {
		t.Fatalf("got %v", m)
	}
	// A real announcement from 5 is accepted and propagated no further
	// than the master (which has no parent).
	a.send(&Message{DstID: 0, SrcID: 5, AuthID: 5, Handle: HandleAddRoute, Data: mustMarshal(t, RouteUpdate{ID: 50, Name: "grandchild"})})
	waitUntil(t, 5*time.Second, "route to 50", func() bool { return hasRoute(r, 50) })
	if n := r.ContextByID(50).Name(); n != "grandchild" {
		t.Fatalf("name = %q", n)
	}
	// ...and 5 can withdraw it.
	a.send(&Message{DstID: 0, SrcID: 5, AuthID: 5, Handle: HandleDelRoute, Data: mustMarshal(t, RouteUpdate{ID: 50, Reason: "gone fishing"})})
	select {
	case <-r.ContextByID(50).Disconnected():
	case <-time.After(5 * time.Second):
		t.Fatal("DEL_ROUTE ignored")
	}
	if got := r.ContextByID(50).DisconnectReason(); got != "gone fishing" || hasRoute(r, 50) {
		t.Fatalf("reason %q, route kept %v", got, hasRoute(r, 50))
	}
}

func TestUnidirectional(t *testing.T) {
	r, logs := newLoggedMaster(t, Options{Unidirectional: true})
	a := attachRaw(t, r, 5, "raw.5")
	b := attachRaw(t, r, 6, "raw.6")
	a.send(&Message{DstID: 6, SrcID: 5, AuthID: 5, Handle: 1000, ReplyTo: 1001})
	want := "routing mode prevents forward of message from context 5 to context 6 via context 0"
	if reason := deadReasonOf(t, a.expect(), 5, 1001); reason != want {
		t.Fatalf("reason %q", reason)
	}
	logs.waitFor(t, "refused message between children: router is unidirectional")
	b.expectNone(50 * time.Millisecond)

	// Replies to the master still flow, through an intermediate hop too:
	// master → child 1 → grandchild 2, all unidirectional.
	c1 := linkChild(t, r, 1, Options{Unidirectional: true})
	c2 := linkChild(t, c1, 2, Options{Unidirectional: true})
	waitUntil(t, 5*time.Second, "route to 2", func() bool { return hasRoute(r, 2) })
	ctx := testCtx(t)
	var echo []string
	if err := r.ContextByID(2).Call(ctx, &echo, "test.echo", "up"); err != nil || len(echo) != 1 || echo[0] != "up" {
		t.Fatalf("call through a unidirectional hop: %v, %v", echo, err)
	}
	// The grandchild's own message to a sibling of its parent is refused
	// at the master.
	rv := c2.newReceiver(true, nil)
	c2.Route(&Message{DstID: 5, Handle: 1000, ReplyTo: rv.Handle()})
	_, err := rv.Get(ctx, true)
	var ce *ChannelError
	if !errors.As(err, &ce) || ce.Reason != "routing mode prevents forward of message from context 2 to context 5 via context 0" {
		t.Fatalf("grandchild to sibling: %v", err)
	}
	a.expectNone(20 * time.Millisecond)
	// Turned off, sibling traffic flows.
	r.SetUnidirectional(false)
	a.send(&Message{DstID: 6, SrcID: 5, AuthID: 5, Handle: 1000})
	if m := b.expect(); m.SrcID != 5 || m.Handle != 1000 {
		t.Fatalf("got %v", m)
	}
}

package core

import (
	"context"
	"errors"
	"fmt"
	"strings"
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
	logs.waitFor(t, "WARNING refused a message from stream to raw.5 (id 5)", "bad auth_id: got 0 via stream to raw.5 (id 5)")
	logs.waitFor(t, "WARNING refused a message from stream to raw.5 (id 5)", "bad auth_id: got 6 via stream to raw.5 (id 5)")
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
	logs.waitFor(t, "WARNING refused a message", "bad src_id: got 6 via stream to raw.5 (id 5)")
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
	r, lc := newLoggedMaster(t, Options{})
	c1 := linkChild(t, r, 1, Options{})
	g := attachRaw(t, c1, 2, "raw.2")
	waitUntil(t, 5*time.Second, "route to 2 in the master", func() bool { return hasRoute(r, 2) })
	for i, auth := range []uint32{0, 1} {
		g.send(&Message{DstID: 1, SrcID: 2, AuthID: auth, Handle: handleShutdown, ReplyTo: 3000 + uint32(i)})
		if reason := deadReasonOf(t, g.expect(), 2, 3000+uint32(i)); reason != "refused by policy" {
			t.Fatalf("reason %q", reason)
		}
	}
	lc.waitFor(t, "[child.1] WARNING", "bad auth_id: got 0 via stream to raw.2 (id 2)")
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
	req, _, _ := encodeCallRequest(&CallRequest{Func: "test.pid", Args: mustMarshal(t, []any{})})
	for _, dst := range []uint32{0, 1} {
		for _, handle := range []uint32{handleCallFunction, handleShutdown} {
			a.send(&Message{DstID: dst, SrcID: 2, AuthID: 2, Handle: handle, ReplyTo: 4000 + handle, Data: req})
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
		a.send(&Message{DstID: 0, SrcID: 5, AuthID: 5, Handle: handleAddRoute, Data: mustMarshal(t, routeUpdate{ID: id})})
		logs.waitFor(t, fmt.Sprintf("WARNING refused ADD_ROUTE for context %d", id), "from raw.5 (context 5)")
	}
	// Nor declare a sibling gone.
	a.send(&Message{DstID: 0, SrcID: 5, AuthID: 5, Handle: handleDelRoute, Data: mustMarshal(t, routeUpdate{ID: 6})})
	logs.waitFor(t, "WARNING refused DEL_ROUTE for raw.6 (context 6) from raw.5 (context 5): it is not behind that stream")
	if got := r.ContextByID(6).DisconnectReason(); got != "" {
		t.Fatalf("sibling marked gone: %q", got)
	}
	// Routing to 6 still goes to 6.
	r.ContextByID(6).Send(context.Background(), &Message{Handle: 1234})
	if m := b.expect(); m.Handle != 1234 || m.DstID != 6 {
		t.Fatalf("got %v", m)
	}
	// An id the master never handed out through 5's stream is refused,
	// and so is an id granted through it whose parent is elsewhere.
	a.send(&Message{DstID: 0, SrcID: 5, AuthID: 5, Handle: handleAddRoute, Data: mustMarshal(t, routeUpdate{ID: 50, Name: "grandchild", Parent: 5})})
	logs.waitFor(t, "WARNING refused ADD_ROUTE for context 50", "the id was not allocated through that stream")
	grant(r, 5, 50)
	a.send(&Message{DstID: 0, SrcID: 5, AuthID: 5, Handle: handleAddRoute, Data: mustMarshal(t, routeUpdate{ID: 50, Name: "grandchild", Parent: 6})})
	logs.waitFor(t, "WARNING refused ADD_ROUTE for context 50", "its parent 6 is not behind that stream")
	// An id from a block granted to the sibling 6, not used yet, is 6's
	// alone: 5 cannot steal the route to the context 6 will start there.
	grant(r, 6, 60)
	a.send(&Message{DstID: 0, SrcID: 5, AuthID: 5, Handle: handleAddRoute, Data: mustMarshal(t, routeUpdate{ID: 60, Name: "stolen", Parent: 5})})
	logs.waitFor(t, "WARNING refused ADD_ROUTE for context 60", "the id was not allocated through that stream")
	if hasRoute(r, 60) {
		t.Fatal("5 took the route to an id granted to 6")
	}
	// A real announcement from 5 is accepted and propagated no further
	// than the master (which has no parent).
	a.send(&Message{DstID: 0, SrcID: 5, AuthID: 5, Handle: handleAddRoute, Data: mustMarshal(t, routeUpdate{ID: 50, Name: "grandchild", Parent: 5})})
	waitUntil(t, 5*time.Second, "route to 50", func() bool { return hasRoute(r, 50) })
	if n := r.ContextByID(50).Name(); n != "grandchild" {
		t.Fatalf("name = %q", n)
	}
	// ...and 5 can withdraw it.
	a.send(&Message{DstID: 0, SrcID: 5, AuthID: 5, Handle: handleDelRoute, Data: mustMarshal(t, routeUpdate{ID: 50, Reason: "gone fishing"})})
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
	logs.waitFor(t, "this router is unidirectional")
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
	c2.Route(context.Background(), &Message{DstID: 5, Handle: 1000, ReplyTo: rv.Handle()})
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

// A reply, and anything else for a handle that waits for one context, is
// accepted only from that context: a sibling, a grandchild elsewhere in
// the tree or a context with unidirectional routing that forges a value,
// a remote error or a dead message for the master's pending call is
// dropped and logged, and the real reply still arrives.
func TestForgedRepliesDropped(t *testing.T) {
	for _, unidir := range []bool{false, true} {
		t.Run(fmt.Sprintf("unidirectional=%v", unidir), func(t *testing.T) {
			r, logs := newLoggedMaster(t, Options{Unidirectional: unidir})
			ctx := testCtx(t)
			target := linkChild(t, r, 1, Options{})
			other := linkChild(t, r, 3, Options{})
			forger := attachRaw(t, r, 2, "forger")
			grandForger := attachRaw(t, other, 30, "grand-forger")
			waitUntil(t, 5*time.Second, "route to 30", func() bool { return hasRoute(r, 30) })
			_ = target

			args := mustMarshal(t, []float64{0.5})
			rv, err := r.ContextByID(1).CallAsync(ctx, &CallRequest{Func: "test.sleep", Args: args})
			if err != nil {
				t.Fatal(err)
			}
			handle := rv.Handle()
			forged := [][]byte{
				encodeCallReply(mustMarshal(t, "forged"), nil),
				encodeCallReply(nil, &RemoteError{Kind: CallError, Message: "forged error"}),
			}
			forge := func(p *rawPeer, h uint32) {
				for _, data := range forged {
					p.send(&Message{DstID: 0, SrcID: p.id, AuthID: p.id, Handle: h, Data: data})
				}
				p.send(&Message{DstID: 0, SrcID: p.id, AuthID: p.id, Handle: h, ReplyTo: IsDead, Data: mustMarshal(t, "forged dead")})
			}
			forge(grandForger, handle)
			logs.waitFor(t, "WARNING dropped a message from grand-forger (context 30)", "reply from unexpected context")
			forge(forger, handle)
			logs.waitFor(t, "WARNING dropped a message from forger (context 2)", "reply from unexpected context")
			for h := handle - 5; h <= handle+5; h++ {
				forge(forger, h)
				forge(grandForger, h)
			}
			m, err := rv.Get(ctx, true)
			if err != nil {
				t.Fatalf("the pending call got %v", err)
			}
			val, err := DecodeCallReply(m)
			var s string
			if err != nil || Unmarshal(val, &s) != nil || s != "slept" {
				t.Fatalf("the pending call got %q, %v; want the target's own reply", s, err)
			}

			// The same for a synchronous call.
			done := make(chan error, 1)
			go func() {
				var out string
				err := r.ContextByID(1).Call(ctx, &out, "test.sleep", 0.3)
				if err == nil && out != "slept" {
					err = fmt.Errorf("call returned %q", out)
				}
				done <- err
			}()
			time.Sleep(50 * time.Millisecond)
			for h := handle; h <= handle+20; h++ {
				forger.send(&Message{DstID: 0, SrcID: 2, AuthID: 2, Handle: h, Data: forged[0]})
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A child can take at most maxBlocksPerStream blocks of ids; past that
// its ALLOCATE_ID is refused, and the master's counter never wraps.
func TestIDAllocationBounded(t *testing.T) {
	r := newMaster(t)
	a := attachRaw(t, r, 5, "greedy")
	const asks = maxBlocksPerStream + 5
	go func() {
		for i := range asks {
			a.send(&Message{DstID: 0, SrcID: 5, AuthID: 5, Handle: handleAllocateID, ReplyTo: uint32(10000 + i)})
		}
	}()
	var blocks, refused int
	var last idBlock
	for range asks {
		m := a.expect()
		if m.IsDead() {
			if want := "allocating context ids: greedy (context 5) has taken 1024 blocks of 1000 ids, the most one child may take"; m.DeadReason() != want {
				t.Fatalf("refusal %q, want %q", m.DeadReason(), want)
			}
			refused++
			continue
		}
		var b idBlock
		if err := m.Decode(&b); err != nil {
			t.Fatal(err)
		}
		if b.Count != idBlockSize || b.Start <= last.Start {
			t.Fatalf("block %+v after %+v", b, last)
		}
		last = b
		blocks++
	}
	if blocks != maxBlocksPerStream || refused != 5 {
		t.Fatalf("%d blocks and %d refusals, want %d and 5", blocks, refused, maxBlocksPerStream)
	}

	// Near the end of the id space the master refuses instead of wrapping.
	r.mu.Lock()
	r.idCounter = maxContextID - idBlockSize
	r.idNext, r.idEnd = 0, 0
	r.mu.Unlock()
	if _, err := r.AllocateID(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	r.idNext = r.idEnd
	r.mu.Unlock()
	if _, err := r.AllocateID(testCtx(t)); err == nil || !strings.Contains(err.Error(), "all 4 billion ids of this tree are taken") {
		t.Fatalf("allocation past the end: %v", err)
	}
}

// A frame that would go back out on the stream it came in on is dropped
// with a warning, never echoed back.
func TestLoopBackDropped(t *testing.T) {
	r, logs := newLoggedMaster(t, Options{})
	a := attachRaw(t, r, 5, "raw.5")
	a.send(&Message{DstID: 5, SrcID: 5, AuthID: 5, Handle: 1000, ReplyTo: 1001})
	logs.waitFor(t, "WARNING dropped a message from stream to raw.5 (id 5) for context 5: it would go back the way it came")
	a.expectNone(100 * time.Millisecond)
}

// What send_async and a Receiver made with respondent= wait for is taken
// only from that context: a sibling's forgeries on the handle are dropped
// with a warning, and the respondent's own messages still arrive.
func TestForgedMessagesToRespondentHandles(t *testing.T) {
	r, logs := newLoggedMaster(t, Options{})
	ctx := testCtx(t)
	target := linkChild(t, r, 1, Options{})
	forger := attachRaw(t, r, 2, "forger")
	waitUntil(t, 5*time.Second, "route to 2", func() bool { return hasRoute(r, 2) })
	forge := func(h uint32) {
		forger.send(&Message{DstID: 0, SrcID: 2, AuthID: 2, Handle: h, Data: mustMarshal(t, "forged")})
		forger.send(&Message{DstID: 0, SrcID: 2, AuthID: 2, Handle: h, ReplyTo: IsDead, Data: mustMarshal(t, "forged dead")})
	}
	want := func(rv *Receiver, s string) {
		t.Helper()
		m, err := rv.Get(ctx, true)
		var got string
		if err != nil || m.Decode(&got) != nil || got != s {
			t.Fatalf("got %q, %v; want %q from the respondent", got, err, s)
		}
	}

	// A Receiver with respondent=.
	rv, err := r.NewReceiver(ReceiverOptions{Respondent: r.ContextByID(1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rv.Close()
	forge(rv.Handle())
	logs.waitFor(t, "WARNING dropped a message from forger (context 2)", fmt.Sprintf("for handle %d: reply from unexpected context", rv.Handle()))
	if err := target.Route(ctx, &Message{DstID: 0, Handle: rv.Handle(), Data: mustMarshal(t, "real")}); err != nil {
		t.Fatal(err)
	}
	want(rv, "real")

	// send_async: the reply handle waits for the context sent to. The
	// target answers from a handler of its own, after the forgeries.
	answer := make(chan *Message, 1)
	h, err := target.AddHandler(func(m *Message) { answer <- m }, HandlerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	reply, err := r.ContextByID(1).SendAsync(ctx, &Message{Handle: h, Data: mustMarshal(t, "ping")}, false)
	if err != nil {
		t.Fatal(err)
	}
	defer reply.Close()
	ping := <-answer
	forge(reply.Handle())
	logs.waitFor(t, "WARNING dropped a message from forger (context 2)", fmt.Sprintf("for handle %d: reply from unexpected context", reply.Handle()))
	if err := ping.Reply(ctx, "pong"); err != nil {
		t.Fatal(err)
	}
	want(reply, "pong")
}

package core

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mitostar/mitostar/internal/wire"
)

func init() {
	// test.heap returns the bytes of this process's heap in use.
	RegisterFunc("test.heap", func(ctx context.Context, c *Call) (any, error) {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse, nil
	})
}

// A child that stops reading its stream must not delay its siblings, and
// what piles up for it must stay bounded.
func TestStoppedChildDoesNotBlockSiblings(t *testing.T) {
	r := newMaster(t)
	ctx := testCtx(t)
	stuck := connectLocal(t, r, nil, "stuck")
	other := connectLocal(t, r, nil, "other")
	pid := pidOf(t, stuck)
	pidOf(t, other)
	killOnCleanup(t, pid)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	// Flood the stopped child with 256 KiB messages, each send bounded by
	// a short deadline, until the bounded queue refuses one.
	const msgSize = 256 << 10
	type result struct {
		sent int
		err  error
	}
	flood := make(chan result, 1)
	go func() {
		sent := 0
		for {
			// A fresh payload each time, as real traffic has: what the
			// queue holds is what the heap holds.
			data := make([]byte, msgSize)
			sctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			err := stuck.Send(sctx, &Message{Handle: 5000, Data: data})
			cancel()
			if err != nil {
				flood <- result{sent, err}
				return
			}
			sent += msgSize
		}
	}()

	// Meanwhile calls to the sibling stay fast.
	worst := callLatency(t, other, 50)
	if worst > time.Second {
		t.Fatalf("a call to the sibling took %s while a child was stopped", worst)
	}

	var res result
	select {
	case res = <-flood:
	case <-time.After(10 * time.Second):
		t.Fatal("a send to the stopped child ignored its deadline")
	}
	if !isTimeout(res.err) || !strings.HasPrefix(res.err.Error(), "send to stuck") {
		t.Fatalf("flood ended with %v, want a TimeoutError", res.err)
	}
	// What was accepted fits in the queue, the writer's batch and the
	// pipe's buffer.
	if limit := 2*(wire.DefaultQueueLimit+msgSize) + 2<<20; res.sent > limit {
		t.Fatalf("accepted %d bytes for a stopped child (bound %d)", res.sent, limit)
	}
	if res.sent < wire.DefaultQueueLimit/2 {
		t.Fatalf("accepted only %d bytes before refusing", res.sent)
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > 3*wire.DefaultQueueLimit {
		t.Fatalf("heap grew by %d MiB while messages piled up", grew>>20)
	}
	t.Logf("accepted %d MiB, heap %+d MiB, slowest sibling call %s", res.sent>>20,
		(int64(after.HeapInuse)-int64(before.HeapInuse))>>20, worst)

	// Once it runs again, everything queued drains and it answers.
	syscall.Kill(pid, syscall.SIGCONT)
	if got := pidOf(t, stuck); got != pid {
		t.Fatalf("pid %d after SIGCONT", got)
	}
}

// callLatency makes n calls into c and returns the slowest.
func callLatency(t testing.TB, c *Context, n int) time.Duration {
	t.Helper()
	var worst time.Duration
	for range n {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := c.Call(ctx, nil, "test.pid")
		cancel()
		if err != nil {
			t.Fatalf("call to %s: %v", c.Name(), err)
		}
		worst = max(worst, time.Since(start))
	}
	return worst
}

// A context that stops reading, behind one or two relays, never delays
// the traffic between any other contexts: its relays, its sibling and
// the master. What is sent towards it waits in its relay's bounded queue;
// past that the relay refuses it, and a sender expecting a reply hears
// which context is not reading. Memory in the relay stays bounded.
func TestStoppedContextBehindRelays(t *testing.T) {
	for _, hops := range []int{1, 2} {
		for _, mode := range []string{"calls", "messages"} {
			t.Run(fmt.Sprintf("%dhop/%s", hops, mode), func(t *testing.T) {
				t.Parallel()
				testStoppedBehindRelays(t, hops, mode)
			})
		}
	}
}

func testStoppedBehindRelays(t *testing.T, hops int, mode string) {
	r := newMaster(t)
	ctx := testCtx(t)
	var relays []*Context
	var via *Context
	for i := range hops {
		via = connectLocal(t, r, via, fmt.Sprintf("relay%d", i+1))
		relays = append(relays, via)
	}
	mid := relays[len(relays)-1]
	stuck := connectLocal(t, r, mid, "stuck")
	other := connectLocal(t, r, mid, "other")
	pid := pidOf(t, stuck)
	killOnCleanup(t, pid)
	var heapBefore uint64
	if err := mid.Call(ctx, &heapBefore, "test.heap"); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}

	// 12 MiB for the stopped context, in 256 KiB messages: more than the
	// relay's queue takes.
	const msgSize, total = 256 << 10, 12 << 20
	arg := make([]byte, msgSize)
	var replies []*Receiver
	start := time.Now()
	for range total / msgSize {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		switch mode {
		case "calls":
			a, err := Marshal([]any{arg})
			if err != nil {
				t.Fatal(err)
			}
			rv, err := stuck.CallAsync(sctx, &CallRequest{Func: "test.echo", Args: a, Timeout: 60})
			if err != nil {
				t.Fatalf("call_async towards the stopped context: %v", err)
			}
			replies = append(replies, rv)
		case "messages":
			if err := stuck.Send(sctx, &Message{Handle: 5000, Data: arg}); err != nil {
				t.Fatalf("send towards the stopped context: %v", err)
			}
		}
		cancel()
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("sending 12 MiB towards the stopped context took %s", d)
	}

	// Every other context answers at once: the relays, the sibling, and
	// the master's own traffic with them.
	for _, c := range append(relays, other) {
		if worst := callLatency(t, c, 20); worst > time.Second {
			t.Fatalf("a call to %s took %s while %s was stopped", c.Name(), worst, stuck.Name())
		}
	}

	if mode == "calls" {
		// The calls the relay could not queue fail at once, naming the
		// context that is not reading and where they waited.
		want := fmt.Sprintf("stuck (context %d) is not reading its messages", stuck.ID)
		refused := 0
		for _, rv := range replies {
			gctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			_, err := rv.Get(gctx, true)
			cancel()
			var ce *ChannelError
			if errors.As(err, &ce) {
				if !strings.HasPrefix(ce.Reason, want) || !strings.HasSuffix(ce.Reason, "in "+mid.Name()) {
					t.Fatalf("refused call: %q, want %q ... in %s", ce.Reason, want, mid.Name())
				}
				refused++
			}
		}
		if refused == 0 || refused == len(replies) {
			t.Fatalf("%d of %d calls refused: want the relay to queue some and refuse the rest", refused, len(replies))
		}
	}

	var heapAfter uint64
	if err := mid.Call(ctx, &heapAfter, "test.heap"); err != nil {
		t.Fatal(err)
	}
	if grew := int64(heapAfter) - int64(heapBefore); grew > 3*wire.DefaultQueueLimit {
		t.Fatalf("the relay's heap grew by %d MiB", grew>>20)
	}

	// Once it runs again, what was queued drains and it answers (a call
	// made while the relay's queue is still full is refused).
	syscall.Kill(pid, syscall.SIGCONT)
	var lastErr error
	waitUntil(t, 10*time.Second, "the resumed context answering", func() bool {
		var got int
		lastErr = stuck.Call(ctx, &got, "test.pid")
		if lastErr == nil && got != pid {
			t.Fatalf("pid %d after SIGCONT", got)
		}
		return lastErr == nil
	})
	if mode == "calls" {
		// Queued calls were served.
		for _, rv := range replies {
			gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			m, err := rv.Get(gctx, true)
			cancel()
			var ce *ChannelError
			if errors.As(err, &ce) {
				continue
			}
			if err != nil {
				t.Fatalf("a queued call: %v", err)
			}
			if _, err := DecodeCallReply(m); err != nil {
				t.Fatalf("a queued call: %v", err)
			}
		}
	}
}

func init() {
	// test.flood(handle, n, size) sends n messages of size bytes to handle
	// in the master, without waiting for anything.
	RegisterFunc("test.flood", func(ctx context.Context, c *Call) (any, error) {
		var a struct {
			_             struct{} `cbor:",toarray"`
			Handle, N, Sz int
		}
		if err := c.Args(&a); err != nil {
			return nil, err
		}
		s := NewSender(c.Router.ContextByID(0), uint32(a.Handle))
		for range a.N {
			if err := s.SendRaw(context.Background(), mustEncodeBytes(a.Sz)); err != nil {
				return nil, err
			}
		}
		// One more that asks for a reply, to hear why it was refused.
		m, err := c.Router.ContextByID(0).SendAwait(ctx, &Message{Handle: uint32(a.Handle), Data: mustEncodeBytes(a.Sz)})
		if err == nil {
			return "accepted: " + m.String(), nil
		}
		return err.Error(), nil
	})
}

func mustEncodeBytes(n int) []byte {
	b, _ := Marshal(make([]byte, n))
	return b
}

// A receiver nobody reads holds a bounded number of bytes: a child
// flooding it with 200,000 messages of 1 KiB does not grow the master
// past the bound, and a sender that expects a reply hears why.
func TestUnreadReceiverIsBounded(t *testing.T) {
	r := newMaster(t)
	ctx := testCtx(t)
	c := connectLocal(t, r, nil, "flooder")
	// 1 KiB messages, and empty ones: each message counts, not only its
	// payload.
	for _, size := range []int{1024, 0} {
		t.Run(fmt.Sprintf("%dB", size), func(t *testing.T) {
			rv, err := r.NewReceiver(ReceiverOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer rv.Close()
			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			var res string
			if err := c.Call(ctx, &res, "test.flood", rv.Handle(), 200000, size); err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("receiver %d in master holds", rv.Handle())
			if !strings.HasPrefix(res, want) || !strings.HasSuffix(res, "bytes not yet read: refused") {
				t.Fatalf("the last send got %q, want %q ...", res, want)
			}
			if q := rv.queued.Load(); q > receiverQueueLimit+2048 {
				t.Fatalf("the receiver holds %d bytes", q)
			}
			runtime.GC()
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > 2*receiverQueueLimit {
				t.Fatalf("the master's heap grew by %d MiB", grew>>20)
			}
			// What it holds is still readable, in order.
			if _, err := rv.Get(ctx, false); err != nil {
				t.Fatal(err)
			}
		})
	}
}

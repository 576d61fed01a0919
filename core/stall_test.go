package core

import (
	"context"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

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
			err := stuck.SendContext(sctx, &Message{Handle: 5000, Data: data})
			cancel()
			if err != nil {
				flood <- result{sent, err}
				return
			}
			sent += msgSize
		}
	}()

	// Meanwhile calls to the sibling stay fast.
	var worst time.Duration
	for range 50 {
		start := time.Now()
		pidOf(t, other)
		worst = max(worst, time.Since(start))
	}
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
	// What was accepted fits in the queue plus the pipe's buffer.
	if limit := streamQueueBytes + 2<<20; res.sent > limit {
		t.Fatalf("accepted %d bytes for a stopped child (bound %d)", res.sent, limit)
	}
	if res.sent < streamQueueBytes/2 {
		t.Fatalf("accepted only %d bytes before refusing", res.sent)
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > 3*streamQueueBytes {
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

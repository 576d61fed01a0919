package runtime

import (
	"context"
	"testing"

	"github.com/mitostar/mitostar/core"
)

// A call's thread serves the next call only when nothing cancelled it
// and no canceller can reach it any more: a cancellation meant for one
// call must never land on the next.
func TestCallThreadReuse(t *testing.T) {
	r := core.NewMaster(core.Options{})
	defer r.Close()
	rt := New(r, Options{})

	run := func(parent context.Context, cancelIt func(*callKey, *runningCall)) (reused bool) {
		thread := rt.callThread("call test")
		ctx, cancel := context.WithCancelCause(parent)
		defer cancel(nil)
		st, done := rt.startThread(thread, ctx, parent)
		key := callKey{src: 1, handle: 1000}
		rc := &runningCall{cancel: cancel, thread: thread, st: st}
		if !rt.calls.start(key, rc) {
			t.Fatal("the call was cancelled before it started")
		}
		if cancelIt != nil {
			cancelIt(&key, rc)
		}
		rt.calls.finish(key)
		if done() {
			rt.keepThread(thread)
			return true
		}
		return false
	}

	first := rt.callThread("call first")
	rt.keepThread(first)
	if !run(r.Lifetime(), nil) {
		t.Fatal("a call that ended normally did not leave its thread")
	}
	if got := rt.callThread("call next"); got != first || got.Name != "call next" {
		t.Fatalf("the next call got thread %p (%q), want the kept %p", got, got.Name, first)
	}

	// Cancelled by its caller while it ran.
	if run(r.Lifetime(), func(k *callKey, _ *runningCall) { rt.calls.cancel(*k) }) {
		t.Error("a thread its caller cancelled was kept")
	}
	// Its deadline (a parent context) ended while it ran.
	parent, cancelParent := context.WithCancel(r.Lifetime())
	if run(parent, func(*callKey, *runningCall) { cancelParent() }) {
		t.Error("a thread whose parent context ended was kept")
	}
	// A canceller that found the call before it finished (and cancels it
	// after): the mark made under the registry's lock keeps the thread
	// from the next call.
	var late *runningCall
	if run(r.Lifetime(), func(k *callKey, rc *runningCall) {
		rt.calls.mu.Lock()
		late = rt.calls.running[*k]
		late.st.Cancelled.Store(true) // what cancel does under the lock
		rt.calls.mu.Unlock()
	}) {
		t.Error("a thread a canceller had found was kept")
	}
	if late == nil {
		t.Fatal("the call was not registered")
	}
	gone, end := context.WithCancel(context.Background())
	end()
	cancelThread(gone, late.thread, late.st) // the late cancel
	if next := rt.callThread("call after"); next == late.thread {
		t.Error("the next call got the thread a late cancel reached")
	}
	if rt.spareThread.Load() != nil {
		t.Error("a spare thread is left after the cancelled calls")
	}
}

package builtins

import (
	"testing"

	"github.com/mitostar/mitostar/core"
)

// TestTrackCallSweepsAnsweredCalls: call_async in a long loop keeps the
// tracker small, forgets only answered calls, and sweeps rarely enough
// that the loop stays linear.
func TestTrackCallSweepsAnsweredCalls(t *testing.T) {
	r := core.NewMaster(core.Options{})
	t.Cleanup(r.Close)
	st := &ThreadState{}
	newRV := func() *core.Receiver {
		t.Helper()
		rv, err := r.NewReceiver(core.ReceiverOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return rv
	}

	// Calls still waiting are never forgotten.
	var pending []*core.Receiver
	for range 300 {
		rv := newRV()
		pending = append(pending, rv)
		st.trackCall(r.Myself(), rv, false)
	}
	// Answered (here: closed) calls are swept once the map grows.
	sweeps, last := 0, 0
	for range 20000 {
		rv := newRV()
		rv.Close()
		st.trackCall(r.Myself(), rv, false)
		if n := len(st.calls); n < last {
			sweeps++
		}
		last = len(st.calls)
	}
	for i, rv := range pending {
		if st.calls[i].rv != rv {
			t.Fatalf("call %d, still waiting for its answer, was forgotten or moved", i)
		}
	}
	if n := len(st.calls); n > 2*(300+minCallsPrune) {
		t.Errorf("tracker holds %d calls after 20000 answered ones; want it swept", n)
	}
	// Each sweep leaves the 300 pending calls; the next waits for the map
	// to double, so 20000 calls take a few dozen sweeps, not thousands.
	if sweeps == 0 || sweeps > 100 {
		t.Errorf("tracker swept %d times over 20000 calls; want between 1 and 100", sweeps)
	}
	// A thread's own call is forgotten when it is answered, once.
	own := newRV()
	st.trackCall(r.Myself(), own, true)
	if !st.untrackCall(own) || st.untrackCall(own) {
		t.Errorf("untrackCall of a tracked call: want true once, then false")
	}
	for _, rv := range pending {
		rv.Close()
	}
}

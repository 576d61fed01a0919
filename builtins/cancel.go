package builtins

import (
	"context"
	"slices"
	"time"

	"github.com/mitostar/mitostar/core"
)

// A thread that is cancelled (the REPL's Ctrl-C, the _timeout of the
// call it serves) cancels the calls it started that have not been
// answered: each callee is asked, through the service below, to cancel
// the thread that serves the call. The runtime serves it in every
// context; a call is known there by its caller and its reply handle.

// CancelService is the service that cancels calls in a context.
const CancelService = "mitostar.call"

// CancelRequest is the keyword arguments of CancelService's method
// "cancel": the reply handle of the call to cancel (its caller is the
// sender of the request).
type CancelRequest struct {
	Handle uint32 `cbor:"handle"`
}

// cancelWait bounds how long asking a callee to cancel a call may take.
const cancelWait = 10 * time.Second

// minCallsPrune is the fewest tracked calls at which trackCall sweeps
// out those already answered.
const minCallsPrune = 256

// A trackedCall is a call a thread started and has not seen answered.
type trackedCall struct {
	rv     *core.Receiver // where its reply goes
	target *core.Context
	// owned: the receiver is the thread's own (ctx.call), not a value the
	// script holds (call_async); whoever takes the call from the tracker
	// closes it.
	owned bool
}

// trackCall records a call the thread started, until untrackCall or
// CancelCalls.
func (st *ThreadState) trackCall(target *core.Context, rv *core.Receiver, owned bool) {
	st.callsMu.Lock()
	defer st.callsMu.Unlock()
	if len(st.calls) >= max(st.callsPrune, minCallsPrune) {
		// call_async in a loop: forget the calls already answered. The
		// next sweep waits until the list has doubled, so a loop of n
		// calls costs O(n) sweeping in all.
		kept := st.calls[:0]
		for _, tc := range st.calls {
			if tc.owned || (tc.rv.Empty() && !tc.rv.Closed()) {
				kept = append(kept, tc)
			}
		}
		clear(st.calls[len(kept):])
		st.calls = kept
		st.callsPrune = 2 * len(st.calls)
	}
	st.calls = append(st.calls, trackedCall{rv: rv, target: target, owned: owned})
}

// untrackCall forgets a call; it reports whether the call was still
// tracked (CancelCalls had not taken it). The call is searched from the
// newest: a thread waits for its own call (ctx.call) right after
// starting it.
func (st *ThreadState) untrackCall(rv *core.Receiver) bool {
	st.callsMu.Lock()
	defer st.callsMu.Unlock()
	for i := len(st.calls) - 1; i >= 0; i-- {
		if st.calls[i].rv == rv {
			st.calls = slices.Delete(st.calls, i, i+1)
			return true
		}
	}
	return false
}

// CancelCalls asks the callee of every call the thread started and has
// not seen answered to cancel it. The requests go out on goroutines of
// the router, each bounded by cancelWait; CancelCalls does not wait.
func CancelCalls(st *ThreadState) {
	st.callsMu.Lock()
	calls := st.calls
	st.calls = nil
	st.callsMu.Unlock()
	for _, tc := range calls {
		switch {
		case tc.rv.Empty() && !tc.rv.Closed():
			cancelCall(tc.target, tc.rv, tc.owned)
		case tc.owned:
			tc.rv.Close()
		}
	}
}

// cancelCall asks target to cancel the call whose reply rv awaits. With
// owned, rv is closed once the call's answer (its cancellation) arrives,
// or cancelWait has passed: a reply to a closed handle would be refused
// with a warning.
func cancelCall(target *core.Context, rv *core.Receiver, owned bool) {
	r := rv.Router()
	if r.Lifetime().Err() != nil {
		if owned {
			rv.Close()
		}
		return // closing: every context below goes anyway
	}
	handle := rv.Handle()
	r.Go(func() {
		ctx, cancel := context.WithTimeout(r.Lifetime(), cancelWait)
		defer cancel()
		err := target.CallService(ctx, nil, CancelService, "cancel", map[string]any{"handle": handle})
		if err != nil && ctx.Err() == nil {
			r.Logger().Debug("cancelling a call", "context", target.Name(), "err", err)
		}
		if owned {
			rv.Get(ctx, true)
			rv.Close()
		}
	})
}

package runtime

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"go.starlark.net/starlark"

	"github.com/mitostar/mitostar/builtins"
	"github.com/mitostar/mitostar/core"
)

// A caller cancels a call it no longer waits for (its thread was
// cancelled) with builtins.CancelService; this context then cancels the
// thread serving the call, or, if the call still waits behind another,
// refuses it when its turn comes.

// callKey names a call: its caller and the handle its reply goes to.
type callKey struct {
	src    uint32
	handle uint32
}

// cancelledMemory bounds the cancellations remembered for calls not yet
// running.
const cancelledMemory = 256

// errCancelledByCaller ends a call its caller cancelled.
var errCancelledByCaller = errors.New("cancelled by the caller")

// calls are the Starlark calls this context serves and those its
// callers cancelled before they ran.
type calls struct {
	mu        sync.Mutex
	running   map[callKey]*runningCall
	cancelled map[callKey]bool
	order     []callKey // cancelled, oldest first
}

// A runningCall is a call being served: its thread, whose context
// (st.Ctx) cancel ends.
type runningCall struct {
	cancel context.CancelCauseFunc
	thread *starlark.Thread
	st     *builtins.ThreadState
}

// start registers a call about to run; it reports false when its caller
// already cancelled it.
func (c *calls) start(key callKey, rc *runningCall) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancelled[key] {
		delete(c.cancelled, key)
		return false
	}
	if c.running == nil {
		c.running = map[callKey]*runningCall{}
	}
	c.running[key] = rc
	return true
}

// finish forgets a call that has run.
func (c *calls) finish(key callKey) {
	c.mu.Lock()
	delete(c.running, key)
	c.mu.Unlock()
}

// cancel cancels the call of key, or remembers that it is cancelled.
func (c *calls) cancel(key callKey) {
	c.mu.Lock()
	rc, ok := c.running[key]
	if ok {
		// Marked under c.mu: once finish has run, the call's thread
		// is known to have been cancelled and is not reused for the
		// next call, which this cancellation must not reach.
		rc.st.Cancelled.Store(true)
	} else {
		c.remember(key)
	}
	c.mu.Unlock()
	if ok {
		rc.cancel(errCancelledByCaller)
		cancelThread(rc.st.Ctx, rc.thread, rc.st)
	}
}

// remember notes that the call of key, not yet running, is cancelled.
func (c *calls) remember(key callKey) {
	if c.cancelled == nil {
		c.cancelled = map[callKey]bool{}
	}
	if c.cancelled[key] {
		return
	}
	if len(c.order) >= cancelledMemory {
		delete(c.cancelled, c.order[0])
		c.order = c.order[1:]
	}
	c.cancelled[key] = true
	c.order = append(c.order, key)
}

// installCanceller registers builtins.CancelService: a caller (a
// context with authority over this one, as for calls) cancels a call
// it made.
func (rt *Runtime) installCanceller() {
	err := rt.r.RegisterService(&core.Service{
		Name:    builtins.CancelService,
		Workers: 1,
		Methods: map[string]core.ServiceMethod{
			"cancel": {Fn: func(ctx context.Context, call *core.ServiceCall) (any, error) {
				var req builtins.CancelRequest
				if err := call.Kwargs(&req); err != nil {
					return nil, fmt.Errorf("cancel: %w", err)
				}
				rt.calls.cancel(callKey{src: call.Msg.SrcID, handle: req.Handle})
				return nil, nil
			}},
		},
	})
	if err != nil {
		rt.r.Logger().Error("installing the call canceller", "err", err)
	}
}

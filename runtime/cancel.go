package runtime

import (
	"context"
	"errors"
	"fmt"
	"sync"

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
	running   map[callKey]context.CancelCauseFunc
	cancelled map[callKey]bool
	order     []callKey // cancelled, oldest first
}

// start registers a call about to run and returns its context and the
// function that forgets it; err is set when its caller already
// cancelled it.
func (c *calls) start(ctx context.Context, key callKey) (context.Context, func(), error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancelled[key] {
		delete(c.cancelled, key)
		return nil, nil, errCancelledByCaller
	}
	if c.running == nil {
		c.running = map[callKey]context.CancelCauseFunc{}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	c.running[key] = cancel
	return ctx, func() {
		c.mu.Lock()
		delete(c.running, key)
		c.mu.Unlock()
		cancel(nil)
	}, nil
}

// cancel cancels the call of key, or remembers that it is cancelled.
func (c *calls) cancel(key callKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cancel, ok := c.running[key]; ok {
		cancel(errCancelledByCaller)
		return
	}
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

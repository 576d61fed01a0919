package builtins

import (
	"context"
	"log/slog"

	"go.starlark.net/starlark"

	"github.com/mitostar/mitostar/core"
)

// A callbackQueue runs Starlark callbacks (handlers, signal callbacks,
// Receiver.notify) one at a time, in the order they were queued, each on
// a fresh thread, on a goroutine of its own owned by the router: the
// goroutine that queues one (a stream reader) never waits for Starlark.
// The goroutine ends with the router, or after a callback queued as the
// last one.
type callbackQueue struct {
	r     *core.Router
	rt    Runtime
	what  string // names failures in the log: "handler", "on_disconnect callback", ...
	latch *core.Latch
}

// A callback is one queued call.
type callback struct {
	fn   starlark.Callable
	args starlark.Tuple
	last bool // the queue ends after it (fn may be nil: just the end)
}

func newCallbackQueue(r *core.Router, rt Runtime, what string) *callbackQueue {
	q := &callbackQueue{r: r, rt: rt, what: what, latch: core.NewLatch()}
	r.Go(q.loop)
	return q
}

// put queues fn(*args). A queue that has ended drops it.
func (q *callbackQueue) put(cb callback) { q.latch.Put(cb) }

func (q *callbackQueue) loop() {
	for {
		v, err := q.latch.Get(q.r.Lifetime(), true)
		if err != nil {
			return
		}
		cb := v.(callback)
		if cb.fn != nil {
			runCallback(q.r, q.rt, q.what, q.r.Lifetime(), cb)
		}
		if cb.last {
			q.latch.Close()
			return
		}
	}
}

// runCallback calls cb on a fresh thread bound to ctx and logs its
// failure: nobody else would see it.
func runCallback(r *core.Router, rt Runtime, what string, ctx context.Context, cb callback) {
	thread, done := rt.NewThreadContext(what, ctx)
	defer done()
	if _, err := starlark.Call(thread, cb.fn, cb.args, nil); err != nil {
		r.Emit(slog.LevelError, what+" failed: "+Backtrace(err))
	}
}

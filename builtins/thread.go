package builtins

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"go.starlark.net/starlark"

	"github.com/mitostar/mitostar/core"
)

// ThreadState is what a Starlark thread of mitostar carries: its
// context's router and runtime, the Go context that bounds its blocking
// builtins, and whether the runtime cancelled it. It is one thread-local
// value, so starting a thread (once per call) stays cheap.
type ThreadState struct {
	Router  *core.Router
	Runtime Runtime
	Ctx     context.Context
	// Cancelled is set when the runtime cancels the thread (a call's
	// _timeout): catch must not swallow that.
	Cancelled atomic.Bool
	// Changed counts the operations on this thread that changed their
	// host (MarkChanged); a fan-out reports a host as changed when its
	// call's thread has any.
	Changed atomic.Int64
	// Finished is set when the thread's work is over (the runtime's
	// done function): its Ctx no longer bounds anything.
	Finished atomic.Bool

	// calls are the calls the thread started whose answer it has not
	// seen (cancel.go), oldest first.
	callsMu sync.Mutex
	calls   []trackedCall
	// callsPrune: trackCall sweeps answered calls out of calls when it
	// holds this many (at least minCallsPrune).
	callsPrune int
}

const stateKey = "mitostar"

// SetThreadState attaches st to thread.
func SetThreadState(thread *starlark.Thread, st *ThreadState) { thread.SetLocal(stateKey, st) }

// stateOf returns the thread's state, nil for a thread not set up by mitostar.
func stateOf(thread *starlark.Thread) *ThreadState {
	if thread == nil {
		return nil
	}
	st, _ := thread.Local(stateKey).(*ThreadState)
	return st
}

// mutableState returns the thread's state, attaching an empty one first
// if it has none.
func mutableState(thread *starlark.Thread) *ThreadState {
	st := stateOf(thread)
	if st == nil {
		st = &ThreadState{}
		SetThreadState(thread, st)
	}
	return st
}

// SetRouter attaches the context's router to thread.
func SetRouter(thread *starlark.Thread, r *core.Router) { mutableState(thread).Router = r }

// RouterOf returns the router attached to thread, or an error saying the
// builtin needs one (a thread not started by the runtime).
func RouterOf(thread *starlark.Thread) (*core.Router, error) {
	if st := stateOf(thread); st != nil && st.Router != nil {
		return st.Router, nil
	}
	return nil, fmt.Errorf("no mitostar router on this Starlark thread")
}

// SetRuntime attaches rt to thread.
func SetRuntime(thread *starlark.Thread, rt Runtime) { mutableState(thread).Runtime = rt }

// RuntimeOf returns the runtime attached to thread, nil if none.
func RuntimeOf(thread *starlark.Thread) Runtime { return runtimeOf(thread) }

func runtimeOf(thread *starlark.Thread) Runtime {
	if st := stateOf(thread); st != nil {
		return st.Runtime
	}
	return nil
}

// SetThreadContext attaches ctx to thread: blocking builtins give up when
// it ends (the runtime cancels it together with the thread).
func SetThreadContext(thread *starlark.Thread, ctx context.Context) { mutableState(thread).Ctx = ctx }

// ThreadContext returns the context attached to thread, or Background.
func ThreadContext(thread *starlark.Thread) context.Context {
	if st := stateOf(thread); st != nil && st.Ctx != nil {
		return st.Ctx
	}
	return context.Background()
}

// Cancel stops thread with reason: its next step fails, and catch cannot
// swallow the failure.
func Cancel(thread *starlark.Thread, reason string) {
	mutableState(thread).Cancelled.Store(true)
	thread.Cancel(reason)
}

// Cancelled reports whether the runtime cancelled thread.
func Cancelled(thread *starlark.Thread) bool {
	st := stateOf(thread)
	return st != nil && st.Cancelled.Load()
}

// MarkChanged records that an operation run on thread changed its host.
func MarkChanged(thread *starlark.Thread) {
	if st := stateOf(thread); st != nil {
		st.Changed.Add(1)
	}
}

// ChangedCount returns how many operations run on thread changed their
// host so far.
func ChangedCount(thread *starlark.Thread) int64 {
	if st := stateOf(thread); st != nil {
		return st.Changed.Load()
	}
	return 0
}

// An owner remembers the thread that made or last used a channel value
// (Receiver, Select): a Starlark iterator is not told which thread
// iterates, so `for m in rv` waits with the context of that thread, and
// so ends when that call's _timeout passes or its script is interrupted.
type owner struct{ st atomic.Pointer[ThreadState] }

// use records thread as the value's user.
func (o *owner) use(thread *starlark.Thread) {
	if st := stateOf(thread); st != nil {
		o.st.Store(st)
	}
}

// context is what an iteration waits with: the owning thread's context
// while that thread runs; for a value made by a thread that has ended (in
// an earlier call, or when its module loaded), the context of the call
// its router runs now; else fallback.
func (o *owner) context(fallback context.Context) context.Context {
	st := o.st.Load()
	if st != nil && st.Ctx != nil && !st.Finished.Load() {
		return st.Ctx
	}
	if st != nil && st.Runtime != nil {
		if cur := st.Runtime.CurrentCall(); cur != nil && cur.Ctx != nil && !cur.Finished.Load() {
			return cur.Ctx
		}
	}
	return fallback
}

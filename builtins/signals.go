package builtins

// Signals, as Mitogen's listen/fire: callbacks a script registers for a
// context's disconnection and for shutdowns (docs/reference.md,
// "Signals"), and what a router knows of the contexts it started.

import (
	"context"
	"sync"
	"time"

	"go.starlark.net/starlark"

	"github.com/mitostar/mitostar/core"
)

// routerState is what the builtins keep per router: the contexts it
// started, what it learnt of other contexts' via, the callbacks of its
// signals, its store, the keeper of exec's process groups and the
// Starlark services it activated elsewhere.
type routerState struct {
	r *core.Router

	mu      sync.Mutex
	started map[uint32]bool   // contexts this router started itself (via=None here)
	via     map[uint32]uint32 // context id → the context that started it, learnt from values and context_by_id
	watched map[uint32]bool   // contexts whose disconnection a goroutine waits for

	rt             Runtime
	queue          *callbackQueue                 // runs the callbacks below; made with the first
	ctxDisconnect  map[uint32][]starlark.Callable // ctx.on_disconnect
	ctxShutdown    map[uint32][]starlark.Callable // ctx.on_shutdown
	anyDisconnect  []starlark.Callable            // router.on_disconnect
	routerShutdown []starlark.Callable            // router.on_shutdown
	shutdownOnce   sync.Once                      // router.on_shutdown callbacks run once
	shutdownDone   chan struct{}                  // closed when they have run

	store     *Store              // the context's store (StoreOf)
	keeper    *groupKeeper        // the keeper of exec's process groups (keeperOf)
	activated map[activation]bool // Starlark services activated in other contexts, by call_service
}

// An activation is a Starlark service activated in a context.
type activation struct {
	target uint32
	path   string
}

var (
	statesMu sync.Mutex
	states   = map[*core.Router]*routerState{}
)

// routerStateOf returns r's state, making it at first use; it is forgotten
// when the router has shut down.
func routerStateOf(r *core.Router) *routerState {
	statesMu.Lock()
	defer statesMu.Unlock()
	if rs := states[r]; rs != nil {
		return rs
	}
	rs := &routerState{r: r, started: map[uint32]bool{}, via: map[uint32]uint32{}, watched: map[uint32]bool{},
		ctxDisconnect: map[uint32][]starlark.Callable{}, ctxShutdown: map[uint32][]starlark.Callable{},
		shutdownDone: make(chan struct{}), activated: map[activation]bool{}}
	states[r] = rs
	go func() {
		<-r.Done()
		statesMu.Lock()
		delete(states, r)
		statesMu.Unlock()
	}()
	return rs
}

// existingState returns r's state if it has one.
func existingState(r *core.Router) *routerState {
	statesMu.Lock()
	defer statesMu.Unlock()
	return states[r]
}

// noteStarted records that this router started c itself, and watches it
// for router.on_disconnect.
func (rs *routerState) noteStarted(c *core.Context) {
	rs.mu.Lock()
	rs.started[c.ID] = true
	watch := len(rs.anyDisconnect) > 0
	rs.mu.Unlock()
	if watch {
		rs.watch(c)
	}
}

// parentOf returns the id of the context that started c, as far as this
// side knows, or 0 (the master started it, or nobody knows).
func parentOf(c *core.Context) uint32 {
	if v := c.Via(); v != nil {
		return v.ID
	}
	rs := existingState(c.Router())
	if rs == nil {
		return 0
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.started[c.ID] {
		return c.Router().ID()
	}
	return rs.via[c.ID]
}

// viaOf is a context's via attribute: the context it was started
// through, None when this router started it itself.
func viaOf(c *core.Context) starlark.Value {
	if v := c.Via(); v != nil {
		return NewContext(v)
	}
	if rs := existingState(c.Router()); rs != nil {
		rs.mu.Lock()
		v, ok := rs.via[c.ID]
		rs.mu.Unlock()
		if ok {
			return NewContext(c.Router().ContextByID(v))
		}
	}
	return starlark.None
}

// learnVia records that the context started c has id parent (from a
// value that carried it, or context_by_id's via_id). What the context's
// own router knows wins: a via set at connect, or a child it started.
func learnVia(c *core.Context, parent uint32) {
	r := c.Router()
	if parent == 0 || parent == r.ID() || parent == c.ID || c.Via() != nil {
		return
	}
	rs := routerStateOf(r)
	rs.mu.Lock()
	if !rs.started[c.ID] {
		rs.via[c.ID] = parent
	}
	rs.mu.Unlock()
}

// ---- callbacks ----

// callbacks returns the queue that runs the callbacks, making it (and
// the goroutine that runs router.on_shutdown at the end) at first use.
func (rs *routerState) callbacks(rt Runtime) *callbackQueue {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.queue == nil {
		rs.rt = rt
		rs.queue = newCallbackQueue(rs.r, rt, "signal callback")
		rs.r.Go(func() {
			<-rs.r.Lifetime().Done()
			rs.fireShutdown(shutdownGrace)
		})
	}
	return rs.queue
}

// shutdownGrace bounds the router.on_shutdown callbacks of a router
// whose lifetime has ended (its Close waits for them).
const shutdownGrace = 5 * time.Second

// watch starts a goroutine that waits for c's disconnection, unless one
// does already.
func (rs *routerState) watch(c *core.Context) {
	rs.mu.Lock()
	if rs.watched[c.ID] {
		rs.mu.Unlock()
		return
	}
	rs.watched[c.ID] = true
	rs.mu.Unlock()
	rs.r.Go(func() {
		select {
		case <-c.Disconnected():
		case <-rs.r.Lifetime().Done():
			return
		}
		rs.mu.Lock()
		fns := append(append([]starlark.Callable(nil), rs.ctxDisconnect[c.ID]...), rs.anyDisconnect...)
		delete(rs.ctxDisconnect, c.ID)
		delete(rs.ctxShutdown, c.ID)
		delete(rs.watched, c.ID)
		q := rs.queue
		rs.mu.Unlock()
		for _, fn := range fns {
			q.put(callback{fn: fn, args: starlark.Tuple{NewContext(c)}})
		}
	})
}

// onDisconnect registers fn(ctx) for c's disconnection; a context gone
// already gets it at once.
func (rs *routerState) onDisconnect(rt Runtime, c *core.Context, fn starlark.Callable) {
	q := rs.callbacks(rt)
	rs.mu.Lock()
	select {
	case <-c.Disconnected():
		// The watcher has run or will find nothing: fn alone is due.
		rs.mu.Unlock()
		q.put(callback{fn: fn, args: starlark.Tuple{NewContext(c)}})
		return
	default:
	}
	rs.ctxDisconnect[c.ID] = append(rs.ctxDisconnect[c.ID], fn)
	rs.mu.Unlock()
	rs.watch(c)
}

// onAnyDisconnect registers fn(ctx) for the disconnection of every
// context this router started, before or after.
func (rs *routerState) onAnyDisconnect(rt Runtime, fn starlark.Callable) {
	rs.callbacks(rt)
	rs.mu.Lock()
	rs.anyDisconnect = append(rs.anyDisconnect, fn)
	var ids []uint32
	for id := range rs.started {
		ids = append(ids, id)
	}
	rs.mu.Unlock()
	for _, id := range ids {
		c := rs.r.ContextByID(id)
		select {
		case <-c.Disconnected(): // gone before: not news
		default:
			rs.watch(c)
		}
	}
}

// onContextShutdown registers fn(ctx), run when c is asked to shut down
// from here (ctx.shutdown(), router.disconnect(ctx)).
func (rs *routerState) onContextShutdown(rt Runtime, c *core.Context, fn starlark.Callable) {
	rs.callbacks(rt)
	rs.mu.Lock()
	rs.ctxShutdown[c.ID] = append(rs.ctxShutdown[c.ID], fn)
	rs.mu.Unlock()
	rs.watch(c) // forgets the callbacks when c goes
}

// shuttingDown queues c's on_shutdown callbacks (they run once).
func (rs *routerState) shuttingDown(c *core.Context) {
	rs.mu.Lock()
	fns := rs.ctxShutdown[c.ID]
	delete(rs.ctxShutdown, c.ID)
	q := rs.queue
	rs.mu.Unlock()
	for _, fn := range fns {
		q.put(callback{fn: fn, args: starlark.Tuple{NewContext(c)}})
	}
}

// onRouterShutdown registers fn(), run when the router shuts down.
func (rs *routerState) onRouterShutdown(rt Runtime, fn starlark.Callable) {
	rs.callbacks(rt)
	rs.mu.Lock()
	rs.routerShutdown = append(rs.routerShutdown, fn)
	rs.mu.Unlock()
}

// fireShutdown runs the router.on_shutdown callbacks, once, each on a
// thread bounded by grace, and returns when they have run.
func (rs *routerState) fireShutdown(grace time.Duration) {
	rs.shutdownOnce.Do(func() {
		defer close(rs.shutdownDone)
		rs.mu.Lock()
		fns := rs.routerShutdown
		rs.routerShutdown = nil
		rt := rs.rt
		rs.mu.Unlock()
		if len(fns) == 0 {
			return
		}
		// Not the router's lifetime: it may have ended already.
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		for _, fn := range fns {
			runCallback(rs.r, rt, "on_shutdown callback", ctx, callback{fn: fn})
		}
	})
	<-rs.shutdownDone
}

// FireShutdown runs the router.on_shutdown callbacks of r's scripts, at
// most once, each bounded by grace: call it before closing a router, so
// that they run while the tree still works (runtime.Runtime.Close does).
// A router closed without it runs them once its lifetime has ended.
func FireShutdown(r *core.Router, grace time.Duration) {
	if rs := existingState(r); rs != nil {
		rs.fireShutdown(grace)
	}
}

// ---- Starlark methods ----

// signalMethod makes a method that registers its one callable argument.
func signalMethod(register func(recv starlark.Value, rt Runtime, fn starlark.Callable)) Func {
	return func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var fn starlark.Callable
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &fn); err != nil {
			return nil, err
		}
		rt, err := mustRuntime(thread, b.Name())
		if err != nil {
			return nil, err
		}
		register(b.Receiver(), rt, fn)
		return starlark.None, nil
	}
}

func init() {
	contextMethods["on_disconnect"] = signalMethod(func(recv starlark.Value, rt Runtime, fn starlark.Callable) {
		c := recv.(*Context).C
		routerStateOf(c.Router()).onDisconnect(rt, c, fn)
	})
	contextMethods["on_shutdown"] = signalMethod(func(recv starlark.Value, rt Runtime, fn starlark.Callable) {
		c := recv.(*Context).C
		routerStateOf(c.Router()).onContextShutdown(rt, c, fn)
	})
	routerMethods["on_disconnect"] = signalMethod(func(recv starlark.Value, rt Runtime, fn starlark.Callable) {
		routerStateOf(recv.(*Router).R).onAnyDisconnect(rt, fn)
	})
	routerMethods["on_shutdown"] = signalMethod(func(recv starlark.Value, rt Runtime, fn starlark.Callable) {
		routerStateOf(recv.(*Router).R).onRouterShutdown(rt, fn)
	})
}

// noteShutdown is called when a script asks c to shut down: its
// on_shutdown callbacks run.
func noteShutdown(c *core.Context) {
	if rs := existingState(c.Router()); rs != nil {
		rs.shuttingDown(c)
	}
}

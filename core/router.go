package core

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mitostar/mitostar/internal/wire"
)

// A Policy decides whether a handler accepts a message.
type Policy func(m *Message) bool

// HandlerOptions configure AddHandler.
type HandlerOptions struct {
	// Handle to register; zero allocates the next free user handle.
	Handle uint32
	// Once removes the handler after its first message.
	Once bool
	// Respondent: when that context dies the handler receives a dead
	// message "the respondent Context has disconnected" and is removed.
	Respondent *Context
	// Policy refuses messages it returns false for.
	Policy Policy
}

type handler struct {
	fn         func(*Message)
	keepsBuf   bool // fn takes a message's pooled buffer (byte streams)
	once       bool
	respondent uint32
	hasResp    bool
	policy     Policy
	retired    bool // a closed byte stream's: drops what still arrives (retireHandler)
}

// Options configure a Router.
type Options struct {
	// Name of this context; "master" by default for a master.
	Name string
	// Logger for the router's own debug log; nil discards it.
	Logger *slog.Logger
	// Sink receives log records that reach this context (the master's
	// stderr by default).
	Sink LogSink
	// MaxMessageSize in payload bytes; DefaultMaxMessageSize when zero.
	MaxMessageSize int
	// LogLevel given to children (slog level).
	LogLevel slog.Level
	// Unidirectional forbids routing between children.
	Unidirectional bool
	// Debug enables the debug log in children.
	Debug bool
}

// A Router is one context's switchboard: it owns the streams to its parent
// and children, routes frames between them by context id, and delivers
// frames addressed to this context to the handler registered for their
// handle.
type Router struct {
	id        uint32
	parentIDs []uint32 // nearest first; empty in the master
	name      string
	log       *slog.Logger
	sink      LogSink
	logLevel  atomic.Int64
	maxSize   atomic.Int64
	unidir    atomic.Bool
	debug     atomic.Bool

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc

	mu          sync.Mutex
	parent      *Stream
	children    map[uint32]*Stream // direct child id → stream
	routes      map[uint32]*Stream // descendant id → child stream leading to it
	handlers    map[uint32]*handler
	respondents map[uint32]map[uint32]struct{} // context id → handles
	contexts    map[uint32]*Context
	dead        map[uint32]string // contexts known gone → reason (the last maxDead of them)
	deadOrder   []uint32          // the ids of dead, oldest first
	nextHandle  uint32
	idNext      uint32 // next id of this router's current block
	idEnd       uint32
	idCounter   uint32                // master: the first id not yet handed out
	granted     map[*Stream][]idRange // id blocks handed out through each child stream
	allocating  map[*Stream]int       // ALLOCATE_ID requests of each child stream being served
	parentOf    map[uint32]uint32     // each known descendant's parent
	warnStart   time.Time             // warnf's rate limit: the current second
	warnCount   int                   // and the warnings in it
	closing     bool

	exec     *executor
	services *serviceTable
	goMu     sync.Mutex
	goCond   *sync.Cond // signalled when goCount drops to zero
	goCount  int        // goroutines started by Go and still running
	closed   chan struct{}
	helloExt func(method string) []byte // fills a new child's HelloRequest.Ext
	onGone   []func(id uint32)          // told of every context gone (OnGone)
}

// NewMaster returns the router of a master: context 0, no parent.
func NewMaster(opts Options) *Router {
	if opts.Name == "" {
		opts.Name = "master"
	}
	r := newRouter(0, nil, opts)
	r.idCounter = 1
	return r
}

func newRouter(id uint32, parentIDs []uint32, opts Options) *Router {
	r := &Router{
		id:          id,
		parentIDs:   parentIDs,
		name:        opts.Name,
		sink:        opts.Sink,
		children:    make(map[uint32]*Stream),
		routes:      make(map[uint32]*Stream),
		handlers:    make(map[uint32]*handler),
		respondents: make(map[uint32]map[uint32]struct{}),
		contexts:    make(map[uint32]*Context),
		dead:        make(map[uint32]string),
		granted:     make(map[*Stream][]idRange),
		allocating:  make(map[*Stream]int),
		parentOf:    make(map[uint32]uint32),
		nextHandle:  FirstUserHandle,
		closed:      make(chan struct{}),
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.goCond = sync.NewCond(&r.goMu)
	if opts.Logger != nil {
		r.log = opts.Logger
	} else {
		r.log = slog.New(discardHandler{})
	}
	if r.sink == nil {
		r.sink = NewWriterSink(nil)
	}
	size := opts.MaxMessageSize
	if size == 0 {
		size = DefaultMaxMessageSize
	}
	r.maxSize.Store(int64(size))
	r.logLevel.Store(int64(opts.LogLevel))
	r.unidir.Store(opts.Unidirectional)
	r.debug.Store(opts.Debug)
	r.exec = newExecutor(r)
	r.services = newServiceTable()
	r.installCoreHandlers()
	return r
}

// ID is this context's id (0 in the master).
func (r *Router) ID() uint32 { return r.id }

// Name is this context's name.
func (r *Router) Name() string { return r.name }

// ParentID is the parent's id; ok is false in the master.
func (r *Router) ParentID() (id uint32, ok bool) {
	if len(r.parentIDs) == 0 {
		return 0, false
	}
	return r.parentIDs[0], true
}

// ParentIDs lists the ancestors' ids, nearest first.
func (r *Router) ParentIDs() []uint32 { return slices.Clone(r.parentIDs) }

// IsMaster reports whether this is the master (context 0).
func (r *Router) IsMaster() bool { return len(r.parentIDs) == 0 }

// Logger is the router's debug logger.
func (r *Router) Logger() *slog.Logger { return r.log }

// MaxMessageSize is the current payload limit in bytes.
func (r *Router) MaxMessageSize() int { return int(r.maxSize.Load()) }

// SetMaxMessageSize changes the payload limit for routing from now on and
// for children started later.
func (r *Router) SetMaxMessageSize(n int) error {
	if n < MinMaxMessageSize {
		return fmt.Errorf("max_message_size must be at least %d bytes, got %d", MinMaxMessageSize, n)
	}
	r.maxSize.Store(int64(n))
	return nil
}

// Unidirectional reports whether routing between children is forbidden.
func (r *Router) Unidirectional() bool { return r.unidir.Load() }

// SetUnidirectional changes the routing mode from now on.
func (r *Router) SetUnidirectional(v bool) { r.unidir.Store(v) }

// EnableDebug turns on the debug log here and in later children.
func (r *Router) EnableDebug() {
	r.debug.Store(true)
	r.logLevel.Store(int64(slog.LevelDebug))
}

// LogLevel is the level given to new children.
func (r *Router) LogLevel() slog.Level { return slog.Level(r.logLevel.Load()) }

// Done is closed when the router has shut down.
func (r *Router) Done() <-chan struct{} { return r.closed }

// Lifetime returns a context cancelled when the router closes.
func (r *Router) Lifetime() context.Context { return r.ctx }

// Go runs fn on a goroutine owned by the router: Close waits for it. fn
// should return once Lifetime() is done.
func (r *Router) Go(fn func()) {
	// A counter under a mutex rather than a WaitGroup: a stream that
	// closes while Close waits may start one more goroutine (to reap its
	// process), and a WaitGroup must not grow from zero during a Wait.
	r.goMu.Lock()
	r.goCount++
	r.goMu.Unlock()
	go func() {
		defer func() {
			r.goMu.Lock()
			r.goCount--
			if r.goCount == 0 {
				r.goCond.Broadcast()
			}
			r.goMu.Unlock()
		}()
		fn()
	}()
}

// waitGo waits until every goroutine started by Go has ended.
func (r *Router) waitGo() {
	r.goMu.Lock()
	for r.goCount > 0 {
		r.goCond.Wait()
	}
	r.goMu.Unlock()
}

// Myself returns the Context for this router's own context.
func (r *Router) Myself() *Context { return r.ContextByID(r.id) }

// ContextByID returns the Context for id, creating it if unknown.
func (r *Router) ContextByID(id uint32) *Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.contextLocked(id, "")
}

func (r *Router) contextLocked(id uint32, name string) *Context {
	if c, ok := r.contexts[id]; ok {
		if name != "" && c.name.Load() == nil {
			c.name.Store(&name)
		}
		return c
	}
	c := newContext(r, id, name)
	if id == r.id {
		c.name.Store(&r.name)
	}
	if reason, ok := r.dead[id]; ok {
		c.markDead(reason)
	}
	r.contexts[id] = c
	return c
}

// AddHandler registers fn for a handle and returns the handle. fn runs on
// the goroutine that delivers the message (a stream reader): it must not
// block.
func (r *Router) AddHandler(fn func(*Message), opts HandlerOptions) (uint32, error) {
	return r.addHandler(fn, opts, false)
}

// addHandler is AddHandler; with keepsBuf, fn is given the pooled buffer
// of a message read from a stream (Message.buf) and frees it once done.
func (r *Router) addHandler(fn func(*Message), opts HandlerOptions, keepsBuf bool) (uint32, error) {
	r.mu.Lock()
	handle := opts.Handle
	if handle == 0 {
		handle = r.nextHandle
		r.nextHandle++
	} else if _, exists := r.handlers[handle]; exists {
		r.mu.Unlock()
		return 0, errors.New(msgDuplicateHandle)
	}
	h := &handler{fn: fn, keepsBuf: keepsBuf, once: opts.Once, policy: opts.Policy}
	var deadReason string
	if opts.Respondent != nil {
		h.respondent, h.hasResp = opts.Respondent.ID, true
		if reason, gone := r.dead[h.respondent]; gone {
			deadReason = reason
		} else {
			set := r.respondents[h.respondent]
			if set == nil {
				set = make(map[uint32]struct{})
				r.respondents[h.respondent] = set
			}
			set[handle] = struct{}{}
		}
	}
	if deadReason == "" {
		r.handlers[handle] = h
	}
	r.mu.Unlock()
	if deadReason != "" {
		fn(r.deadFor(handle, msgRespondentDisconnect))
	}
	return handle, nil
}

// DelHandler removes the handler of handle; it reports whether one existed.
func (r *Router) DelHandler(handle uint32) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.delHandlerLocked(handle) != nil
}

// retireHandler replaces the handler of handle with fn, which takes what
// still arrives for it (without the warning an invalid handle gets), and
// removes that one after d.
func (r *Router) retireHandler(handle uint32, d time.Duration, fn func(*Message)) {
	r.mu.Lock()
	if r.delHandlerLocked(handle) != nil {
		r.handlers[handle] = &handler{fn: fn, retired: true}
	}
	r.mu.Unlock()
	time.AfterFunc(d, func() {
		r.mu.Lock()
		if h := r.handlers[handle]; h != nil && h.retired {
			delete(r.handlers, handle)
		}
		r.mu.Unlock()
	})
}

func (r *Router) delHandlerLocked(handle uint32) *handler {
	h, ok := r.handlers[handle]
	if !ok {
		return nil
	}
	delete(r.handlers, handle)
	if h.hasResp {
		// An emptied set stays until its context is gone (contextGone):
		// a call's reply handler comes and goes with every call.
		delete(r.respondents[h.respondent], handle)
	}
	return h
}

func (r *Router) deadFor(handle uint32, reason string) *Message {
	data, _ := Marshal(reason)
	return &Message{DstID: r.id, SrcID: r.id, AuthID: r.id, Handle: handle, ReplyTo: IsDead, Data: data, router: r}
}

// HasParentAuthority is the policy of privileged handles: the message
// comes from this context itself or one of its ancestors.
func (r *Router) HasParentAuthority(m *Message) bool {
	return m.AuthID == r.id || slices.Contains(r.parentIDs, m.AuthID)
}

// IsImmediateChild is a policy accepting messages sent by a direct child.
func (r *Router) IsImmediateChild(m *Message) bool {
	return m.from != nil && !m.from.isParent && m.SrcID == m.from.remoteID
}

// Route sends m from this context: its src_id and auth_id are set to this
// context's id. A payload over the size limit is refused here. When the
// queue towards m's next hop is full, Route waits for room until ctx ends
// (TimeoutError for a deadline) or the router closes.
func (r *Router) Route(ctx context.Context, m *Message) error {
	if max := r.MaxMessageSize(); m.Len() > max {
		return fmt.Errorf(msgTooLarge, max)
	}
	m.SrcID, m.AuthID = r.id, r.id
	select {
	case <-r.closed:
		return &ChannelError{Reason: msgRouterClosed}
	default:
	}
	return r.dispatch(ctx, m, nil, -1)
}

// routeNoWait sends m from this context without ever waiting for room
// in a queue, which may take extra bytes past its limit: for replies and
// notices sent from a stream's reader, which must never wait on a
// neighbour, and for log records. What does not fit is dropped.
func (r *Router) routeNoWait(m *Message, extra int) error {
	m.SrcID, m.AuthID = r.id, r.id
	return r.dispatch(r.ctx, m, nil, extra)
}

// streamForLocked is where a message for id goes: the child stream that
// leads to it, else the parent (nil in the master).
func (r *Router) streamForLocked(id uint32) *Stream {
	if s, ok := r.routes[id]; ok {
		return s
	}
	return r.parent
}

// routeIn handles a frame read from stream in: security checks, then
// delivery or forwarding.
func (r *Router) routeIn(m *Message, in *Stream) {
	r.mu.Lock()
	expectAuth := r.streamForLocked(m.AuthID)
	expectSrc := r.streamForLocked(m.SrcID)
	routed := m.DstID != r.id && r.streamForLocked(m.DstID) != nil
	r.mu.Unlock()
	srcOK := m.SrcID != r.id && expectSrc == in
	switch {
	case m.AuthID == r.id || expectAuth != in:
		r.refuse(m, in, srcOK, fmt.Sprintf("bad auth_id: got %d via %s", m.AuthID, in))
		return
	case !srcOK:
		r.refuse(m, in, false, fmt.Sprintf("bad src_id: got %d via %s", m.SrcID, in))
		return
	}
	if routed && !in.isParent {
		// Only ids with a route: a child writing to made-up ids does not
		// grow the set.
		in.noteEgress(m.DstID)
	}
	r.dispatch(r.ctx, m, in, 0)
}

// refuse drops a frame that failed a security check: a log line, and a
// dead message written straight back on the stream it came from. When
// the frame's src_id cannot be behind that stream, the dead message is
// addressed to the neighbour itself, which sent it.
func (r *Router) refuse(m *Message, in *Stream, srcOK bool, why string) {
	r.warnf("refused a message from %s for context %d handle %d: %s", in, m.DstID, m.Handle, why)
	if m.ReplyTo != 0 && !m.IsDead() {
		d := deadMessage(m, r.id, msgRefused)
		if !srcOK {
			d.DstID = in.remoteID
		}
		in.forward(d, controlReserve)
	}
}

// dispatch delivers m here or queues it on the stream towards its
// destination. A message that starts here (in == nil, extra < 0) may
// wait for room until ctx ends; a frame read from stream in, and one sent
// with routeNoWait (extra bytes of room past the queue's limit), is never
// waited for: when the queue towards its next hop is full the sender
// gets a dead message naming the context that is not reading.
func (r *Router) dispatch(ctx context.Context, m *Message, in *Stream, extra int) error {
	if m.DstID == r.id {
		m.join()
		r.invoke(m)
		return nil
	}
	r.mu.Lock()
	out := r.streamForLocked(m.DstID)
	r.mu.Unlock()
	if out == nil {
		reason := fmt.Sprintf(msgNoRoute, m.DstID, r.id)
		r.log.Debug("no route", "msg", m.String())
		r.sendDead(m, reason)
		if in == nil {
			return &ChannelError{Reason: reason}
		}
		return nil
	}
	if in != nil {
		if out == in {
			r.warnf("dropped a message from %s for context %d: it would go back the way it came", in, m.DstID)
			return nil
		}
		if r.unidir.Load() && !in.isParent && !out.isParent {
			r.warnf("refused a message from %s to %s: this router is unidirectional", r.nameOf(m.SrcID), r.nameOf(m.DstID))
			r.sendDead(m, fmt.Sprintf(msgUnidirectional, m.SrcID, m.DstID, r.id))
			return nil
		}
		if max := r.MaxMessageSize(); m.Len() > max {
			reason := fmt.Sprintf(msgTooLarge, max)
			r.warnf("refused a message from %s to %s: %s", r.nameOf(m.SrcID), r.nameOf(m.DstID), reason)
			if m.ReplyTo == 0 && !m.IsDead() {
				// A reply, or a message for a receiver: whoever waits
				// for it hears why it will not come.
				r.sendDeadTo(m.DstID, m.Handle, reason)
			}
			r.sendDead(m, reason)
			return nil
		}
	}
	var err error
	if in == nil && extra < 0 {
		err = out.send(ctx, m)
	} else {
		err = out.forward(m, max(extra, 0))
	}
	switch {
	case err == nil:
		return nil
	case err == wire.ErrFull:
		reason := out.congested()
		out.noteRefused(m, reason)
		r.sendDead(m, reason)
		return &ChannelError{Reason: reason}
	}
	reason := fmt.Sprintf(msgNoRoute, m.DstID, r.id)
	var se *StreamError
	if errors.As(err, &se) {
		// The stream towards it has closed: for callers this is the
		// context disconnecting, whatever broke the stream.
		reason = msgRespondentDisconnect
		err = &ChannelError{Reason: reason}
	}
	if in != nil || extra >= 0 || ctx.Err() == nil {
		r.sendDead(m, reason)
	}
	return err
}

// sendDead answers m with a dead message when it expects a reply. It
// never waits: a dead message that does not fit its queue is dropped.
func (r *Router) sendDead(m *Message, reason string) {
	if m.ReplyTo == 0 || m.IsDead() {
		return
	}
	r.sendDeadTo(m.SrcID, m.ReplyTo, reason)
}

// sendDeadTo sends a dead message with reason to handle in context dst,
// without waiting.
func (r *Router) sendDeadTo(dst, handle uint32, reason string) {
	data, _ := Marshal(reason)
	d := &Message{DstID: dst, SrcID: r.id, AuthID: r.id, Handle: handle, ReplyTo: IsDead, Data: data}
	if d.DstID == r.id {
		r.invoke(d)
		return
	}
	r.mu.Lock()
	out := r.streamForLocked(d.DstID)
	r.mu.Unlock()
	if out != nil {
		out.forward(d, controlReserve)
	}
}

// invoke delivers m to the handler of its handle, once the handler's
// policy and respondent accept it.
func (r *Router) invoke(m *Message) {
	m.router = r
	r.mu.Lock()
	h, ok := r.handlers[m.Handle]
	r.mu.Unlock()
	if !ok || !h.keepsBuf {
		// Only a byte stream frees what it has read; a message handed
		// to anything else keeps its memory until the garbage collector
		// takes it.
		m.buf = nil
	}
	if !ok {
		if !m.IsDead() {
			r.warnf("refused a message from %s for handle %d: %s", r.nameOf(m.SrcID), m.Handle, msgInvalidHandle)
			r.sendDead(m, msgInvalidHandle)
		}
		return
	}
	if h.hasResp && !r.fromRespondent(m, h.respondent) {
		r.warnf("dropped a message from %s for handle %d: reply from unexpected context (the handle waits for %s)",
			r.nameOf(m.SrcID), m.Handle, r.nameOf(h.respondent))
		return
	}
	if h.policy != nil && !h.policy(m) {
		r.warnf("refused a message from %s for handle %d: %s", r.nameOf(m.SrcID), m.Handle, msgRefused)
		r.sendDead(m, msgRefused)
		return
	}
	if h.once {
		r.mu.Lock()
		mine := r.handlers[m.Handle] == h
		if mine {
			r.delHandlerLocked(m.Handle)
		}
		r.mu.Unlock()
		if !mine {
			return // another message took the handler first
		}
	}
	h.fn(m)
}

// fromRespondent reports whether m may reach a handler waiting for
// context resp: it comes from resp itself, or it is a dead message from
// this context or from one between it and resp (a relay that could not
// deliver, or a parent of this context), which may speak for resp.
func (r *Router) fromRespondent(m *Message, resp uint32) bool {
	if m.SrcID == resp && m.AuthID == resp {
		return true
	}
	if !m.IsDead() {
		return false
	}
	return m.SrcID == r.id || r.isAncestorOf(m.SrcID, resp)
}

// onStreamClosed runs once when a stream ends.
func (r *Router) onStreamClosed(s *Stream, cause error) {
	if s.isParent {
		r.log.Debug("parent stream closed", "cause", cause)
		go r.Close()
		return
	}
	r.mu.Lock()
	if r.children[s.remoteID] == s {
		delete(r.children, s.remoteID)
	}
	delete(r.granted, s)
	delete(r.allocating, s)
	var gone []uint32
	for id, via := range r.routes {
		if via == s {
			gone = append(gone, id)
		}
	}
	r.mu.Unlock()
	slices.Sort(gone)
	announce := func() {
		for _, id := range gone {
			r.contextGone(id, msgRespondentDisconnect, s)
		}
	}
	if s.exited == nil {
		announce()
		return
	}
	// Announce the contexts gone once the process has been reaped (it is
	// killed after killGrace if it lingers), so that callers waiting on
	// their death never see a process left behind.
	r.Go(func() {
		t := time.NewTimer(killGrace + 2*time.Second)
		defer t.Stop()
		select {
		case <-s.exited:
		case <-t.C:
		}
		announce()
	})
}

// OnGone has fn called with the id of every context this router learns is
// gone, once (a child whose stream closed, a descendant announced gone).
// fn runs on the goroutine that learned it, a stream's reader: it must
// not block.
func (r *Router) OnGone(fn func(id uint32)) {
	r.mu.Lock()
	r.onGone = append(r.onGone, fn)
	r.mu.Unlock()
}

// maxDead is how many gone contexts a router remembers, to mark the
// handles asked for them later as gone with their reason: ids are never
// reused, so forgetting the oldest only loses that reason.
const maxDead = 4096

// contextGone forgets id, fails everything waiting on it and propagates
// DEL_ROUTE to the parent and to children that talked to it.
func (r *Router) contextGone(id uint32, reason string, from *Stream) {
	r.mu.Lock()
	if _, already := r.dead[id]; already {
		r.mu.Unlock()
		return
	}
	r.dead[id] = reason
	r.deadOrder = append(r.deadOrder, id)
	if len(r.deadOrder) > maxDead {
		delete(r.dead, r.deadOrder[0])
		r.deadOrder = slices.Delete(r.deadOrder, 0, 1)
	}
	delete(r.routes, id)
	delete(r.parentOf, id)
	handles := r.respondents[id]
	delete(r.respondents, id)
	var fns []func(*Message)
	var hs []uint32
	for h := range handles {
		if hd := r.handlers[h]; hd != nil {
			fns = append(fns, hd.fn)
			hs = append(hs, h)
			delete(r.handlers, h)
		}
	}
	c := r.contexts[id]
	delete(r.contexts, id) // a handle asked for later is made anew, marked dead
	var down []*Stream
	for _, cs := range r.children {
		if cs.forgetEgress(id) && cs != from {
			down = append(down, cs)
		}
	}
	parent := r.parent
	r.mu.Unlock()

	onGone := r.onGone
	r.log.Debug("context gone", "id", id, "reason", reason)
	for _, fn := range onGone {
		fn(id)
	}
	for i, fn := range fns {
		fn(r.deadFor(hs[i], msgRespondentDisconnect))
	}
	if c != nil {
		c.markDead(reason)
	}
	u := routeUpdate{ID: id, Reason: reason}
	if parent != nil && parent != from {
		r.sendRouteUpdate(parent, handleDelRoute, u)
	}
	for _, cs := range down {
		r.sendRouteUpdate(cs, handleDelRoute, u)
	}
}

// installCoreHandlers registers the reserved handles core serves itself.
func (r *Router) installCoreHandlers() {
	must := func(_ uint32, err error) {
		if err != nil {
			panic(err)
		}
	}
	fromChild := func(m *Message) bool { return m.from != nil && !m.from.isParent }
	must(r.AddHandler(r.onAddRoute, HandlerOptions{Handle: handleAddRoute, Policy: fromChild}))
	must(r.AddHandler(r.onDelRoute, HandlerOptions{Handle: handleDelRoute}))
	must(r.AddHandler(r.onForwardLog, HandlerOptions{Handle: handleForwardLog}))
	must(r.AddHandler(r.exec.enqueue, HandlerOptions{Handle: handleCallFunction, Policy: r.HasParentAuthority}))
	must(r.AddHandler(r.onShutdown, HandlerOptions{Handle: handleShutdown, Policy: r.HasParentAuthority}))
	must(r.AddHandler(r.onDetaching, HandlerOptions{Handle: handleDetaching}))
	must(r.AddHandler(r.onCallService, HandlerOptions{Handle: handleCallService}))
	must(r.AddHandler(r.onAllocateID, HandlerOptions{Handle: handleAllocateID, Policy: r.IsImmediateChild}))
}

func (r *Router) onDetaching(m *Message) {
	r.log.Debug("child detaching", "id", m.SrcID)
}

func (r *Router) onShutdown(m *Message) {
	r.log.Debug("shutdown requested", "by", m.SrcID)
	go r.Close()
}

// Disconnect closes the stream to a direct child, or asks the context's
// parent to shut it down when it is further away.
func (r *Router) Disconnect(c *Context) {
	r.mu.Lock()
	s := r.children[c.ID]
	r.mu.Unlock()
	if s != nil {
		s.close(errors.New("disconnected"))
		return
	}
	c.Shutdown()
}

// DisconnectAll closes every child stream.
func (r *Router) DisconnectAll() {
	r.mu.Lock()
	var ss []*Stream
	for _, s := range r.children {
		ss = append(ss, s)
	}
	r.mu.Unlock()
	for _, s := range ss {
		s.close(errors.New("disconnected"))
	}
}

// Close shuts the router down: children are asked to shut down and given
// up to 5 s to go, then every stream is closed, every pending receiver
// fails, and every goroutine the router owns has ended when Close returns.
func (r *Router) Close() {
	r.CloseTimeout(5 * time.Second)
}

// CloseTimeout is Close with a bound on the wait for children.
func (r *Router) CloseTimeout(wait time.Duration) {
	r.mu.Lock()
	if r.closing {
		r.mu.Unlock()
		<-r.closed
		return
	}
	r.closing = true
	var kids []*Stream
	for _, s := range r.children {
		kids = append(kids, s)
	}
	parent := r.parent
	r.mu.Unlock()

	for _, s := range kids {
		s.forward(&Message{DstID: s.remoteID, SrcID: r.id, AuthID: r.id, Handle: handleShutdown}, controlReserve)
	}
	deadline := time.NewTimer(wait)
	for _, s := range kids {
		select {
		case <-s.Done():
		case <-deadline.C:
		}
	}
	deadline.Stop()
	if parent != nil {
		parent.flush(time.Second)
	}
	r.cancel()
	for _, s := range kids {
		s.Close()
	}
	if parent != nil {
		parent.Close()
	}
	r.exec.close()
	r.failAllHandlers()
	r.waitGo()
	close(r.closed)
}

// failAllHandlers wakes every receiver with ChannelError.
func (r *Router) failAllHandlers() {
	r.mu.Lock()
	hs := r.handlers
	r.handlers = make(map[uint32]*handler)
	r.respondents = make(map[uint32]map[uint32]struct{})
	r.mu.Unlock()
	for handle, h := range hs {
		if handle >= FirstUserHandle {
			h.fn(r.deadFor(handle, msgRouterClosed))
		}
	}
}

type discardHandler struct{}

func (discardHandler) Enabled(context.Context, slog.Level) bool  { return false }
func (discardHandler) Handle(context.Context, slog.Record) error { return nil }
func (d discardHandler) WithAttrs([]slog.Attr) slog.Handler      { return d }
func (d discardHandler) WithGroup(string) slog.Handler           { return d }

// ContextByName returns the Context for id, recording its name if it was
// not known yet (values that carry a context carry its name too).
func (r *Router) ContextByName(id uint32, name string) *Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.contextLocked(id, name)
}

// SetLogger replaces the router's debug logger.
func (r *Router) SetLogger(l *slog.Logger) { r.log = l }

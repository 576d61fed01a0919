package core

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"
)

// A Call is one CALL_FUNCTION request being served.
type Call struct {
	Router  *Router
	Request *CallRequest
	Msg     *Message
}

// Args decodes the call's arguments (a CBOR array for RegisterFunc
// functions) into v.
func (c *Call) Args(v any) error {
	if len(c.Request.Args) == 0 {
		return nil
	}
	return Unmarshal(c.Request.Args, v)
}

// A Func is a Go function callable by name from other contexts.
type Func func(ctx context.Context, call *Call) (any, error)

// A CallHandler serves calls whose Func is not a registered Func; the
// runtime installs one to run Starlark. It returns the reply's payload:
// ReplyOK then the CBOR of the result (the layout of EncodeCallReply),
// head first and then the pieces of tail (see Message.Tail), whose
// memory must not change afterwards.
type CallHandler func(ctx context.Context, call *Call) (head []byte, tail Pieces, err error)

// ReplyOK starts the payload of a successful reply: the CBOR null.
var ReplyOK = []byte{cborNull}

var (
	funcsMu sync.RWMutex
	funcs   = map[string]Func{}
)

// RegisterFunc makes fn callable by name in every context of a binary
// that registers it (call it from init). Names are dotted ("core.ping").
func RegisterFunc(name string, fn Func) {
	funcsMu.Lock()
	defer funcsMu.Unlock()
	if _, dup := funcs[name]; dup {
		panic("core: RegisterFunc called twice for " + name)
	}
	funcs[name] = fn
}

func lookupFunc(name string) Func {
	funcsMu.RLock()
	defer funcsMu.RUnlock()
	return funcs[name]
}

// SetCallHandler installs the handler for calls that name no registered Func.
func (r *Router) SetCallHandler(h CallHandler) {
	r.exec.mu.Lock()
	r.exec.handler = h
	r.exec.mu.Unlock()
}

// SetWarmCall sets a call a child runs once, before its first real call,
// to have the call path's memory and stack ready (its result is
// dropped). Set it from a ChildHook; it must have no effect beyond this
// context.
func (r *Router) SetWarmCall(req *CallRequest) {
	r.exec.mu.Lock()
	r.exec.warm = req
	r.exec.mu.Unlock()
}

// executor runs CALL_FUNCTION requests one at a time, in arrival order,
// on one goroutine, while the stream readers keep routing.
type executor struct {
	r       *Router
	mu      sync.Mutex
	queue   []*Message
	wake    chan struct{}
	started bool
	closed  bool
	handler CallHandler
	warm    *CallRequest // run once, its result dropped, by startEarly's goroutine
}

func newExecutor(r *Router) *executor {
	return &executor{r: r, wake: make(chan struct{}, 1)}
}

func (e *executor) enqueue(m *Message) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		e.r.sendDead(m, msgRouterClosed)
		return
	}
	e.queue = append(e.queue, m)
	e.startLocked(nil)
	e.mu.Unlock()
	e.signal()
}

// signal wakes the executor's goroutine to look at its queue (and at
// closed) again. wake holds one signal, which is all a waiter needs.
func (e *executor) signal() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// startLocked starts the executor's goroutine unless it runs already;
// it first runs warm, when not nil. e.mu is held.
func (e *executor) startLocked(warm *CallRequest) {
	if e.started || e.closed {
		return
	}
	e.started = true
	e.r.wg.Add(1)
	go e.loop(warm)
}

// startEarly starts the executor before the first call arrives: a child
// runs it once its stream is up. The goroutine first grows its stack to
// what a call takes and runs the warm-up call, if the runtime set one,
// so that the first real call finds both done: on the benchmark VMs the
// first call into a fresh child otherwise spends ~0.3 ms copying its
// growing stack and about as much again touching the call path's pages
// for the first time (docs/benchmarks.md, "First call into a child").
func (e *executor) startEarly() {
	e.mu.Lock()
	e.startLocked(e.warm)
	e.mu.Unlock()
}

func (e *executor) loop(warm *CallRequest) {
	defer e.r.wg.Done()
	growStack()
	if warm != nil {
		e.warmUp(warm)
	}
	for {
		e.mu.Lock()
		if e.closed {
			e.mu.Unlock()
			return
		}
		if len(e.queue) == 0 {
			e.mu.Unlock()
			<-e.wake // one channel, not a select: this wait is on every call's path
			continue
		}
		m := e.queue[0]
		e.queue[0] = nil
		e.queue = e.queue[1:]
		e.mu.Unlock()
		e.run(m)
	}
}

// warmUp runs req as a call from the parent would run, and drops its
// result (and any error: a warm-up is an optimisation only).
func (e *executor) warmUp(req *CallRequest) {
	r := e.r
	parent, _ := r.ParentID()
	m := &Message{Handle: HandleCallFunction, SrcID: parent, AuthID: parent, DstID: r.id}
	head, tail, err := e.call(r.ctx, &Call{Router: r, Request: req, Msg: m})
	if err == nil {
		// The reply frame, built as for sending, in a pooled frame
		// buffer: the first real reply finds one ready.
		reply := &Message{Handle: m.ReplyTo, DstID: m.SrcID, SrcID: r.id, Data: head, Tail: tail}
		bp := getFrameBuf(HeaderSize + reply.Len())
		*bp = appendFrame((*bp)[:0], reply)
		putFrameBuf(bp)
	}
}

// growStack makes the calling goroutine's stack as large as running a
// Starlark call takes, in one step: grown call by call it is copied four
// or five times, each time walking every frame to adjust pointers.
//
//go:noinline
func growStack() byte {
	var pad [callStackBytes]byte
	return stackByte(pad[:])
}

// callStackBytes is roughly the stack a call of a builtin or a small
// Starlark function takes (measured: 16 KiB takes away nearly all the
// stack growth of a child's first call).
const callStackBytes = 16 << 10

// growStackSmall is growStack for a goroutine that only writes frames.
//
//go:noinline
func growStackSmall() byte {
	var pad [4 << 10]byte
	return stackByte(pad[:])
}

//go:noinline
func stackByte(b []byte) byte { return b[len(b)-1] }

func (e *executor) close() {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	e.closed = true
	pending := e.queue
	e.queue = nil
	e.mu.Unlock()
	e.signal()
	for _, m := range pending {
		e.r.sendDead(m, msgRouterClosed)
	}
}

// EncodeCallRequest lays out a CALL_FUNCTION payload: the header, then
// the arguments as they are, in pieces.
func EncodeCallRequest(req *CallRequest) (Pieces, error) {
	first := appendCallHeader(make([]byte, 0, 16+len(req.Func)+len(req.Ext)+len(req.Args)), req)
	first = append(first, req.Args...)
	if len(req.ArgsTail) == 0 {
		return Pieces{first}, nil
	}
	return append(Pieces{first}, req.ArgsTail...), nil
}

// appendCallHeader appends the CBOR of req's header, as Marshal would
// lay it out (a map keyed by the field numbers, zero Timeout and empty
// Ext left out), without reflection: it is on every call's path.
func appendCallHeader(b []byte, req *CallRequest) []byte {
	n := uint64(1)
	if req.Timeout != 0 {
		n++
	}
	if len(req.Ext) > 0 {
		n++
	}
	b = AppendHead(b, 5, n)
	b = AppendHead(b, 0, 1)
	b = AppendHead(b, 3, uint64(len(req.Func)))
	b = append(b, req.Func...)
	if req.Timeout != 0 {
		b = append(b, 0x03, 0xfb)
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(req.Timeout))
	}
	if len(req.Ext) > 0 {
		b = AppendHead(b, 0, 4)
		b = AppendHead(b, 2, uint64(len(req.Ext)))
		b = append(b, req.Ext...)
	}
	return b
}

// decodeCallHeader reads what appendCallHeader writes and returns the
// rest of data; ok is false for any other layout, which the general
// decoder then reads or refuses.
func decodeCallHeader(data []byte, req *CallRequest) (rest []byte, ok bool) {
	major, n, rest, err := readHead(data)
	if err != nil || major != 5 || n < 1 || n > 3 {
		return nil, false
	}
	var seen [5]bool
	for ; n > 0; n-- {
		var key uint64
		if key, rest, err = readUint(rest); err != nil || key > 4 || seen[key] {
			return nil, false
		}
		seen[key] = true
		switch key {
		case 1:
			if req.Func, rest, err = readText(rest); err != nil {
				return nil, false
			}
		case 3:
			if len(rest) < 9 || rest[0] != 0xfb {
				return nil, false
			}
			req.Timeout = math.Float64frombits(binary.BigEndian.Uint64(rest[1:9]))
			rest = rest[9:]
		case 4:
			if req.Ext, rest, err = readBytes(rest); err != nil {
				return nil, false
			}
		default:
			return nil, false
		}
	}
	return rest, seen[1]
}

// NewCallMessage returns the CALL_FUNCTION message of req.
func NewCallMessage(req *CallRequest) (*Message, error) {
	p, err := EncodeCallRequest(req)
	if err != nil {
		return nil, err
	}
	return &Message{Handle: HandleCallFunction, Data: p[0], Tail: p[1:]}, nil
}

// DecodeCallRequest reads a CALL_FUNCTION payload; req.Args aliases data.
func DecodeCallRequest(data []byte, req *CallRequest) error {
	if rest, ok := decodeCallHeader(data, req); ok {
		req.Args = rest
		return nil
	}
	*req = CallRequest{}
	rest, err := decMode.UnmarshalFirst(data, req)
	if err != nil {
		return err
	}
	req.Args = rest
	return nil
}

// cborNull is the CBOR encoding of null.
const cborNull = 0xf6

// EncodeCallReply lays out a reply: null then value on success, the
// RemoteError alone on failure. Only value's first piece is copied.
func EncodeCallReply(value Pieces, rerr *RemoteError) Pieces {
	if rerr != nil {
		data, err := Marshal(rerr)
		if err != nil {
			data, _ = Marshal(&RemoteError{Kind: "Error", Message: "encoding an error: " + err.Error()})
		}
		return Pieces{data}
	}
	var first []byte
	if len(value) > 0 {
		first = value[0]
	}
	out := make([]byte, 1+len(first))
	out[0] = cborNull
	copy(out[1:], first)
	if len(value) < 2 {
		return Pieces{out}
	}
	return append(Pieces{out}, value[1:]...)
}

// run serves one call and sends its reply.
func (e *executor) run(m *Message) {
	r := e.r
	var req CallRequest
	if m.IsDead() {
		return
	}
	if err := DecodeCallRequest(m.Data, &req); err != nil {
		e.reply(m, nil, &RemoteError{Kind: "Error", Message: "bad call request: " + err.Error(), Context: r.name})
		return
	}
	collectDropped()
	ctx, cancel := r.ctx, context.CancelFunc(func() {})
	if req.Timeout > 0 {
		ctx, cancel = context.WithTimeout(r.ctx, time.Duration(req.Timeout*float64(time.Second)))
	}
	head, tail, err := e.call(ctx, &Call{Router: r, Request: &req, Msg: m})
	if err != nil && ctx.Err() == context.DeadlineExceeded {
		var re *RemoteError
		if !errors.As(err, &re) || re.Kind != "TimeoutError" {
			err = &RemoteError{Kind: "TimeoutError", Message: fmt.Sprintf("call to %s timed out after %gs", req.Func, req.Timeout), Context: r.name}
		}
	}
	cancel()
	noteDropped(len(m.Data)) // the arguments, unless the call kept them
	if err != nil {
		e.reply(m, nil, AsRemote(err, r.name))
		return
	}
	e.send(m, head, tail)
}

func (e *executor) call(ctx context.Context, c *Call) (head []byte, tail Pieces, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &RemoteError{Kind: CallError, Message: fmt.Sprintf("panic in %s: %v", c.Request.Func, p), Context: e.r.name}
		}
	}()
	if fn := lookupFunc(c.Request.Func); fn != nil {
		v, err := fn(ctx, c)
		if err != nil {
			return nil, nil, err
		}
		data, err := Marshal(v)
		if err != nil {
			return nil, nil, err
		}
		return EncodeCallReply(Pieces{data}, nil)[0], nil, nil
	}
	e.mu.Lock()
	h := e.handler
	e.mu.Unlock()
	if h == nil {
		return nil, nil, &RemoteError{Kind: CallError, Message: fmt.Sprintf("no function named %q in %s", c.Request.Func, e.r.name), Context: e.r.name}
	}
	return h(ctx, c)
}

// reply sends the reply; a reply over the size limit becomes a dead
// message "message too large" so the caller sees ChannelError.
func (e *executor) reply(m *Message, value Pieces, rerr *RemoteError) {
	data := EncodeCallReply(value, rerr)
	e.send(m, data[0], data[1:])
}

// send sends a reply payload laid out by EncodeCallReply.
func (e *executor) send(m *Message, head []byte, tail Pieces) {
	if max := e.r.MaxMessageSize(); len(head)+tail.Len() > max {
		e.r.sendDead(m, fmt.Sprintf(msgTooLarge, max))
		return
	}
	// While more calls wait, replies are left to the stream's writer,
	// which writes them in one go once the queue is drained.
	e.mu.Lock()
	more := len(e.queue) > 0
	e.mu.Unlock()
	if err := m.replyRaw(head, tail, more); err != nil {
		e.r.log.Debug("call reply not sent", "err", err)
	}
}

// DecodeCallReply turns a CALL_FUNCTION reply message into the CBOR of
// the result or the error it carries (*RemoteError, or *ChannelError for
// a dead message).
func DecodeCallReply(m *Message) ([]byte, error) {
	if m.IsDead() {
		return nil, &ChannelError{Reason: m.DeadReason()}
	}
	if len(m.Data) > 0 && m.Data[0] == cborNull {
		return m.Data[1:], nil
	}
	var rerr *RemoteError
	rest, err := decMode.UnmarshalFirst(m.Data, &rerr)
	if err != nil {
		return nil, fmt.Errorf("decoding call reply: %w", err)
	}
	if rerr != nil {
		return nil, rerr
	}
	return rest, nil
}

// CallAsync starts a call of fn and returns the Receiver of its reply;
// see DecodeCallReply.
func (c *Context) CallAsync(ctx context.Context, req *CallRequest) (*Receiver, error) {
	return c.callAsync(ctx, req, true)
}

// callAsync is CallAsync. With batch the frame is left to the stream's
// writer goroutine, so that calls started back to back share writes;
// without, the caller writes it at once if the stream is idle (a caller
// about to wait for the reply: one goroutine switch less per call).
func (c *Context) callAsync(ctx context.Context, req *CallRequest, batch bool) (*Receiver, error) {
	m, err := NewCallMessage(req)
	if err != nil {
		return nil, err
	}
	m.batch = batch
	return c.SendAsync(ctx, m, false)
}

// CallRaw calls fn and returns the CBOR of its result.
func (c *Context) CallRaw(ctx context.Context, req *CallRequest) ([]byte, error) {
	rv, err := c.callAsync(ctx, req, false)
	if err != nil {
		return nil, err
	}
	defer rv.Close()
	m, err := rv.Get(ctx, true)
	if err != nil {
		return nil, err
	}
	return DecodeCallReply(m)
}

// Call calls the registered Func fn with args (encoded as a CBOR array)
// and decodes its result into out (which may be nil).
func (c *Context) Call(ctx context.Context, out any, fn string, args ...any) error {
	if args == nil {
		args = []any{}
	}
	a, err := Marshal(args)
	if err != nil {
		return fmt.Errorf("call %s: encoding arguments: %w", fn, err)
	}
	val, err := c.CallRaw(ctx, &CallRequest{Func: fn, Args: a})
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	return Unmarshal(val, out)
}

// CallNoReply calls fn without waiting for, or receiving, a result.
func (c *Context) CallNoReply(fn string, args ...any) error {
	a, err := Marshal(args)
	if err != nil {
		return err
	}
	m, err := NewCallMessage(&CallRequest{Func: fn, Args: a})
	if err != nil {
		return err
	}
	return c.Send(m)
}

package core

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
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
// ReplyOK then the CBOR of the result (the layout of encodeCallReply),
// head first and then the large strings of tail (see Message.Tail).
type CallHandler func(ctx context.Context, call *Call) (head []byte, tail []string, err error)

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

// callQueueLimit bounds the bytes of calls waiting to run in one
// context; a call that arrives past it is refused with a dead message.
const callQueueLimit = 64 << 20

// executor runs CALL_FUNCTION requests one at a time, in arrival order,
// on one goroutine, while the stream readers keep routing.
type executor struct {
	r       *Router
	mu      sync.Mutex
	queue   []*Message
	queued  int // payload bytes in queue
	wake    chan struct{}
	started bool
	closed  bool
	handler CallHandler
}

func newExecutor(r *Router) *executor {
	return &executor{r: r, wake: make(chan struct{}, 1)}
}

// enqueue queues a call; it runs on a stream's reader and never waits.
func (e *executor) enqueue(m *Message) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		e.r.sendDead(m, msgRouterClosed)
		return
	}
	if e.queued >= callQueueLimit {
		queued := e.queued
		e.mu.Unlock()
		reason := fmt.Sprintf(msgCallQueueFull, e.r.name, queued)
		e.r.warnf("refused a call from %s: %s", e.r.nameOf(m.SrcID), reason)
		e.r.sendDead(m, reason)
		return
	}
	e.queue = append(e.queue, m)
	e.queued += len(m.Data)
	if !e.started {
		e.started = true
		e.r.Go(e.loop)
	}
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

func (e *executor) loop() {
	for {
		e.mu.Lock()
		if e.closed {
			e.mu.Unlock()
			return
		}
		if len(e.queue) == 0 {
			e.mu.Unlock()
			<-e.wake
			continue
		}
		m := e.queue[0]
		e.queue[0] = nil
		e.queue = e.queue[1:]
		e.queued -= len(m.Data)
		e.mu.Unlock()
		e.run(m)
	}
}

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
	select {
	case e.wake <- struct{}{}:
	default:
	}
	for _, m := range pending {
		e.r.sendDead(m, msgRouterClosed)
	}
}

// encodeCallRequest lays out a CALL_FUNCTION payload: the header and
// the arguments' head, then the large strings of the arguments' tail.
func encodeCallRequest(req *CallRequest) (head []byte, tail []string, err error) {
	// The request's fields and the arguments after them, in one buffer
	// made big enough for both.
	buf := bytes.NewBuffer(make([]byte, 0, callHeadSize+len(req.Func)+len(req.Ext)+len(req.Args)))
	if err := encMode.MarshalToBuffer(req, buf); err != nil {
		return nil, nil, err
	}
	buf.Write(req.Args)
	return buf.Bytes(), req.ArgsTail, nil
}

// callHeadSize is room for a call request's CBOR framing and its
// timeout, beside the lengths of its name, extensions and arguments.
const callHeadSize = 32

// NewCallMessage returns the CALL_FUNCTION message of req.
func NewCallMessage(req *CallRequest) (*Message, error) {
	head, tail, err := encodeCallRequest(req)
	if err != nil {
		return nil, err
	}
	return &Message{Handle: handleCallFunction, Data: head, Tail: tail}, nil
}

// decodeCallRequest reads a CALL_FUNCTION payload; req.Args aliases data.
func decodeCallRequest(data []byte, req *CallRequest) error {
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

// encodeCallReply lays out a reply: null then value (CBOR) on success,
// the RemoteError alone on failure.
func encodeCallReply(value []byte, rerr *RemoteError) []byte {
	if rerr != nil {
		data, err := Marshal(rerr)
		if err != nil {
			data, _ = Marshal(&RemoteError{Kind: "Error", Message: "encoding an error: " + err.Error()})
		}
		return data
	}
	return append(append(make([]byte, 0, 1+len(value)), cborNull), value...)
}

// run serves one call and sends its reply.
func (e *executor) run(m *Message) {
	r := e.r
	var req CallRequest
	if m.IsDead() {
		return
	}
	if err := decodeCallRequest(m.Data, &req); err != nil {
		e.fail(m, &RemoteError{Kind: "Error", Message: "bad call request: " + err.Error(), Context: r.name})
		return
	}
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
	if err != nil {
		e.fail(m, AsRemote(err, r.name))
		return
	}
	e.send(m, head, tail)
}

func (e *executor) call(ctx context.Context, c *Call) (head []byte, tail []string, err error) {
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
		return encodeCallReply(data, nil), nil, nil
	}
	e.mu.Lock()
	h := e.handler
	e.mu.Unlock()
	if h == nil {
		return nil, nil, &RemoteError{Kind: CallError, Message: fmt.Sprintf("no function named %q in %s", c.Request.Func, e.r.name), Context: e.r.name}
	}
	return h(ctx, c)
}

// fail sends the reply of a call that failed. A call that wants no reply
// (call_no_reply) has nobody to tell: its failure is logged, as
// Mitogen logs it.
func (e *executor) fail(m *Message, rerr *RemoteError) {
	if m.ReplyTo == 0 {
		text := fmt.Sprintf("No-reply function call failed: %s: %s", rerr.Kind, rerr.Message)
		if tb := rerr.Traceback(); tb != "" {
			text += "\n" + strings.TrimRight(tb, "\n")
		}
		e.r.Emit(slog.LevelError, text)
		return
	}
	e.send(m, encodeCallReply(nil, rerr), nil)
}

// send sends a reply payload laid out by encodeCallReply; a reply over
// the size limit becomes a dead message "message too large" so the
// caller sees ChannelError.
func (e *executor) send(m *Message, head []byte, tail []string) {
	if max := e.r.MaxMessageSize(); (&Message{Data: head, Tail: tail}).Len() > max {
		e.r.sendDead(m, fmt.Sprintf(msgTooLarge, max))
		return
	}
	if err := m.ReplyRaw(e.r.ctx, head, tail...); err != nil {
		e.r.log.Debug("call reply not sent", "err", err)
	}
}

// DecodeCallReply turns a CALL_FUNCTION reply message into the CBOR of
// the result or the error it carries (*RemoteError, or *ChannelError for
// a dead message).
func DecodeCallReply(m *Message) ([]byte, error) {
	if m.err != nil {
		return nil, m.err
	}
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
// see DecodeCallReply. ctx bounds the wait for room in a full queue.
func (c *Context) CallAsync(ctx context.Context, req *CallRequest) (*Receiver, error) {
	m, err := NewCallMessage(req)
	if err != nil {
		return nil, err
	}
	return c.SendAsync(ctx, m, false)
}

// CallRaw calls fn and returns the CBOR of its result.
func (c *Context) CallRaw(ctx context.Context, req *CallRequest) ([]byte, error) {
	rv, err := c.CallAsync(ctx, req)
	if err == nil {
		defer rv.Close()
		var m *Message
		if m, err = rv.Get(ctx, true); err == nil {
			return DecodeCallReply(m)
		}
	}
	var te *TimeoutError
	if errors.As(err, &te) {
		return nil, &TimeoutError{Op: fmt.Sprintf("call to %s in %s", req.Func, c.Name())}
	}
	return nil, err
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

// CallNoReply calls fn without waiting for, or receiving, a result; ctx
// bounds the wait for room in a full queue.
func (c *Context) CallNoReply(ctx context.Context, fn string, args ...any) error {
	a, err := Marshal(args)
	if err != nil {
		return err
	}
	m, err := NewCallMessage(&CallRequest{Func: fn, Args: a})
	if err != nil {
		return err
	}
	return c.Send(ctx, m)
}

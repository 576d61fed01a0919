package builtins

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"go.starlark.net/starlark"

	"github.com/mitostar/mitostar/core"
)

// withTimeout derives the context for a blocking get: timeout is None or
// a number of seconds.
func withTimeout(thread *starlark.Thread, fn string, timeout starlark.Value) (context.Context, context.CancelFunc, error) {
	ctx := ThreadContext(thread)
	if timeout == nil || timeout == starlark.None {
		return ctx, func() {}, nil
	}
	secs, ok := starlark.AsFloat(timeout)
	if !ok || math.IsNaN(secs) || secs < 0 {
		return nil, nil, fmt.Errorf("%s: timeout must be a non-negative number of seconds, got %s", fn, timeout)
	}
	c, cancel := context.WithTimeout(ctx, time.Duration(secs*float64(time.Second)))
	return c, cancel, nil
}

// decoderOf returns the value decoder of the thread's runtime.
func decoderOf(thread *starlark.Thread) *Decoder {
	if rt := runtimeOf(thread); rt != nil {
		return rt.Decoder()
	}
	r, _ := RouterOf(thread)
	return &Decoder{Router: r}
}

// methodTable implements Attr/AttrNames for the types below.
type methodTable map[string]Func

func (t methodTable) attr(recv starlark.Value, name string) (starlark.Value, error) {
	if fn, ok := t[name]; ok {
		return starlark.NewBuiltin(name, fn).BindReceiver(recv), nil
	}
	return nil, nil
}

func (t methodTable) names(extra ...string) []string {
	out := append([]string(nil), extra...)
	for n := range t {
		out = append(out, n)
	}
	sortStrings(out)
	return out
}

// ---- Message ----

// Message is the Starlark face of a core.Message (type "message").
type Message struct {
	M        *core.Message
	receiver starlark.Value
	call     bool // a CALL_FUNCTION reply: decode yields the result or fails with the call's error
}

func (m *Message) String() string        { return m.M.String() }
func (m *Message) Type() string          { return "message" }
func (m *Message) Freeze()               {}
func (m *Message) Truth() starlark.Bool  { return true }
func (m *Message) Hash() (uint32, error) { return 0, errors.New("unhashable type: message") }

var messageMethods = methodTable{
	"decode": func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		m := b.Receiver().(*Message)
		throw := true
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, "throw?", &throw); err != nil {
			return nil, err
		}
		return m.decode(thread, throw)
	},
	"reply": messageReply,
}

// messageReply is msg.reply(value, handle=, reply_to=, dst_id=), as
// Mitogen's Message.reply(obj, **kwargs): value (or, when it is a
// Message, that message's data and reply_to) goes back to the message's
// sender on its reply_to handle; keywords override the reply's fields,
// reply_to to give the reply a return address of its own. A message
// that asked for no reply gets none unless handle= names one.
func messageReply(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	m := b.Receiver().(*Message)
	var v starlark.Value
	var handle, replyTo, dst starlark.Value = starlark.None, starlark.None, starlark.None
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "value", &v, "handle?", &handle, "reply_to?", &replyTo, "dst_id?", &dst); err != nil {
		return nil, err
	}
	out := &core.Message{DstID: m.M.SrcID, Handle: m.M.ReplyTo}
	if given, ok := v.(*Message); ok {
		out.Data, out.ReplyTo = given.M.Data, given.M.ReplyTo
	} else {
		head, tail, err := EncodePieces(refsOf(thread), nil, v)
		if err != nil {
			return nil, fmt.Errorf("reply: %w", err)
		}
		out.Data, out.Tail = head, tail
	}
	for _, f := range []struct {
		name string
		v    starlark.Value
		dst  *uint32
	}{{"handle", handle, &out.Handle}, {"reply_to", replyTo, &out.ReplyTo}, {"dst_id", dst, &out.DstID}} {
		if f.v == starlark.None {
			continue
		}
		if err := starlark.AsInt(f.v, f.dst); err != nil {
			return nil, fmt.Errorf("reply: %s must be an int, got %s", f.name, f.v.Type())
		}
	}
	if out.Handle == 0 || m.M.IsDead() {
		return starlark.None, nil // nobody asked for a reply
	}
	r, err := RouterOf(thread)
	if err != nil {
		return nil, fmt.Errorf("reply: %w", err)
	}
	if err := r.Route(ThreadContext(thread), out); err != nil {
		return nil, fmt.Errorf("reply: %w", err)
	}
	return starlark.None, nil
}

func (m *Message) decode(thread *starlark.Thread, throw bool) (starlark.Value, error) {
	if m.M.IsDead() {
		err := &core.ChannelError{Reason: m.M.DeadReason()}
		if throw {
			return nil, err
		}
		r, _ := RouterOf(thread)
		name := ""
		if r != nil {
			name = r.Name()
		}
		return ErrorOf(err, name), nil
	}
	if m.call {
		val, err := core.DecodeCallReply(m.M)
		if err != nil {
			if !throw {
				return ErrorOf(err, ""), nil
			}
			return nil, err
		}
		return decoderOf(thread).Decode(val)
	}
	if len(m.M.Data) == 0 {
		return starlark.None, nil
	}
	return decoderOf(thread).Decode(m.M.Data)
}

// Attr returns the message's header fields and methods.
func (m *Message) Attr(name string) (starlark.Value, error) {
	switch name {
	case "dst_id":
		return starlark.MakeUint(uint(m.M.DstID)), nil
	case "src_id":
		return starlark.MakeUint(uint(m.M.SrcID)), nil
	case "auth_id":
		return starlark.MakeUint(uint(m.M.AuthID)), nil
	case "handle":
		return starlark.MakeUint(uint(m.M.Handle)), nil
	case "reply_to":
		return starlark.MakeUint(uint(m.M.ReplyTo)), nil
	case "data":
		return starlark.Bytes(m.M.Data), nil
	case "is_dead":
		return starlark.Bool(m.M.IsDead()), nil
	case "receiver":
		if m.receiver == nil {
			return starlark.None, nil
		}
		return m.receiver, nil
	}
	return messageMethods.attr(m, name)
}

// AttrNames lists the message's fields and methods.
func (m *Message) AttrNames() []string {
	return messageMethods.names("auth_id", "data", "dst_id", "handle", "is_dead", "receiver", "reply_to", "src_id")
}

func newMessage(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var data starlark.Bytes
	var handle, dst, replyTo uint32
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "data?", &data, "handle?", &handle, "dst_id?", &dst, "reply_to?", &replyTo); err != nil {
		return nil, err
	}
	return &Message{M: &core.Message{Data: []byte(data), Handle: handle, DstID: dst, ReplyTo: replyTo}}, nil
}

func messageEncoded(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("%s: want exactly one positional argument (the value), got %d", b.Name(), len(args))
	}
	data, err := Encode(refsOf(thread), args[0])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	var handle, dst, replyTo uint32
	if err := starlark.UnpackArgs(b.Name(), nil, kwargs, "handle?", &handle, "dst_id?", &dst, "reply_to?", &replyTo); err != nil {
		return nil, err
	}
	return &Message{M: &core.Message{Data: data, Handle: handle, DstID: dst, ReplyTo: replyTo}}, nil
}

// ---- Sender ----

// Sender is the Starlark face of a core.Sender (type "sender").
type Sender struct {
	S *core.Sender
}

func (s *Sender) String() string {
	return fmt.Sprintf("Sender(%s, %d)", s.S.Context().Name(), s.S.Handle())
}
func (s *Sender) Type() string          { return "sender" }
func (s *Sender) Freeze()               {}
func (s *Sender) Truth() starlark.Bool  { return true }
func (s *Sender) Hash() (uint32, error) { return s.S.Handle() ^ s.S.Context().ID<<16, nil }

var senderMethods = methodTable{
	"send": func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var v starlark.Value
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &v); err != nil {
			return nil, err
		}
		head, tail, err := EncodePieces(refsOf(thread), nil, v)
		if err != nil {
			return nil, fmt.Errorf("send: %w", err)
		}
		if err := b.Receiver().(*Sender).S.SendRaw(ThreadContext(thread), head, tail...); err != nil {
			return nil, fmt.Errorf("send: %w", err)
		}
		return starlark.None, nil
	},
	"close": func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
			return nil, err
		}
		if err := b.Receiver().(*Sender).S.Close(); err != nil {
			return nil, fmt.Errorf("close: %w", err)
		}
		return starlark.None, nil
	},
}

// Attr returns context, handle and the methods.
func (s *Sender) Attr(name string) (starlark.Value, error) {
	switch name {
	case "context":
		return NewContext(s.S.Context()), nil
	case "handle":
		return starlark.MakeUint(uint(s.S.Handle())), nil
	}
	return senderMethods.attr(s, name)
}

// AttrNames lists the sender's attributes.
func (s *Sender) AttrNames() []string { return senderMethods.names("context", "handle") }

func newSender(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var ctx *Context
	var handle uint32
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "context", &ctx, "handle", &handle); err != nil {
		return nil, err
	}
	return &Sender{S: core.NewSender(ctx.C, handle)}, nil
}

// ---- Receiver ----

// Receiver is the Starlark face of a core.Receiver (type "receiver").
type Receiver struct {
	R *core.Receiver
	// Call marks the receiver of call_async: its messages decode to the
	// call's result, or fail with the call's error.
	Call bool

	owner owner // the thread whose context bounds an iteration

	notifyMu sync.Mutex
	notify   starlark.Value // rv.notify: a callable, or nil
	notifyQ  *callbackQueue // runs it
}

// newReceiverValue wraps rv for a script running on thread.
func newReceiverValue(thread *starlark.Thread, rv *core.Receiver, call bool) *Receiver {
	r := &Receiver{R: rv, Call: call}
	r.owner.use(thread)
	return r
}

func (r *Receiver) String() string        { return fmt.Sprintf("Receiver(%d)", r.R.Handle()) }
func (r *Receiver) Type() string          { return "receiver" }
func (r *Receiver) Freeze()               {}
func (r *Receiver) Truth() starlark.Bool  { return true }
func (r *Receiver) Hash() (uint32, error) { return r.R.Handle(), nil }

// Iterate yields messages until the channel is closed or dead, or the
// call that made or last used the receiver ends (its _timeout passed).
func (r *Receiver) Iterate() starlark.Iterator {
	return &recvIter{get: r.getMsg, ctx: r.owner.context(r.R.Router().Lifetime())}
}

func (r *Receiver) getMsg(thread *starlark.Thread, ctx context.Context, block bool) (starlark.Value, error) {
	r.owner.use(thread)
	m, err := r.R.Get(ctx, block)
	if err != nil {
		return nil, err
	}
	return &Message{M: m, receiver: r, call: r.Call}, nil
}

var receiverMethods = methodTable{
	"get": func(t *starlark.Thread, b *starlark.Builtin, a starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
		return chanGet(t, b, a, kw, b.Receiver().(*Receiver).getMsg, false)
	},
	"get_data": func(t *starlark.Thread, b *starlark.Builtin, a starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
		return chanGet(t, b, a, kw, b.Receiver().(*Receiver).getMsg, true)
	},
	"to_sender": func(t *starlark.Thread, b *starlark.Builtin, a starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
		if err := starlark.UnpackPositionalArgs(b.Name(), a, kw, 0); err != nil {
			return nil, err
		}
		return &Sender{S: b.Receiver().(*Receiver).R.ToSender()}, nil
	},
	"empty": func(t *starlark.Thread, b *starlark.Builtin, a starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
		return starlark.Bool(b.Receiver().(*Receiver).R.Empty()), starlark.UnpackPositionalArgs(b.Name(), a, kw, 0)
	},
	"size": func(t *starlark.Thread, b *starlark.Builtin, a starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
		return starlark.MakeInt(b.Receiver().(*Receiver).R.Size()), starlark.UnpackPositionalArgs(b.Name(), a, kw, 0)
	},
	"close": func(t *starlark.Thread, b *starlark.Builtin, a starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
		r := b.Receiver().(*Receiver)
		r.R.Close()
		r.notifyMu.Lock()
		r.stopNotifyLocked() // nothing arrives any more
		r.notifyMu.Unlock()
		return starlark.None, starlark.UnpackPositionalArgs(b.Name(), a, kw, 0)
	},
}

// Attr returns handle, notify and the methods.
func (r *Receiver) Attr(name string) (starlark.Value, error) {
	switch name {
	case "handle":
		return starlark.MakeUint(uint(r.R.Handle())), nil
	case "notify":
		r.notifyMu.Lock()
		defer r.notifyMu.Unlock()
		if r.notify == nil {
			return starlark.None, nil
		}
		return r.notify, nil
	}
	return receiverMethods.attr(r, name)
}

// AttrNames lists the receiver's attributes.
func (r *Receiver) AttrNames() []string { return receiverMethods.names("handle", "notify") }

// SetField sets notify: rv.notify = fn has fn(rv) called, on a
// goroutine of this context, for each message that arrives from then on
// (and once at once when messages are waiting already, as Mitogen's
// documentation advises); None removes it.
func (r *Receiver) SetField(name string, v starlark.Value) error {
	if name != "notify" {
		return starlark.NoSuchAttrError(fmt.Sprintf("receiver has no writable attribute %q", name))
	}
	r.notifyMu.Lock()
	defer r.notifyMu.Unlock()
	if v == starlark.None {
		r.R.Notify(nil)
		r.stopNotifyLocked()
		return nil
	}
	fn, ok := v.(starlark.Callable)
	if !ok {
		return fmt.Errorf("receiver.notify must be callable or None, got %s", v.Type())
	}
	var rt Runtime
	if st := r.owner.st.Load(); st != nil {
		rt = st.Runtime
	}
	if rt == nil {
		return errors.New("receiver.notify: no mitostar runtime made this receiver")
	}
	r.stopNotifyLocked()
	q := newCallbackQueue(r.R.Router(), rt, "notify callback")
	if err := r.R.Notify(func() { q.put(callback{fn: fn, args: starlark.Tuple{r}}) }); err != nil {
		q.put(callback{last: true})
		return fmt.Errorf("receiver.notify: a Select waits on this receiver: %w", err)
	}
	r.notify, r.notifyQ = fn, q
	if !r.R.Empty() {
		q.put(callback{fn: fn, args: starlark.Tuple{r}})
	}
	return nil
}

// stopNotifyLocked ends the goroutine of the notify callback, if any.
func (r *Receiver) stopNotifyLocked() {
	if r.notifyQ != nil {
		r.notifyQ.put(callback{last: true})
		r.notify, r.notifyQ = nil, nil
	}
}

func newReceiver(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var router *Router
	var handle uint32
	persist := true
	var respondent starlark.Value = starlark.None
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "router", &router, "handle?", &handle, "persist?", &persist, "respondent?", &respondent); err != nil {
		return nil, err
	}
	opts := core.ReceiverOptions{Handle: handle, Once: !persist}
	if respondent != starlark.None {
		c, err := ToContext(respondent, b.Name())
		if err != nil {
			return nil, err
		}
		opts.Respondent = c
	}
	rv, err := router.R.NewReceiver(opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	return newReceiverValue(thread, rv, false), nil
}

// chanGet implements get(timeout=None, block=True) and get_data(timeout=None).
func chanGet(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple,
	get func(*starlark.Thread, context.Context, bool) (starlark.Value, error), data bool) (starlark.Value, error) {
	var timeout starlark.Value = starlark.None
	block := true
	if data {
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, "timeout?", &timeout); err != nil {
			return nil, err
		}
	} else if err := starlark.UnpackArgs(b.Name(), args, kwargs, "timeout?", &timeout, "block?", &block); err != nil {
		return nil, err
	}
	ctx, cancel, err := withTimeout(thread, b.Name(), timeout)
	if err != nil {
		return nil, err
	}
	defer cancel()
	v, err := get(thread, ctx, block)
	if err != nil {
		return nil, err
	}
	if m, ok := v.(*Message); ok && data {
		return m.decode(thread, true)
	}
	return v, nil
}

// recvIter iterates a channel until it closes; other errors (the end of
// ctx among them) end the iteration too, and the thread, cancelled with
// its context, fails at its next step.
type recvIter struct {
	get func(*starlark.Thread, context.Context, bool) (starlark.Value, error)
	ctx context.Context
	err error
}

func (it *recvIter) Next(p *starlark.Value) bool {
	v, err := it.get(nil, it.ctx, true)
	if err != nil {
		var ce *core.ChannelError
		if !errors.As(err, &ce) {
			it.err = err
		}
		return false
	}
	*p = v
	return true
}

func (it *recvIter) Done()      {}
func (it *recvIter) Err() error { return it.err }

// ---- Latch ----

// Latch is the Starlark face of a core.Latch (type "latch").
type Latch struct {
	L *core.Latch
}

func (l *Latch) String() string        { return fmt.Sprintf("Latch(size=%d)", l.L.Size()) }
func (l *Latch) Type() string          { return "latch" }
func (l *Latch) Freeze()               {}
func (l *Latch) Truth() starlark.Bool  { return true }
func (l *Latch) Hash() (uint32, error) { return 0, errors.New("unhashable type: latch") }

func (l *Latch) get(thread *starlark.Thread, ctx context.Context, block bool) (starlark.Value, error) {
	if l.L.Closed() {
		// As Mitogen's Latch.get: a closed latch raises even when values
		// are still queued (core.Latch drains them, for Receivers).
		return nil, core.ErrLatchClosed
	}
	v, err := l.L.Get(ctx, block)
	if err != nil {
		return nil, err
	}
	if v == nil {
		return starlark.None, nil
	}
	return v.(starlark.Value), nil
}

var latchMethods = methodTable{
	"put": func(t *starlark.Thread, b *starlark.Builtin, a starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
		var v starlark.Value = starlark.None
		if err := starlark.UnpackArgs(b.Name(), a, kw, "value?", &v); err != nil {
			return nil, err
		}
		v.Freeze() // it may be taken by another thread
		return starlark.None, b.Receiver().(*Latch).L.Put(v)
	},
	"get": func(t *starlark.Thread, b *starlark.Builtin, a starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
		return chanGet(t, b, a, kw, b.Receiver().(*Latch).get, false)
	},
	"empty": func(t *starlark.Thread, b *starlark.Builtin, a starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
		return starlark.Bool(b.Receiver().(*Latch).L.Empty()), starlark.UnpackPositionalArgs(b.Name(), a, kw, 0)
	},
	"size": func(t *starlark.Thread, b *starlark.Builtin, a starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
		return starlark.MakeInt(b.Receiver().(*Latch).L.Size()), starlark.UnpackPositionalArgs(b.Name(), a, kw, 0)
	},
	"close": func(t *starlark.Thread, b *starlark.Builtin, a starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
		b.Receiver().(*Latch).L.Close()
		return starlark.None, starlark.UnpackPositionalArgs(b.Name(), a, kw, 0)
	},
}

// Attr returns the latch's methods.
func (l *Latch) Attr(name string) (starlark.Value, error) { return latchMethods.attr(l, name) }

// AttrNames lists the latch's methods.
func (l *Latch) AttrNames() []string { return latchMethods.names() }

func newLatch(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
		return nil, err
	}
	return &Latch{L: core.NewLatch()}, nil
}

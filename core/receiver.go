package core

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// receiverQueueLimit bounds the bytes a Receiver holds that its owner
// has not read, each message counted as its payload plus
// messageOverhead; a message arriving past it is refused (a message
// larger than the limit is taken into an empty receiver).
const receiverQueueLimit = 32 << 20

// messageOverhead is what a queued message costs beyond its payload (the
// Message and its place in the queue), so that a flood of empty messages
// is bounded too.
const messageOverhead = 256

// queuedSize is what m counts against receiverQueueLimit.
func queuedSize(m *Message) int64 { return int64(len(m.Data)) + messageOverhead }

// A Receiver queues the messages that arrive on one handle of its router.
// It holds at most receiverQueueLimit bytes of messages not yet read: a
// message past that is refused, with a dead message to its sender when
// it expects a reply, and a warning in the log.
type Receiver struct {
	router     *Router
	handle     uint32
	persist    bool
	respondent *Context
	latch      Latch // in the Receiver: one allocation less per call's reply

	queued    atomic.Int64 // queuedSize of the messages in latch
	expiry    atomic.Pointer[time.Timer]
	expired   atomic.Bool // the expiry fired: a reply may still be on its way
	closeOnce sync.Once

	notifyMu sync.Mutex
	notified bool // Notify installed the latch's notification (not a Select)
}

// ReceiverOptions configure NewReceiver.
type ReceiverOptions struct {
	// Handle to listen on; zero allocates a fresh user handle.
	Handle uint32
	// Once makes the receiver stop listening after its first message.
	Once bool
	// Respondent, when set, makes the receiver fail with ChannelError
	// "the respondent Context has disconnected" if that context dies.
	Respondent *Context
	// Policy refuses messages it returns false for (a dead message
	// "refused by policy" goes back to the sender).
	Policy Policy
}

// NewReceiver registers a handler on the router that queues messages.
func (r *Router) NewReceiver(opts ReceiverOptions) (*Receiver, error) {
	rv := &Receiver{router: r, persist: !opts.Once, respondent: opts.Respondent}
	h, err := r.AddHandler(rv.deliver, HandlerOptions{
		Handle:     opts.Handle,
		Once:       opts.Once,
		Respondent: opts.Respondent,
		Policy:     opts.Policy,
	})
	if err != nil {
		return nil, err
	}
	rv.handle = h
	return rv, nil
}

// newReceiver is NewReceiver for internal callers that cannot fail:
// fresh handles never collide.
func (r *Router) newReceiver(once bool, respondent *Context) *Receiver {
	rv, err := r.NewReceiver(ReceiverOptions{Once: once, Respondent: respondent})
	if err != nil {
		panic(fmt.Sprintf("allocating receiver: %v", err))
	}
	return rv
}

func (rv *Receiver) deliver(m *Message) {
	if q := rv.queued.Load(); q > 0 && q+queuedSize(m) > receiverQueueLimit && !m.IsDead() {
		reason := fmt.Sprintf(msgReceiverFull, rv.handle, rv.router.name, q)
		rv.router.warnf("refused a message from %s: %s", rv.router.nameOf(m.SrcID), reason)
		rv.router.sendDead(m, reason)
		return
	}
	rv.queued.Add(queuedSize(m))
	if rv.latch.Put(m) != nil {
		rv.queued.Add(-queuedSize(m))
		return // closed: drop
	}
	if !rv.persist {
		rv.latch.Close()
		rv.stopExpiry()
	}
}

// Expire makes the receiver yield err once d has passed, unless a message
// arrived first (a one-message receiver then has its message): Get
// returns a message carrying err, and so does an iteration, a Select or
// DecodeCallReply. A call's reply receiver gets the call's timeout this
// way, so the call fails at its time even if the callee never answers.
func (rv *Receiver) Expire(d time.Duration, err error) {
	t := time.AfterFunc(d, func() {
		rv.expired.Store(true)
		m := &Message{DstID: rv.router.id, SrcID: rv.router.id, AuthID: rv.router.id, Handle: rv.handle, err: err, router: rv.router}
		if rv.latch.Put(m) == nil && !rv.persist {
			rv.latch.Close()
		}
	})
	if old := rv.expiry.Swap(t); old != nil {
		old.Stop()
	}
}

func (rv *Receiver) stopExpiry() {
	if t := rv.expiry.Load(); t != nil {
		t.Stop()
	}
}

// Handle is the handle the receiver listens on.
func (rv *Receiver) Handle() uint32 { return rv.handle }

// Router is the router the receiver belongs to.
func (rv *Receiver) Router() *Router { return rv.router }

// Get returns the next message. A dead message is returned together with a
// *ChannelError giving its reason; a closed receiver is a ChannelError
// "the Receiver has been closed"; an expired ctx is a TimeoutError. With
// block false, an empty receiver is a TimeoutError at once.
func (rv *Receiver) Get(ctx context.Context, block bool) (*Message, error) {
	v, err := rv.latch.Get(ctx, block)
	if err != nil {
		if err == ErrLatchClosed {
			return nil, &ChannelError{Reason: msgReceiverClosed}
		}
		return nil, err
	}
	m := v.(*Message)
	rv.queued.Add(-queuedSize(m))
	if m.err != nil {
		return m, m.err
	}
	if m.IsDead() {
		return m, &ChannelError{Reason: m.DeadReason()}
	}
	return m, nil
}

// GetData returns the next message's payload decoded into v.
func (rv *Receiver) GetData(ctx context.Context, v any) error {
	m, err := rv.Get(ctx, true)
	if err != nil {
		return err
	}
	return m.Decode(v)
}

// Empty reports whether no message is queued.
func (rv *Receiver) Empty() bool { return rv.latch.Empty() }

// Size returns how many messages are queued.
func (rv *Receiver) Size() int { return rv.latch.Size() }

// Closed reports whether the receiver is closed.
func (rv *Receiver) Closed() bool { return rv.latch.Closed() }

// Close stops listening; queued messages stay readable, then Get fails
// with ChannelError. After an expiry the answer it gave up on may still
// arrive: the handle swallows it quietly for a while rather than warning
// of an invalid handle.
func (rv *Receiver) Close() {
	rv.closeOnce.Do(func() {
		if rv.expired.Load() {
			rv.router.retireHandler(rv.handle, retireAfter, func(m *Message) {
				rv.router.sendDead(m, msgReceiverClosed)
			})
		} else {
			rv.router.DelHandler(rv.handle)
		}
		rv.latch.Close()
		rv.stopExpiry()
	})
}

// ToSender returns a Sender that delivers to this receiver from anywhere
// in the tree.
func (rv *Receiver) ToSender() *Sender {
	return &Sender{ctx: rv.router.Myself(), handle: rv.handle}
}

// setNotify installs fn to be called when a message arrives or the
// receiver closes; it reports whether one was already installed.
func (rv *Receiver) setNotify(fn func()) bool { return rv.latch.setNotify(fn) }

// Notify has fn called after each message is queued, as Mitogen's
// Receiver.notify: on the goroutine that delivers it, so fn must not
// block. A later call replaces fn; nil removes it. While a Select waits
// on the receiver the notification is the Select's: Notify fails with
// ErrSelectOwned, and a Select cannot take a receiver with one.
func (rv *Receiver) Notify(fn func()) error {
	rv.notifyMu.Lock()
	defer rv.notifyMu.Unlock()
	if rv.notified {
		rv.latch.setNotify(nil)
		rv.notified = false
	}
	if fn == nil {
		return nil
	}
	if rv.latch.setNotify(fn) {
		return ErrSelectOwned
	}
	rv.notified = true
	return nil
}

// A Sender sends values to a handle in a context: the writing end of a
// channel whose reading end is a Receiver there.
type Sender struct {
	ctx    *Context
	handle uint32
}

// NewSender returns a Sender for handle in ctx.
func NewSender(ctx *Context, handle uint32) *Sender { return &Sender{ctx: ctx, handle: handle} }

// Context is the context the sender delivers to.
func (s *Sender) Context() *Context { return s.ctx }

// Handle is the handle the sender delivers to.
func (s *Sender) Handle() uint32 { return s.handle }

// Send delivers the CBOR encoding of v, waiting for room in a full queue
// until ctx ends.
func (s *Sender) Send(ctx context.Context, v any) error {
	data, err := Marshal(v)
	if err != nil {
		return err
	}
	return s.SendRaw(ctx, data)
}

// SendRaw delivers already-encoded CBOR: data followed by the strings of
// tail (see Message.Tail).
func (s *Sender) SendRaw(ctx context.Context, data []byte, tail ...string) error {
	return s.ctx.Send(ctx, &Message{Handle: s.handle, Data: data, Tail: tail})
}

// Close sends a dead message so the remote receiver's iteration ends. It
// never waits: the dead message gets through a full queue.
func (s *Sender) Close() error {
	data, _ := Marshal(msgSenderClosed)
	return s.ctx.router.routeNoWait(&Message{DstID: s.ctx.ID, Handle: s.handle, ReplyTo: IsDead, Data: data}, controlReserve)
}

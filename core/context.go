package core

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
)

// A Context is a handle on one context of the tree, seen from a router:
// send messages to it, call functions in it, shut it down. Contexts are
// compared by ID.
type Context struct {
	router *Router
	ID     uint32
	name   atomic.Pointer[string]
	via    atomic.Pointer[Context]

	deadOnce   sync.Once
	deadCh     chan struct{}
	deadReason string
	shutdown   atomic.Bool // Shutdown was called: later sends are refused here
}

func newContext(r *Router, id uint32, name string) *Context {
	c := &Context{router: r, ID: id, deadCh: make(chan struct{})}
	if name != "" {
		c.name.Store(&name)
	}
	return c
}

// Name is the context's name ("local.1234", "ssh.host:22"), or its id
// when unknown.
func (c *Context) Name() string {
	if p := c.name.Load(); p != nil {
		return *p
	}
	return "context." + strconv.Itoa(int(c.ID))
}

// Via is the context through which this one was connected, nil when it
// was started directly by its router.
func (c *Context) Via() *Context { return c.via.Load() }

// Router is the router this handle belongs to.
func (c *Context) Router() *Router { return c.router }

func (c *Context) String() string { return fmt.Sprintf("Context(%d, %q)", c.ID, c.Name()) }

// Disconnected is closed when the context is known to be gone.
func (c *Context) Disconnected() <-chan struct{} { return c.deadCh }

// DisconnectReason says why the context is gone, "" while it lives.
func (c *Context) DisconnectReason() string {
	select {
	case <-c.deadCh:
		return c.deadReason
	default:
		return ""
	}
}

func (c *Context) markDead(reason string) {
	c.deadOnce.Do(func() {
		c.deadReason = reason
		close(c.deadCh)
	})
}

// Send routes m to this context, waiting for room in a full queue until
// ctx ends. Once Shutdown has been called, sends are refused here.
func (c *Context) Send(ctx context.Context, m *Message) error {
	if c.shutdown.Load() {
		return fmt.Errorf("%s has been shut down", c.Name())
	}
	m.DstID = c.ID
	return c.router.Route(ctx, m)
}

// SendAsync sends m with a fresh reply handle and returns the Receiver
// for replies. With persist false the receiver takes one reply. If the
// context dies first, the receiver yields ChannelError.
func (c *Context) SendAsync(ctx context.Context, m *Message, persist bool) (*Receiver, error) {
	rv := c.router.newReceiver(!persist, c)
	m.ReplyTo = rv.handle
	if err := c.Send(ctx, m); err != nil {
		rv.Close()
		return nil, err
	}
	return rv, nil
}

// SendAwait sends m and waits for one reply.
func (c *Context) SendAwait(ctx context.Context, m *Message) (*Message, error) {
	rv, err := c.SendAsync(ctx, m, false)
	if err != nil {
		return nil, err
	}
	defer rv.Close()
	return rv.Get(ctx, true)
}

// Shutdown asks the context to exit and returns a Latch that receives nil
// once it is gone. It never waits: the request is a control message that
// gets through a full queue.
func (c *Context) Shutdown() *Latch {
	c.requestShutdown()
	l := NewLatch()
	c.router.Go(func() {
		select {
		case <-c.deadCh:
		case <-c.router.ctx.Done():
		}
		l.Put(nil)
	})
	return l
}

// requestShutdown refuses later sends to the context and sends it SHUTDOWN.
func (c *Context) requestShutdown() {
	c.shutdown.Store(true)
	if err := c.router.routeNoWait(&Message{DstID: c.ID, Handle: handleShutdown}, controlReserve); err != nil {
		c.router.log.Debug("shutdown: send failed", "context", c.Name(), "err", err)
	}
}

// ShutdownWait asks the context to exit and waits until it is gone or
// ctx ends.
func (c *Context) ShutdownWait(ctx context.Context) error {
	c.requestShutdown()
	select {
	case <-c.deadCh:
		return nil
	case <-ctx.Done():
		return ctxErr(ctx, "shutdown "+c.Name())
	}
}

package core

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/mitostar/mitostar/internal/wire"
)

// controlReserve is how far past its limit a stream's queue takes the
// small frames the router writes itself (dead messages, route updates):
// a congested stream still hears why its messages were refused.
const controlReserve = 1 << 20

// A Stream is the connection to a neighbour in the tree (the parent or a
// direct child): a wire.Link, whose reader hands every frame to the
// router and whose writer drains a queue bounded in bytes.
type Stream struct {
	router   *Router
	remoteID uint32 // the neighbour's context id
	name     string // the neighbour's context name
	isParent bool
	link     *wire.Link
	exited   <-chan struct{} // optional: closed when the child's process is reaped

	mu      sync.Mutex
	egress  map[uint32]struct{} // ids the neighbour sent frames for (DEL_ROUTE goes to it)
	refused int                 // frames refused since the last warning
	warned  time.Time           // when the last warning was logged
	closed  sync.Once
}

// newStream returns the stream to a neighbour over r and w; release runs
// once when it closes (it closes r and w). start runs it.
//
// told is the size limit the neighbour and this context agreed at the
// handshake. The reader accepts frames up to that or the router's
// current limit, whichever is larger: a neighbour that keeps to what it
// was told is never cut off because this context lowered its limit later.
// Such a frame is read whole and then refused by the router with a dead
// message that says why, and the memory it takes stays within the agreed
// limit.
func newStream(rt *Router, remoteID uint32, name string, isParent bool, told int, r io.Reader, w io.Writer, release func()) *Stream {
	s := &Stream{router: rt, remoteID: remoteID, name: name, isParent: isParent, egress: make(map[uint32]struct{})}
	s.link = wire.New(wire.Config{
		Reader:   r,
		Writer:   w,
		Release:  release,
		MaxFrame: func() int { return max(told, rt.MaxMessageSize()) },
	})
	return s
}

func (s *Stream) String() string {
	return fmt.Sprintf("stream to %s (id %d)", s.name, s.remoteID)
}

// start runs the link's loops; when the link ends, the router hears of it.
func (s *Stream) start() {
	s.router.Go(func() {
		select {
		case <-s.link.Done():
			s.ended()
		case <-s.router.ctx.Done():
			// Close closes every stream itself and waits for it.
		}
	})
	s.link.Start(s.deliver)
}

// deliver is the link's reader: every frame goes to the router.
func (s *Stream) deliver(h wire.Header, payload []byte, buf *wire.Buf) {
	m := &Message{DstID: h.Dst, SrcID: h.Src, AuthID: h.Auth, Handle: h.Handle, ReplyTo: h.ReplyTo, Data: payload, from: s, buf: buf}
	s.router.routeIn(m, s)
}

// ended tells the router, once, that the stream is gone.
func (s *Stream) ended() {
	s.closed.Do(func() {
		err := s.link.Err()
		if errors.Is(err, wire.ErrTooLarge) {
			s.router.warnf("closed the %s: it sent a message over the size limit: %v", s, err)
		}
		s.router.onStreamClosed(s, err)
	})
}

// Done is closed once the stream has closed.
func (s *Stream) Done() <-chan struct{} { return s.link.Done() }

// Err returns the first cause of the stream's end, nil while it is open.
func (s *Stream) Err() error { return s.link.Err() }

// send queues m, waiting for room in the queue until ctx ends: for
// messages that start in this context, whose sender may wait.
func (s *Stream) send(ctx context.Context, m *Message) error {
	if err := s.link.Send(ctx, m.frame()); err != nil {
		if ctx.Err() != nil {
			return ctxErr(ctx, "send to "+s.name)
		}
		return &StreamError{Op: "send to " + s.name, Err: err}
	}
	return nil
}

// forward queues m without waiting: for frames read from another stream
// and for the router's own control frames (extra > 0), so that no reader
// ever waits on a neighbour. wire.ErrFull says the neighbour is not
// keeping up.
func (s *Stream) forward(m *Message, extra int) error {
	err := s.link.TrySend(m.frame(), extra)
	if err != nil && err != wire.ErrFull {
		return &StreamError{Op: "send to " + s.name, Err: err}
	}
	return err
}

// congested is the reason given to the sender of a frame refused because
// the queue towards this stream's neighbour is full.
func (s *Stream) congested() string {
	return fmt.Sprintf(msgCongested, s.name, s.remoteID, s.link.Queued(), s.router.name)
}

// refusalWarnEvery is the least time between two warnings about frames
// refused towards one neighbour: a flood gets one line a second.
const refusalWarnEvery = time.Second

// noteRefused logs, as a warning every context's log shows, that m was
// refused because this stream's queue is full: the first refusal at
// once, then at most one line a second counting the others.
func (s *Stream) noteRefused(m *Message, reason string) {
	s.mu.Lock()
	s.refused++
	n := s.refused
	now := time.Now()
	if now.Sub(s.warned) < refusalWarnEvery {
		s.mu.Unlock()
		return
	}
	s.refused, s.warned = 0, now
	s.mu.Unlock()
	s.router.Emit(slog.LevelWarn, fmt.Sprintf("refused %d message(s), the last from context %d to %d (handle %d): %s", n, m.SrcID, m.DstID, m.Handle, reason))
}

// noteEgress records that the neighbour sent a message for dst; DEL_ROUTE
// for dst is then forwarded to it.
func (s *Stream) noteEgress(dst uint32) {
	s.mu.Lock()
	s.egress[dst] = struct{}{}
	s.mu.Unlock()
}

// forgetEgress reports whether the neighbour sent a message for dst, and
// forgets that it did.
func (s *Stream) forgetEgress(dst uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.egress[dst]
	delete(s.egress, dst)
	return ok
}

// close ends the stream, keeping the first cause.
func (s *Stream) close(cause error) { s.link.Close(cause) }

// Close closes the stream and waits for its goroutines to end; the
// router hears of it before Close returns.
func (s *Stream) Close() {
	s.link.Close(errors.New("closed locally"))
	s.link.Wait()
	s.ended()
}

// flush waits until everything queued has been written, the stream has
// closed, or timeout has passed.
func (s *Stream) flush(timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	s.link.Flush(ctx)
}

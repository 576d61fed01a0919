package core

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// streamQueueBytes bounds the bytes queued for one stream's writer. A
// sender that would exceed it waits (backpressure); a single message
// larger than the bound is still accepted when the queue is empty.
const streamQueueBytes = 8 << 20

// A Stream is a connection to a neighbour in the tree (the parent or a
// direct child). Exactly one goroutine reads it, and at any time at most
// one goroutine writes it.
type Stream struct {
	router   *Router
	remoteID uint32 // the neighbour's context id
	name     string // the neighbour's context name
	isParent bool

	br     *bufio.Reader
	bw     *bufio.Writer // used only by the goroutine that set writing
	closer func()        // releases the transport (closes fds, reaps the process)

	mu      sync.Mutex
	queue   []*Message
	spare   []*Message
	bytes   int
	writing bool          // a goroutine is draining the queue
	space   chan struct{} // closed and replaced when the writer frees space
	egress  map[uint32]struct{}

	done      chan struct{}
	closeOnce sync.Once
	err       error // first cause, set before done closes
	loops     sync.WaitGroup
}

func newStream(r *Router, remoteID uint32, name string, isParent bool, br *bufio.Reader, w io.Writer, closer func()) *Stream {
	return &Stream{
		router: r, remoteID: remoteID, name: name, isParent: isParent,
		br: br, bw: bufio.NewWriterSize(w, 64<<10), closer: closer,
		space:  make(chan struct{}),
		egress: make(map[uint32]struct{}),
		done:   make(chan struct{}),
	}
}

func (s *Stream) String() string {
	return fmt.Sprintf("stream to %s (id %d)", s.name, s.remoteID)
}

// start runs the reader goroutine. There is no writer goroutine: the
// goroutine that finds the stream idle writes (see send).
func (s *Stream) start() {
	s.loops.Add(1)
	go s.readLoop()
}

// Done is closed once the stream has closed.
func (s *Stream) Done() <-chan struct{} { return s.done }

// Err returns the first cause of the stream's end, nil while it is open.
func (s *Stream) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// send writes m to the stream. When no other goroutine is writing, the
// caller writes it at once (and anything queued meanwhile); otherwise m
// is queued for the goroutine that is writing. A full queue makes the
// caller wait (backpressure) until ctx ends.
func (s *Stream) send(ctx context.Context, m *Message) error {
	n := HeaderSize + len(m.Data)
	for {
		s.mu.Lock()
		select {
		case <-s.done:
			s.mu.Unlock()
			return &StreamError{Op: "send to " + s.name, Err: s.err}
		default:
		}
		if s.bytes == 0 || s.bytes+n <= streamQueueBytes {
			s.queue = append(s.queue, m)
			s.bytes += n
			if s.writing {
				s.mu.Unlock()
				return nil
			}
			s.writing = true
			s.mu.Unlock()
			return s.drain()
		}
		space := s.space
		s.mu.Unlock()
		select {
		case <-space:
		case <-s.done:
		case <-ctx.Done():
			return ctxErr(ctx, "send to "+s.name)
		}
	}
}

// drain writes queued frames until the queue is empty. Only the goroutine
// that set s.writing runs it, so it owns s.bw.
func (s *Stream) drain() error {
	for {
		s.mu.Lock()
		batch := s.queue
		s.queue = s.spare[:0]
		if len(batch) == 0 {
			s.writing = false
			s.mu.Unlock()
			return nil
		}
		s.mu.Unlock()
		freed := 0
		var err error
		for i, m := range batch {
			if err == nil {
				err = WriteMessage(s.bw, m)
			}
			freed += HeaderSize + len(m.Data)
			batch[i] = nil
		}
		if err == nil {
			err = s.bw.Flush()
		}
		s.mu.Lock()
		s.spare = batch[:0]
		s.bytes -= freed
		space := s.space
		s.space = make(chan struct{})
		if err != nil {
			s.writing = false
		}
		s.mu.Unlock()
		close(space)
		if err != nil {
			err = fmt.Errorf("write: %w", err)
			s.close(err)
			return &StreamError{Op: "send to " + s.name, Err: err}
		}
	}
}

func (s *Stream) readLoop() {
	defer s.loops.Done()
	var err error
	for err == nil {
		err = s.readOne()
	}
	if errors.Is(err, io.EOF) {
		err = io.EOF
	}
	s.close(err)
}

func (s *Stream) readOne() error {
	m, err := ReadMessage(s.br, s.router.MaxMessageSize())
	if err != nil {
		if errors.Is(err, ErrTooLarge) {
			s.router.log.Error("closing stream: received message over the size limit", "stream", s.String(), "err", err)
		}
		return err
	}
	m.from = s
	s.router.routeIn(m, s)
	return nil
}

// noteEgress records that the neighbour sent a message for dst; DEL_ROUTE
// for dst is then forwarded to it.
func (s *Stream) noteEgress(dst uint32) {
	s.mu.Lock()
	s.egress[dst] = struct{}{}
	s.mu.Unlock()
}

func (s *Stream) hasEgress(dst uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.egress[dst]
	return ok
}

// close ends the stream once, keeping the first cause, and tells the router.
func (s *Stream) close(cause error) {
	s.closeOnce.Do(func() {
		if cause == nil {
			cause = errors.New("closed")
		}
		s.mu.Lock()
		s.err = cause
		close(s.done)
		s.queue = nil
		s.mu.Unlock()
		if s.closer != nil {
			s.closer()
		}
		s.router.onStreamClosed(s, cause)
	})
}

// Close closes the stream and waits for its goroutines to end.
func (s *Stream) Close() {
	s.close(errors.New("closed locally"))
	s.loops.Wait()
}

// flush waits until everything queued has been written, the stream has
// closed, or timeout has passed.
func (s *Stream) flush(timeout time.Duration) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		s.mu.Lock()
		n, space := s.bytes, s.space
		s.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-space:
		case <-s.done:
			return
		case <-t.C:
			return
		}
	}
}

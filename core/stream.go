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
// direct child). Exactly one goroutine reads it and one writes it.
type Stream struct {
	router   *Router
	remoteID uint32 // the neighbour's context id
	name     string // the neighbour's context name
	isParent bool

	br     *bufio.Reader
	w      io.Writer
	closer func() // releases the transport (closes fds, reaps the process)

	mu     sync.Mutex
	queue  []*Message
	bytes  int
	more   chan struct{} // cap 1: wakes the writer
	space  chan struct{} // closed and replaced when the writer frees space
	egress map[uint32]struct{}

	done      chan struct{}
	closeOnce sync.Once
	err       error // first cause, set before done closes
	loops     sync.WaitGroup
}

func newStream(r *Router, remoteID uint32, name string, isParent bool, br *bufio.Reader, w io.Writer, closer func()) *Stream {
	return &Stream{
		router: r, remoteID: remoteID, name: name, isParent: isParent,
		br: br, w: w, closer: closer,
		more:   make(chan struct{}, 1),
		space:  make(chan struct{}),
		egress: make(map[uint32]struct{}),
		done:   make(chan struct{}),
	}
}

func (s *Stream) String() string {
	return fmt.Sprintf("stream to %s (id %d)", s.name, s.remoteID)
}

// start runs the reader and writer goroutines.
func (s *Stream) start() {
	s.loops.Add(2)
	go s.readLoop()
	go s.writeLoop()
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

// send queues m for the writer, waiting while the queue is full.
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
			s.mu.Unlock()
			select {
			case s.more <- struct{}{}:
			default:
			}
			return nil
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

func (s *Stream) writeLoop() {
	defer s.loops.Done()
	bw := bufio.NewWriterSize(s.w, 64<<10)
	var batch []*Message
	for {
		select {
		case <-s.more:
		case <-s.done:
			return
		}
		for {
			s.mu.Lock()
			batch, s.queue = s.queue, batch[:0]
			s.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			freed := 0
			for i, m := range batch {
				if err := WriteMessage(bw, m); err != nil {
					s.close(fmt.Errorf("write: %w", err))
					return
				}
				freed += HeaderSize + len(m.Data)
				batch[i] = nil
			}
			if err := bw.Flush(); err != nil {
				s.close(fmt.Errorf("write: %w", err))
				return
			}
			s.mu.Lock()
			s.bytes -= freed
			space := s.space
			s.space = make(chan struct{})
			s.mu.Unlock()
			close(space)
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

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
// one goroutine writes it: a sender making one non-blocking write, or
// the stream's writer goroutine.
type Stream struct {
	router   *Router
	remoteID uint32 // the neighbour's context id
	name     string // the neighbour's context name
	isParent bool

	br     *bufio.Reader
	bw     *bufio.Writer   // the writer goroutine's, when the writer is not a non-blocking fd
	raw    *fdWriter       // set when the writer is a non-blocking fd
	closer func()          // releases the transport (closes fds, reaps the process)
	exited <-chan struct{} // optional: closed when the child's process is reaped

	mu      sync.Mutex
	queue   []*Message
	spare   []*Message
	bytes   int              // queued bytes, pending included
	writing bool             // a sender or the writer goroutine owns the output
	pending [][]byte         // what a partial inline write left, written first by the writer goroutine
	pendMsg *Message         // the forwarded message pending ends with, recycled once written
	pendLen int              // payload length of the frame pending ends, for noteDropped
	hdr     [HeaderSize]byte // inline header of a large frame, used by the owner of the output
	ivec    [][]byte         // inline writev pieces, used by the owner of the output
	vec     [][]byte         // writeFrames' pieces for writev (writer goroutine)
	wake    chan struct{}    // cap 1: wakes the writer goroutine
	space   chan struct{}    // made by a waiter for room, closed when the writer frees some (spaceLocked, freedLocked)
	egress  map[uint32]struct{}

	done      chan struct{}
	closeOnce sync.Once
	err       error // first cause, set before done closes
	loops     sync.WaitGroup
}

func newStream(r *Router, remoteID uint32, name string, isParent bool, br *bufio.Reader, w io.Writer, closer func()) *Stream {
	s := &Stream{
		router: r, remoteID: remoteID, name: name, isParent: isParent,
		br: br, raw: newFDWriter(w), closer: closer,
		wake:   make(chan struct{}, 1),
		egress: make(map[uint32]struct{}),
		done:   make(chan struct{}),
	}
	if s.raw == nil {
		// Only a writer that is not a non-blocking fd goes through a
		// buffer; fd streams write with writev (writeFrames), and an
		// unused 64 KiB buffer per stream is 16 pages to zero.
		s.bw = bufio.NewWriterSize(w, 64<<10)
	}
	return s
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

// inlineMax is the largest frame a sender copies into one buffer for
// its inline write; larger ones are written from their own memory.
const inlineMax = 64 << 10

// send queues m for the stream. When the output is idle and the stream
// is a non-blocking fd, the caller tries to write the frame at once with
// one write that never blocks (the common case: no goroutine handoff);
// whatever that write could not take, and every frame sent meanwhile, is
// written by the stream's writer goroutine. A full queue makes the
// caller wait (backpressure) until ctx ends; a sender never waits on the
// peer reading.
func (s *Stream) send(ctx context.Context, m *Message) error {
	n := HeaderSize + m.Len()
	for {
		s.mu.Lock()
		select {
		case <-s.done:
			s.mu.Unlock()
			return &StreamError{Op: "send to " + s.name, Err: s.err}
		default:
		}
		if s.bytes == 0 || s.bytes+n <= streamQueueBytes {
			s.bytes += n
			if s.writing {
				s.queue = append(s.queue, m)
				s.mu.Unlock()
				return nil
			}
			s.writing = true
			if s.raw == nil || m.batch {
				s.queue = append(s.queue, m)
				s.mu.Unlock()
				s.kick()
				return nil
			}
			s.mu.Unlock()
			return s.writeInline(m, n)
		}
		space := s.spaceLocked()
		s.mu.Unlock()
		select {
		case <-space:
		case <-s.done:
		case <-ctx.Done():
			return ctxErr(ctx, "send to "+s.name)
		}
	}
}

// writeInline makes one non-blocking write of m's frame: a small frame
// copied into one buffer, a large one as its header and payload pieces
// with writev. The caller owns the output (it set s.writing) and hands
// it to the writer goroutine if anything is left to write; what is left
// refers to the frame's memory (and to its pooled frame buffer and
// s.hdr, untouched until the output is idle again).
func (s *Stream) writeInline(m *Message, n int) error {
	vec := s.ivec[:0]
	forwarded := m.from != nil && !m.delivered
	size := m.Len() // recycling m clears it
	var bp *[]byte  // the frame buffer of a small frame, pooled again once written
	if n <= inlineMax {
		bp = getFrameBuf(n)
		buf := appendFrame((*bp)[:0], m)
		*bp = buf
		if forwarded {
			recycleFrame(m) // copied into buf
			forwarded = false
		}
		vec = append(vec, buf)
	} else {
		putHeader(s.hdr[:], m)
		vec = append(vec, s.hdr[:], m.Data)
		vec = append(vec, m.Tail...)
	}
	s.ivec = vec
	wrote, err := s.raw.tryWritev(vec)
	if err != nil {
		clear(vec)
		err = fmt.Errorf("write: %w", err)
		s.close(err)
		return &StreamError{Op: "send to " + s.name, Err: err}
	}
	var rest [][]byte
	if wrote < n {
		rest = append([][]byte(nil), skipBytes(vec, wrote)...) // bp goes with it, not back to the pool
	} else {
		if forwarded {
			recycleFrame(m)
		}
		noteDropped(size)
		if bp != nil {
			putFrameBuf(bp)
		}
	}
	clear(vec)
	s.mu.Lock()
	s.bytes -= wrote
	if wrote < n {
		s.pending, s.pendLen = rest, size
		if forwarded {
			s.pendMsg = m
		}
	}
	idle := wrote == n && len(s.queue) == 0
	if idle {
		s.writing = false
	}
	space := s.freedLocked()
	s.mu.Unlock()
	closeSpace(space)
	if !idle {
		s.kick()
	}
	return nil
}

// spaceLocked returns the channel closed when the writer next frees
// room, making it for the first waiter: most writes have none, and a
// channel per write is an allocation per message.
func (s *Stream) spaceLocked() chan struct{} {
	if s.space == nil {
		s.space = make(chan struct{})
	}
	return s.space
}

// freedLocked takes the space channel, if anyone made one; the caller
// closes it (closeSpace) after unlocking, waking senders waiting for room.
func (s *Stream) freedLocked() chan struct{} {
	space := s.space
	s.space = nil
	return space
}

func closeSpace(space chan struct{}) {
	if space != nil {
		close(space)
	}
}

// kick wakes the writer goroutine.
func (s *Stream) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// writeLoop is the stream's writer goroutine: woken when a sender hands
// it the output, it writes until the queue is empty.
func (s *Stream) writeLoop() {
	defer s.loops.Done()
	growStackSmall() // here, not at the first message: see growStack
	for {
		select {
		case <-s.wake:
		case <-s.done:
			return
		}
		if err := s.drain(); err != nil {
			s.close(err)
			return
		}
	}
}

// drain writes the pending tail and queued frames until the queue is
// empty, then gives the output up. Only the writer goroutine runs it.
func (s *Stream) drain() error {
	for {
		s.mu.Lock()
		pending, pendMsg, largest := s.pending, s.pendMsg, s.pendLen
		s.pending, s.pendMsg, s.pendLen = nil, nil, 0
		batch := s.queue
		if len(batch) == 0 && pending == nil {
			s.writing = false
			s.mu.Unlock()
			return nil
		}
		// Swap only now: on the empty path above, queue and spare
		// would both alias the spare array.
		s.queue = s.spare[:0]
		s.mu.Unlock()
		var err error
		if s.raw != nil {
			err = s.writeFrames(pending, batch)
		} else {
			err = s.bufferFrames(pending, batch)
		}
		freed := Pieces(pending).Len()
		if pendMsg != nil {
			recycleFrame(pendMsg) // a forwarded frame, written
		}
		for i, m := range batch {
			freed += HeaderSize + m.Len()
			largest = max(largest, m.Len())
			// A frame forwarded to the next hop: written (or never to
			// be, the stream failing), so its receive buffer is free.
			if m.from != nil && !m.delivered {
				recycleFrame(m)
			}
			batch[i] = nil
		}
		s.mu.Lock()
		s.spare = batch[:0]
		s.bytes -= freed
		space := s.freedLocked()
		s.mu.Unlock()
		closeSpace(space)
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		noteDropped(largest)
	}
}

// bufferFrames writes pending and the frames of batch through the
// stream's bufio.Writer, for a writer that is not a non-blocking fd.
func (s *Stream) bufferFrames(pending [][]byte, batch []*Message) error {
	var err error
	for _, p := range pending {
		if err == nil {
			_, err = s.bw.Write(p)
		}
	}
	for _, m := range batch {
		if err != nil {
			return err
		}
		err = WriteMessage(s.bw, m)
	}
	if err != nil {
		return err
	}
	return s.bw.Flush()
}

// copyMax is the largest payload piece writeFrames copies next to its
// neighbours; larger pieces are written from their own memory.
const copyMax = 16 << 10

// writeFrames writes pending and the frames of batch to the stream's
// fd with writev: headers and small payload pieces are copied together
// into one buffer, large pieces (byte stream chunks, forwarded frames,
// a message's Tail) go as they are, so a 256 KiB frame costs no copy
// and the whole batch usually one system call.
func (s *Stream) writeFrames(pending [][]byte, batch []*Message) error {
	size := 0
	for _, m := range batch {
		size += HeaderSize
		if len(m.Data) <= copyMax {
			size += len(m.Data)
		}
		for _, p := range m.Tail {
			if len(p) <= copyMax {
				size += len(p)
			}
		}
	}
	// buf is sized first and never grows below: vec refers into it.
	bp := getFrameBuf(size)
	buf := (*bp)[:0]
	vec := s.vec[:0]
	vec = append(vec, pending...)
	mark := 0 // start of what buf holds that vec does not yet
	add := func(p []byte) {
		if len(p) <= copyMax {
			buf = append(buf, p...)
			return
		}
		if len(buf) > mark {
			vec = append(vec, buf[mark:])
			mark = len(buf)
		}
		vec = append(vec, p)
	}
	for _, m := range batch {
		n := len(buf)
		buf = buf[:n+HeaderSize]
		putHeader(buf[n:], m)
		add(m.Data)
		for _, p := range m.Tail {
			add(p)
		}
	}
	if len(buf) > mark {
		vec = append(vec, buf[mark:])
	}
	err := s.raw.writevAll(vec)
	clear(vec) // no reference to the payloads outlives the write
	s.vec = vec[:0]
	*bp = buf
	putFrameBuf(bp) // written, or the stream failed: either way done with
	return err
}

// frameBufs are the buffers streams lay small frames out in to write
// them (inline writes, the writer goroutine's batches), shared by all
// streams: a buffer per stream would be fresh memory for every child's
// first messages, which on the benchmark VMs costs more than the write.
var frameBufs sync.Pool // of *[]byte

// maxPooledFrameBuf is the largest buffer frameBufs keeps.
const maxPooledFrameBuf = 256 << 10

// getFrameBuf returns an empty pooled buffer with room for size bytes.
func getFrameBuf(size int) *[]byte {
	if bp, _ := frameBufs.Get().(*[]byte); bp != nil {
		if cap(*bp) >= size {
			return bp
		}
		frameBufs.Put(bp)
	}
	b := make([]byte, 0, max(size, 4096))
	return &b
}

// putFrameBuf gives a buffer back once nothing refers into it.
func putFrameBuf(bp *[]byte) {
	if cap(*bp) <= maxPooledFrameBuf {
		*bp = (*bp)[:0]
		frameBufs.Put(bp)
	}
}

func (s *Stream) readLoop() {
	defer s.loops.Done()
	growStack() // decoding and dispatching a call goes deep
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
	// Another frame already read: if this one is forwarded, the writer
	// of the next stream writes them together.
	m.batch = s.br.Buffered() >= HeaderSize
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
		n := s.bytes
		var space chan struct{}
		if n > 0 {
			space = s.spaceLocked()
		}
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

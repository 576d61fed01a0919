package core

// Byte streams: ordered, windowed, bidirectional byte pipes between any
// two contexts of the tree (through via hops too), used by file transfer
// and fakessh. docs/protocol.md ("Byte streams") mirrors this comment.
//
// Each end of a stream owns a fresh user handle (AddHandler) whose
// respondent is the other end's context, so the death of either process
// fails the other end with "the respondent Context has disconnected".
// Every frame goes to the peer's handle with reply_to set to the
// sender's own handle: a frame that cannot be delivered (no route, the
// peer's handle is gone, too large) comes back as a dead message and
// breaks the stream at the sender. The payload is a CBOR array:
//
//	[1, window, max_chunk]  OPEN    dialer → listener, once, first frame
//	[2, bytes]              DATA    at most the credit the peer granted
//	[3, n]                  WINDOW  the receiver consumed n more bytes
//	[4]                     EOF     no more DATA from the sender (half-close)
//	[5]                     CLOSE   EOF, and the sender stops reading too
//	[6, kind, message]      RESET   the sender aborts; both ends fail
//
// Opening: the listener (NewByteStream) allocates its handle and hands
// its StreamAddr (context id, handle, window, max_chunk) to the peer by
// any means, usually as an argument of a call; the peer calls
// DialByteStream, which sends OPEN. The dialer may send up to the
// listener's window at once; the listener may send once OPEN arrived.
//
// Flow control: a receiver never buffers more than the window it
// granted; each time its reader has consumed a quarter of the window it
// returns that much credit with WINDOW. A writer out of credit blocks, so
// a slow reader slows the writer and no hop buffers more than one window
// per stream.
//
// Chunks: ReadChunk hands the receiver a received frame's bytes as they
// are, and ReadFrom reads straight into the payload of the frame it
// sends, so bulk data is copied only by the system calls that move it.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/mitostar/mitostar/internal/cborhead"
	"github.com/mitostar/mitostar/internal/wire"
)

// Byte stream frame opcodes (first element of the payload array).
const (
	bsOpen   = 1 // [1, window, max_chunk]
	bsData   = 2 // [2, bytes]
	bsWindow = 3 // [3, n]
	bsEOF    = 4 // [4]
	bsClose  = 5 // [5]
	bsReset  = 6 // [6, kind, message]
)

// defaultStreamWindow is the receive window of a byte stream unless
// ByteStreamOptions says otherwise.
const defaultStreamWindow = 1 << 20

// maxStreamChunk bounds a DATA frame's bytes; smaller message size
// limits make chunks smaller.
const maxStreamChunk = 256 << 10

// streamFrameOverhead is the most a DATA payload adds to its bytes.
const streamFrameOverhead = 16

// ErrStreamClosed is returned by operations on a ByteStream after Close.
var ErrStreamClosed = errors.New("use of closed byte stream")

// A StreamAddr names the listening end of a byte stream, for the peer
// to dial. It travels as a call argument.
type StreamAddr struct {
	Context  uint32 `cbor:"1,keyasint"` // the listener's context id
	Handle   uint32 `cbor:"2,keyasint"` // the listener's handle
	Window   int    `cbor:"3,keyasint"` // credit the dialer starts with
	MaxChunk int    `cbor:"4,keyasint"` // largest DATA the listener accepts
}

// ByteStreamOptions configure a byte stream end.
type ByteStreamOptions struct {
	// Window is the receive window in bytes (defaultStreamWindow when
	// zero; at least 4096).
	Window int
}

// A ByteStream is one end of a byte stream. Read, Write, CloseWrite and
// Close may be called from different goroutines; concurrent Reads (or
// Writes) are serialized. Close must be called to release the handle.
type ByteStream struct {
	r      *Router
	peer   *Context
	handle uint32
	window int
	chunk  int // largest DATA this end accepts

	wmu sync.Mutex // serializes writers
	rmu sync.Mutex // serializes readers

	mu         sync.Mutex
	wake       chan struct{} // closed and replaced on every state change
	peerHandle uint32        // 0 until OPEN (listener)
	credit     int           // bytes this end may still send
	peerChunk  int           // largest DATA the peer accepts
	peerWindow int           // the peer's window: credit never exceeds it
	rbuf       []rchunk      // received bytes waiting to be read, in order
	rlen       int
	consumed   int // bytes read since the last WINDOW
	held       int // bytes handed out by ReadChunk and not yet released
	eofIn      bool
	peerClosed bool
	eofOut     bool
	closed     bool
	released   bool
	err        error // why the stream broke; first cause wins
	rdeadline  time.Time
	wdeadline  time.Time
}

// dataHead is the room a DATA payload head takes at most in front of its
// bytes: array head, opcode, byte string head of up to 4 length bytes.
const dataHead = 1 + 1 + 5

// An rchunk is received bytes waiting to be read, and the pooled buffer
// they are in, if any: freed once they have been copied out (Read,
// WriteTo), dropped to the garbage collector once handed out (ReadChunk).
type rchunk struct {
	b   []byte
	buf *wire.Buf
}

var (
	_ io.ReadWriteCloser = (*ByteStream)(nil)
	_ io.WriterTo        = (*ByteStream)(nil)
	_ io.ReaderFrom      = (*ByteStream)(nil)
)

func (r *Router) newByteStream(peer *Context, opts *ByteStreamOptions) (*ByteStream, error) {
	if peer == nil {
		return nil, errors.New("byte stream: no peer context")
	}
	w := defaultStreamWindow
	if opts != nil && opts.Window != 0 {
		w = opts.Window
	}
	if w < MinMaxMessageSize {
		return nil, fmt.Errorf("byte stream: window must be at least %d bytes, got %d", MinMaxMessageSize, w)
	}
	s := &ByteStream{r: r, peer: peer, window: w, chunk: chunkFor(r.MaxMessageSize()), wake: make(chan struct{})}
	h, err := r.AddHandler(s.onFrame, HandlerOptions{Respondent: peer, Policy: s.policy})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.handle = h
	s.mu.Unlock()
	return s, nil
}

func chunkFor(maxMessage int) int {
	return min(maxStreamChunk, maxMessage-streamFrameOverhead)
}

// NewByteStream creates the listening end of a byte stream with peer;
// give s.Addr() to the peer, which calls DialByteStream with it.
func (r *Router) NewByteStream(peer *Context, opts *ByteStreamOptions) (*ByteStream, error) {
	return r.newByteStream(peer, opts)
}

// DialByteStream connects to the listening end addr and returns this
// end of the stream. It sends OPEN and does not wait for an answer: a
// listener that is gone makes the first Read or Write fail.
func (r *Router) DialByteStream(ctx context.Context, addr StreamAddr, opts *ByteStreamOptions) (*ByteStream, error) {
	if addr.Handle < FirstUserHandle || addr.Window < 1 || addr.MaxChunk < 1 {
		return nil, fmt.Errorf("byte stream: bad address %+v", addr)
	}
	s, err := r.newByteStream(r.ContextByID(addr.Context), opts)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.peerHandle, s.credit, s.peerChunk, s.peerWindow = addr.Handle, addr.Window, addr.MaxChunk, addr.Window
	s.mu.Unlock()
	payload := cborhead.Append(nil, 4, 3)
	payload = cborhead.Append(payload, 0, bsOpen)
	payload = cborhead.Append(payload, 0, uint64(s.window))
	payload = cborhead.Append(payload, 0, uint64(s.chunk))
	if err := s.send(ctx, payload); err != nil {
		s.fail(err)
		s.release()
		return nil, err
	}
	return s, nil
}

// Addr is this end's address, for the peer to dial.
func (s *ByteStream) Addr() StreamAddr {
	return StreamAddr{Context: s.r.ID(), Handle: s.handle, Window: s.window, MaxChunk: s.chunk}
}

// Peer is the context at the other end.
func (s *ByteStream) Peer() *Context { return s.peer }

func (s *ByteStream) String() string {
	return fmt.Sprintf("byte stream %d with %s", s.handle, s.peer.Name())
}

// policy accepts frames from the peer, and dead messages from anywhere
// on the path (a router that could not deliver one of ours).
func (s *ByteStream) policy(m *Message) bool {
	return m.IsDead() || (m.SrcID == s.peer.ID && m.AuthID == s.peer.ID)
}

// notifyLocked wakes every waiter; s.mu is held.
func (s *ByteStream) notifyLocked() {
	close(s.wake)
	s.wake = make(chan struct{})
}

// onFrame handles one frame addressed to this end. It runs on the
// goroutine that delivers messages and never blocks or sends.
func (s *ByteStream) onFrame(m *Message) {
	if m.IsDead() {
		s.fail(&StreamError{Op: s.String(), Err: errors.New(m.DeadReason())})
		s.release()
		return
	}
	buf := m.buf // this handler's to free (see Router.invoke)
	m.buf = nil
	op, rest, err := readHeadKind(m.Data)
	var perr error
	s.mu.Lock()
	switch {
	case err != nil:
		perr = err
	case op == bsOpen:
		var window, chunk uint64
		if window, rest, err = readUint(rest); err == nil {
			chunk, _, err = readUint(rest)
		}
		switch {
		case err != nil:
			perr = err
		case s.peerHandle != 0:
			perr = errors.New("second OPEN")
		case m.ReplyTo < FirstUserHandle || window < 1 || chunk < 1 || window > 1<<40 || chunk > 1<<40:
			perr = fmt.Errorf("bad OPEN (handle %d, window %d, chunk %d)", m.ReplyTo, window, chunk)
		default:
			s.peerHandle, s.credit, s.peerChunk, s.peerWindow = m.ReplyTo, int(window), int(chunk), int(window)
		}
	case m.ReplyTo != s.peerHandle || s.peerHandle == 0:
		perr = fmt.Errorf("frame from handle %d, want %d", m.ReplyTo, s.peerHandle)
	case op == bsData:
		var data []byte
		data, _, err = readBytes(rest)
		switch {
		case err != nil:
			perr = err
		case s.eofIn:
			perr = errors.New("DATA after EOF")
		case s.rlen+s.held+len(data) > s.window:
			perr = fmt.Errorf("peer overran the window (%d buffered + %d > %d)", s.rlen+s.held, len(data), s.window)
		case len(data) > 0 && !s.closed:
			s.rbuf = append(s.rbuf, rchunk{b: data, buf: buf})
			s.rlen += len(data)
			buf = nil
		}
	case op == bsWindow:
		var n uint64
		if n, _, err = readUint(rest); err != nil || uint64(s.credit)+n > uint64(s.peerWindow) {
			perr = fmt.Errorf("bad WINDOW (credit %d + %d over the window %d, %v)", s.credit, n, s.peerWindow, err)
		} else {
			s.credit += int(n)
		}
	case op == bsEOF:
		s.eofIn = true
	case op == bsClose:
		s.eofIn, s.peerClosed = true, true
	case op == bsReset:
		var kind, msg string
		if kind, rest, err = readText(rest); err == nil {
			msg, _, err = readText(rest)
		}
		if err != nil {
			perr = err
		} else if s.err == nil {
			if kind == "" {
				kind = "StreamError"
			}
			s.err = &RemoteError{Kind: kind, Message: msg, Context: s.peer.Name()}
		}
	default:
		perr = fmt.Errorf("unknown opcode %d", op)
	}
	if perr != nil && s.err == nil {
		s.err = &StreamError{Op: s.String(), Err: fmt.Errorf("protocol error: %w", perr)}
	}
	failed := s.err != nil
	s.notifyLocked()
	s.mu.Unlock()
	buf.Free() // not kept: nothing else holds the frame
	if perr != nil {
		s.r.warnf("broke the %s: protocol error: %v", s, perr)
	}
	if failed {
		s.release()
	}
}

// fail records why the stream broke (the first cause wins) and wakes
// every waiter.
func (s *ByteStream) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.notifyLocked()
	s.mu.Unlock()
}

// release removes the handler once; later frames for it come back to
// the peer as dead messages.
func (s *ByteStream) release() {
	s.mu.Lock()
	done := s.released
	s.released = true
	s.mu.Unlock()
	if !done {
		// Frames the peer sent before it heard of the end (a WINDOW, a
		// CLOSE crossing ours) still arrive for a while: they are
		// dropped quietly. An OPEN is a new dialer, which learns at
		// once that nobody listens.
		s.r.retireHandler(s.handle, retireAfter, func(m *Message) {
			if op, _, err := readHeadKind(m.Data); err == nil && op == bsOpen {
				s.r.sendDead(m, msgInvalidHandle)
			}
		})
	}
}

// retireAfter is how long a closed byte stream's handle swallows frames
// still on their way.
const retireAfter = 30 * time.Second

// send routes one frame to the peer.
func (s *ByteStream) send(ctx context.Context, payload []byte) error {
	return s.sendPooled(ctx, payload, nil)
}

// sendPooled is send of a payload in pooled memory (nil for none),
// which from then on belongs to the frame.
func (s *ByteStream) sendPooled(ctx context.Context, payload []byte, buf *wire.Buf) error {
	s.mu.Lock()
	dst := s.peerHandle
	s.mu.Unlock()
	m := &Message{DstID: s.peer.ID, Handle: dst, ReplyTo: s.handle, Data: payload, buf: buf}
	if err := s.r.Route(ctx, m); err != nil {
		return &StreamError{Op: s.String(), Err: err}
	}
	return nil
}

// wait blocks until the state changes, ctx ends, the deadline passes or
// the router closes. s.mu is held on entry and on return.
func (s *ByteStream) wait(ctx context.Context, deadline time.Time, op string) error {
	wake := s.wake
	s.mu.Unlock()
	defer s.mu.Lock()
	var timer <-chan time.Time
	if !deadline.IsZero() {
		d := time.Until(deadline)
		if d <= 0 {
			return &TimeoutError{Op: op + " " + s.String()}
		}
		t := time.NewTimer(d)
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-wake:
		return nil
	case <-ctx.Done():
		return ctxErr(ctx, op+" "+s.String())
	case <-timer:
		return &TimeoutError{Op: op + " " + s.String()}
	case <-s.r.ctx.Done():
		return &ChannelError{Reason: msgRouterClosed}
	}
}

// Read reads bytes from the peer; io.EOF once the peer has closed its
// writing side and everything sent has been read.
func (s *ByteStream) Read(p []byte) (int, error) {
	return s.ReadContext(context.Background(), p)
}

// ReadContext is Read bounded by ctx (and by the read deadline).
func (s *ByteStream) ReadContext(ctx context.Context, p []byte) (int, error) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	s.mu.Lock()
	for {
		if s.rlen > 0 {
			n := s.take(p)
			grant := s.grantLocked()
			s.mu.Unlock()
			if grant > 0 {
				s.sendWindow(grant)
			}
			return n, nil
		}
		switch {
		case s.eofIn:
			s.mu.Unlock()
			return 0, io.EOF
		case s.err != nil:
			err := s.err
			s.mu.Unlock()
			return 0, err
		case s.closed:
			s.mu.Unlock()
			return 0, ErrStreamClosed
		case len(p) == 0:
			s.mu.Unlock()
			return 0, nil
		}
		if err := s.wait(ctx, s.rdeadline, "read"); err != nil {
			s.mu.Unlock()
			return 0, err
		}
	}
}

// take copies buffered bytes into p; s.mu is held.
func (s *ByteStream) take(p []byte) int {
	n := 0
	for n < len(p) && len(s.rbuf) > 0 {
		c := &s.rbuf[0]
		k := copy(p[n:], c.b)
		n += k
		if k == len(c.b) {
			c.buf.Free()
			*c = rchunk{}
			s.rbuf = s.rbuf[1:]
		} else {
			c.b = c.b[k:]
		}
	}
	s.rlen -= n
	s.consumed += n
	return n
}

// grantLocked returns the credit to give back now: a quarter of the
// window at a time, and nothing once the peer stopped sending.
func (s *ByteStream) grantLocked() int {
	if s.consumed < s.window/4 || s.eofIn || s.err != nil || s.closed {
		return 0
	}
	g := s.consumed
	s.consumed = 0
	return g
}

func (s *ByteStream) sendWindow(n int) {
	payload := cborhead.Append(nil, 4, 2)
	payload = cborhead.Append(payload, 0, bsWindow)
	payload = cborhead.Append(payload, 0, uint64(n))
	if err := s.send(s.r.ctx, payload); err != nil {
		s.fail(err)
	}
}

// WriteTo writes everything the peer sends to w until EOF, handing w the
// received chunks as they are.
func (s *ByteStream) WriteTo(w io.Writer) (int64, error) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	var total int64
	s.mu.Lock()
	for {
		if s.rlen > 0 {
			chunks := s.rbuf
			s.rbuf = nil
			n := s.rlen
			s.rlen = 0
			s.mu.Unlock()
			var err error
			for _, c := range chunks {
				var m int
				m, err = w.Write(c.b)
				total += int64(m)
				if err != nil {
					break
				}
				c.buf.Free() // a Writer keeps nothing of what it was given
			}
			s.mu.Lock()
			if err != nil {
				s.mu.Unlock()
				return total, err
			}
			s.consumed += n
			if grant := s.grantLocked(); grant > 0 {
				s.mu.Unlock()
				s.sendWindow(grant)
				s.mu.Lock()
			}
			continue
		}
		switch {
		case s.eofIn:
			s.mu.Unlock()
			return total, nil
		case s.err != nil:
			err := s.err
			s.mu.Unlock()
			return total, err
		case s.closed:
			s.mu.Unlock()
			return total, ErrStreamClosed
		}
		if err := s.wait(context.Background(), s.rdeadline, "read"); err != nil {
			s.mu.Unlock()
			return total, err
		}
	}
}

// ReadChunk returns the next received bytes, at most max of them,
// without copying: the slice is the received frame's own memory, the
// caller's to keep. Credit for them goes back to the peer only when the
// caller calls Release, so bytes held count against the window. At the
// end of the stream it returns io.EOF, as Read does.
func (s *ByteStream) ReadChunk(ctx context.Context, max int) ([]byte, error) {
	if max < 1 {
		return nil, fmt.Errorf("byte stream: ReadChunk of %d bytes", max)
	}
	s.rmu.Lock()
	defer s.rmu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.rlen > 0 {
			// The caller keeps what it gets: its buffer is left to the
			// garbage collector.
			s.rbuf[0].buf = nil
			c := s.rbuf[0].b
			if len(c) > max {
				c = c[:max:max]
				s.rbuf[0].b = s.rbuf[0].b[max:]
			} else {
				s.rbuf[0] = rchunk{}
				s.rbuf = s.rbuf[1:]
			}
			s.rlen -= len(c)
			s.held += len(c)
			return c, nil
		}
		switch {
		case s.eofIn:
			return nil, io.EOF
		case s.err != nil:
			return nil, s.err
		case s.closed:
			return nil, ErrStreamClosed
		}
		if err := s.wait(ctx, s.rdeadline, "read"); err != nil {
			return nil, err
		}
	}
}

// Release gives the peer credit for n bytes returned by ReadChunk that
// the caller has finished with.
func (s *ByteStream) Release(n int) {
	s.mu.Lock()
	if n < 0 || n > s.held {
		held := s.held
		s.mu.Unlock()
		panic(fmt.Sprintf("byte stream: Release(%d) with %d bytes held", n, held))
	}
	s.held -= n
	s.consumed += n
	grant := s.grantLocked()
	s.mu.Unlock()
	if grant > 0 {
		s.sendWindow(grant)
	}
}

// Write sends p to the peer, blocking while the peer's window is full.
func (s *ByteStream) Write(p []byte) (int, error) {
	return s.WriteContext(context.Background(), p)
}

// WriteContext is Write bounded by ctx (and by the write deadline).
func (s *ByteStream) WriteContext(ctx context.Context, p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.writeLocked(ctx, p)
}

// writeLocked is WriteContext with s.wmu held.
func (s *ByteStream) writeLocked(ctx context.Context, p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		s.mu.Lock()
		for {
			if err := s.writableLocked(); err != nil {
				s.mu.Unlock()
				return written, err
			}
			if s.peerHandle != 0 && s.credit > 0 {
				break
			}
			if err := s.wait(ctx, s.wdeadline, "write"); err != nil {
				s.mu.Unlock()
				return written, err
			}
		}
		n := min(len(p), s.credit, s.peerChunk, chunkFor(s.r.MaxMessageSize()))
		s.credit -= n
		s.mu.Unlock()
		buf, pooled := wire.Payload(dataHead + n) // pooled when large: reused once written
		copy(buf[dataHead:], p[:n])
		if err := s.sendData(ctx, buf, n, pooled); err != nil {
			return written, err
		}
		written += n
		p = p[n:]
	}
	return written, nil
}

// sendData sends the n bytes at buf[dataHead:] as one DATA frame, whose
// credit the caller has taken: the frame's head goes in front of them in
// buf, which is the frame's payload from then on (pooled, when set, is
// buf's pooled memory, freed once the frame is written).
func (s *ByteStream) sendData(ctx context.Context, buf []byte, n int, pooled *wire.Buf) error {
	var head [dataHead]byte
	h := cborhead.Append(head[:0], 4, 2)
	h = cborhead.Append(h, 0, bsData)
	h = cborhead.Append(h, 2, uint64(n))
	start := dataHead - len(h)
	copy(buf[start:], h)
	if err := s.sendPooled(ctx, buf[start:dataHead+n:dataHead+n], pooled); err != nil {
		s.fail(err)
		return err
	}
	return nil
}

// ReadFrom sends everything read from r until io.EOF, reading straight
// into the frames it sends: each Read gets at most the credit and chunk
// size available, and whatever it returns is sent at once, so a reader
// that returns partial reads (a pipe, a terminal) is forwarded as it
// comes. Concurrent writes are serialized per chunk, as by io.Copy.
func (s *ByteStream) ReadFrom(r io.Reader) (int64, error) {
	ctx := context.Background()
	var total int64
	for {
		// The size of the next read: what could be sent now.
		s.mu.Lock()
		for {
			if err := s.writableLocked(); err != nil {
				s.mu.Unlock()
				return total, err
			}
			if s.peerHandle != 0 && s.credit > 0 {
				break
			}
			if err := s.wait(ctx, s.wdeadline, "write"); err != nil {
				s.mu.Unlock()
				return total, err
			}
		}
		want := min(s.credit, s.peerChunk, chunkFor(s.r.MaxMessageSize()))
		s.mu.Unlock()
		buf, pooled := wire.Payload(dataHead + want)
		n, rerr := r.Read(buf[dataHead:])
		if n > 0 {
			if err := s.writeChunk(ctx, buf, n, pooled); err != nil {
				return total, err
			}
			total += int64(n)
		} else {
			pooled.Free()
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}

// writeChunk sends the n bytes at buf[dataHead:] as Write would, without
// copying them when the credit covers them.
func (s *ByteStream) writeChunk(ctx context.Context, buf []byte, n int, pooled *wire.Buf) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	for {
		if err := s.writableLocked(); err != nil {
			s.mu.Unlock()
			return err
		}
		if s.peerHandle != 0 && s.credit > 0 {
			break
		}
		if err := s.wait(ctx, s.wdeadline, "write"); err != nil {
			s.mu.Unlock()
			return err
		}
	}
	if s.credit >= n && n <= min(s.peerChunk, chunkFor(s.r.MaxMessageSize())) {
		s.credit -= n
		s.mu.Unlock()
		return s.sendData(ctx, buf, n, pooled)
	}
	s.mu.Unlock()
	// Another writer took part of the credit, or the size limit shrank:
	// these bytes are copied into frames of their own.
	_, err := s.writeLocked(ctx, buf[dataHead:dataHead+n])
	pooled.Free()
	return err
}

// writableLocked is the error a write gets now, if any.
func (s *ByteStream) writableLocked() error {
	switch {
	case s.err != nil:
		return s.err
	case s.closed || s.eofOut:
		return ErrStreamClosed
	case s.peerClosed:
		return &StreamError{Op: s.String(), Err: errors.New("closed by peer")}
	}
	return nil
}

// CloseWrite half-closes the stream: the peer reads EOF once it has read
// everything written before. Reading goes on.
func (s *ByteStream) CloseWrite() error {
	return s.CloseWriteContext(context.Background())
}

// CloseWriteContext is CloseWrite bounded by ctx: before the peer has
// dialed, a listener waits for OPEN to send EOF. Once the peer has
// closed (it reads nothing more), there is nothing to half-close and
// CloseWrite succeeds: a receiver that read everything may close before
// its sender gets to CloseWrite.
func (s *ByteStream) CloseWriteContext(ctx context.Context) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	for {
		if s.peerClosed && s.err == nil && !s.closed {
			s.eofOut = true
			s.mu.Unlock()
			return nil
		}
		if err := s.writableLocked(); err != nil {
			s.mu.Unlock()
			if err == ErrStreamClosed && s.eofOut {
				return nil
			}
			return err
		}
		if s.peerHandle != 0 {
			break
		}
		if err := s.wait(ctx, s.wdeadline, "close"); err != nil {
			s.mu.Unlock()
			return err
		}
	}
	s.eofOut = true
	s.mu.Unlock()
	payload := cborhead.Append(nil, 4, 1)
	payload = cborhead.Append(payload, 0, bsEOF)
	if err := s.send(ctx, payload); err != nil {
		s.fail(err)
		return err
	}
	return nil
}

// Close ends both directions: the peer reads EOF after what was written
// and its writes fail. Unread bytes are dropped. Close is idempotent.
func (s *ByteStream) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	notify := s.err == nil && s.peerHandle != 0 && !(s.eofOut && s.peerClosed)
	s.dropReceivedLocked()
	s.notifyLocked()
	s.mu.Unlock()
	var err error
	if notify {
		payload := cborhead.Append(nil, 4, 1)
		payload = cborhead.Append(payload, 0, bsClose)
		err = s.send(s.r.ctx, payload)
	}
	s.release()
	return err
}

// dropReceivedLocked drops the bytes waiting to be read. s.mu is held.
func (s *ByteStream) dropReceivedLocked() { s.rbuf, s.rlen = nil, 0 }

// Abort breaks the stream with cause: the peer's reads and writes fail
// with a RemoteError of cause's kind and message, and so do this end's.
func (s *ByteStream) Abort(cause error) {
	if cause == nil {
		cause = errors.New("aborted")
	}
	s.mu.Lock()
	notify := s.err == nil && s.peerHandle != 0 && !s.closed
	if s.err == nil {
		s.err = cause
	}
	s.closed = true
	s.dropReceivedLocked()
	s.notifyLocked()
	s.mu.Unlock()
	if notify {
		re := AsRemote(cause, s.r.Name())
		payload := cborhead.Append(nil, 4, 3)
		payload = cborhead.Append(payload, 0, bsReset)
		payload = cborhead.Append(payload, 3, uint64(len(re.Kind)))
		payload = append(payload, re.Kind...)
		payload = cborhead.Append(payload, 3, uint64(len(re.Message)))
		payload = append(payload, re.Message...)
		s.send(s.r.ctx, payload)
	}
	s.release()
}

// Err is why the stream broke, nil while it works.
func (s *ByteStream) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// SetDeadline sets the read and write deadlines; zero means none.
func (s *ByteStream) SetDeadline(t time.Time) error {
	s.mu.Lock()
	s.rdeadline, s.wdeadline = t, t
	s.notifyLocked()
	s.mu.Unlock()
	return nil
}

// SetReadDeadline bounds the current and later Reads; zero means none.
func (s *ByteStream) SetReadDeadline(t time.Time) error {
	s.mu.Lock()
	s.rdeadline = t
	s.notifyLocked()
	s.mu.Unlock()
	return nil
}

// SetWriteDeadline bounds the current and later Writes; zero means none.
func (s *ByteStream) SetWriteDeadline(t time.Time) error {
	s.mu.Lock()
	s.wdeadline = t
	s.notifyLocked()
	s.mu.Unlock()
	return nil
}

// Buffered reports how many received bytes wait to be read.
func (s *ByteStream) Buffered() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rlen
}

// IsTimeout reports whether err is a deadline or timeout of a byte
// stream (or anything else that says Timeout() true).
func IsTimeout(err error) bool {
	var te *TimeoutError
	if errors.As(err, &te) {
		return true
	}
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded)
}

// Minimal CBOR for the byte stream payloads (and call headers): unsigned
// ints (major 0), byte strings (2), text strings (3) and arrays (4), on
// top of cbor.go's heads.

func readHead(b []byte) (major byte, n uint64, rest []byte, err error) {
	major, _, n, rest, err = cborhead.Read(b)
	return major, n, rest, err
}

// readHeadKind reads the array head and the opcode.
func readHeadKind(b []byte) (op uint64, rest []byte, err error) {
	major, n, rest, err := readHead(b)
	if err != nil {
		return 0, nil, err
	}
	if major != 4 || n < 1 || n > 3 {
		return 0, nil, errors.New("payload is not a stream frame array")
	}
	return readUint(rest)
}

func readUint(b []byte) (uint64, []byte, error) {
	major, n, rest, err := readHead(b)
	if err != nil {
		return 0, nil, err
	}
	if major != 0 {
		return 0, nil, fmt.Errorf("want an unsigned integer, got CBOR major type %d", major)
	}
	return n, rest, nil
}

func readString(b []byte, want byte) ([]byte, []byte, error) {
	major, n, rest, err := readHead(b)
	if err != nil {
		return nil, nil, err
	}
	if major != want {
		return nil, nil, fmt.Errorf("want CBOR major type %d, got %d", want, major)
	}
	if uint64(len(rest)) < n {
		return nil, nil, cborhead.ErrTruncated
	}
	return rest[:n:n], rest[n:], nil
}

func readBytes(b []byte) ([]byte, []byte, error) { return readString(b, 2) }

func readText(b []byte) (string, []byte, error) {
	s, rest, err := readString(b, 3)
	return string(s), rest, err
}

package wire

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
)

// DefaultQueueLimit is the default bound, in bytes, on the frames waiting
// for a link's writer.
const DefaultQueueLimit = 8 << 20

// bufSize is the size of a link's read and write buffers: small frames
// are gathered into one system call, large payloads bypass the buffer.
const bufSize = 64 << 10

// ErrFull is returned by TrySend when the frames waiting for the writer
// already fill the queue: the peer is not reading as fast as frames
// arrive for it.
var ErrFull = errors.New("queue full")

// ErrClosed is the cause of a link closed without one.
var ErrClosed = errors.New("link closed")

// Config configures a Link.
type Config struct {
	// Reader yields the peer's frames. When it is a *bufio.Reader (one
	// that a handshake read through), the link reads on from it.
	Reader io.Reader
	// Writer carries frames to the peer.
	Writer io.Writer
	// Release, if set, runs once when the link closes: it releases the
	// transport (closes descriptors, ends a process), which must make
	// blocked reads of Reader and writes of Writer return.
	Release func()
	// QueueLimit bounds the bytes of frames waiting for the writer
	// (DefaultQueueLimit when zero); see Send and TrySend.
	QueueLimit int
	// MaxFrame returns the largest payload the reader accepts now.
	MaxFrame func() int
}

// A Link is the connection between two neighbouring contexts: a reader
// goroutine that hands every frame to its owner and never waits on
// anything but its input, and a writer goroutine that writes the queued
// frames in order, gathering small ones into one write. Sending never
// waits on the peer: frames wait in the queue, whose size is bounded.
type Link struct {
	cfg   Config
	limit int
	br    *bufio.Reader
	bw    *bufio.Writer

	mu      sync.Mutex
	queue   []Frame       // waiting for the writer
	spare   []Frame       // the writer's last batch, reused as the next queue
	waiting int           // bytes of the frames in queue, headers included
	writing int           // bytes the writer took and has not written yet
	space   chan struct{} // made by a waiter; closed when waiting or writing drop
	wake    chan struct{} // cap 1: wakes the writer

	done  chan struct{}
	once  sync.Once
	err   error // the first cause, set before done closes
	loops sync.WaitGroup
}

// New returns a link over cfg's reader and writer; Start runs it.
func New(cfg Config) *Link {
	l := &Link{
		cfg:   cfg,
		limit: cfg.QueueLimit,
		wake:  make(chan struct{}, 1),
		done:  make(chan struct{}),
	}
	if l.limit <= 0 {
		l.limit = DefaultQueueLimit
	}
	if br, ok := cfg.Reader.(*bufio.Reader); ok && br.Size() >= HeaderSize {
		l.br = br
	} else {
		l.br = bufio.NewReaderSize(cfg.Reader, bufSize)
	}
	l.bw = bufio.NewWriterSize(cfg.Writer, bufSize)
	return l
}

// Start runs the reader and writer goroutines. deliver is called on the
// reader goroutine with each frame, in order; it must not block. A large
// payload comes in a pooled buffer, given with it: deliver's caller owns
// it (see Buf). When
// reading fails (the peer's end closed, a corrupt or oversized frame)
// the link closes with that error (io.EOF for a clean end).
func (l *Link) Start(deliver func(Header, []byte, *Buf)) {
	l.loops.Add(2)
	go l.readLoop(deliver)
	go l.writeLoop()
}

func (l *Link) readLoop(deliver func(Header, []byte, *Buf)) {
	defer l.loops.Done()
	for {
		h, payload, buf, err := readFrame(l.br, l.cfg.MaxFrame(), true)
		if err != nil {
			l.Close(err)
			return
		}
		deliver(h, payload, buf)
	}
}

// Done is closed once the link has closed.
func (l *Link) Done() <-chan struct{} { return l.done }

// Err is the first cause of the link's end, nil while it is open.
func (l *Link) Err() error {
	select {
	case <-l.done:
		return l.err
	default:
		return nil
	}
}

// Limit is the queue's bound in bytes.
func (l *Link) Limit() int { return l.limit }

// Queued is the bytes of frames sent and not yet written.
func (l *Link) Queued() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.waiting + l.writing
}

// Send queues f, waiting while the queue is full until the writer makes
// room, the link closes or ctx ends. A queue is full when the frames
// already waiting take its limit; a frame larger than the limit is
// accepted into a queue below it, so any frame the size limit allows can
// be sent. The link owns f's memory until the frame is written.
func (l *Link) Send(ctx context.Context, f Frame) error {
	for {
		space, err := l.enqueue(f, 0)
		if err != ErrFull {
			return err
		}
		select {
		case <-space:
		case <-l.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// TrySend queues f unless the queue is full, and never waits: ErrFull
// says the peer is not keeping up. extra raises the limit for this
// frame, for small frames that must get through a full queue (dead
// messages and route updates).
func (l *Link) TrySend(f Frame, extra int) error {
	_, err := l.enqueue(f, extra)
	return err
}

// enqueue queues f unless the queue holds limit+extra bytes already;
// when it does it returns ErrFull and the channel closed when room may
// have been made.
func (l *Link) enqueue(f Frame, extra int) (<-chan struct{}, error) {
	n := HeaderSize + f.Len()
	l.mu.Lock()
	select {
	case <-l.done:
		l.mu.Unlock()
		return nil, l.err
	default:
	}
	if l.waiting >= l.limit+extra {
		if l.space == nil {
			l.space = make(chan struct{})
		}
		space := l.space
		l.mu.Unlock()
		return space, ErrFull
	}
	l.queue = append(l.queue, f)
	l.waiting += n
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	return nil, nil
}

// freedLocked takes the channel of those waiting for room; the caller
// closes it once it has unlocked.
func (l *Link) freedLocked() chan struct{} {
	s := l.space
	l.space = nil
	return s
}

func closeChan(c chan struct{}) {
	if c != nil {
		close(c)
	}
}

func (l *Link) writeLoop() {
	defer l.loops.Done()
	for {
		select {
		case <-l.wake:
		case <-l.done:
			return
		}
		for {
			l.mu.Lock()
			batch := l.queue
			if len(batch) == 0 {
				l.mu.Unlock()
				break
			}
			l.queue = l.spare[:0]
			l.writing, l.waiting = l.waiting, 0
			freed := l.freedLocked()
			l.mu.Unlock()
			closeChan(freed)

			var err error
			for i := range batch {
				if err == nil {
					err = WriteFrame(l.bw, &batch[i])
					if err == nil {
						// Written, or copied into bw: the payload's
						// memory is no longer needed.
						batch[i].Buf.Free()
					}
				}
				batch[i] = Frame{} // keep no payload alive past its write
			}
			if err == nil {
				err = l.bw.Flush()
			}
			l.mu.Lock()
			l.spare = batch[:0]
			l.writing = 0
			freed = l.freedLocked()
			l.mu.Unlock()
			closeChan(freed)
			if err != nil {
				l.Close(fmt.Errorf("write: %w", err))
				return
			}
		}
	}
}

// Flush waits until every frame queued so far is written, the link
// closes or ctx ends.
func (l *Link) Flush(ctx context.Context) error {
	for {
		l.mu.Lock()
		if l.waiting+l.writing == 0 {
			l.mu.Unlock()
			return nil
		}
		if l.space == nil {
			l.space = make(chan struct{})
		}
		space := l.space
		l.mu.Unlock()
		select {
		case <-space:
		case <-l.done:
			return l.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Close ends the link once, keeping the first cause (ErrClosed when nil),
// and releases the transport. It does not wait for the loops: Wait does.
func (l *Link) Close(cause error) {
	l.once.Do(func() {
		if cause == nil {
			cause = ErrClosed
		}
		l.mu.Lock()
		l.err = cause
		close(l.done)
		l.queue = nil
		freed := l.freedLocked()
		l.mu.Unlock()
		closeChan(freed)
		if l.cfg.Release != nil {
			l.cfg.Release()
		}
	})
}

// Wait waits until both loops have ended (after Close, or the end of the
// peer's stream).
func (l *Link) Wait() { l.loops.Wait() }

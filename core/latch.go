package core

import (
	"context"
	"sync"
)

// A Latch is a queue of values with blocking Get, in the manner of
// Mitogen's Latch: Put never blocks, Get waits for a value, and Close
// wakes every waiter with LatchError.
type Latch struct {
	mu     sync.Mutex
	items  []any
	head   int
	closed bool
	wake   chan struct{} // made by a waiting Get; closed when items arrive or on close
	notify func()        // called (without mu) after each Put, for Select
	first  [1]any        // items' storage until a second value waits: most latches hold one reply
}

// NewLatch returns an empty open Latch.
func NewLatch() *Latch { return &Latch{} }

// wakeLocked wakes the Gets waiting, if any. l.mu is held.
func (l *Latch) wakeLocked() {
	if l.wake != nil {
		close(l.wake)
		l.wake = nil
	}
}

// Put appends v. It fails with LatchError once the latch is closed.
func (l *Latch) Put(v any) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrLatchClosed
	}
	if l.items == nil {
		l.items = l.first[:0]
	}
	l.items = append(l.items, v)
	if cap(l.items) > len(l.first) {
		l.first[0] = nil // items has moved to a grown array: keep nothing alive here
	}
	l.wakeLocked()
	fn := l.notify
	l.mu.Unlock()
	if fn != nil {
		fn()
	}
	return nil
}

// Get removes and returns the oldest value, waiting until one arrives, the
// latch is closed (LatchError) or ctx ends (TimeoutError for a deadline,
// the context's error otherwise). With block false an empty latch is a
// TimeoutError at once.
func (l *Latch) Get(ctx context.Context, block bool) (any, error) {
	for {
		l.mu.Lock()
		if l.head < len(l.items) {
			v := l.items[l.head]
			l.items[l.head] = nil
			l.head++
			if l.head == len(l.items) {
				l.items, l.head = l.items[:0], 0
			}
			l.mu.Unlock()
			return v, nil
		}
		if l.closed {
			l.mu.Unlock()
			return nil, ErrLatchClosed
		}
		if !block {
			l.mu.Unlock()
			return nil, &TimeoutError{Op: "get"}
		}
		if l.wake == nil {
			l.wake = make(chan struct{})
		}
		wake := l.wake
		l.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, ctxErr(ctx, "get")
		}
	}
}

// Size returns how many values are queued.
func (l *Latch) Size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.items) - l.head
}

// Empty reports whether no value is queued.
func (l *Latch) Empty() bool { return l.Size() == 0 }

// Close marks the latch closed and wakes every waiter. Queued values can
// still be taken; later Puts fail.
func (l *Latch) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.wakeLocked()
	l.mu.Unlock()
}

// Closed reports whether Close was called.
func (l *Latch) Closed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// setNotify installs fn (nil removes it). A second fn is refused, not
// installed: it reports true and the first owner keeps the latch.
func (l *Latch) setNotify(fn func()) (had bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	had = l.notify != nil
	if fn == nil || !had {
		l.notify = fn
	}
	return had
}

// ctxErr turns the end of ctx into a TimeoutError when its deadline passed.
func ctxErr(ctx context.Context, op string) error {
	if ctx.Err() == context.DeadlineExceeded {
		return &TimeoutError{Op: op}
	}
	return ctx.Err()
}

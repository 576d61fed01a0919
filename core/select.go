package core

import (
	"context"
	"errors"
	"sync"
)

// Selectable is what a Select can wait on: *Receiver, *Latch or *Select.
type Selectable interface {
	setNotify(fn func()) bool
	Size() int
}

// A Select waits on several receivers, latches and selects at once and
// yields their results in arrival order, like Mitogen's Select.
type Select struct {
	oneshot bool
	latch   *Latch // of Selectable: one entry per pending result

	mu    sync.Mutex
	items map[Selectable]struct{}
}

// ErrSelectCycle is returned when adding a Select to itself, directly or
// through nested selects.
var ErrSelectCycle = errors.New("select: adding this item would create a cycle")

// ErrSelectOwned is returned when an item already belongs to a Select.
var ErrSelectOwned = errors.New("select: item already belongs to another Select")

// NewSelect returns a Select over items. With oneshot true each item is
// removed after it yields one result.
func NewSelect(oneshot bool, items ...Selectable) (*Select, error) {
	s := &Select{oneshot: oneshot, latch: NewLatch(), items: make(map[Selectable]struct{}, len(items))}
	for _, it := range items {
		if err := s.Add(it); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// Add starts waiting on it.
func (s *Select) Add(it Selectable) error {
	if inner, ok := it.(*Select); ok && (inner == s || inner.contains(s)) {
		return ErrSelectCycle
	}
	if it.setNotify(func() { s.latch.Put(it) }) {
		return ErrSelectOwned
	}
	s.mu.Lock()
	s.items[it] = struct{}{}
	s.mu.Unlock()
	for n := it.Size(); n > 0; n-- {
		s.latch.Put(it)
	}
	return nil
}

func (s *Select) contains(x *Select) bool {
	s.mu.Lock()
	var items []Selectable
	for it := range s.items {
		items = append(items, it)
	}
	s.mu.Unlock()
	for _, it := range items {
		if inner, ok := it.(*Select); ok && (inner == x || inner.contains(x)) {
			return true
		}
	}
	return false
}

// Remove stops waiting on it; it reports whether it was present.
func (s *Select) Remove(it Selectable) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.items[it]; !ok {
		return false
	}
	delete(s.items, it)
	it.setNotify(nil)
	return true
}

func (s *Select) has(it Selectable) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.items[it]
	return ok
}

// Len returns how many items the select still waits on; a Select is true
// in Starlark while it is non-zero.
func (s *Select) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.items)
}

// Size returns how many results are ready.
func (s *Select) Size() int { return s.latch.Size() }

// Empty reports whether no result is ready.
func (s *Select) Empty() bool { return s.latch.Empty() }

// Close removes every item and closes the select: a Get waiting on it,
// and every later Get, fails with LatchError.
func (s *Select) Close() {
	s.mu.Lock()
	items := s.items
	s.items = map[Selectable]struct{}{}
	s.mu.Unlock()
	for it := range items {
		it.setNotify(nil)
	}
	s.latch.Close()
}

// Get returns the next result: a *Message (with Receiver set) from a
// Receiver, the value from a Latch, or what a nested Select yields. It
// fails with the item's error (a dead message is a ChannelError carrying
// the message), with TimeoutError when ctx expires or, with block false,
// when nothing is ready, and with a ChannelError when no item is left.
func (s *Select) Get(ctx context.Context, block bool) (any, error) {
	for {
		if s.latch.Closed() {
			return nil, ErrLatchClosed
		}
		if s.Len() == 0 && s.latch.Empty() {
			return nil, &ChannelError{Reason: "Select has no receivers"}
		}
		v, err := s.latch.Get(ctx, block)
		if err != nil {
			return nil, err
		}
		it := v.(Selectable)
		if !s.has(it) {
			continue // removed after it was queued
		}
		if s.oneshot {
			s.Remove(it)
		}
		switch x := it.(type) {
		case *Receiver:
			m, err := x.Get(ctx, false)
			if m != nil {
				m.Receiver = x
			}
			if err != nil {
				var te *TimeoutError
				if errors.As(err, &te) {
					continue
				}
				return m, err
			}
			return m, nil
		case *Latch:
			val, err := x.Get(ctx, false)
			if err != nil {
				var te *TimeoutError
				if errors.As(err, &te) {
					continue
				}
				return nil, err
			}
			return val, nil
		case *Select:
			return x.Get(ctx, false)
		}
	}
}

// setNotify lets a Select nest inside another one.
func (s *Select) setNotify(fn func()) bool { return s.latch.setNotify(fn) }

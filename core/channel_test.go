package core

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"weak"
)

// Latch, Receiver and Select semantics (Mitogen's mitogen.core.Latch,
// Receiver and mitogen.select.Select).

func shortCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func isTimeout(err error) bool {
	var te *TimeoutError
	return errors.As(err, &te)
}

func TestLatch(t *testing.T) {
	l := NewLatch()
	if _, err := l.Get(context.Background(), false); !isTimeout(err) || err.Error() != "get: timed out" {
		t.Fatalf("non-blocking get on an empty latch: %v", err)
	}
	start := time.Now()
	if _, err := l.Get(shortCtx(t, 30*time.Millisecond), true); !isTimeout(err) {
		t.Fatalf("get with a deadline: %v", err)
	}
	if d := time.Since(start); d < 25*time.Millisecond || d > 2*time.Second {
		t.Fatalf("timed out after %s", d)
	}
	cctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Get(cctx, true); err != context.Canceled {
		t.Fatalf("cancelled get: %v", err)
	}

	for i := range 3 {
		l.Put(i)
	}
	if l.Size() != 3 || l.Empty() {
		t.Fatalf("size %d", l.Size())
	}
	for want := range 3 {
		if v, err := l.Get(context.Background(), true); err != nil || v != want {
			t.Fatalf("got %v, %v, want %d", v, err, want)
		}
	}

	// A blocked Get wakes on Put and on Close.
	got := make(chan any, 1)
	go func() { v, _ := l.Get(context.Background(), true); got <- v }()
	time.Sleep(10 * time.Millisecond)
	l.Put("late")
	if v := <-got; v != "late" {
		t.Fatalf("got %v", v)
	}
	errc := make(chan error, 2)
	for range 2 {
		go func() { _, err := l.Get(context.Background(), true); errc <- err }()
	}
	time.Sleep(10 * time.Millisecond)
	l.Put("kept")
	l.Close()
	l.Close()
	var le *LatchError
	for range 2 {
		err := <-errc
		if err != nil && (!errors.As(err, &le) || err.Error() != "latch has been marked closed") {
			t.Fatalf("waiter woken by Close: %v", err)
		}
	}
	if err := l.Put(1); !errors.As(err, &le) {
		t.Fatalf("Put after Close: %v", err)
	}
	if !l.Closed() || KindOf(ErrLatchClosed) != "LatchError" {
		t.Fatal("latch not closed")
	}
}

// A Latch keeps its first value inline; once more values wait and the
// queue moves to a grown array, the inline slot must not keep a value
// alive after Get has handed it out.
func TestLatchKeepsNothingTaken(t *testing.T) {
	l := NewLatch()
	first := new([1 << 10]byte)
	w := weak.Make(first)
	for _, v := range []any{first, "second", "third"} {
		if err := l.Put(v); err != nil {
			t.Fatal(err)
		}
	}
	first = nil
	for range 3 {
		if _, err := l.Get(context.Background(), false); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.GC()
	if w.Value() != nil {
		t.Fatal("the latch still holds the first value it handed out")
	}
	runtime.KeepAlive(l)
}

func TestLatchConcurrent(t *testing.T) {
	l := NewLatch()
	const writers, each = 8, 500
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				l.Put(w*each + i)
			}
		})
	}
	seen := make(map[int]bool)
	ctx := testCtx(t)
	for range writers * each {
		v, err := l.Get(ctx, true)
		if err != nil {
			t.Fatal(err)
		}
		if seen[v.(int)] {
			t.Fatalf("%d delivered twice", v)
		}
		seen[v.(int)] = true
	}
	wg.Wait()
	if !l.Empty() {
		t.Fatalf("%d left over", l.Size())
	}
}

func TestReceiver(t *testing.T) {
	r := newMaster(t)
	ctx := testCtx(t)
	rv, err := r.NewReceiver(ReceiverOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rv.Handle() < FirstUserHandle || rv.Router() != r {
		t.Fatalf("handle %d", rv.Handle())
	}
	if _, err := rv.Get(ctx, false); !isTimeout(err) {
		t.Fatalf("empty non-blocking get: %v", err)
	}
	if _, err := rv.Get(shortCtx(t, 20*time.Millisecond), true); !isTimeout(err) {
		t.Fatalf("get with a deadline: %v", err)
	}
	s := rv.ToSender()
	for _, v := range []string{"a", "b"} {
		if err := s.Send(context.Background(), v); err != nil {
			t.Fatal(err)
		}
	}
	var v string
	if err := rv.GetData(ctx, &v); err != nil || v != "a" {
		t.Fatalf("%q %v", v, err)
	}
	m, err := rv.Get(ctx, true)
	if err != nil || m.SrcID != 0 || m.Handle != rv.Handle() {
		t.Fatalf("%v %v", m, err)
	}
	// A closed Sender delivers a dead message: ChannelError with the
	// message, and the receiver goes on listening.
	s.Close()
	m, err = rv.Get(ctx, true)
	var ce *ChannelError
	if !errors.As(err, &ce) || ce.Reason != "Sender was explicitly closed" || m == nil || !m.IsDead() {
		t.Fatalf("closed sender: %v %v", m, err)
	}
	// Close keeps queued messages readable, then fails.
	s.Send(context.Background(), "queued")
	waitUntil(t, time.Second, "message queued", func() bool { return rv.Size() == 1 })
	rv.Close()
	rv.Close()
	if err := rv.GetData(ctx, &v); err != nil || v != "queued" {
		t.Fatalf("queued after close: %q %v", v, err)
	}
	if _, err := rv.Get(ctx, true); !errors.As(err, &ce) || ce.Reason != "the Receiver has been closed" {
		t.Fatalf("after close: %v", err)
	}
	// Its handle is gone: a send to it is answered "invalid handle".
	probe := r.newReceiver(true, nil)
	r.Route(context.Background(), &Message{DstID: 0, Handle: rv.Handle(), ReplyTo: probe.Handle()})
	if _, err := probe.Get(ctx, true); !errors.As(err, &ce) || ce.Reason != "invalid handle" {
		t.Fatalf("send to a closed receiver: %v", err)
	}

	// Once: the first message, then closed.
	one, _ := r.NewReceiver(ReceiverOptions{Once: true})
	one.ToSender().Send(context.Background(), 1)
	one.ToSender().Send(context.Background(), 2)
	var n int
	if err := one.GetData(ctx, &n); err != nil || n != 1 {
		t.Fatalf("%d %v", n, err)
	}
	if _, err := one.Get(ctx, true); !errors.As(err, &ce) || ce.Reason != "the Receiver has been closed" {
		t.Fatalf("once receiver after its message: %v", err)
	}

	// Router Close fails every waiting receiver.
	r2 := NewMaster(Options{})
	w, _ := r2.NewReceiver(ReceiverOptions{})
	errc := make(chan error, 1)
	go func() { _, err := w.Get(ctx, true); errc <- err }()
	time.Sleep(10 * time.Millisecond)
	r2.Close()
	if err := <-errc; !errors.As(err, &ce) || ce.Reason != "the Router has shut down" {
		t.Fatalf("receiver after router close: %v", err)
	}
	if _, err := r2.ContextByID(0).SendAwait(ctx, &Message{Handle: 1000}); !errors.As(err, &ce) || ce.Reason != "the Router has shut down" {
		t.Fatalf("send after router close: %v", err)
	}
}

func TestReceiverNotify(t *testing.T) {
	r := newMaster(t)
	rv, err := r.NewReceiver(ReceiverOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	calls := 0
	if err := rv.Notify(func() { mu.Lock(); calls++; mu.Unlock() }); err != nil {
		t.Fatal(err)
	}
	s := rv.ToSender()
	for i := 0; i < 3; i++ {
		if err := s.Send(context.Background(), i); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	got := calls
	mu.Unlock()
	if got != 3 || rv.Size() != 3 {
		t.Fatalf("notified %d times for %d messages, want 3", got, rv.Size())
	}
	// The notification is the user's: a Select cannot take it over.
	if _, err := NewSelect(true, rv); !errors.Is(err, ErrSelectOwned) {
		t.Fatalf("Select over a notified receiver: %v", err)
	}
	if err := rv.Notify(nil); err != nil {
		t.Fatal(err)
	}
	s.Send(context.Background(), "after")
	mu.Lock()
	got = calls
	mu.Unlock()
	if got != 3 {
		t.Fatalf("notified after removal: %d calls", got)
	}
	// While a Select waits on the receiver, the notification is its own.
	sel, err := NewSelect(true, rv)
	if err != nil {
		t.Fatal(err)
	}
	if err := rv.Notify(func() {}); !errors.Is(err, ErrSelectOwned) {
		t.Fatalf("Notify under a Select: %v", err)
	}
	rv.Notify(nil) // does not take the Select's away
	s.Send(context.Background(), "for the select")
	if sel.Size() != 5 { // the four queued when it was added, and this one
		t.Fatalf("select sees %d results, want 5", sel.Size())
	}
	sel.Close()
}

func TestReceiverRespondentDisconnect(t *testing.T) {
	r := newMaster(t)
	a := attachRaw(t, r, 5, "raw.5")
	ctx := testCtx(t)
	rv, _ := r.NewReceiver(ReceiverOptions{Respondent: r.ContextByID(5)})
	errc := make(chan error, 1)
	go func() { _, err := rv.Get(ctx, true); errc <- err }()
	a.close()
	var ce *ChannelError
	select {
	case err := <-errc:
		if !errors.As(err, &ce) || ce.Reason != "the respondent Context has disconnected" {
			t.Fatalf("%v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("receiver not woken by its respondent's disconnect")
	}
}

func TestSelect(t *testing.T) {
	r := newMaster(t)
	ctx := testCtx(t)
	a, _ := r.NewReceiver(ReceiverOptions{})
	b, _ := r.NewReceiver(ReceiverOptions{})
	l := NewLatch()
	sel, err := NewSelect(false, a, b, l)
	if err != nil {
		t.Fatal(err)
	}
	defer sel.Close()
	if _, err := sel.Get(ctx, false); !isTimeout(err) {
		t.Fatalf("empty select, non-blocking: %v", err)
	}
	if _, err := sel.Get(shortCtx(t, 20*time.Millisecond), true); !isTimeout(err) {
		t.Fatalf("empty select with a deadline: %v", err)
	}
	// Results come in arrival order, each tagged with its receiver.
	b.ToSender().Send(context.Background(), "b1")
	l.Put("l1")
	a.ToSender().Send(context.Background(), "a1")
	waitUntil(t, time.Second, "three results", func() bool { return sel.Size() == 3 })
	want := []any{"b1", "l1", "a1"}
	from := []*Receiver{b, nil, a}
	for i := range want {
		v, err := sel.Get(ctx, true)
		if err != nil {
			t.Fatal(err)
		}
		if m, ok := v.(*Message); ok {
			var s string
			m.Decode(&s)
			if s != want[i] || m.Receiver != from[i] {
				t.Fatalf("result %d: %q from %v", i, s, m.Receiver)
			}
		} else if v != want[i] {
			t.Fatalf("result %d: %v", i, v)
		}
	}
	// Not oneshot: items stay.
	if sel.Len() != 3 {
		t.Fatalf("Len = %d", sel.Len())
	}
	// An item belongs to one Select at a time.
	if _, err := NewSelect(false, a); err != ErrSelectOwned {
		t.Fatalf("item in two selects: %v", err)
	}
	// Remove stops it; removing twice reports false.
	if !sel.Remove(b) || sel.Remove(b) {
		t.Fatal("Remove")
	}
	b.ToSender().Send(context.Background(), "ignored")
	if _, err := sel.Get(ctx, false); !isTimeout(err) {
		t.Fatalf("removed receiver still selected: %v", err)
	}
	// Messages already queued on an item are seen when it is added.
	sel2, _ := NewSelect(true, b)
	if v, err := sel2.Get(ctx, false); err != nil || v.(*Message).Receiver != b {
		t.Fatalf("queued before Add: %v %v", v, err)
	}
	// Oneshot: the item is gone after one result; an empty select says so.
	var ce *ChannelError
	if _, err := sel2.Get(ctx, true); !errors.As(err, &ce) || ce.Reason != "Select has no receivers" {
		t.Fatalf("exhausted oneshot select: %v", err)
	}
	// A dead message is returned with its ChannelError.
	a.ToSender().Close()
	v, err := sel.Get(ctx, true)
	if !errors.As(err, &ce) || ce.Reason != "Sender was explicitly closed" || v.(*Message).Receiver != a {
		t.Fatalf("dead message through select: %v %v", v, err)
	}
	// Close wakes a waiting Get with LatchError.
	errc := make(chan error, 1)
	go func() { _, err := sel.Get(ctx, true); errc <- err }()
	time.Sleep(10 * time.Millisecond)
	sel.Close()
	var le *LatchError
	if err := <-errc; !errors.As(err, &le) {
		t.Fatalf("Get across Close: %v", err)
	}
	if _, err := sel.Get(ctx, true); !errors.As(err, &le) {
		t.Fatalf("Get after Close: %v", err)
	}
	// Its items are free again.
	if s3, err := NewSelect(true, a); err != nil {
		t.Fatalf("item after Close: %v", err)
	} else {
		s3.Close()
	}
}

func TestSelectNestedAndCycles(t *testing.T) {
	ctx := testCtx(t)
	inner, _ := NewSelect(false)
	outer, _ := NewSelect(false, inner)
	if err := inner.Add(outer); err != ErrSelectCycle {
		t.Fatalf("cycle through a nested select: %v", err)
	}
	if err := outer.Add(outer); err != ErrSelectCycle {
		t.Fatalf("select in itself: %v", err)
	}
	deeper, _ := NewSelect(false)
	inner.Add(deeper)
	if err := deeper.Add(outer); err != ErrSelectCycle {
		t.Fatalf("cycle two levels down: %v", err)
	}
	l1, l2 := NewLatch(), NewLatch()
	inner.Add(l1)
	deeper.Add(l2)
	l2.Put("deep")
	l1.Put("shallow")
	for _, want := range []string{"deep", "shallow"} {
		v, err := outer.Get(ctx, true)
		if err != nil || v != want {
			t.Fatalf("nested: got %v %v, want %q", v, err, want)
		}
	}
	// A waiting outer Get wakes when a nested latch gets a value.
	got := make(chan any, 1)
	go func() { v, _ := outer.Get(ctx, true); got <- v }()
	time.Sleep(10 * time.Millisecond)
	l2.Put("woken")
	select {
	case v := <-got:
		if v != "woken" {
			t.Fatalf("got %v", v)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("outer select not woken by a nested latch")
	}
	outer.Close()
	inner.Close()
	deeper.Close()
}

func TestSelectRespondentDisconnect(t *testing.T) {
	r := newMaster(t)
	a := attachRaw(t, r, 5, "raw.5")
	attachRaw(t, r, 6, "raw.6")
	ctx := testCtx(t)
	rv5, _ := r.NewReceiver(ReceiverOptions{Respondent: r.ContextByID(5)})
	rv6, _ := r.NewReceiver(ReceiverOptions{Respondent: r.ContextByID(6)})
	sel, _ := NewSelect(true, rv5, rv6)
	defer sel.Close()
	a.close()
	v, err := sel.Get(ctx, true)
	var ce *ChannelError
	if !errors.As(err, &ce) || ce.Reason != "the respondent Context has disconnected" || v.(*Message).Receiver != rv5 {
		t.Fatalf("%v %v", v, err)
	}
	if sel.Len() != 1 {
		t.Fatalf("Len = %d after one oneshot result", sel.Len())
	}
	if _, err := sel.Get(ctx, false); !isTimeout(err) {
		t.Fatalf("other receiver: %v", err)
	}
}

// A reply that arrives after its receiver expired and closed (a call that
// timed out) is swallowed quietly: no "invalid handle" warning, and a
// sender that wants an answer hears the receiver is closed.
func TestExpiredReceiverTakesLateReplyQuietly(t *testing.T) {
	r, logs := newLoggedMaster(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rv := r.newReceiver(true, nil)
	rv.Expire(time.Millisecond, errors.New("call timed out"))
	if _, err := rv.Get(ctx, true); err == nil || err.Error() != "call timed out" {
		t.Fatalf("expired receiver: %v", err)
	}
	rv.Close()

	probe := r.newReceiver(true, nil)
	if err := r.Route(ctx, &Message{DstID: 0, Handle: rv.Handle(), ReplyTo: probe.Handle(), Data: mustMarshal(t, "late")}); err != nil {
		t.Fatal(err)
	}
	var ce *ChannelError
	if _, err := probe.Get(ctx, true); !errors.As(err, &ce) || ce.Reason != "the Receiver has been closed" {
		t.Fatalf("late message to an expired receiver: %v", err)
	}
	r.Route(ctx, &Message{DstID: 0, Handle: rv.Handle(), Data: mustMarshal(t, "late")})
	r.Emit(slog.LevelInfo, "marker")
	logs.waitFor(t, "marker")
	logs.mu.Lock()
	defer logs.mu.Unlock()
	for _, l := range logs.lines {
		if strings.Contains(l, "invalid handle") {
			t.Errorf("late reply logged a warning: %s", l)
		}
	}
}

package core

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"
)

// coreGoroutines returns the stacks of goroutines running core code,
// other than test functions themselves.
func coreGoroutines() []string {
	buf := make([]byte, 4<<20)
	n := runtime.Stack(buf, true)
	var out []string
	for _, g := range strings.Split(string(buf[:n]), "\n\n") {
		if strings.Contains(g, "mitostar/mitostar/core.") &&
			!strings.Contains(g, "core.Test") && !strings.Contains(g, "core.coreGoroutines") {
			out = append(out, g)
		}
	}
	return out
}

// waitNoCoreGoroutines fails the test, listing them, if goroutines
// running core code remain after d.
func waitNoCoreGoroutines(t *testing.T, d time.Duration, when string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		left := coreGoroutines()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d goroutines left:\n\n%s", when, len(left), strings.Join(left, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNoGoroutineLeftAfterClose(t *testing.T) {
	waitNoCoreGoroutines(t, 10*time.Second, "before the test (left by earlier tests)")
	before := runtime.NumGoroutine()

	r := NewMaster(Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := connectLocal(t, r, nil, "a")
	g := connectLocal(t, r, a, "a.g")
	in := linkChild(t, r, 90000, Options{})
	peer := attachRaw(t, r, 90001, "raw")
	_ = in
	if err := r.RegisterService(&Service{Name: "svc", Methods: map[string]ServiceMethod{
		"hi": {Fn: func(ctx context.Context, c *ServiceCall) (any, error) { return "hi", nil }},
	}}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*Context{a, g, r.ContextByID(90000)} {
		if err := c.Call(ctx, nil, "test.pid"); err != nil {
			t.Fatal(err)
		}
	}
	var hi string
	if err := r.Myself().CallService(ctx, &hi, "svc", "hi", nil); err != nil || hi != "hi" {
		t.Fatalf("service: %q %v", hi, err)
	}
	// Pending work at Close: a call, a receiver in a select, a shutdown latch.
	pending := make(chan error, 1)
	go func() { pending <- g.Call(ctx, nil, "test.sleep", 30.0) }()
	rv, _ := r.NewReceiver(ReceiverOptions{Respondent: a})
	sel, _ := NewSelect(false, rv)
	defer sel.Close()
	selErr := make(chan error, 1)
	go func() { _, err := sel.Get(ctx, true); selErr <- err }()
	time.Sleep(100 * time.Millisecond)
	a.Shutdown()

	// The raw peer ignores SHUTDOWN: Close gives it 500 ms, then closes
	// its stream anyway.
	start := time.Now()
	r.CloseTimeout(500 * time.Millisecond)
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Close took %s", d)
	}
	r.Close() // idempotent
	peer.close()
	if err := <-pending; err == nil {
		t.Fatal("pending call succeeded across Close")
	}
	if err := <-selErr; err == nil {
		t.Fatal("select wait succeeded across Close")
	}
	waitNoCoreGoroutines(t, 5*time.Second, "after Close")
	waitUntil(t, 5*time.Second, "goroutine count back to its level before the test", func() bool {
		return runtime.NumGoroutine() <= before
	})
}

package core

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The calls waiting for a service's workers are bounded in bytes as well
// as in number: 8 MiB calls behind a busy worker are refused past the
// bound with a CallError that says why, and the rest are served.
func TestServiceQueueBoundedInBytes(t *testing.T) {
	r := NewMaster(Options{})
	defer r.Close()
	release := make(chan struct{})
	if err := r.RegisterService(&Service{Name: "slow", Workers: 1, Methods: map[string]ServiceMethod{
		"take": {Policy: AllowAny, Fn: func(ctx context.Context, c *ServiceCall) (any, error) {
			<-release
			return len(c.Request.Kwargs), nil
		}},
	}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	kw, err := Marshal(map[string]any{"data": strings.Repeat("x", 8<<20)})
	if err != nil {
		t.Fatal(err)
	}
	const calls = 12
	errs := make([]error, calls)
	var done atomic.Int32 // calls refused
	var wg sync.WaitGroup
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = r.Myself().CallServiceRaw(ctx, "slow", "take", kw)
			if errs[i] != nil {
				done.Add(1)
			}
		}()
	}
	// Wait until every call is running, queued or refused (a refusal
	// returns; the queue is read under its lock).
	st := r.services.services["slow"]
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		st.mu.Lock()
		queued := len(st.queue)
		st.mu.Unlock()
		if queued+int(done.Load()) == calls-1 || time.Now().After(deadline) {
			break
		}
	}
	close(release)
	wg.Wait()
	refused := 0
	for _, err := range errs {
		switch {
		case err == nil:
		case strings.Contains(err.Error(), `service "slow" is busy:`) && strings.Contains(err.Error(), "bytes of calls are waiting"):
			refused++
		default:
			t.Errorf("a call failed otherwise: %v", err)
		}
	}
	if refused == 0 || refused == calls {
		t.Errorf("%d of %d calls of 8 MiB refused; want some refused past 64 MiB waiting, the rest served", refused, calls)
	}
}

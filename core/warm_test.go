package core

import (
	"context"
	"os"
	"sync/atomic"
	"testing"
)

// warmEnv, set in the test's environment (which children inherit), makes
// the children of these tests run a warm-up call: "ok" to test.warm,
// anything else to a function that does not exist.
const warmEnv = "MITOSTAR_TEST_WARM"

var warmRuns atomic.Int64

func init() {
	RegisterFunc("test.warm", func(ctx context.Context, c *Call) (any, error) {
		warmRuns.Add(1)
		return []any{"a warm-up result that must go nowhere", c.Msg.SrcID}, nil
	})
	RegisterFunc("test.warmruns", func(ctx context.Context, c *Call) (any, error) { return warmRuns.Load(), nil })
	RegisterChildHook(func(r *Router, _ []byte) error {
		switch os.Getenv(warmEnv) {
		case "":
		case "ok":
			r.SetWarmCall(&CallRequest{Func: "test.warm"})
		default:
			r.SetWarmCall(&CallRequest{Func: "test.no-such-function"})
		}
		return nil
	})
}

// A child runs its warm-up call once, before the first real call, which
// then gets its own reply.
func TestWarmCallRunsOnceBeforeTheFirstCall(t *testing.T) {
	t.Setenv(warmEnv, "ok")
	r := newMaster(t)
	ctx := testCtx(t)
	c, err := r.Connect(ctx, "local", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		var n int64
		if err := c.Call(ctx, &n, "test.warmruns"); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Fatalf("call %d: the warm-up ran %d times before it, want once", i, n)
		}
	}
	var pid int
	if err := c.Call(ctx, &pid, "test.pid"); err != nil || pid == os.Getpid() || pid <= 0 {
		t.Fatalf("test.pid after the warm-up = %d, %v", pid, err)
	}
}

// A warm-up call that fails is dropped; the child serves calls as usual.
func TestWarmCallFailureIsHarmless(t *testing.T) {
	t.Setenv(warmEnv, "fail")
	r := newMaster(t)
	ctx := testCtx(t)
	c, err := r.Connect(ctx, "local", nil)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	if err := c.Call(ctx, &n, "test.warmruns"); err != nil || n != 0 {
		t.Fatalf("test.warmruns = %d, %v; want 0, nil", n, err)
	}
}

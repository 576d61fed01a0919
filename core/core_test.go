package core

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/mitostar/mitostar/internal/testbed"
)

func TestMain(m *testing.M) {
	RunRole()
	// Children built with -race would sleep 1 s at exit to catch late
	// races; the tests start dozens of them.
	testbed.QuickRaceExit()
	os.Exit(m.Run())
}

func init() {
	RegisterFunc("test.echo", func(ctx context.Context, c *Call) (any, error) {
		var args []any
		if err := c.Args(&args); err != nil {
			return nil, err
		}
		return args, nil
	})
	RegisterFunc("test.pid", func(ctx context.Context, c *Call) (any, error) { return os.Getpid(), nil })
	RegisterFunc("test.fail", func(ctx context.Context, c *Call) (any, error) { return nil, errors.New("boom") })
	RegisterFunc("test.sleep", func(ctx context.Context, c *Call) (any, error) {
		var args []float64
		c.Args(&args)
		select {
		case <-time.After(time.Duration(args[0] * float64(time.Second))):
			return "slept", nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newMaster(t testing.TB) *Router {
	t.Helper()
	r := NewMaster(Options{})
	t.Cleanup(r.Close)
	return r
}

func TestLocalChildCall(t *testing.T) {
	r := newMaster(t)
	ctx := testCtx(t)
	c, err := r.Connect(ctx, "local", nil)
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if err := c.Call(ctx, &pid, "test.pid"); err != nil {
		t.Fatal(err)
	}
	if pid == os.Getpid() || pid == 0 {
		t.Fatalf("pid = %d, want a child's pid", pid)
	}
	var echo []any
	if err := c.Call(ctx, &echo, "test.echo", "a", uint64(2)); err != nil {
		t.Fatal(err)
	}
	if len(echo) != 2 || echo[0] != "a" {
		t.Fatalf("echo = %#v", echo)
	}
	err = c.Call(ctx, nil, "test.fail")
	var re *RemoteError
	if !errors.As(err, &re) || re.Message != "boom" {
		t.Fatalf("err = %v, want RemoteError boom", err)
	}
}

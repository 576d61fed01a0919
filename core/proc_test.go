package core

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Helpers and test functions for tests with real child processes: the
// test binary re-executes itself in the child role, and every function
// registered here is callable in every child.

func init() {
	RegisterFunc("test.parentids", func(ctx context.Context, c *Call) (any, error) {
		return c.Router.ParentIDs(), nil
	})
	RegisterFunc("test.maxsize", func(ctx context.Context, c *Call) (any, error) {
		return c.Router.MaxMessageSize(), nil
	})
	RegisterFunc("test.allocid", func(ctx context.Context, c *Call) (any, error) {
		return c.Router.AllocateID(ctx)
	})
	// test.callctx(id) calls test.pid in context id and returns the
	// error's text ("" on success).
	RegisterFunc("test.callctx", func(ctx context.Context, c *Call) (any, error) {
		var args []uint32
		if err := c.Args(&args); err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := c.Router.ContextByID(args[0]).Call(ctx, nil, "test.pid"); err != nil {
			return fmt.Sprintf("%T: %v", err, err), nil
		}
		return "", nil
	})
	// test.rawframe(dst, src, auth, handle) writes a frame with those
	// header fields straight onto the parent stream, bypassing the
	// router, and returns what came back to its reply_to.
	RegisterFunc("test.rawframe", func(ctx context.Context, c *Call) (any, error) {
		var a struct {
			_                      struct{} `cbor:",toarray"`
			Dst, Src, Auth, Handle uint32
		}
		if err := c.Args(&a); err != nil {
			return nil, err
		}
		r := c.Router
		rv := r.newReceiver(true, nil)
		defer rv.Close()
		req, _, _ := encodeCallRequest(&CallRequest{Func: "test.pid", Args: []byte{0x80}})
		m := &Message{DstID: a.Dst, SrcID: a.Src, AuthID: a.Auth, Handle: a.Handle, ReplyTo: rv.Handle(), Data: req}
		if err := r.parent.send(ctx, m); err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		reply, err := rv.Get(ctx, true)
		if err != nil {
			return "dead: " + err.Error(), nil
		}
		return fmt.Sprintf("reply from %d", reply.SrcID), nil
	})
	RegisterFunc("test.bigreply", func(ctx context.Context, c *Call) (any, error) {
		var args []int
		if err := c.Args(&args); err != nil {
			return nil, err
		}
		return make([]byte, args[0]), nil
	})
	// test.output(stdout, stderr, logtext) writes a line on each of the
	// child's stdout and stderr and logs logtext at WARNING.
	RegisterFunc("test.output", func(ctx context.Context, c *Call) (any, error) {
		var args []string
		if err := c.Args(&args); err != nil {
			return nil, err
		}
		fmt.Fprintln(os.Stdout, args[0])
		fmt.Fprintln(os.Stderr, args[1])
		c.Router.Emit(levelWarn, args[2])
		return nil, nil
	})
}

const levelWarn = 4 // slog.LevelWarn

// connectLocal starts a local child (through via when non-nil).
func connectLocal(t testing.TB, r *Router, via *Context, name string) *Context {
	t.Helper()
	c, err := r.Connect(testCtx(t), "local", &ConnectOptions{Via: via, Name: name})
	if err != nil {
		t.Fatalf("connect %s: %v", name, err)
	}
	return c
}

func pidOf(t testing.TB, c *Context) int {
	t.Helper()
	var pid int
	if err := c.Call(testCtx(t), &pid, "test.pid"); err != nil {
		t.Fatalf("pid of %s: %v", c.Name(), err)
	}
	return pid
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) S ...: the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	st := s[i+2]
	return st != 'Z' && st != 'X'
}

// waitDead fails the test unless every pid is gone within d.
func waitDead(t testing.TB, d time.Duration, pids ...int) {
	t.Helper()
	waitUntil(t, d, fmt.Sprintf("processes %v still alive", pids), func() bool {
		for _, p := range pids {
			if alive(p) {
				return false
			}
		}
		return true
	})
}

func killOnCleanup(t testing.TB, pid int) {
	t.Cleanup(func() {
		syscall.Kill(pid, syscall.SIGCONT)
		syscall.Kill(pid, syscall.SIGKILL)
	})
}

func wantChannelError(t testing.TB, err error, reason string) {
	t.Helper()
	var ce *ChannelError
	if !errors.As(err, &ce) || ce.Reason != reason {
		t.Fatalf("err = %v (%T), want ChannelError %q", err, err, reason)
	}
}

package connect

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mitostar/mitostar/core"
)

func init() {
	core.RegisterFunc("connecttest.pid", func(ctx context.Context, c *core.Call) (any, error) { return os.Getpid(), nil })
	core.RegisterFunc("connecttest.echo", func(ctx context.Context, c *core.Call) (any, error) {
		var args []any
		err := c.Args(&args)
		return args, err
	})
}

// A context that stops reading behind an ssh context (a relay on the far
// side of a real sshd) never delays the ssh context itself or its other
// child: what is sent towards it waits in the relay's bounded queue, and
// past that it is refused with an error that names it.
func TestStoppedContextBehindSSH(t *testing.T) {
	s := startSSHD(t)
	r, _ := newMaster(t)
	ctx := testCtx(t, 2*time.Minute)
	relay := mustConnect(t, ctx, r, "ssh", nil, s.kwargs(userBob))
	stuck := mustConnect(t, ctx, r, "local", relay, map[string]any{})
	other := mustConnect(t, ctx, r, "local", relay, map[string]any{})
	var pid int
	if err := stuck.Call(ctx, &pid, "connecttest.pid"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(pid, syscall.SIGCONT)
		syscall.Kill(pid, syscall.SIGKILL)
	})
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}

	arg, err := core.Marshal([]any{make([]byte, 256<<10)})
	if err != nil {
		t.Fatal(err)
	}
	var replies []*core.Receiver
	for range 48 { // 12 MiB
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		rv, err := stuck.CallAsync(sctx, &core.CallRequest{Func: "connecttest.echo", Args: arg, Timeout: 60})
		cancel()
		if err != nil {
			t.Fatalf("call towards the stopped context: %v", err)
		}
		replies = append(replies, rv)
	}
	for _, c := range []*core.Context{relay, other} {
		for range 20 {
			start := time.Now()
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := c.Call(cctx, nil, "connecttest.pid")
			cancel()
			if err != nil {
				t.Fatalf("call to %s: %v", c.Name(), err)
			}
			if d := time.Since(start); d > time.Second {
				t.Fatalf("a call to %s took %s while %s was stopped", c.Name(), d, stuck.Name())
			}
		}
	}
	want := fmt.Sprintf("%s (context %d) is not reading its messages", stuck.Name(), stuck.ID)
	refused := 0
	for _, rv := range replies {
		gctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		_, err := rv.Get(gctx, true)
		cancel()
		var ce *core.ChannelError
		if errors.As(err, &ce) {
			if !strings.HasPrefix(ce.Reason, want) || !strings.HasSuffix(ce.Reason, "in "+relay.Name()) {
				t.Fatalf("refused call: %q, want %q ... in %s", ce.Reason, want, relay.Name())
			}
			refused++
		}
	}
	if refused == 0 {
		t.Fatal("no call was refused: the relay queued 12 MiB for a context that reads nothing")
	}
	syscall.Kill(pid, syscall.SIGCONT)
	deadline := time.Now().Add(20 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := stuck.Call(cctx, nil, "connecttest.pid")
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the resumed context does not answer: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A method's program that writes lines of any length to stderr is never
// blocked by them, and they do not grow without bound: ssh wrapped in a
// script that first writes 5 MiB without a newline connects as usual.
func TestMethodLongStderrLine(t *testing.T) {
	s := startSSHD(t)
	r, _ := newMaster(t)
	ctx := testCtx(t, time.Minute)
	dir := t.TempDir()
	wrapper := dir + "/ssh"
	script := "#!/bin/sh\nhead -c 5242880 /dev/zero | tr '\\0' x >&2\nexec ssh \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c := mustConnect(t, ctx, r, "ssh", nil, s.kwargs(userBob, "ssh_path", wrapper))
	var pid int
	if err := c.Call(ctx, &pid, "connecttest.pid"); err != nil {
		t.Fatal(err)
	}
	t.Logf("connected in %s", time.Since(start))
}

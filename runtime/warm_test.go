package runtime

import (
	"context"
	"os"
	"strconv"
	"testing"

	"github.com/mitostar/mitostar/builtins"
	"github.com/mitostar/mitostar/core"
)

// The warm-up call a child runs before its first call resolves and runs:
// a broken one would be dropped silently and warm nothing.
func TestWarmCallRuns(t *testing.T) {
	r := core.NewMaster(core.Options{})
	defer r.Close()
	rt := New(r, Options{})
	head, tail, err := rt.handleCall(context.Background(), &core.Call{Router: r, Request: warmCall, Msg: &core.Message{}})
	if err != nil {
		t.Fatalf("warm call: %v", err)
	}
	if len(tail) != 0 || len(head) == 0 || head[0] != core.ReplyOK[0] {
		t.Fatalf("warm call reply %x + %d pieces, want ReplyOK and a value", head, len(tail))
	}
	v, err := new(builtins.Decoder).Decode(head[1:])
	if err != nil {
		t.Fatal(err)
	}
	if v.String() != strconv.Itoa(os.Getpid()) {
		t.Fatalf("warm call returned %s, want this process's pid %d", v, os.Getpid())
	}
}

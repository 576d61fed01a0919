package runtime

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mitostar/mitostar/core"
)

// What the runtime remembers of the modules it pushed to a context is
// forgotten once the context is gone (ids are never reused): a master
// that starts, calls and stops children for ever keeps a bounded map.
func TestSentModulesOfGoneContextsForgotten(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "churn.star")
	src := `
def echo(x):
    return x

def main():
    for i in range(150):
        c = router.local()
        if c.call(echo, i) != i:
            fail("a wrong answer")
        c.shutdown(wait = True)
    keep = router.local()
    keep.call(echo, 0)
`
	if err := os.WriteFile(script, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := core.NewMaster(core.Options{})
	defer r.CloseTimeout(5 * time.Second)
	rt := New(r, Options{Roots: []string{dir}, Stdout: os.Stderr})
	if err := rt.RunScript(ctx, script); err != nil {
		t.Fatal(err)
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if len(rt.sent) != 1 {
		t.Errorf("the runtime remembers modules sent to %d contexts after 151 were started and 150 stopped", len(rt.sent))
	}
}

// A context's GET_MODULE requests are served a bounded number at a time:
// past maxModuleRequests in flight, the next is refused at once with a
// dead message rather than parked on a goroutine.
func TestModuleRequestsBounded(t *testing.T) {
	r := core.NewMaster(core.Options{})
	defer r.CloseTimeout(5 * time.Second)
	rt := New(r, Options{Stdout: os.Stderr})
	rv, err := r.NewReceiver(core.ReceiverOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer rv.Close()
	rt.mu.Lock()
	rt.moduleRequests[r.ID()] = maxModuleRequests // as if a child had that many waiting
	rt.mu.Unlock()
	data, _ := core.Marshal(core.GetModuleRequest{Path: "x.star"})
	rt.onGetModule(&core.Message{DstID: r.ID(), SrcID: r.ID(), ReplyTo: rv.Handle(), Data: data})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = rv.Get(ctx, true)
	if err == nil || !strings.Contains(err.Error(), "32 module requests of this context are in flight already: refused") {
		t.Fatalf("the request past the bound: %v", err)
	}
	rt.mu.Lock()
	n := rt.moduleRequests[r.ID()]
	rt.mu.Unlock()
	if n != maxModuleRequests {
		t.Errorf("a refused request changed the count to %d", n)
	}
}

package files

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/mitostar/mitostar/core"
)

// A transfer to a context that stopped reading, behind a relay, never
// slows a transfer through the same relay to its sibling: byte streams
// keep their end-to-end windows, so the relay holds at most a window for
// the stopped one. The stopped transfer waits in its sender and fails at
// its deadline; once the context resumes, a new transfer works.
func TestPutToStoppedContextBehindRelay(t *testing.T) {
	r := newMaster(t)
	ctx := testCtx(t)
	mid := child(t, r, nil)
	stuck := child(t, r, mid)
	other := child(t, r, mid)
	var pid int
	if err := stuck.Call(ctx, &pid, "files.test.pid"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(pid, syscall.SIGCONT)
		syscall.Kill(pid, syscall.SIGKILL)
	})

	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	bigFile(t, src, 64)
	old := time.Now().Add(-time.Hour)
	if err := os.Chmod(src, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(src, old, old); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}

	stalled := make(chan error, 1)
	go func() {
		pctx, cancel := context.WithTimeout(ctx, 8*time.Second)
		defer cancel()
		stalled <- Put(pctx, r, stuck, src, filepath.Join(dir, "stuck-copy"), nil, false)
	}()
	time.Sleep(200 * time.Millisecond)

	start := time.Now()
	if err := Put(ctx, r, other, src, filepath.Join(dir, "other-copy"), nil, false); err != nil {
		t.Fatalf("put to the sibling: %v", err)
	}
	if d := time.Since(start); d > 6*time.Second {
		t.Fatalf("64 MiB to the sibling took %s while a put to a stopped context waited", d)
	}
	sameFile(t, src, filepath.Join(dir, "other-copy"))

	select {
	case err := <-stalled:
		if err == nil || !core.IsTimeout(err) {
			t.Fatalf("put to the stopped context: %v, want a timeout", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("put to the stopped context ignored its deadline")
	}
	var mem []int64
	if err := mid.Call(ctx, &mem, "files.test.memory"); err != nil {
		t.Fatal(err)
	}
	if mem[1] > bigChainRSSLimit {
		t.Fatalf("the relay's RSS is %d MiB", mem[1]>>20)
	}

	syscall.Kill(pid, syscall.SIGCONT)
	if err := Put(ctx, r, stuck, src, filepath.Join(dir, "stuck-copy2"), nil, false); err != nil {
		t.Fatalf("put after the context resumed: %v", err)
	}
	sameFile(t, src, filepath.Join(dir, "stuck-copy2"))
	noTemps(t, dir)
}

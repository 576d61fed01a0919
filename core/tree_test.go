package core

import (
	"context"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"
)

// Trees of real child processes: via chains, id allocation, teardown.

func TestViaChainAndKillMiddleHop(t *testing.T) {
	r := newMaster(t)
	ctx := testCtx(t)

	const hops = 10
	var chain []*Context
	var prev *Context
	for i := 1; i <= hops; i++ {
		c := connectLocal(t, r, prev, fmt.Sprintf("hop%d", i))
		if c.Via() != prev {
			t.Fatalf("hop%d: Via = %v", i, c.Via())
		}
		chain = append(chain, c)
		prev = c
	}
	// Ids: the master gives hop1 the first id of its own block; every
	// later hop's parent asked its parent for a block of 1000
	// (ALLOCATE_ID), which came from the master's counter, and took its
	// first id.
	ids := make([]uint32, hops)
	for i, c := range chain {
		ids[i] = c.ID
	}
	want := []uint32{1, 1001, 2001, 3001, 4001, 5001, 6001, 7001, 8001, 9001}
	if !slices.Equal(ids, want) {
		t.Fatalf("ids = %v, want %v", ids, want)
	}
	// A call at the end works, and the end knows its ancestry.
	end := chain[hops-1]
	var parents []uint32
	if err := end.Call(ctx, &parents, "test.parentids"); err != nil {
		t.Fatal(err)
	}
	wantParents := append(slices.Clone(ids[:hops-1]), 0)
	slices.Reverse(wantParents[:hops-1])
	if !slices.Equal(parents, wantParents) {
		t.Fatalf("parent ids at the end = %v, want %v", parents, wantParents)
	}
	pids := make([]int, hops)
	for i, c := range chain {
		pids[i] = pidOf(t, c)
		killOnCleanup(t, pids[i])
	}
	// Further ids from the same blocks: hop1's next id is the second of
	// the block it took to start hop2, hop4's second child the second of
	// its block, and the master's next child the second of its own.
	sib4 := connectLocal(t, r, chain[3], "hop4-sibling")
	var got uint32
	if err := chain[0].Call(ctx, &got, "test.allocid"); err != nil || got != 1002 {
		t.Fatalf("hop1 allocid = %d, %v; want 1002", got, err)
	}
	if sib4.ID != 4002 { // hop4 took 4001..5000 to start hop5
		t.Fatalf("second child of hop4 has id %d, want 4002", sib4.ID)
	}
	direct := connectLocal(t, r, nil, "direct")
	if direct.ID != 2 {
		t.Fatalf("master's next id = %d, want 2", direct.ID)
	}
	for _, id := range append(ids, sib4.ID, direct.ID) {
		if !hasRoute(r, id) {
			t.Fatalf("master has no route to %d", id)
		}
	}

	// kill -9 of hop5: calls pending beyond it fail within 5 s.
	errs := make(chan error, 2)
	for _, c := range []*Context{chain[7], chain[9]} {
		go func() { errs <- c.Call(ctx, nil, "test.sleep", 30.0) }()
	}
	time.Sleep(200 * time.Millisecond) // let the calls reach their contexts
	killed := time.Now()
	if err := syscall.Kill(pids[4], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		select {
		case err := <-errs:
			wantChannelError(t, err, "the respondent Context has disconnected")
		case <-time.After(5*time.Second - time.Since(killed)):
			t.Fatalf("pending call beyond the killed hop still waiting after %s", time.Since(killed))
		}
	}
	t.Logf("pending calls failed %s after the kill", time.Since(killed))
	for _, c := range chain[4:] {
		select {
		case <-c.Disconnected():
		case <-time.After(5 * time.Second):
			t.Fatalf("%s not marked disconnected", c.Name())
		}
		if hasRoute(r, c.ID) {
			t.Fatalf("master still routes to %s", c.Name())
		}
	}
	// Everything below the killed hop exits.
	waitDead(t, 5*time.Second, pids[5:]...)
	// The rest of the tree keeps working.
	for _, c := range append(slices.Clone(chain[:4]), sib4, direct) {
		if got := pidOf(t, c); got == 0 {
			t.Fatalf("%s", c.Name())
		}
	}
	// A later call beyond the dead hop fails at once.
	err := chain[8].Call(ctx, nil, "test.pid")
	wantChannelError(t, err, fmt.Sprintf("no route to %d, my ID is 0", chain[8].ID))

	// Shutting hop1 down tears down the rest of its subtree.
	if err := chain[0].ShutdownWait(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range append(slices.Clone(chain[:4]), sib4) {
		select {
		case <-c.Disconnected():
		case <-time.After(5 * time.Second):
			t.Fatalf("%s not marked disconnected after its ancestor's shutdown", c.Name())
		}
	}
	waitDead(t, 5*time.Second, pids[:4]...)
	r.mu.Lock()
	left := make([]uint32, 0, len(r.routes))
	for id := range r.routes {
		left = append(left, id)
	}
	r.mu.Unlock()
	if !slices.Equal(left, []uint32{direct.ID}) {
		t.Fatalf("routes left in the master: %v, want only %d", left, direct.ID)
	}
	if err := chain[0].Call(ctx, nil, "test.pid"); err == nil || err.Error() != "hop1 has been shut down" {
		t.Fatalf("call after shutdown: %v", err)
	}
}

func TestDisconnectDirectChild(t *testing.T) {
	r := newMaster(t)
	ctx := testCtx(t)
	a := connectLocal(t, r, nil, "a")
	b := connectLocal(t, r, a, "b")
	pa, pb := pidOf(t, a), pidOf(t, b)
	errc := make(chan error, 1)
	go func() { errc <- b.Call(ctx, nil, "test.sleep", 30.0) }()
	time.Sleep(100 * time.Millisecond)
	r.Disconnect(a)
	select {
	case err := <-errc:
		wantChannelError(t, err, "the respondent Context has disconnected")
	case <-time.After(5 * time.Second):
		t.Fatal("call through a disconnected child still pending")
	}
	waitDead(t, 5*time.Second, pa, pb)
	if hasRoute(r, a.ID) || hasRoute(r, b.ID) {
		t.Fatal("routes kept after Disconnect")
	}
}

func TestCallTimeoutAndCancel(t *testing.T) {
	r := newMaster(t)
	c := connectLocal(t, r, nil, "sleeper")
	ctx := testCtx(t)
	// The remote timeout cancels the function and fails the call with
	// TimeoutError.
	args := mustMarshal(t, []any{5.0})
	_, err := c.CallRaw(ctx, &CallRequest{Func: "test.sleep", Args: args, Timeout: 0.1})
	var re *RemoteError
	if !isRemoteKind(err, &re, "TimeoutError") || re.Message != "call to test.sleep timed out after 0.1s" || re.Context != "sleeper" {
		t.Fatalf("remote timeout: %v", err)
	}
	// A local deadline: TimeoutError at the caller, and the context is
	// free again once the remote call ends.
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	err = c.Call(cctx, nil, "test.sleep", 0.3)
	if !isTimeout(err) {
		t.Fatalf("local deadline: %v", err)
	}
	var out string
	if err := c.Call(ctx, &out, "test.sleep", 0.01); err != nil || out != "slept" {
		t.Fatalf("after a timeout: %q %v", out, err)
	}
	// Unknown function.
	err = c.Call(ctx, nil, "test.nope")
	if !isRemoteKind(err, &re, CallError) || re.Message != `no function named "test.nope" in sleeper` {
		t.Fatalf("unknown function: %v", err)
	}
}

func isRemoteKind(err error, re **RemoteError, kind string) bool {
	if e, ok := err.(*RemoteError); ok {
		*re = e
		return e.Kind == kind
	}
	return false
}

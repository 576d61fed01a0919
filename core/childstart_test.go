package core

import (
	"context"
	"os"
	goruntime "runtime"
	"testing"
)

func init() {
	RegisterFunc("test.procs", func(ctx context.Context, c *Call) (any, error) {
		godebug, set := os.LookupEnv("GODEBUG")
		return []any{goruntime.GOMAXPROCS(0), os.Getenv("GOMAXPROCS"), os.Getenv(unsetProcsEnv), goruntime.MemProfileRate,
			godebug, set, os.Getenv(restoreGodebugEnv), startRate}, nil
	})
}

// startRate is MemProfileRate as the runtime set it up, before RunRole.
var startRate = goruntime.MemProfileRate

// childProcs returns what a new local child reports: its GOMAXPROCS, the
// GOMAXPROCS and marker variables of its environment, its MemProfileRate,
// its GODEBUG (value, whether set), the GODEBUG marker, and the
// MemProfileRate it started with.
func childProcs(t *testing.T) []any {
	t.Helper()
	r := newMaster(t)
	ctx := testCtx(t)
	c, err := r.Connect(ctx, "local", nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []any
	if err := c.Call(ctx, &got, "test.procs"); err != nil {
		t.Fatal(err)
	}
	if len(got) != 8 {
		t.Fatalf("test.procs = %#v, want 8 values", got)
	}
	return got
}

func TestChildStartsWithOneProcAndHidesIt(t *testing.T) {
	t.Setenv("GOMAXPROCS", "")
	os.Unsetenv("GOMAXPROCS")
	t.Setenv(ProfileDirEnv, "")
	os.Unsetenv(ProfileDirEnv)
	got := childProcs(t)
	if got[0] != uint64(1) {
		t.Errorf("child GOMAXPROCS = %v, want 1", got[0])
	}
	if got[1] != "" || got[2] != "" {
		t.Errorf("child environment has GOMAXPROCS=%q %s=%q; want both removed so that its commands do not inherit them", got[1], unsetProcsEnv, got[2])
	}
	if got[3] != uint64(0) {
		t.Errorf("child MemProfileRate = %v, want 0 without %s", got[3], ProfileDirEnv)
	}
}

func TestChildKeepsUsersGOMAXPROCS(t *testing.T) {
	t.Setenv("GOMAXPROCS", "2")
	got := childProcs(t)
	if got[0] != uint64(2) || got[1] != "2" || got[2] != "" {
		t.Errorf("child reports GOMAXPROCS %v, env %q, marker %q; want 2, \"2\", \"\"", got[0], got[1], got[2])
	}
}

// A local child starts with heap profiling off (GODEBUG is read before
// the runtime's first allocation) and then sees GODEBUG as its parent
// has it: unset, or the user's value.
func TestChildStartsWithoutMemProfileAndRestoresGODEBUG(t *testing.T) {
	t.Setenv(ProfileDirEnv, "")
	os.Unsetenv(ProfileDirEnv)
	for _, parent := range []struct {
		value string
		set   bool
	}{{"", false}, {"", true}, {"madvdontneed=1", true}} {
		if parent.set {
			t.Setenv("GODEBUG", parent.value)
		} else {
			t.Setenv("GODEBUG", "")
			os.Unsetenv("GODEBUG")
		}
		got := childProcs(t)
		if got[7] != uint64(0) || got[3] != uint64(0) {
			t.Errorf("GODEBUG %q: child MemProfileRate at start %v, after RunRole %v; want 0, 0", parent.value, got[7], got[3])
		}
		if got[4] != parent.value || got[5] != parent.set || got[6] != "" {
			t.Errorf("parent GODEBUG %q (set %v): child has %q (set %v), marker %q", parent.value, parent.set, got[4], got[5], got[6])
		}
	}
	// The user's own memprofilerate is left alone.
	t.Setenv("GODEBUG", "memprofilerate=4096")
	got := childProcs(t)
	if got[4] != "memprofilerate=4096" || got[7] != uint64(4096) {
		t.Errorf("GODEBUG memprofilerate=4096: child has %q, started with rate %v", got[4], got[7])
	}
}

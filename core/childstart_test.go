package core

import (
	"context"
	"os"
	goruntime "runtime"
	"testing"
)

func init() {
	RegisterFunc("test.procs", func(ctx context.Context, c *Call) (any, error) {
		return []any{goruntime.GOMAXPROCS(0), os.Getenv("GOMAXPROCS"), os.Getenv(unsetProcsEnv), goruntime.MemProfileRate}, nil
	})
}

// childProcs returns what a new local child reports: its GOMAXPROCS, the
// GOMAXPROCS and marker variables of its environment, its MemProfileRate.
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
	if len(got) != 4 {
		t.Fatalf("test.procs = %#v, want 4 values", got)
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

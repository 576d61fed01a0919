package ops

import (
	"testing"

	"go.starlark.net/starlark"

	"github.com/mitostar/mitostar/builtins"
)

// Every change an operation makes (or would make, in check mode) counts
// on its thread, where the fan-out reads a host's changed flag; an
// unchanged result does not count.
func TestChangesCountOnTheThread(t *testing.T) {
	for _, check := range []bool{false, true} {
		dir := t.TempDir()
		env := &fakeEnv{check: check}
		thread := &starlark.Thread{Name: t.Name()}
		builtins.SetRuntime(thread, env)
		src := `
d = ` + q(dir) + `
ops.file(d + "/a", content = "a")
ops.file(d + "/a", content = "a")
ops.command(["true"], creates = d)
ops.file(d + "/b", state = "touch")
`
		if _, err := starlark.ExecFile(thread, "count.star", src, builtins.Modules()); err != nil {
			t.Fatal(err)
		}
		// Check mode creates nothing, so its second ops.file would still
		// change the file.
		want := map[bool]int64{false: 2, true: 3}[check]
		if got := builtins.ChangedCount(thread); got != want {
			t.Errorf("check=%v: ChangedCount = %d, want %d", check, got, want)
		}
	}
}

// facts() is gathered once per context; each call returns a fresh dict.
func TestFactsFreshCopies(t *testing.T) {
	env := &fakeEnv{}
	g := env.mustExec(t, `
a = ops.facts()
a["cpus"] = -1
a["addresses"].append("x")
b = ops.facts()
`)
	b := g["b"].(*starlark.Dict)
	cpus, _, _ := b.Get(starlark.String("cpus"))
	addrs, _, _ := b.Get(starlark.String("addresses"))
	if n, _ := starlark.AsInt32(cpus); n < 1 {
		t.Errorf("a change to one facts() dict reached the next: cpus %v", cpus)
	}
	for i := range addrs.(*starlark.List).Len() {
		if addrs.(*starlark.List).Index(i) == starlark.String("x") {
			t.Errorf("a change to one facts() list reached the next: %v", addrs)
		}
	}
	if b.Len() != 17 {
		t.Errorf("facts() has %d keys, want 17: %v", b.Len(), b)
	}
}

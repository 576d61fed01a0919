package runtime_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mitostar/mitostar/core"
	"github.com/mitostar/mitostar/runtime"
)

// Two runtimes in one Go process work side by side: each master has its
// own module roots, its own module cache and its own children, and a
// function travels by the module its own runtime knows, even when both
// scripts load a module of the same path with different source.
func TestTwoRuntimesSideBySide(t *testing.T) {
	var wg sync.WaitGroup
	outs := make([]bytes.Buffer, 2)
	errs := make([]error, 2)
	for i := range 2 {
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, "lib"), 0o755)
		lib := fmt.Sprintf("def who():\n    return 'lib of runtime %d in ' + str(context_id)\n", i)
		os.WriteFile(filepath.Join(dir, "lib", "util.star"), []byte(lib), 0o644)
		script := fmt.Sprintf(`load("lib/util.star", "who")

def twice(x):
    return who() + " x" + str(x)

def main():
    kids = [router.local() for _ in range(3)]
    for k in kids:
        print(k.call(twice, %d))
    print(who())
`, i)
		path := filepath.Join(dir, "main.star")
		os.WriteFile(path, []byte(script), 0o644)
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := core.NewMaster(core.Options{})
			defer r.Close()
			rt := runtime.New(r, runtime.Options{Roots: []string{dir}, Stdout: &outs[i]})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			errs[i] = rt.RunScript(ctx, path)
		}()
	}
	wg.Wait()
	for i := range 2 {
		if errs[i] != nil {
			t.Fatalf("runtime %d: %v", i, errs[i])
		}
		want := ""
		for k := 1; k <= 3; k++ {
			want += fmt.Sprintf("lib of runtime %d in %d x%d\n", i, k, i)
		}
		want += fmt.Sprintf("lib of runtime %d in 0\n", i)
		if got := outs[i].String(); got != want {
			t.Fatalf("runtime %d printed:\n%s\nwant:\n%s", i, got, want)
		}
	}
}

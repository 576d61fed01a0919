package tests

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mitostar/mitostar/builtins"
	"github.com/mitostar/mitostar/core"
	"github.com/mitostar/mitostar/internal/testbed"
	"github.com/mitostar/mitostar/runtime"
)

// Children started by these tests are this test binary re-executed in the
// child role.
func TestMain(m *testing.M) {
	core.RunRole()
	testbed.QuickRaceExit()
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// testArgv is the argv every script of the suite sees, in every context.
var testArgv = []string{"first", "second arg"}

// TestStar runs each star/*.star file as a script of its own master, the
// way the CLI runs one: star/ is the first module root, star/root2 the
// second, and a temporary third root holds a symlink that escapes it.
func TestStar(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("star", "*.star"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no star/*.star files")
	}
	escRoot := escapingRoot(t)
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".star"), func(t *testing.T) {
			runStarFile(t, file, []string{"star", filepath.Join("star", "root2"), escRoot})
		})
	}
}

// escapingRoot returns a module root holding outside.star, a symlink to a
// file outside it, and inside.star, a symlink that stays inside.
func escapingRoot(t *testing.T) string {
	base := t.TempDir()
	root := filepath.Join(base, "root3")
	for _, d := range []string{root, filepath.Join(root, "sub")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	secret := filepath.Join(base, "secret.star")
	write := func(p, src string) {
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(secret, "secret = 'outside the roots'\n")
	write(filepath.Join(root, "sub", "real.star"), "where = 'root3/sub/real.star'\n")
	for link, target := range map[string]string{
		filepath.Join(root, "outside.star"): secret,
		filepath.Join(root, "inside.star"):  filepath.Join("sub", "real.star"),
		filepath.Join(root, "dirlink"):      base,
	} {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func runStarFile(t *testing.T, file string, roots []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	resetCounts()
	capt := newCapture()
	r := core.NewMaster(core.Options{Sink: capt})
	capMu.Lock()
	captures[r] = capt
	capMu.Unlock()
	defer func() {
		closeStart := time.Now()
		r.CloseTimeout(5 * time.Second)
		t.Logf("closed the tree in %v", time.Since(closeStart).Round(time.Millisecond))
		capMu.Lock()
		delete(captures, r)
		capMu.Unlock()
	}()
	if err := r.RegisterService(testService()); err != nil {
		t.Fatal(err)
	}
	rt := runtime.New(r, runtime.Options{Roots: roots, Argv: testArgv, Stdout: capt})
	start := time.Now()
	err := rt.RunScript(ctx, file)
	capt.mu.Lock()
	log := strings.Join(capt.lines, "\n")
	capt.mu.Unlock()
	if strings.Contains(log, "DATA RACE") {
		t.Errorf("a child reported a data race:\n%s", log)
	}
	if err != nil {
		t.Fatalf("%s failed after %v:\n%s\nmaster log:\n%s", file, time.Since(start).Round(time.Millisecond), builtins.Backtrace(err), log)
	}
	t.Logf("%s passed in %v", file, time.Since(start).Round(time.Millisecond))
}

package connect

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mitostar/mitostar/core"
	"github.com/mitostar/mitostar/internal/testbed"
)

func TestMain(m *testing.M) {
	core.RunRole()
	cleanSharedCaches()
	code := m.Run()
	cleanSharedCaches()
	os.Exit(code)
}

// cleanSharedCaches removes what tests left under this test binary's
// hash in the shared cache directories, so that each run starts fresh.
func cleanSharedCaches() {
	self, err := selfBinary()
	if err != nil {
		return
	}
	info, err := self.info()
	if err != nil {
		return
	}
	uid := os.Getuid()
	for _, d := range []string{
		filepath.Join(os.TempDir(), fmt.Sprintf("mitostar.%d", uid)),
		fmt.Sprintf("/tmp/mitostar.%d", uid),
		fmt.Sprintf("/dev/shm/mitostar.%d", uid),
		filepath.Join(os.Getenv("HOME"), ".cache", "mitostar"),
	} {
		os.RemoveAll(filepath.Join(d, info.hash))
	}
}

func init() {
	core.RegisterMethod("testsh", newTestShell)
	core.RegisterFunc("connecttest.exe", func(ctx context.Context, c *core.Call) (any, error) {
		return os.Executable()
	})
	core.RegisterFunc("connecttest.whoami", func(ctx context.Context, c *core.Call) (any, error) {
		return []any{os.Getuid(), os.Getenv("HOME"), os.Getenv("USER")}, nil
	})
	core.RegisterFunc("connecttest.sleep", func(ctx context.Context, c *core.Call) (any, error) {
		var args []float64
		if err := c.Args(&args); err != nil {
			return nil, err
		}
		select {
		case <-time.After(time.Duration(args[0] * float64(time.Second))):
			return "slept", nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	core.RegisterFunc("connecttest.getcwd", func(ctx context.Context, c *core.Call) (any, error) {
		return os.Getwd()
	})
	core.RegisterFunc("connecttest.getenv", func(ctx context.Context, c *core.Call) (any, error) {
		var args []string
		if err := c.Args(&args); err != nil {
			return nil, err
		}
		return os.Getenv(args[0]), nil
	})
}

// testShell is a method used only by tests: it runs the stub with the
// local sh, after an optional setup script (run under `unshare -m` when
// "unshare" is true, so that it may mount things), with extra
// environment variables.
type testShell struct {
	env     []string
	setup   string
	unshare bool
}

func newTestShell(r *core.Router, opts *core.ConnectOptions) (core.Transport, error) {
	k := newKwargs("testsh", opts.Kwargs)
	t := &testShell{env: k.strings("env"), setup: k.str("setup", ""), unshare: k.boolean("unshare", false)}
	return t, k.finish()
}

func (t *testShell) DefaultName() string { return "testsh" }

func (t *testShell) Start(ctx context.Context, env *core.StartEnv) (*core.Conn, error) {
	stub, err := NewStub()
	if err != nil {
		return nil, err
	}
	argv := stub.Argv()
	if t.setup != "" {
		argv = []string{"sh", "-c", t.setup + "\nexec sh -c \"$1\"", "sh", stub.Script()}
	}
	if t.unshare {
		argv = append([]string{"unshare", "-m", "--propagation", "private"}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), t.env...)
	return StartCommand(ctx, env, cmd, stub)
}

func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// newMaster returns a master router that records bootstrap reports.
func newMaster(t testing.TB) (*core.Router, *reports) {
	t.Helper()
	r := core.NewMaster(core.Options{})
	t.Cleanup(r.Close)
	rep := &reports{}
	ObserveBootstraps(r, rep.add)
	return r, rep
}

type reports struct {
	mu  sync.Mutex
	all []BootstrapReport
}

func (r *reports) add(b BootstrapReport) {
	r.mu.Lock()
	r.all = append(r.all, b)
	r.mu.Unlock()
}

func (r *reports) last(t testing.TB) BootstrapReport {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.all) == 0 {
		t.Fatal("no bootstrap was reported")
	}
	return r.all[len(r.all)-1]
}

func callString(t testing.TB, ctx context.Context, c *core.Context, fn string, args ...any) string {
	t.Helper()
	var s string
	if err := c.Call(ctx, &s, fn, args...); err != nil {
		t.Fatalf("call %s in %s: %v", fn, c.Name(), err)
	}
	return s
}

func selfHash(t testing.TB) string {
	t.Helper()
	b, err := selfBinary()
	if err != nil {
		t.Fatal(err)
	}
	info, err := b.info()
	if err != nil {
		t.Fatal(err)
	}
	return info.hash
}

func TestStubShipsOnceThenReusesTheCache(t *testing.T) {
	r, rep := newMaster(t)
	ctx := testCtx(t, 60*time.Second)
	cache := t.TempDir()
	kw := map[string]any{"env": []any{"XDG_CACHE_HOME=" + cache}}

	c, err := r.Connect(ctx, "testsh", &core.ConnectOptions{Kwargs: kw})
	if err != nil {
		t.Fatal(err)
	}
	first := rep.last(t)
	want := filepath.Join(cache, "mitostar", selfHash(t), "mitostar")
	if got := callString(t, ctx, c, "connecttest.exe"); got != want {
		t.Errorf("child runs %s, want %s", got, want)
	}
	if !first.Shipped || first.Written < 1<<20 {
		t.Errorf("first connection: shipped=%v written=%d, want the binary shipped", first.Shipped, first.Written)
	}
	if first.Platform != runtime.GOOS+"/"+runtime.GOARCH {
		t.Errorf("platform %q", first.Platform)
	}
	entries, _ := os.ReadDir(filepath.Dir(want))
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "mitostar ok" {
		t.Errorf("cache directory holds %v, want [mitostar ok]", names)
	}

	c2, err := r.Connect(ctx, "testsh", &core.ConnectOptions{Kwargs: kw})
	if err != nil {
		t.Fatal(err)
	}
	second := rep.last(t)
	if second.Shipped || second.Written >= 2048 {
		t.Errorf("second connection: shipped=%v written=%d bytes, want nothing shipped and < 2 KB", second.Shipped, second.Written)
	}
	t.Logf("first connection wrote %d bytes in %v; second wrote %d bytes in %v", first.Written, first.Elapsed, second.Written, second.Elapsed)
	if got := callString(t, ctx, c2, "connecttest.exe"); got != want {
		t.Errorf("second child runs %s, want %s", got, want)
	}
}

// TestStubListsCachedModules: the stub lists the module cache beside a
// cached binary, and the child starts in the directory it was given.
func TestStubListsCachedModules(t *testing.T) {
	r, _ := newMaster(t)
	ctx := testCtx(t, 60*time.Second)
	cache := t.TempDir()
	var mu sync.Mutex
	var seen [][]string
	ObserveCachedModules(r, func(id uint32, shas []string) {
		mu.Lock()
		seen = append(seen, shas)
		mu.Unlock()
	})
	kw := map[string]any{"env": []any{"XDG_CACHE_HOME=" + cache}, "setup": "cd /tmp"}
	if _, err := r.Connect(ctx, "testsh", &core.ConnectOptions{Kwargs: kw}); err != nil {
		t.Fatal(err)
	}
	m := filepath.Join(cache, "mitostar", selfHash(t), ModuleCacheDir)
	os.Mkdir(m, 0o700)
	a, b := strings.Repeat("a", 64), strings.Repeat("0b", 32)
	for _, name := range []string{b, a, "partial.123.tmp"} {
		os.WriteFile(filepath.Join(m, name), nil, 0o600)
	}
	c, err := r.Connect(ctx, "testsh", &core.ConnectOptions{Kwargs: kw})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	got := fmt.Sprint(seen)
	mu.Unlock()
	if want := fmt.Sprint([][]string{{b, a}}); got != want {
		t.Errorf("cached modules reported %s, want %s (none for the first connection)", got, want)
	}
	var cwd string
	if err := c.Call(ctx, &cwd, "connecttest.getcwd"); err != nil || cwd != "/tmp" {
		t.Errorf("the child runs in %q (%v), want /tmp", cwd, err)
	}
}

func TestStubConcurrentConnectionsShipOnce(t *testing.T) {
	r, rep := newMaster(t)
	ctx := testCtx(t, 90*time.Second)
	cache := t.TempDir()
	kw := map[string]any{"env": []any{"XDG_CACHE_HOME=" + cache}}
	const n = 10
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := r.Connect(ctx, "testsh", &core.ConnectOptions{Kwargs: kw, Name: fmt.Sprintf("sh%d", i)})
			if err != nil {
				errs[i] = err
				return
			}
			var exe string
			errs[i] = c.Call(ctx, &exe, "connecttest.exe")
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	rep.mu.Lock()
	defer rep.mu.Unlock()
	shipped := 0
	for _, b := range rep.all {
		if b.Shipped {
			shipped++
		}
	}
	if len(rep.all) != n || shipped != 1 {
		t.Errorf("%d bootstraps, %d shipped the binary; want %d and 1", len(rep.all), shipped, n)
	}
	dir := filepath.Join(cache, "mitostar", selfHash(t))
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "mitostar ok" {
		t.Errorf("cache directory holds %v, want [mitostar ok]", names)
	}
}

func TestStubIgnoresNoise(t *testing.T) {
	r, _ := newMaster(t)
	ctx := testCtx(t, 60*time.Second)
	setup := `echo "Welcome to the target"; printf 'no newline here '; echo "mitostar:0123456789abcdef:error fake"; echo "MITOSTAR-READY" ; echo to stderr >&2`
	c, err := r.Connect(ctx, "testsh", &core.ConnectOptions{Kwargs: map[string]any{
		"env": []any{"XDG_CACHE_HOME=" + t.TempDir()}, "setup": setup,
	}})
	if err != nil {
		t.Fatal(err)
	}
	if got := callString(t, ctx, c, "connecttest.getenv", "XDG_CACHE_HOME"); got == "" {
		t.Error("child lost its environment")
	}
}

func TestStubNoexecCacheFallsBack(t *testing.T) {
	requireRoot(t, "unshare", "mount")
	r, rep := newMaster(t)
	ctx := testCtx(t, 60*time.Second)
	// A private, executable /tmp; HOME and TMPDIR on noexec mounts.
	setup := `set -e
mount -t tmpfs tmpfs /tmp
mkdir /tmp/home /tmp/tmpdir
mount -t tmpfs -o noexec tmpfs /tmp/home
mount -t tmpfs -o noexec tmpfs /tmp/tmpdir
export HOME=/tmp/home TMPDIR=/tmp/tmpdir
unset XDG_CACHE_HOME`
	c, err := r.Connect(ctx, "testsh", &core.ConnectOptions{Kwargs: map[string]any{"setup": setup, "unshare": true}})
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("/tmp/mitostar.%d/%s/mitostar", os.Getuid(), selfHash(t))
	if got := callString(t, ctx, c, "connecttest.exe"); got != want {
		t.Errorf("child runs %s, want %s", got, want)
	}
	if !rep.last(t).Shipped {
		t.Error("binary not shipped")
	}
}

func TestStubMemfdWhenEveryCacheIsNoexec(t *testing.T) {
	requireRoot(t, "unshare", "mount", "perl", "python3")
	if runtime.GOOS != "linux" {
		testbed.Unavailable(t, "memfd is Linux only")
	}
	allNoexec := `set -e
mount -t tmpfs -o noexec tmpfs /tmp
mount -t tmpfs -o noexec tmpfs /dev/shm
mkdir /tmp/home
export HOME=/tmp/home TMPDIR=/tmp
unset XDG_CACHE_HOME`
	for _, loader := range []string{"python3", "perl"} {
		t.Run(loader, func(t *testing.T) {
			r, rep := newMaster(t)
			ctx := testCtx(t, 60*time.Second)
			setup := allNoexec
			if loader == "perl" {
				// A PATH with every tool but python3.
				setup += `
mkdir /tmp/bin
for f in sh id uname dd mkdir chmod mv rm cat sleep gzip head wc sha256sum perl; do ln -s "$(command -v $f)" /tmp/bin/; done
export PATH=/tmp/bin`
			}
			c, err := r.Connect(ctx, "testsh", &core.ConnectOptions{Kwargs: map[string]any{"setup": setup, "unshare": true}})
			if err != nil {
				t.Fatal(err)
			}
			if got := callString(t, ctx, c, "connecttest.exe"); !strings.HasPrefix(got, "/memfd:mitostar") {
				t.Errorf("child runs %s, want a memfd", got)
			}
			if !rep.last(t).Shipped {
				t.Error("binary not shipped")
			}
		})
	}
}

func TestStubMissingDistBinary(t *testing.T) {
	r, _ := newMaster(t)
	ctx := testCtx(t, 30*time.Second)
	bin := t.TempDir()
	os.WriteFile(filepath.Join(bin, "uname"), []byte("#!/bin/sh\necho Linux aarch64\n"), 0o755)
	t.Setenv(DistEnv, t.TempDir())
	_, err := r.Connect(ctx, "testsh", &core.ConnectOptions{Kwargs: map[string]any{
		"env": []any{"PATH=" + bin + ":" + os.Getenv("PATH"), "XDG_CACHE_HOME=" + t.TempDir()},
	}})
	if err == nil {
		t.Fatal("connected without a linux/arm64 binary")
	}
	for _, want := range []string{"connect testsh", "mitostar-linux-arm64", "make dist", "linux/arm64"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if k := core.KindOf(err); k != "StreamError" {
		t.Errorf("kind %s, want StreamError", k)
	}
}

func TestStubShipsDistBinary(t *testing.T) {
	r, rep := newMaster(t)
	ctx := testCtx(t, 60*time.Second)
	bin := t.TempDir()
	os.WriteFile(filepath.Join(bin, "uname"), []byte("#!/bin/sh\necho Linux aarch64\n"), 0o755)
	// The "arm64" binary is a copy of this one, so that it runs here.
	dist := t.TempDir()
	data, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	data = append(data, "distinct"...) // a different hash from this binary's
	if err := os.WriteFile(filepath.Join(dist, "mitostar-linux-arm64"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(DistEnv, dist)
	cache := t.TempDir()
	c, err := r.Connect(ctx, "testsh", &core.ConnectOptions{Kwargs: map[string]any{
		"env": []any{"PATH=" + bin + ":" + os.Getenv("PATH"), "XDG_CACHE_HOME=" + cache},
	}})
	if err != nil {
		t.Fatal(err)
	}
	b := rep.last(t)
	if !b.Shipped || b.Platform != "linux/arm64" {
		t.Errorf("report %+v, want the linux/arm64 binary shipped", b)
	}
	exe := callString(t, ctx, c, "connecttest.exe")
	if !strings.HasPrefix(exe, filepath.Join(cache, "mitostar")) || strings.Contains(exe, selfHash(t)) {
		t.Errorf("child runs %s, want the dist binary in %s", exe, cache)
	}
}

func TestStubConnectTimeout(t *testing.T) {
	r, _ := newMaster(t)
	ctx := testCtx(t, 30*time.Second)
	began := time.Now()
	_, err := r.Connect(ctx, "testsh", &core.ConnectOptions{
		ConnectTimeout: time.Second,
		Kwargs:         map[string]any{"setup": "echo about to hang; sleep 60"},
	})
	if err == nil {
		t.Fatal("connected")
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("took %v to time out", d)
	}
	for _, want := range []string{"timed out", "about to hang"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestStubDistFromParent(t *testing.T) {
	r, _ := newMaster(t)
	if err := r.SetMaxMessageSize(1 << 20); err != nil { // the binary travels in many chunks
		t.Fatal(err)
	}
	ctx := testCtx(t, 60*time.Second)
	bin := t.TempDir()
	os.WriteFile(filepath.Join(bin, "uname"), []byte("#!/bin/sh\necho Linux aarch64\n"), 0o755)
	dist := t.TempDir()
	data, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	data = append(data, "arm64 stand-in"...)
	os.WriteFile(filepath.Join(dist, "mitostar-linux-arm64"), data, 0o755)
	t.Setenv(DistEnv, dist)

	// The hop has no dist directory of its own: it must ask the master.
	hop := mustConnect(t, ctx, r, "testsh", nil, map[string]any{"env": []any{DistEnv + "=", "XDG_CACHE_HOME=" + t.TempDir()}})
	cache := t.TempDir()
	c := mustConnect(t, ctx, r, "testsh", hop, map[string]any{"env": []any{"PATH=" + bin + ":" + os.Getenv("PATH"), "XDG_CACHE_HOME=" + cache}})
	exe := callString(t, ctx, c, "connecttest.exe")
	if !strings.HasPrefix(exe, filepath.Join(cache, "mitostar")) || strings.Contains(exe, selfHash(t)) {
		t.Errorf("child runs %s, want the arm64 stand-in in %s", exe, cache)
	}

	// Without the file anywhere, the error names it and make dist.
	t.Setenv(DistEnv, t.TempDir())
	hop2 := mustConnect(t, ctx, r, "testsh", nil, map[string]any{"env": []any{DistEnv + "=", "XDG_CACHE_HOME=" + t.TempDir()}})
	bin2 := t.TempDir()
	os.WriteFile(filepath.Join(bin2, "uname"), []byte("#!/bin/sh\necho FreeBSD amd64\n"), 0o755)
	_, err = connect(ctx, r, "testsh", hop2, map[string]any{"env": []any{"PATH=" + bin2 + ":" + os.Getenv("PATH")}})
	wantKind(t, err, "StreamError", "mitostar-freebsd-amd64", "make dist", "its parent has none")
}

func TestBinaryHashMemo(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	path := filepath.Join(t.TempDir(), "bin")
	os.WriteFile(path, []byte("first content"), 0o755)
	want := func(content string) string {
		sum := sha256.Sum256([]byte(content))
		return hex.EncodeToString(sum[:])
	}
	info, err := (&binary{path: path}).info()
	if err != nil || info.hash != want("first content") || info.size != 13 {
		t.Fatalf("info %+v %v", info, err)
	}
	// Remembered: a second lookup reads the memo.
	f, _ := os.Open(path)
	memo := hashMemoPath(f)
	f.Close()
	if m, ok := readHashMemo(memo); !ok || m != info {
		t.Fatalf("memo %q: %+v %v", memo, m, ok)
	}
	// Rewritten: a new identity, so the new content is hashed.
	time.Sleep(10 * time.Millisecond)
	os.WriteFile(path, []byte("second content!"), 0o755)
	info, err = (&binary{path: path}).info()
	if err != nil || info.hash != want("second content!") {
		t.Fatalf("after rewrite: %+v %v", info, err)
	}
}

// A program whose stdout ends before the child is up fails the
// connection with its exit status and last words; when something it
// started keeps its stderr open past diagGrace, the error says so
// (the last words may then be missing), and otherwise does not.
func TestStubEndedEarly(t *testing.T) {
	r, _ := newMaster(t)
	for _, c := range []struct {
		setup     string
		stillOpen bool
	}{
		{"echo giving up >&2; exit 7", false},
		{"echo giving up >&2; sleep 5 >/dev/null & exit 7", true},
	} {
		ctx := testCtx(t, 30*time.Second)
		_, err := r.Connect(ctx, "testsh", &core.ConnectOptions{Kwargs: map[string]any{"setup": c.setup}})
		if err == nil {
			t.Fatalf("%q: connected", c.setup)
		}
		msg := err.Error()
		for _, want := range []string{"closed before mitostar started", "exited with status 7", "giving up"} {
			if !strings.Contains(msg, want) {
				t.Errorf("%q: error %q does not mention %q", c.setup, msg, want)
			}
		}
		if got := strings.Contains(msg, "stderr was still open"); got != c.stillOpen {
			t.Errorf("%q: error %q: says stderr was still open: %v, want %v", c.setup, msg, got, c.stillOpen)
		}
	}
}

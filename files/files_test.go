package files

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mitostar/mitostar/core"
)

func TestMain(m *testing.M) {
	core.RunRole()
	os.Exit(m.Run())
}

func init() {
	// files.test.memory returns this process's VmHWM and VmRSS in bytes.
	core.RegisterFunc("files.test.memory", func(ctx context.Context, c *core.Call) (any, error) {
		hwm, rss, err := memory()
		return []int64{hwm, rss}, err
	})
}

// memory reads VmHWM and VmRSS of this process from /proc.
func memory() (hwm, rss int64, err error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		n, _ := strconv.ParseInt(fields[1], 10, 64)
		switch fields[0] {
		case "VmHWM:":
			hwm = n << 10
		case "VmRSS:":
			rss = n << 10
		}
	}
	return hwm, rss, sc.Err()
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func newMaster(t testing.TB) *core.Router {
	t.Helper()
	r := core.NewMaster(core.Options{})
	t.Cleanup(r.Close)
	if _, err := Install(r); err != nil {
		t.Fatal(err)
	}
	return r
}

func child(t testing.TB, r *core.Router, via *core.Context) *core.Context {
	t.Helper()
	c, err := r.Connect(testCtx(t), "local", &core.ConnectOptions{Via: via})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func writeFile(t testing.TB, p string, data []byte, mode os.FileMode, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// bigFile writes mib MiB of random bytes to p, a MiB at a time: a test
// never holds a big file in memory (under the race detector, the shadow
// of a 64 MiB buffer would stay in the process's RSS long after it).
func bigFile(t testing.TB, p string, mib int) {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	block := randomBytes(t, 1<<20)
	for i := range mib {
		block[0] = byte(i)
		if _, err := f.Write(block); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// fileSum is the sha256 of a file, read without holding it in memory.
func fileSum(t testing.TB, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// sameFile checks content, mode and mtime of got against want.
func sameFile(t testing.TB, want, got string) {
	t.Helper()
	if a, b := fileSum(t, want), fileSum(t, got); a != b {
		t.Fatalf("%s: content differs from %s", got, want)
	}
	sa, _ := os.Stat(want)
	sb, _ := os.Stat(got)
	if sa.Mode() != sb.Mode() {
		t.Fatalf("%s: mode %v, want %v", got, sb.Mode(), sa.Mode())
	}
	if !sa.ModTime().Equal(sb.ModTime()) {
		t.Fatalf("%s: mtime %v, want %v", got, sb.ModTime(), sa.ModTime())
	}
}

// noTemps fails if dir holds leftovers of a transfer.
func noTemps(t testing.TB, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), ".mitostar-") {
			t.Errorf("leftover temp file %s", p)
		}
		return nil
	})
}

func wantOSError(t testing.TB, err error, substr ...string) {
	t.Helper()
	var re *core.RemoteError
	if !errors.As(err, &re) || re.Kind != "OSError" {
		t.Fatalf("err = %v (%T), want an OSError", err, err)
	}
	for _, s := range substr {
		if !strings.Contains(re.Message, s) {
			t.Fatalf("OSError %q does not mention %q", re.Message, s)
		}
	}
}

func TestPutGetFile(t *testing.T) {
	r := newMaster(t)
	c := child(t, r, nil)
	ctx := testCtx(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	mtime := time.Date(2020, 1, 2, 3, 4, 5, 600, time.UTC)
	writeFile(t, src, randomBytes(t, 3<<20+5), 0o640, mtime)

	dst := filepath.Join(dir, "dst")
	if err := Put(ctx, r, c, src, dst, nil, false); err != nil {
		t.Fatal(err)
	}
	sameFile(t, src, dst)

	// mode= overrides; an existing file is replaced.
	m := os.FileMode(0o600)
	if err := Put(ctx, r, c, src, dst, &m, false); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(dst); st.Mode() != 0o600 {
		t.Fatalf("mode= gave %v, want 0600", st.Mode())
	}

	back := filepath.Join(dir, "back")
	if err := Get(ctx, r, c, src, back, false); err != nil {
		t.Fatal(err)
	}
	sameFile(t, src, back)

	empty := filepath.Join(dir, "empty")
	writeFile(t, empty, nil, 0o644, mtime)
	if err := Put(ctx, r, c, empty, empty+".copy", nil, false); err != nil {
		t.Fatal(err)
	}
	sameFile(t, empty, empty+".copy")
	noTemps(t, dir)
}

func makeTree(t testing.TB, root string, files int) {
	t.Helper()
	mtime := time.Date(2021, 5, 6, 7, 8, 9, 0, time.UTC)
	for i := 0; i < files; i++ {
		d := filepath.Join(root, fmt.Sprintf("d%02d", i%10), fmt.Sprintf("e%d", i%3))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(d, fmt.Sprintf("f%04d", i)), randomBytes(t, i*37%5000), os.FileMode(0o600+i%3*0o40), mtime.Add(time.Duration(i)*time.Second))
	}
	if err := os.Symlink("d00/e0", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(root, "d01"), 0o750)
	os.Chtimes(filepath.Join(root, "d01"), mtime, mtime)
}

// sameTree compares two trees: names, types, modes, content, mtimes of
// files and symlink targets.
func sameTree(t testing.TB, want, got string) {
	t.Helper()
	count := 0
	err := filepath.WalkDir(want, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		q := filepath.Join(got, rel)
		a, _ := os.Lstat(p)
		b, err := os.Lstat(q)
		if err != nil {
			return fmt.Errorf("missing %s", q)
		}
		if a.Mode() != b.Mode() {
			return fmt.Errorf("%s: mode %v, want %v", q, b.Mode(), a.Mode())
		}
		switch {
		case a.Mode().IsRegular():
			sameFile(t, p, q)
			count++
		case a.Mode()&fs.ModeSymlink != 0:
			la, _ := os.Readlink(p)
			lb, _ := os.Readlink(q)
			if la != lb {
				return fmt.Errorf("%s: link to %q, want %q", q, lb, la)
			}
		case a.IsDir() && !a.ModTime().Equal(b.ModTime()):
			return fmt.Errorf("%s: dir mtime %v, want %v", q, b.ModTime(), a.ModTime())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if count == 0 {
		t.Fatal("no files compared")
	}
}

func TestPutGetTree(t *testing.T) {
	r := newMaster(t)
	c := child(t, r, nil)
	ctx := testCtx(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	makeTree(t, src, 200)

	if err := Put(ctx, r, c, src, filepath.Join(dir, "nodir"), nil, false); err == nil || !strings.Contains(err.Error(), "is a directory (recursive=True") {
		t.Fatalf("put of a directory without recursive: %v", err)
	}
	dst := filepath.Join(dir, "dst")
	if err := Put(ctx, r, c, src, dst, nil, true); err != nil {
		t.Fatal(err)
	}
	sameTree(t, src, dst)
	// Again, into the existing tree: merged, still equal.
	os.WriteFile(filepath.Join(src, "d02", "new"), []byte("new"), 0o644)
	if err := Put(ctx, r, c, src, dst, nil, true); err != nil {
		t.Fatal(err)
	}
	sameTree(t, src, dst)

	back := filepath.Join(dir, "back")
	if err := Get(ctx, r, c, dst, back, true); err != nil {
		t.Fatal(err)
	}
	sameTree(t, src, back)
	noTemps(t, dir)
}

func TestPutGetErrors(t *testing.T) {
	r := newMaster(t)
	c := child(t, r, nil)
	ctx := testCtx(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	writeFile(t, src, []byte("data"), 0o644, time.Now())
	blocker := filepath.Join(dir, "plainfile")
	writeFile(t, blocker, []byte("x"), 0o644, time.Now())

	missing := filepath.Join(dir, "missing")
	wantOSError(t, Put(ctx, r, c, missing, filepath.Join(dir, "x"), nil, false), "fs.put "+missing, "no such file or directory")
	wantOSError(t, Get(ctx, r, c, missing, filepath.Join(dir, "x"), false), "fs.get "+missing, "no such file or directory")

	bad := filepath.Join(dir, "nodir", "file")
	wantOSError(t, Put(ctx, r, c, src, bad, nil, false), "fs.put "+bad, "no such file or directory")
	bad = filepath.Join(blocker, "file")
	wantOSError(t, Put(ctx, r, c, src, bad, nil, false), "fs.put "+bad, "not a directory")
	wantOSError(t, Get(ctx, r, c, src, bad, false), "fs.get "+bad, "not a directory")
	wantOSError(t, Put(ctx, r, c, src, dir, nil, false), "fs.put "+dir, "is a directory")
	noTemps(t, dir)
}

func TestPutCancelledLeavesNothing(t *testing.T) {
	r := newMaster(t)
	c := child(t, r, nil)
	dir := t.TempDir()
	src := filepath.Join(dir, "big")
	bigFile(t, src, 64)
	dst := filepath.Join(dir, "out", "big")
	os.Mkdir(filepath.Dir(dst), 0o755)
	// Cancel ever sooner until a put is caught mid-transfer (64 MiB takes
	// hundreds of milliseconds here, so the first try nearly always is).
	var err error
	for _, after := range []time.Duration{30 * time.Millisecond, 10 * time.Millisecond, 3 * time.Millisecond, time.Millisecond} {
		ctx, cancel := context.WithCancel(testCtx(t))
		time.AfterFunc(after, cancel)
		err = Put(ctx, r, c, src, dst, nil, false)
		cancel()
		if err != nil {
			break
		}
		os.Remove(dst)
	}
	if err == nil {
		t.Fatal("every put of 64 MiB finished before its cancellation, down to 1 ms: cannot test a cancelled put")
	}
	if !errors.Is(err, context.Canceled) && !strings.Contains(err.Error(), "context canceled") {
		t.Fatalf("cancelled put: %v", err)
	}
	// The remote side removes its temp file once the abort reaches it.
	deadline := time.Now().Add(5 * time.Second)
	for {
		ents, _ := os.ReadDir(filepath.Dir(dst))
		if len(ents) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("left behind after a failed put: %v", ents[0].Name())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestBigViaChain moves 256 MiB both ways through master → hop → leaf
// and checks that no process of the chain grows beyond 64 MiB.
func TestBigViaChain(t *testing.T) {
	r := newMaster(t)
	hop := child(t, r, nil)
	leaf := child(t, r, hop)
	ctx := testCtx(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "big")
	bigFile(t, src, 256)
	// Reset this process's peak RSS so that earlier tests do not count.
	os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)

	dst := filepath.Join(dir, "leafcopy")
	t0 := time.Now()
	if err := Put(ctx, r, leaf, src, dst, nil, false); err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	back := filepath.Join(dir, "back")
	if err := Get(ctx, r, leaf, dst, back, false); err != nil {
		t.Fatal(err)
	}
	t.Logf("put %v, get %v", t1.Sub(t0), time.Since(t1))
	sameFile(t, src, back)
	const limit = bigChainRSSLimit
	hwm, _, err := memory()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("master VmHWM %d MiB", hwm>>20)
	if hwm > limit {
		t.Errorf("master peak RSS %d MiB, over %d MiB", hwm>>20, limit>>20)
	}
	for _, c := range []*core.Context{hop, leaf} {
		var m []int64
		if err := c.Call(ctx, &m, "files.test.memory"); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s VmHWM %d MiB", c.Name(), m[0]>>20)
		if m[0] > limit {
			t.Errorf("%s peak RSS %d MiB, over %d MiB", c.Name(), m[0]>>20, limit>>20)
		}
	}
}

func TestFileService(t *testing.T) {
	r := newMaster(t)
	c := child(t, r, nil)
	ctx := testCtx(t)
	dir := t.TempDir()
	pub := filepath.Join(dir, "pub")
	os.Mkdir(pub, 0o755)
	mtime := time.Date(2019, 9, 9, 9, 9, 9, 0, time.UTC)
	writeFile(t, filepath.Join(pub, "a"), randomBytes(t, 700<<10), 0o604, mtime)
	secret := filepath.Join(dir, "secret")
	writeFile(t, secret, []byte("top secret"), 0o600, mtime)
	single := filepath.Join(dir, "single")
	writeFile(t, single, []byte("one"), 0o644, mtime)
	os.Symlink(secret, filepath.Join(pub, "escape"))
	os.Symlink("a", filepath.Join(pub, "inside"))

	svc, _ := Install(r)
	if err := svc.RegisterPrefix(pub); err != nil {
		t.Fatal(err)
	}
	if err := svc.Register(single); err != nil {
		t.Fatal(err)
	}
	if err := svc.Register("relative/path"); err == nil {
		t.Fatal("registering a relative path succeeded")
	}

	// The child fetches from its parent's FileService.
	type res struct {
		Info FileInfo `cbor:"1,keyasint"`
	}
	fetch := func(path string) (FileInfo, error) {
		var info FileInfo
		out := filepath.Join(dir, "fetched", filepath.Base(path))
		err := c.Call(ctx, &info, "files.test.fetch", path, out)
		return info, err
	}
	info, err := fetch(filepath.Join(pub, "a"))
	if err != nil {
		t.Fatal(err)
	}
	sameFile(t, filepath.Join(pub, "a"), filepath.Join(dir, "fetched", "a"))
	if info.Size != 700<<10 || info.Mode != 0o604 || info.MTime != mtime.UnixNano() {
		t.Fatalf("fetch info %+v", info)
	}
	if _, err := fetch(filepath.Join(pub, "inside")); err != nil {
		t.Fatalf("symlink inside the prefix: %v", err)
	}
	if _, err := fetch(single); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		filepath.Join(pub, "escape"):           "leads out of the registered prefix",
		pub + "/../secret":                     "is not an absolute, clean path",
		secret:                                 "is not registered with FileService",
		filepath.Join(pub, "missing"):          "no such file or directory",
		filepath.Join(dir, "pubx", "whatever"): "is not registered with FileService",
	} {
		_, err := fetch(path)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("fetch %s: %v, want an error containing %q", path, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "fetched", "secret")); err == nil {
		t.Error("the secret was written")
	}

	// register is for parents only: the child is refused by policy.
	err = c.Call(ctx, nil, "files.test.register_in_parent", secret)
	var ce *core.ChannelError
	var re *core.RemoteError
	if !errors.As(err, &re) || !strings.Contains(re.Message, "refused by policy") {
		t.Fatalf("register from a child: %v (%T), want refused by policy", err, err)
	}
	_ = ce
	if _, err := fetch(secret); err == nil {
		t.Fatal("secret served after a refused register")
	}
}

func init() {
	// files.test.fetch(path, out) fetches path from the parent.
	core.RegisterFunc("files.test.fetch", func(ctx context.Context, c *core.Call) (any, error) {
		var args []string
		if err := c.Args(&args); err != nil {
			return nil, err
		}
		os.MkdirAll(filepath.Dir(args[1]), 0o755)
		parent, _ := c.Router.ParentID()
		return Fetch(ctx, c.Router, c.Router.ContextByID(parent), args[0], args[1])
	})
	core.RegisterFunc("files.test.register_in_parent", func(ctx context.Context, c *core.Call) (any, error) {
		var args []string
		if err := c.Args(&args); err != nil {
			return nil, err
		}
		parent, _ := c.Router.ParentID()
		return nil, c.Router.ContextByID(parent).CallService(ctx, nil, ServiceName, "register", map[string]any{"path": args[0]})
	})
}

// benchSource writes a 64 MiB file of random bytes in a fresh directory
// and returns the directory and the file's path.
func benchSource(b *testing.B) (dir, src string) {
	dir = b.TempDir()
	src = filepath.Join(dir, "src")
	f, err := os.Create(src)
	if err != nil {
		b.Fatal(err)
	}
	block := make([]byte, 1<<20)
	rand.Read(block)
	for i := 0; i < benchMiB; i++ {
		if _, err := f.Write(block); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return dir, src
}

const benchMiB = 64

func BenchmarkPutLocalChild(b *testing.B) {
	r := core.NewMaster(core.Options{})
	defer r.Close()
	ctx := context.Background()
	c, err := r.Connect(ctx, "local", nil)
	if err != nil {
		b.Fatal(err)
	}
	dir, src := benchSource(b)
	b.SetBytes(benchMiB << 20)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := Put(ctx, r, c, src, filepath.Join(dir, "dst"), nil, false); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPutFloor is what fs.put to a local child could at best be:
// this process reads the file into a pipe, another process (cat) writes
// it to a file in the same directory. No hashing, no framing.
func BenchmarkPutFloor(b *testing.B) {
	dir, src := benchSource(b)
	dst := filepath.Join(dir, "dst")
	b.SetBytes(benchMiB << 20)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		in, err := os.Open(src)
		if err != nil {
			b.Fatal(err)
		}
		cmd := exec.Command("sh", "-c", `exec cat > "$0"`, dst)
		w, err := cmd.StdinPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		_, err = io.Copy(w, in)
		in.Close()
		w.Close()
		if werr := cmd.Wait(); err != nil || werr != nil {
			b.Fatal(err, werr)
		}
	}
}

var _ = io.EOF

// A file whose writes fail ends the receive with an OSError that names
// it, without waiting for the rest of the content.
func TestReceiveWriteFailure(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	f.Close() // every write fails
	src := &ctxReader{bytes.NewReader(make([]byte, 3*ioBuffer))}
	rc := &receiver{op: "fs.put", cs: src}
	_, err = rc.chunks(context.Background(), f, 0, "/dst/f", 3*ioBuffer, 3*ioBuffer)
	var re *core.RemoteError
	if !errors.As(err, &re) || re.Kind != "OSError" || !strings.HasPrefix(re.Message, "fs.put /dst/f: ") {
		t.Fatalf("chunks into a closed file: %v, want an OSError naming /dst/f", err)
	}
	if left := src.Len(); left != 2*ioBuffer {
		t.Fatalf("read %d bytes before failing, want one piece of %d", 3*ioBuffer-left, ioBuffer)
	}
}

// ctxReader is a chunkReader over a bytes.Reader.
type ctxReader struct{ *bytes.Reader }

func (r *ctxReader) ReadContext(_ context.Context, p []byte) (int, error) { return r.Read(p) }

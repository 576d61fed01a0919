package fakessh

import (
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
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mitostar/mitostar/core"
	"github.com/mitostar/mitostar/internal/testbed"
)

func TestMain(m *testing.M) {
	core.RunRole()
	os.Exit(m.Run())
}

func TestParseSSH(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want request
		err  string
	}{
		{[]string{"host", "echo", "hi there"}, request{Host: "host", Command: "echo hi there"}, ""},
		{[]string{"-p", "22", "-l", "bob", "-oBatchMode=yes", "-i", "/k", "-x", "-T", "bob@h", "rsync", "--server", "."}, request{Host: "bob@h", Command: "rsync --server ."}, ""},
		{[]string{"-4vp22", "h", "-C", "ls"}, request{Host: "h", Command: "ls"}, ""},
		{[]string{"-s", "--", "h", "sftp"}, request{Host: "h", Command: "sftp", Subsystem: true}, ""},
		{[]string{"-F", "/dev/null", "-e", "none", "-c", "aes128-ctr", "h", "--", "-x"}, request{Host: "h", Command: "-x"}, ""},
		{[]string{"-V"}, request{Version: true}, ""},
		{[]string{"-z", "h", "ls"}, request{}, "unknown option -- z"},
		{[]string{"-p"}, request{}, "option requires an argument -- p"},
		{[]string{"h"}, request{}, "no command given for h"},
		{[]string{}, request{}, "usage: ssh"},
	} {
		got, err := parseSSH(tc.args)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseSSH(%q) error %v, want %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(*got, tc.want) {
			t.Errorf("parseSSH(%q) = %+v, %v; want %+v", tc.args, got, err, tc.want)
		}
	}
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// setup returns a master and a local child context.
func setup(t testing.TB) (*core.Router, *core.Context) {
	t.Helper()
	r := core.NewMaster(core.Options{})
	t.Cleanup(r.Close)
	c, err := r.Connect(testCtx(t), "local", nil)
	if err != nil {
		t.Fatal(err)
	}
	return r, c
}

func run(t testing.TB, r *core.Router, c *core.Context, argv ...string) (status int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	st, err := RunWith(testCtx(t), r, c, argv, &Options{Stdout: &out, Stderr: &errb})
	if err != nil {
		t.Fatalf("%q: %v", argv, err)
	}
	return st, out.String(), errb.String()
}

func TestRunCommand(t *testing.T) {
	r, c := setup(t)
	var pid int
	if err := c.Call(testCtx(t), &pid, "fakessh.test.pid"); err != nil {
		t.Fatal(err)
	}
	st, out, errs := run(t, r, c, "sh", "-c", `printf 'a\nb\n' | ssh -p 2222 -l nobody some.host "cat; echo \$PPID; echo oops >&2; exit 3"`)
	if st != 3 {
		t.Fatalf("status %d, want 3 (stderr %q)", st, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || lines[0] != "a" || lines[1] != "b" {
		t.Fatalf("stdout %q", out)
	}
	// The command ran under sh started by the child context.
	if ppid, _ := strconv.Atoi(lines[2]); ppid != pid {
		t.Fatalf("command's parent is %s, want the child context %d", lines[2], pid)
	}
	if !strings.Contains(errs, "oops") {
		t.Fatalf("stderr %q does not carry the remote stderr", errs)
	}
	// A bad ssh command line fails like ssh does.
	st, _, errs = run(t, r, c, "ssh", "-Z", "h", "true")
	if st != 255 || !strings.Contains(errs, "unknown option -- Z") {
		t.Fatalf("bad option: status %d stderr %q", st, errs)
	}
	// Deadline.
	_, err := Run(testCtx(t), r, c, []string{"ssh", "h", "sleep 30"}, 300*time.Millisecond)
	var te *core.TimeoutError
	if !errors.As(err, &te) {
		t.Fatalf("deadline: %v, want TimeoutError", err)
	}
}

// The program is looked up as exec.LookPath looks it up: an empty PATH
// entry is the current directory, and what is found there is refused,
// not run (as exec.run refuses it).
func TestRunRelativePath(t *testing.T) {
	r, c := setup(t)
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	if err := os.WriteFile(filepath.Join(dir, "prog"), []byte("#!/bin/sh\nexec /usr/bin/touch "+marker+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	t.Setenv("PATH", ":"+os.Getenv("PATH"))
	_, err := Run(testCtx(t), r, c, []string{"prog"}, 0)
	if !errors.Is(err, exec.ErrDot) || !strings.Contains(err.Error(), "fakessh.run: prog: cannot run executable found relative to current directory") {
		t.Errorf("err = %v, want exec.ErrDot", err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("prog ran from the current directory")
	}
	// An absolute entry still finds it.
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	if st, err := Run(testCtx(t), r, c, []string{"prog"}, 0); st != 0 || err != nil {
		t.Fatalf("prog through an absolute PATH entry: status %d, %v", st, err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("prog did not run: %v", err)
	}
}

func init() {
	core.RegisterFunc("fakessh.test.pid", func(ctx context.Context, c *core.Call) (any, error) { return os.Getpid(), nil })
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// makeTree writes n small files and one file of big bytes under root.
func makeTree(t testing.TB, root string, n int, big int64) {
	t.Helper()
	for i := 0; i < n; i++ {
		d := filepath.Join(root, fmt.Sprintf("d%02d", i%20))
		os.MkdirAll(d, 0o755)
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%04d", i)), randomBytes(i%2000), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if big > 0 {
		f, err := os.Create(filepath.Join(root, "big"))
		if err != nil {
			t.Fatal(err)
		}
		block := randomBytes(1 << 20)
		for left := big; left > 0; left -= int64(len(block)) {
			block[0]++
			f.Write(block[:min(int64(len(block)), left)])
		}
		f.Close()
	}
}

// treeDigest summarises a tree: paths, modes, sizes and content hashes.
func treeDigest(t testing.TB, root string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		info, _ := d.Info()
		fmt.Fprintf(&b, "%s %v", rel, info.Mode())
		if info.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			io.Copy(h, f)
			f.Close()
			fmt.Fprintf(&b, " %d %s", info.Size(), hex.EncodeToString(h.Sum(nil)))
		}
		b.WriteByte('\n')
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestRsync(t *testing.T) {
	testbed.Require(t, "rsync")
	r, c := setup(t)
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	makeTree(t, src, 1000, 100<<20)
	rsyncCompare(t, r, c, src, "anyhost:"+dst, src, dst)
	// An update moves only what changed.
	changed := filepath.Join(src, "d03", "f0003")
	os.WriteFile(changed, []byte("changed content"), 0o644)
	out := rsyncCompare(t, r, c, src, "anyhost:"+dst, src, dst, "-i", "--stats")
	if !strings.Contains(out, "Number of regular files transferred: 1\n") || !strings.Contains(out, "d03/f0003") {
		t.Fatalf("update did not transfer exactly the changed file:\n%s", out)
	}
	if strings.Count(out, "<f") != 1 {
		t.Fatalf("update itemized more than one file:\n%s", out)
	}
	// And back: rsync from the context.
	rsyncCompare(t, r, c, "h:"+dst, filepath.Join(dir, "back"), src, filepath.Join(dir, "back"))
}

// rsyncCompare runs `rsync -a OPTS FROM/ TO/` through fakessh into c,
// fails unless it succeeds and the tree at local path got matches the
// one at want, and returns rsync's stdout.
func rsyncCompare(t testing.TB, r *core.Router, c *core.Context, from, to, want, got string, opts ...string) string {
	t.Helper()
	argv := append(append([]string{"rsync", "-a"}, opts...), from+"/", to+"/")
	st, out, errs := run(t, r, c, argv...)
	if st != 0 {
		t.Fatalf("%q: status %d: %s%s", argv, st, out, errs)
	}
	if treeDigest(t, want) != treeDigest(t, got) {
		t.Fatalf("%q: the copy at %s differs from %s", argv, got, want)
	}
	return out
}

func TestScpSftp(t *testing.T) {
	testbed.Require(t, "scp")
	testbed.Require(t, "sftp")
	r, c := setup(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	data := randomBytes(3<<20 + 11)
	os.WriteFile(src, data, 0o640)
	check := func(p string) {
		t.Helper()
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s: %d bytes, %v; want the source's %d bytes", p, len(got), err, len(data))
		}
	}
	for _, mode := range []string{"-s", "-O"} { // scp over sftp, and the legacy scp protocol
		up, down := filepath.Join(dir, "scp-up"+mode), filepath.Join(dir, "scp-down"+mode)
		if st, out, errs := run(t, r, c, "scp", mode, "-q", src, "h:"+up); st != 0 {
			t.Fatalf("scp %s up: %d %s%s", mode, st, out, errs)
		}
		check(up)
		if st, out, errs := run(t, r, c, "scp", mode, "-q", "h:"+up, down); st != 0 {
			t.Fatalf("scp %s down: %d %s%s", mode, st, out, errs)
		}
		check(down)
	}
	batch := filepath.Join(dir, "batch")
	up, down := filepath.Join(dir, "sftp-up"), filepath.Join(dir, "sftp-down")
	os.WriteFile(batch, []byte(fmt.Sprintf("put %s %s\nget %s %s\n", src, up, up, down)), 0o644)
	if st, out, errs := run(t, r, c, "sftp", "-q", "-b", batch, "h"); st != 0 {
		t.Fatalf("sftp: %d %s%s", st, out, errs)
	}
	check(up)
	check(down)
}

func TestConcurrentRsync(t *testing.T) {
	testbed.Require(t, "rsync")
	r, c := setup(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	makeTree(t, src, 200, 8<<20)
	want := treeDigest(t, src)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out bytes.Buffer
			dst := filepath.Join(dir, fmt.Sprintf("dst%d", i))
			st, err := RunWith(testCtx(t), r, c, []string{"rsync", "-a", src + "/", "h:" + dst + "/"}, &Options{Stdout: &out, Stderr: &out})
			if err == nil && st != 0 {
				err = fmt.Errorf("rsync %d: status %d: %s", i, st, out.String())
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
		if treeDigest(t, filepath.Join(dir, fmt.Sprintf("dst%d", i))) != want {
			t.Fatalf("copy %d differs", i)
		}
	}
}

// processesWith lists the pids whose command line contains s.
func processesWith(s string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		stat, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
			continue // a zombie waiting for a late reaper
		}
		if bytes.Contains(cmdline, []byte(s)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// fakesshGoroutines counts goroutines running this package's code.
func fakesshGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte("mitostar/fakessh.(*")) || bytes.Contains(g, []byte("mitostar/fakessh.RunWith")) {
			n++
		}
	}
	return n
}

func TestRsyncKilled(t *testing.T) {
	testbed.Require(t, "rsync")
	r, c := setup(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	makeTree(t, src, 10, 64<<20)
	marker := filepath.Join(dir, "dst-killtest")
	pidfile := filepath.Join(dir, "pid")
	script := fmt.Sprintf(`rsync -a --bwlimit=4000 %s/ h:%s/ & echo $! > %s; wait $!`, src, marker, pidfile)
	done := make(chan struct{})
	var st int
	var err error
	go func() {
		defer close(done)
		st, err = RunWith(testCtx(t), r, c, []string{"sh", "-c", script}, &Options{Stdout: io.Discard, Stderr: io.Discard})
	}()
	// Wait until the remote rsync runs and data flows, then kill the local rsync.
	deadline := time.Now().Add(20 * time.Second)
	var pid int
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(pidfile)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		if pid > 0 && len(processesWith("--server")) > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if pid == 0 {
		t.Fatal("rsync did not start")
	}
	time.Sleep(300 * time.Millisecond)
	syscall.Kill(pid, syscall.SIGKILL)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after rsync was killed")
	}
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if st != 128+int(syscall.SIGKILL) {
		t.Fatalf("status %d, want %d", st, 128+int(syscall.SIGKILL))
	}
	// No process of the run survives: not the local rsync, not the ssh
	// processes, not the rsync server in the child context.
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		left := processesWith(marker)
		if len(left) == 0 {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("processes left behind: %v", left)
		}
	}
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		n := fakesshGoroutines()
		if n == 0 {
			break
		}
		if time.Now().After(end) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d fakessh goroutines left:\n%s", n, buf[:runtime.Stack(buf, true)])
		}
	}
	// The child context is still usable.
	if st, _, errs := run(t, r, c, "ssh", "h", "true"); st != 0 {
		t.Fatalf("ssh after the kill: %d %s", st, errs)
	}
}

func BenchmarkRsyncTree(b *testing.B) {
	if _, err := exec.LookPath("rsync"); err != nil {
		b.Skip("rsync not installed")
	}
	dir := b.TempDir()
	src := filepath.Join(dir, "src")
	makeTree(b, src, 1000, 100<<20)
	b.Run("plain", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			dst := filepath.Join(dir, "plain")
			os.RemoveAll(dst)
			if out, err := exec.Command("rsync", "-a", src+"/", dst+"/").CombinedOutput(); err != nil {
				b.Fatalf("%v: %s", err, out)
			}
		}
	})
	b.Run("fakessh", func(b *testing.B) {
		r := core.NewMaster(core.Options{})
		defer r.Close()
		c, err := r.Connect(context.Background(), "local", nil)
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			dst := filepath.Join(dir, "fake")
			os.RemoveAll(dst)
			var out bytes.Buffer
			st, err := RunWith(context.Background(), r, c, []string{"rsync", "-a", src + "/", "h:" + dst + "/"}, &Options{Stdout: &out, Stderr: &out})
			if err != nil || st != 0 {
				b.Fatalf("%d %v %s", st, err, out.String())
			}
		}
	})
}

package fakessh

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	_ "github.com/mitostar/mitostar/connect" // the ssh method
	"github.com/mitostar/mitostar/core"
	"github.com/mitostar/mitostar/files"
	"github.com/mitostar/mitostar/internal/testbed"
)

// sshSetup returns a master and a context reached over a throwaway sshd
// on 127.0.0.1, logged in as root with the test key.
func sshSetup(t testing.TB) (*core.Router, *core.Context) {
	t.Helper()
	s := testbed.SSHD(t)
	r := core.NewMaster(core.Options{})
	t.Cleanup(r.Close)
	c, err := r.Connect(testCtx(t), "ssh", &core.ConnectOptions{Kwargs: map[string]any{
		"hostname": s.Host, "port": int64(s.Port), "username": "root",
		"identity_file": s.IdentityFile,
		"ssh_args":      []any{"-o", "UserKnownHostsFile=" + s.KnownHosts},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return r, c
}

// TestRsyncOverSSH copies 1,000 small files and one 100 MiB file with
// rsync into a context reached over ssh, and back.
func TestRsyncOverSSH(t *testing.T) {
	testbed.Require(t, "rsync")
	r, c := sshSetup(t)
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	makeTree(t, src, 1000, 100<<20)
	rsyncCompare(t, r, c, src, "target:"+dst, src, dst)
	back := filepath.Join(dir, "back")
	rsyncCompare(t, r, c, "target:"+dst, back, src, back)
}

// TestPutGetOverSSH streams a file and a tree to and from a context
// reached over ssh with files.Put and files.Get.
func TestPutGetOverSSH(t *testing.T) {
	r, c := sshSetup(t)
	ctx := testCtx(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	makeTree(t, src, 50, 32<<20)
	big := filepath.Join(src, "big")
	if err := os.Chmod(big, 0o640); err != nil {
		t.Fatal(err)
	}
	remote := filepath.Join(dir, "remote")
	if err := os.Mkdir(remote, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := files.Put(ctx, r, c, big, filepath.Join(remote, "big"), nil, false); err != nil {
		t.Fatal(err)
	}
	if err := files.Put(ctx, r, c, src, filepath.Join(remote, "tree"), nil, true); err != nil {
		t.Fatal(err)
	}
	got := filepath.Join(dir, "got")
	if err := files.Get(ctx, r, c, filepath.Join(remote, "tree"), got, true); err != nil {
		t.Fatal(err)
	}
	if treeDigest(t, src) != treeDigest(t, got) {
		t.Fatal("the tree sent and fetched back over ssh differs")
	}
	a, err := os.Stat(big)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.Stat(filepath.Join(remote, "big"))
	if err != nil {
		t.Fatal(err)
	}
	if a.Mode() != b.Mode() || !a.ModTime().Equal(b.ModTime()) || a.Size() != b.Size() {
		t.Fatalf("put over ssh: got mode %v mtime %v size %d, want %v %v %d", b.Mode(), b.ModTime(), b.Size(), a.Mode(), a.ModTime(), a.Size())
	}
}

// BenchmarkOverSSH compares, against one sshd and in the same run, rsync
// through fakessh with rsync over plain ssh for the same tree, and
// fs.put of 64 MiB with `ssh HOST cat > file`. It reports each pair's
// ratio (mitostar time / plain time; below 1 is faster). The plain side
// starts a new ssh each time, as a user would, so its times include the
// handshake and a fresh channel's ramp-up while fs.put uses an open
// context: make bench's fs_put_ssh row compares against one warm ssh
// session instead (bench/README.md).
func BenchmarkOverSSH(b *testing.B) {
	testbed.Require(b, "rsync")
	s := testbed.SSHD(b)
	r := core.NewMaster(core.Options{})
	b.Cleanup(r.Close)
	c, err := r.Connect(testCtx(b), "ssh", &core.ConnectOptions{Kwargs: map[string]any{
		"hostname": s.Host, "port": int64(s.Port), "username": "root",
		"identity_file": s.IdentityFile, "compression": false,
		"ssh_args": []any{"-o", "UserKnownHostsFile=" + s.KnownHosts},
	}})
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	src := filepath.Join(dir, "src")
	makeTree(b, src, 1000, 100<<20)
	big := filepath.Join(dir, "big")
	f, err := os.Create(big)
	if err != nil {
		b.Fatal(err)
	}
	block := randomBytes(1 << 20)
	for i := 0; i < 64; i++ {
		block[0]++
		f.Write(block)
	}
	f.Close()
	sshCmd := "ssh -o UserKnownHostsFile=" + s.KnownHosts + " -o BatchMode=yes -i " + s.IdentityFile + " -p " + strconv.Itoa(s.Port)
	timeIt := func(fn func() error) time.Duration {
		t0 := time.Now()
		if err := fn(); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	var fake, plain, put, cat time.Duration
	for i := 0; i < b.N; i++ {
		d1, d2 := filepath.Join(dir, "fake"+strconv.Itoa(i)), filepath.Join(dir, "plain"+strconv.Itoa(i))
		fake += timeIt(func() error {
			if st, out, errs := run(b, r, c, "rsync", "-a", src+"/", "h:"+d1+"/"); st != 0 {
				return fmt.Errorf("rsync via fakessh: %d %s%s", st, out, errs)
			}
			return nil
		})
		plain += timeIt(func() error {
			out, err := exec.Command("rsync", "-a", "-e", sshCmd, src+"/", "root@127.0.0.1:"+d2+"/").CombinedOutput()
			if err != nil {
				return fmt.Errorf("rsync over ssh: %v %s", err, out)
			}
			return nil
		})
		put += timeIt(func() error {
			return files.Put(testCtx(b), r, c, big, filepath.Join(dir, "put"+strconv.Itoa(i)), nil, false)
		})
		cat += timeIt(func() error {
			cmd := exec.Command("sh", "-c", sshCmd+" root@127.0.0.1 'cat > "+filepath.Join(dir, "cat"+strconv.Itoa(i))+"' < "+big)
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("ssh cat: %v %s", err, out)
			}
			return nil
		})
		os.RemoveAll(d1)
		os.RemoveAll(d2)
	}
	n := float64(b.N)
	b.ReportMetric(fake.Seconds()/n, "rsync-fakessh-s")
	b.ReportMetric(plain.Seconds()/n, "rsync-ssh-s")
	b.ReportMetric(fake.Seconds()/plain.Seconds(), "rsync-ratio")
	b.ReportMetric(64/(put.Seconds()/n), "put-MiB/s")
	b.ReportMetric(64/(cat.Seconds()/n), "ssh-cat-MiB/s")
	b.ReportMetric(put.Seconds()/cat.Seconds(), "put-ratio")
}

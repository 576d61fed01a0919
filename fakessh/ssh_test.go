package fakessh

import (
	"os"
	"path/filepath"
	"testing"

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
	require(t, "rsync")
	r, c := sshSetup(t)
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	makeTree(t, src, 1000, 100<<20)
	st, out, errs := run(t, r, c, "rsync", "-a", src+"/", "target:"+dst+"/")
	if st != 0 {
		t.Fatalf("rsync status %d: %s%s", st, out, errs)
	}
	if treeDigest(t, src) != treeDigest(t, dst) {
		t.Fatal("the copy over ssh differs from the source")
	}
	back := filepath.Join(dir, "back")
	if st, out, errs := run(t, r, c, "rsync", "-a", "target:"+dst+"/", back+"/"); st != 0 {
		t.Fatalf("rsync back over ssh: %d %s%s", st, out, errs)
	}
	if treeDigest(t, src) != treeDigest(t, back) {
		t.Fatal("the copy back over ssh differs")
	}
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

package testbed

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// ImageUser is the unprivileged user (uid and gid 1000, home
// /home/mtuser, shell /bin/sh) of the busybox root filesystem.
const ImageUser = "mtuser"

// BusyboxPath is the static busybox the root filesystem is made from.
const BusyboxPath = "/bin/busybox"

var (
	rootfsOnce sync.Once
	rootfsDir  string
	rootfsErr  error
)

// Rootfs returns the directory of a 2 MB busybox root filesystem
// (/bin/busybox with its applet links, /etc/passwd and
// /etc/group with root and ImageUser, /sbin/init that sleeps). Beside it,
// RootfsTar's tarball. It is built once per busybox binary under /tmp
// (atomically, so that test processes share it) and never modified:
// copy it before changing anything in it.
func Rootfs(t testing.TB) string {
	t.Helper()
	Require(t, BusyboxPath, "tar")
	rootfsOnce.Do(func() { rootfsDir, rootfsErr = buildRootfs() })
	if rootfsErr != nil {
		t.Fatalf("testbed: building the busybox rootfs: %v", rootfsErr)
	}
	return rootfsDir
}

// RootfsTar returns the path of a tar of Rootfs (for docker import,
// podman import and lxd image import).
func RootfsTar(t testing.TB) string {
	t.Helper()
	return Rootfs(t) + ".tar"
}

// LXDMetadataTar returns the path of the metadata tarball lxd needs
// beside RootfsTar to import the image.
func LXDMetadataTar(t testing.TB) string {
	t.Helper()
	return Rootfs(t) + ".meta.tar"
}

func buildRootfs() (string, error) {
	f, err := os.Open(BusyboxPath)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	_, err = io.Copy(h, f)
	f.Close()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(os.TempDir(), "mt-rootfs2-"+hex.EncodeToString(h.Sum(nil))[:16])
	if _, err := os.Stat(dir + ".meta.tar"); err == nil {
		return dir, nil
	}
	var result error
	err = withLock("rootfs", func() error {
		if _, err := os.Stat(dir + ".meta.tar"); err == nil {
			return nil
		}
		result = makeRootfs(dir)
		return result
	})
	if err != nil {
		return "", err
	}
	return dir, nil
}

// makeRootfs builds the tree in a temporary directory, then renames the
// tree, the tar and finally the metadata tar (whose presence says the
// rest is complete) into place.
func makeRootfs(dir string) error {
	os.RemoveAll(dir)
	os.Remove(dir + ".tar")
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "mt-rootfs-build.")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	r := filepath.Join(tmp, "rootfs")
	for _, d := range []string{"bin", "sbin", "usr", "tmp", "proc", "sys", "dev", "etc", "root"} {
		if err := os.MkdirAll(filepath.Join(r, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(r, "tmp"), 0o1777); err != nil {
		return err
	}
	data, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(r, "bin", "busybox"), data, 0o755); err != nil {
		return err
	}
	list, err := exec.Command(filepath.Join(r, "bin", "busybox"), "--list").Output()
	if err != nil {
		return fmt.Errorf("busybox --list: %w", err)
	}
	for _, a := range strings.Fields(string(list)) {
		if a == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(r, "bin", a)); err != nil {
			return err
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\n" + ImageUser + ":x:1000:1000:test user:/home/" + ImageUser + ":/bin/sh\n",
		"etc/group":  "root:x:0:\n" + ImageUser + ":x:1000:\n",
		"sbin/init":  "#!/bin/sh\nexec sleep 2147483647\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(r, name), []byte(content), 0o755); err != nil {
			return err
		}
	}
	home := filepath.Join(r, "home", ImageUser)
	if err := os.MkdirAll(home, 0o755); err != nil {
		return err
	}
	if err := os.Chown(home, 1000, 1000); err != nil {
		return err
	}
	if _, err := runErr(time.Minute, nil, "tar", "-C", r, "-cf", filepath.Join(tmp, "rootfs.tar"), "."); err != nil {
		return err
	}
	meta := fmt.Sprintf("architecture: x86_64\ncreation_date: %d\nproperties:\n  description: mitostar test busybox\n", time.Now().Unix())
	if err := os.WriteFile(filepath.Join(tmp, "metadata.yaml"), []byte(meta), 0o644); err != nil {
		return err
	}
	if _, err := runErr(time.Minute, nil, "tar", "-C", tmp, "-cf", filepath.Join(tmp, "meta.tar"), "metadata.yaml"); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := os.Rename(r, dir); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(tmp, "rootfs.tar"), dir+".tar"); err != nil {
		return err
	}
	return os.Rename(filepath.Join(tmp, "meta.tar"), dir+".meta.tar")
}

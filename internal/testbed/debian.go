package testbed

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// DebianPackages are the packages whose .deb files the Debian root
// filesystem keeps in apt's cache (not installed), so that apt-get
// installs them inside a container that has no network.
var DebianPackages = []string{"hello", "sl"}

// debianInclude are installed in the Debian root filesystem beyond
// debootstrap's minbase: ip (for checking facts) and ps.
var debianInclude = []string{"iproute2", "procps"}

// DebianAddress is the address of the Debian container's interface mt0,
// one end of a veth pair whose other end (mt1, no address) is in the
// container's network namespace too, so nothing it sends goes anywhere;
// its default route goes through DebianGateway, which does not exist.
const (
	DebianAddress = "10.77.0.9"
	DebianGateway = "10.77.0.1"
)

var (
	debianOnce sync.Once
	debianDir  string
	debianErr  error
)

// DebianSuite is the Debian release the root filesystem is made of:
// this machine's own (its libc runs the race-enabled test binary), read
// from /etc/os-release, bookworm when that says nothing.
func DebianSuite() string {
	data, _ := os.ReadFile("/etc/os-release")
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VERSION_CODENAME="); ok && strings.Trim(v, `"`) != "" {
			return strings.Trim(v, `"`)
		}
	}
	return "bookworm"
}

// debianMirror is the archive debootstrap and apt download from; the
// environment variable MITOSTAR_DEBIAN_MIRROR overrides it.
func debianMirror() string {
	if m := os.Getenv("MITOSTAR_DEBIAN_MIRROR"); m != "" {
		return m
	}
	return "http://deb.debian.org/debian"
}

// DebianRootfs returns the directory of a minimal Debian root filesystem
// (debootstrap --variant=minbase of DebianSuite, plus debianInclude,
// with the .deb files of DebianPackages in apt's cache). It is built
// once per machine under /tmp, which takes about half a minute and
// downloads from the Debian archive, and never modified: Debian starts
// containers on an overlay of it.
func DebianRootfs(t testing.TB) string {
	t.Helper()
	RequireRoot(t, "debootstrap", "chroot")
	debianOnce.Do(func() { debianDir, debianErr = buildDebian() })
	if debianErr != nil {
		t.Fatalf("testbed: building the Debian root filesystem: %v", debianErr)
	}
	return debianDir
}

// debianRecipe names everything the root filesystem is made from: a
// change makes a new one.
func debianRecipe() string {
	return strings.Join([]string{"v1", DebianSuite(), debianMirror(), strings.Join(debianInclude, ","), strings.Join(DebianPackages, ",")}, "|")
}

func buildDebian() (string, error) {
	sum := sha256.Sum256([]byte(debianRecipe()))
	dir := filepath.Join(os.TempDir(), "mt-debian-"+DebianSuite()+"-"+hex.EncodeToString(sum[:])[:12])
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	err := withLock("debian", func() error {
		if _, err := os.Stat(dir); err == nil {
			return nil
		}
		return makeDebian(dir)
	})
	return dir, err
}

// makeDebian runs debootstrap in a temporary directory, fills apt's
// cache, and renames the tree into place (its presence says it is
// complete).
func makeDebian(dir string) error {
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "mt-debian-build.")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	r := filepath.Join(tmp, "rootfs")
	if _, err := runErr(10*time.Minute, nil, "debootstrap", "--variant=minbase", "--include="+strings.Join(debianInclude, ","),
		DebianSuite(), r, debianMirror()); err != nil {
		return err
	}
	debs, _ := filepath.Glob(filepath.Join(r, "var/cache/apt/archives/*.deb"))
	for _, d := range debs {
		os.Remove(d)
	}
	args := append([]string{"chroot", r, "apt-get", "install", "--download-only", "-y", "-q"}, DebianPackages...)
	if _, err := runErr(5*time.Minute, []string{"DEBIAN_FRONTEND=noninteractive", "LANG=C"}, args...); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	return os.Rename(r, dir)
}

// A Container is a Debian system in namespaces of its own (pid, mount,
// uts, ipc, network) on a writable overlay of DebianRootfs: what it
// changes goes to a temporary directory and is gone when the test ends.
// Its first process sleeps; connect with router.setns(pid=PID).
type Container struct {
	PID   int    // the container's first process, as the host sees it
	Upper string // the overlay's upper directory: the files it changed
}

// Debian starts a Container (unshare, then an overlay mount and chroot
// inside the new mount namespace) and kills it, with everything it
// started, when the test ends.
func Debian(t testing.TB) *Container {
	t.Helper()
	RequireRoot(t, "unshare", "ip")
	Blackhole(t)
	lower := DebianRootfs(t)
	dir := TempDir(t, "mt-deb.")
	upper, work, merged := filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "merged")
	for _, d := range []string{upper, work, merged} {
		must(t, os.Mkdir(d, 0o755))
	}
	script := fmt.Sprintf(`set -e
mount -t overlay overlay -o lowerdir=%[1]s,upperdir=%[2]s,workdir=%[3]s %[4]s
mount -t proc proc %[4]s/proc
ip link set lo up
ip link add mt0 type veth peer name mt1
ip addr add %[5]s/24 dev mt0
ip link set mt0 up
ip link set mt1 up
ip route add default via %[6]s dev mt0
exec chroot %[4]s /bin/sleep 2147483647
`, lower, upper, work, merged, DebianAddress, DebianGateway)
	cmd := exec.Command("unshare", "--fork", "--pid", "--uts", "--ipc", "--net", "--mount", "--propagation", "private", "sh", "-c", script)
	log, err := os.Create(filepath.Join(dir, "unshare.log"))
	must(t, err)
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	must(t, cmd.Start())
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		KillTree(cmd.Process.Pid)
		<-exited
	})
	// The container's first process is the child of unshare that has
	// exec'd sleep in the chroot.
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, p := range Descendants(cmd.Process.Pid) {
			if target, err := os.Readlink("/proc/" + strconv.Itoa(p) + "/root"); err == nil && target != "/" && strings.Contains(cmdline(p), "sleep") {
				return &Container{PID: p, Upper: upper}
			}
		}
		select {
		case <-exited:
			out, _ := os.ReadFile(log.Name())
			t.Fatalf("testbed: the Debian container exited: %s", out)
		default:
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(log.Name())
			t.Fatalf("testbed: the Debian container did not start within 30s: %s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Exec runs argv inside the container (nsenter into its namespaces and
// root) and returns its combined output; a failure fails the test.
func (c *Container) Exec(t testing.TB, argv ...string) string {
	t.Helper()
	out, err := c.Try(argv...)
	if err != nil {
		t.Fatalf("testbed: in the Debian container: %v", err)
	}
	return out
}

// Try is Exec returning the error instead of failing the test.
func (c *Container) Try(argv ...string) (string, error) {
	return runErr(time.Minute, nil, append([]string{"nsenter", "--target", strconv.Itoa(c.PID), "--all", "--root", "--"}, argv...)...)
}

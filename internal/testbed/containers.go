package testbed

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ImageName is the name under which each engine imports the busybox
// root filesystem (with the test binary's shared libraries).
const ImageName = "mt-busybox"

// An Engine is a container engine the tests started (or, for podman,
// buildah and lxc, configured) with its storage under a temporary
// directory. Path is an executable wrapper that runs the engine's
// client against that storage, so that connection methods take it as
// their docker_path, podman_path, lxc_path, ... and it works the same
// from a via context on this machine.
type Engine struct {
	Kind string // "docker", "podman", "buildah", "lxc", "lxd"
	Dir  string // the engine's temporary directory
	Path string // the wrapper: Path ARGS... runs the client on this engine
	PID  int    // the daemon's pid (docker, lxd); 0 without a daemon
	Env  []string

	cmd    *exec.Cmd
	exited chan struct{}
}

// Run runs the engine's client with args and returns its combined
// output; a failure or a run longer than 2 minutes fails the test.
func (e *Engine) Run(t testing.TB, args ...string) string {
	t.Helper()
	return run(t, 2*time.Minute, nil, append([]string{e.Path}, args...)...)
}

// Try runs the engine's client with args and returns its combined
// output and error.
func (e *Engine) Try(args ...string) (string, error) {
	return runErr(2*time.Minute, nil, append([]string{e.Path}, args...)...)
}

// writeWrapper writes the executable script dir/bin/name that sets env and
// execs argv followed by the wrapper's own arguments.
func writeWrapper(t testing.TB, dir, name string, env []string, argv ...string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("#!/bin/sh\n")
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		fmt.Fprintf(&b, "%s=%s; export %s\n", k, shellQuote(v), k)
	}
	b.WriteString("exec")
	for _, a := range argv {
		b.WriteString(" " + shellQuote(a))
	}
	b.WriteString(" \"$@\"\n")
	must(t, os.MkdirAll(filepath.Join(dir, "bin"), 0o755))
	path := filepath.Join(dir, "bin", name)
	must(t, os.WriteFile(path, []byte(b.String()), 0o755))
	return path
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// testLibs is SharedLibs of the running executable.
func testLibs() ([]string, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return SharedLibs(exe)
}

// SharedLibs lists the shared libraries (and the ELF interpreter) that
// the executable at path needs, as absolute paths on this machine; none
// for a static binary. The race detector makes test binaries dynamic,
// so the images that run them must carry these.
func SharedLibs(path string) ([]string, error) {
	out, err := exec.Command("ldd", path).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "not a dynamic executable") {
			return nil, nil
		}
		return nil, fmt.Errorf("ldd %s: %v: %s", path, err, out)
	}
	var libs []string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		for _, w := range f {
			if strings.HasPrefix(w, "/") {
				libs = append(libs, w)
				break
			}
		}
	}
	return libs, nil
}

// ImageTar writes dir/image.tar: RootfsTar plus the shared libraries of
// the running test binary, and returns its path.
func ImageTar(t testing.TB, dir string) string {
	t.Helper()
	base := RootfsTar(t)
	libs, err := testLibs()
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	data, err := os.ReadFile(base)
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	img := filepath.Join(dir, "image.tar")
	must(t, os.WriteFile(img, data, 0o644))
	if len(libs) > 0 {
		// Stage the libraries with world-readable parent directories:
		// directories implied by a tar entry may come out 0700.
		stage := filepath.Join(dir, "libs")
		CopyLibs(t, stage)
		args := []string{"tar", "-rf", img, "-C", stage}
		entries, err := os.ReadDir(stage)
		must(t, err)
		for _, ent := range entries {
			args = append(args, ent.Name())
		}
		run(t, time.Minute, nil, args...)
	}
	return img
}

// CopyLibs copies the running test binary's shared libraries into the
// root filesystem root (for lxc containers made by a template).
func CopyLibs(t testing.TB, root string) {
	t.Helper()
	libs, err := testLibs()
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	for _, l := range libs {
		data, err := os.ReadFile(l)
		if err != nil {
			t.Fatalf("testbed: %v", err)
		}
		dst := filepath.Join(root, l)
		must(t, os.MkdirAll(filepath.Dir(dst), 0o755))
		os.Remove(dst)
		must(t, os.WriteFile(dst, data, 0o755))
	}
}

// startDaemon starts argv in its own session with output to logPath and
// registers a cleanup that stops it by pid (SIGTERM, then SIGKILL of
// its whole tree after grace) and waits for it.
func (e *Engine) startDaemon(t testing.TB, env []string, logPath string, grace time.Duration, argv ...string) {
	t.Helper()
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	defer log.Close()
	e.cmd = exec.Command(argv[0], argv[1:]...)
	e.cmd.Env = append(os.Environ(), env...)
	e.cmd.Stdout, e.cmd.Stderr = log, log
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := e.cmd.Start(); err != nil {
		t.Fatalf("testbed: starting %s: %v", argv[0], err)
	}
	e.PID = e.cmd.Process.Pid
	e.exited = make(chan struct{})
	go func() { e.cmd.Wait(); close(e.exited) }()
	t.Cleanup(func() {
		syscall.Kill(e.PID, syscall.SIGTERM)
		select {
		case <-e.exited:
		case <-time.After(grace):
			KillTree(e.PID)
			<-e.exited
		}
		// What the daemon ran in its session (containerd, shims) ends too.
		for _, p := range sessionMembers(e.PID) {
			syscall.Kill(p, syscall.SIGKILL)
		}
	})
}

// sessionMembers lists the live processes whose session id is sid.
func sessionMembers(sid int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, ent := range entries {
		var p int
		if _, err := fmt.Sscan(ent.Name(), &p); err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + ent.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(data)
		i := strings.LastIndexByte(s, ')')
		f := strings.Fields(s[i+1:])
		if len(f) > 4 && f[4] == fmt.Sprint(sid) && f[0] != "Z" {
			out = append(out, p)
		}
	}
	return out
}

// waitFor polls check until it succeeds, the daemon exits, or timeout.
func (e *Engine) waitFor(t testing.TB, what, logPath string, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		exited := false
		if e.exited != nil {
			select {
			case <-e.exited:
				exited = true
			default:
			}
		}
		if exited || time.Now().After(deadline) {
			log, _ := os.ReadFile(logPath)
			if len(log) > 4000 {
				log = log[len(log)-4000:]
			}
			t.Fatalf("testbed: %s not ready (exited=%v): %v\n%s", what, exited, err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// unmountUnder unmounts whatever is still mounted below dir (deepest
// first), so that its removal does not fail.
func unmountUnder(dir string) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var mounts []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			mounts = append(mounts, f[4])
		}
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		syscall.Unmount(mounts[i], syscall.MNT_DETACH)
	}
}

// Docker starts a dockerd for t (vfs storage, no bridge,
// no iptables, its socket under a temporary directory), imports the
// busybox image as ImageName, and stops it by pid when the test ends,
// after removing its containers.
func Docker(t testing.TB) *Engine {
	t.Helper()
	RequireRoot(t, "dockerd", "docker", "ldd", "tar")
	dir := TempDir(t, "mt-dk.")
	t.Cleanup(func() { unmountUnder(dir) })
	e := &Engine{Kind: "docker", Dir: dir}
	sock := "unix://" + filepath.Join(dir, "sock")
	e.Path = writeWrapper(t, dir, "docker", nil, "docker", "-H", sock)
	e.Env = []string{"DOCKER_HOST=" + sock}
	logPath := filepath.Join(dir, "dockerd.log")
	e.startDaemon(t, nil, logPath, 20*time.Second, "dockerd",
		"--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "pid"), "-H", sock,
		"--iptables=false", "--ip6tables=false", "--bridge=none", "--storage-driver=vfs")
	e.waitFor(t, "dockerd", logPath, 60*time.Second, func() error {
		_, err := e.Try("version")
		return err
	})
	t.Cleanup(func() {
		if out, err := e.Try("ps", "-aq"); err == nil && strings.TrimSpace(out) != "" {
			e.Try(append([]string{"rm", "-f"}, strings.Fields(out)...)...)
		}
	})
	e.Run(t, "import", ImageTar(t, dir), ImageName)
	return e
}

// StartContainer starts a container of ImageName called name that
// sleeps (docker and podman: `run -d --network none`), removed when the
// test ends.
func (e *Engine) StartContainer(t testing.TB, name string) {
	t.Helper()
	switch e.Kind {
	case "docker":
		e.Run(t, "run", "-d", "--name", name, "--network", "none", ImageName, "sleep", "2147483647")
		t.Cleanup(func() { e.Try("rm", "-f", name) })
	case "podman":
		e.Run(t, "run", "-d", "--name", name, "--network", "none", "localhost/"+ImageName, "sleep", "2147483647")
		t.Cleanup(func() { e.Try("rm", "-f", "-t", "0", name) })
	case "buildah":
		e.Run(t, "from", "--name", name, "localhost/"+ImageName)
		t.Cleanup(func() { e.Try("rm", name) })
	case "lxc":
		e.startLXC(t, name)
	case "lxd":
		e.Run(t, "launch", ImageName, name)
		t.Cleanup(func() { e.Try("delete", "-f", name) })
	default:
		t.Fatalf("testbed: StartContainer: unknown engine %q", e.Kind)
	}
}

// StopContainer stops a container started by StartContainer, leaving
// it in place (for "not running" errors).
func (e *Engine) StopContainer(t testing.TB, name string) {
	t.Helper()
	switch e.Kind {
	case "docker":
		e.Run(t, "stop", "-t", "0", name)
	case "podman":
		e.Run(t, "stop", "-t", "0", name)
	case "lxc":
		run(t, time.Minute, nil, "lxc-stop", "-P", e.Dir, "-n", name, "-k")
	case "lxd":
		e.Run(t, "stop", "-f", name)
	default:
		t.Fatalf("testbed: StopContainer: engine %q has no stopped state", e.Kind)
	}
}

var podmanMu sync.Mutex

// Podman configures podman (runc, cgroupfs, vfs storage and
// its tmp dir under a temporary directory, no network) and imports the
// busybox image as localhost/ImageName. Its containers are removed
// when the test ends. Buildah, on the same storage, is Buildah(t, e).
func Podman(t testing.TB) *Engine {
	t.Helper()
	RequireRoot(t, "podman", "runc", "ldd", "tar")
	dir := TempDir(t, "mt-pm.")
	t.Cleanup(func() { unmountUnder(dir) })
	conf := filepath.Join(dir, "containers.conf")
	storage := filepath.Join(dir, "storage.conf")
	must(t, os.WriteFile(conf, []byte(fmt.Sprintf(`[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
netns = "none"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
tmp_dir = "%s/tmp"
`, dir)), 0o644))
	must(t, os.WriteFile(storage, []byte(fmt.Sprintf("[storage]\ndriver = \"vfs\"\ngraphroot = \"%s/root\"\nrunroot = \"%s/run\"\n", dir, dir)), 0o644))
	e := &Engine{Kind: "podman", Dir: dir}
	e.Env = []string{"CONTAINERS_CONF=" + conf, "CONTAINERS_STORAGE_CONF=" + storage}
	e.Path = writeWrapper(t, dir, "podman", e.Env, "podman")
	t.Cleanup(func() { e.Try("rm", "-a", "-f", "-t", "0") })
	e.Run(t, "import", ImageTar(t, dir), "localhost/"+ImageName)
	return e
}

// Buildah returns the buildah client on podman's storage pm (which holds
// the busybox image); its working containers are removed when the test
// ends.
func Buildah(t testing.TB, pm *Engine) *Engine {
	t.Helper()
	Require(t, "buildah")
	e := &Engine{Kind: "buildah", Dir: pm.Dir, Env: pm.Env}
	e.Path = writeWrapper(t, pm.Dir, "buildah", pm.Env, "buildah")
	t.Cleanup(func() { e.Try("rm", "-a") })
	return e
}

// LXC returns the lxc tools on a container path (lxc-* -P) under a
// temporary directory; Path is an lxc-attach wrapper, Info an lxc-info
// wrapper. Containers are made by the busybox template with the test
// binary's libraries, with no network, and destroyed when the test
// ends.
func LXC(t testing.TB) *Engine {
	t.Helper()
	RequireRoot(t, "lxc-create", "lxc-start", "lxc-attach", "lxc-info", "lxc-stop", "lxc-destroy", "ldd")
	dir := TempDir(t, "mt-lxc.")
	t.Cleanup(func() { unmountUnder(dir) })
	e := &Engine{Kind: "lxc", Dir: dir}
	e.Path = writeWrapper(t, dir, "lxc-attach", nil, "lxc-attach", "-P", dir)
	writeWrapper(t, dir, "lxc-info", nil, "lxc-info", "-P", dir)
	return e
}

// LXCInfo is the lxc-info wrapper of an LXC engine.
func (e *Engine) LXCInfo() string { return filepath.Join(e.Dir, "bin", "lxc-info") }

func (e *Engine) startLXC(t testing.TB, name string) {
	t.Helper()
	conf := filepath.Join(e.Dir, "lxc.conf")
	must(t, os.WriteFile(conf, []byte("lxc.net.0.type = empty\n"), 0o644))
	run(t, 2*time.Minute, nil, "lxc-create", "-P", e.Dir, "-n", name, "-t", "busybox", "-f", conf)
	t.Cleanup(func() {
		runErr(time.Minute, nil, "lxc-stop", "-P", e.Dir, "-n", name, "-k")
		runErr(time.Minute, nil, "lxc-destroy", "-P", e.Dir, "-n", name)
	})
	CopyLibs(t, filepath.Join(e.Dir, name, "rootfs"))
	run(t, time.Minute, nil, "lxc-start", "-P", e.Dir, "-n", name, "-d", "-o", filepath.Join(e.Dir, name+".log"))
	run(t, time.Minute, nil, "lxc-wait", "-P", e.Dir, "-n", name, "-s", "RUNNING", "-t", "30")
}

// LXD starts an lxd daemon for t (LXD_DIR under a temporary
// directory, a dir storage pool, no network), imports the busybox image
// as ImageName, and stops it by pid when the test ends, after deleting
// its instances. Path is an `lxc` client wrapper for this daemon.
func LXD(t testing.TB) *Engine {
	t.Helper()
	RequireRoot(t, "lxd", "lxc", "ldd", "tar")
	dir := TempDir(t, "mt-lxd.")
	t.Cleanup(func() { unmountUnder(dir) })
	must(t, os.Chmod(dir, 0o711))
	e := &Engine{Kind: "lxd", Dir: dir}
	e.Env = []string{"LXD_DIR=" + dir, "LXD_CONF=" + filepath.Join(dir, "client")}
	e.Path = writeWrapper(t, dir, "lxc", e.Env, "lxc")
	logPath := filepath.Join(dir, "lxd.out")
	e.startDaemon(t, e.Env, logPath, 30*time.Second, "lxd", "--group", "root", "--logfile", filepath.Join(dir, "lxd.log"))
	e.waitFor(t, "lxd", logPath, 60*time.Second, func() error {
		_, err := runErr(5*time.Second, e.Env, "lxd", "waitready", "--timeout", "2")
		return err
	})
	t.Cleanup(func() {
		out, err := e.Try("list", "--format", "csv", "-c", "n")
		if err == nil {
			for _, n := range strings.Fields(out) {
				e.Try("delete", "-f", n)
			}
		}
	})
	preseed := "storage_pools:\n- {name: default, driver: dir}\nprofiles:\n- name: default\n  devices:\n    root: {path: /, pool: default, type: disk}\n"
	cmd := exec.Command("lxd", "init", "--preseed")
	cmd.Env = append(os.Environ(), e.Env...)
	cmd.Stdin = strings.NewReader(preseed)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testbed: lxd init --preseed: %v: %s", err, out)
	}
	e.Run(t, "image", "import", LXDMetadataTar(t), ImageTar(t, dir), "--alias", ImageName)
	return e
}

package connect

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mitostar/mitostar/core"
	"github.com/mitostar/mitostar/internal/testbed"
)

func init() {
	core.RegisterFunc("containertest.info", func(ctx context.Context, c *core.Call) (any, error) {
		host, _ := os.Hostname()
		exe, _ := os.Executable()
		return []any{strconv.Itoa(os.Getuid()), host, exe, os.Getenv("HOME"), strconv.Itoa(os.Getpid())}, nil
	})
}

// where describes the process behind a context.
type where struct{ uid, hostname, exe, home, pid string }

func info(t *testing.T, ctx context.Context, c *core.Context) where {
	t.Helper()
	var out []string
	if err := c.Call(ctx, &out, "containertest.info"); err != nil {
		t.Fatalf("call in %s: %v", c.Name(), err)
	}
	return where{out[0], out[1], out[2], out[3], out[4]}
}

// wantErr checks that err is a StreamError whose message holds each text.
func wantErr(t *testing.T, err error, texts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("connected, want an error with %q", texts)
	}
	if k := core.KindOf(err); k != "StreamError" {
		t.Errorf("kind %s, want StreamError: %v", k, err)
	}
	for _, s := range texts {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q lacks %q", err, s)
		}
	}
}

// cachedPath is where the stub caches the binary for root (HOME=/root).
func cachedPath(t testing.TB, home string) string {
	return home + "/.cache/mitostar/" + selfHash(t) + "/mitostar"
}

// checkCached connects a second time to the same target and checks
// that nothing was shipped and the child runs the cached binary.
func checkCached(t *testing.T, ctx context.Context, r *core.Router, rep *reports, method string, kw map[string]any, home string) {
	t.Helper()
	c := mustConnect(t, ctx, r, method, nil, kw)
	b := rep.last(t)
	if b.Shipped || b.Written > 2048 {
		t.Errorf("second connection: shipped=%v written=%d, want the cached binary", b.Shipped, b.Written)
	}
	if w := info(t, ctx, c); w.exe != cachedPath(t, home) {
		t.Errorf("child runs %s, want %s", w.exe, cachedPath(t, home))
	}
	c.ShutdownWait(ctx)
}

// containerHostname is what a container's hostname starts with:
// docker and podman use the first 12 hex digits of its id.
func containerID(t *testing.T, e *testbed.Engine, name string) string {
	return strings.TrimSpace(e.Run(t, "inspect", "--format", "{{.Id}}", name))[:12]
}

func TestDocker(t *testing.T) {
	e := testbed.Docker(t)
	e.StartContainer(t, "mt-c1")
	e.StartContainer(t, "mt-c2")
	e.StopContainer(t, "mt-c2")
	r, rep := newMaster(t)
	ctx := testCtx(t, 4*time.Minute)
	id := containerID(t, e, "mt-c1")
	kw := func(extra ...any) map[string]any {
		m := map[string]any{"container": "mt-c1", "docker_path": e.Path}
		for i := 0; i+1 < len(extra); i += 2 {
			m[extra[i].(string)] = extra[i+1]
		}
		return m
	}

	t.Run("call", func(t *testing.T) {
		c := mustConnect(t, ctx, r, "docker", nil, kw())
		if c.Name() != "docker.mt-c1" {
			t.Errorf("name %q", c.Name())
		}
		if !rep.last(t).Shipped {
			t.Error("the first connection did not ship the binary")
		}
		w := info(t, ctx, c)
		if w.uid != "0" || w.hostname != id || w.home != "/root" || w.exe != cachedPath(t, "/root") {
			t.Errorf("in the container: %+v, want uid 0, hostname %s", w, id)
		}
		if out := e.Run(t, "exec", "mt-c1", "ls", "-l", cachedPath(t, "/root")); !strings.Contains(out, "-rwx") {
			t.Errorf("cached binary: %s", out)
		}
		c.ShutdownWait(ctx)
		checkCached(t, ctx, r, rep, "docker", kw(), "/root")
	})
	t.Run("username", func(t *testing.T) {
		c := mustConnect(t, ctx, r, "docker", nil, kw("username", testbed.ImageUser))
		if w := info(t, ctx, c); w.uid != "1000" || w.home != "/home/"+testbed.ImageUser || w.exe != cachedPath(t, "/home/"+testbed.ImageUser) {
			t.Errorf("as %s: %+v", testbed.ImageUser, w)
		}
	})
	t.Run("docker_args", func(t *testing.T) {
		sock := "unix://" + filepath.Join(e.Dir, "sock")
		c := mustConnect(t, ctx, r, "docker", nil, map[string]any{"container": "mt-c1", "docker_args": []any{"-H", sock}})
		if w := info(t, ctx, c); w.hostname != id {
			t.Errorf("hostname %s, want %s", w.hostname, id)
		}
	})
	t.Run("image-throwaway", func(t *testing.T) {
		c := mustConnect(t, ctx, r, "docker", nil, map[string]any{
			"image": testbed.ImageName, "docker_path": e.Path, "run_args": []any{"--network", "none"}})
		if c.Name() != "docker."+testbed.ImageName {
			t.Errorf("name %q", c.Name())
		}
		w := info(t, ctx, c)
		running := strings.Fields(e.Run(t, "ps", "--format", "{{.ID}} {{.Names}}"))
		var name string
		for i, f := range running {
			if f == w.hostname && i+1 < len(running) {
				name = running[i+1]
			}
		}
		if !strings.HasPrefix(name, "mitostar-") {
			t.Fatalf("the throwaway container (hostname %s) is not running: %v", w.hostname, running)
		}
		if err := c.ShutdownWait(ctx); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(15 * time.Second)
		for strings.Contains(e.Run(t, "ps", "-a", "--format", "{{.Names}}"), name) {
			if time.Now().After(deadline) {
				t.Fatalf("container %s still exists 15s after shutdown", name)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	t.Run("errors", func(t *testing.T) {
		_, err := connect(ctx, r, "docker", nil, map[string]any{"container": "mt-nope", "docker_path": e.Path})
		wantErr(t, err, `connect docker.mt-nope: docker exec: docker container "mt-nope" not found (Error response from daemon: No such container: mt-nope)`)
		_, err = connect(ctx, r, "docker", nil, map[string]any{"container": "mt-c2", "docker_path": e.Path})
		wantErr(t, err, `docker container "mt-c2" is not running`)
		_, err = connect(ctx, r, "docker", nil, map[string]any{"image": "mt-no-such-image", "docker_path": e.Path})
		wantErr(t, err, `of image "mt-no-such-image" image not found`)
		_, err = connect(ctx, r, "docker", nil, map[string]any{"docker_path": e.Path})
		if err == nil || !strings.Contains(err.Error(), "docker: give container= (a running container) or image=") {
			t.Errorf("no container: %v", err)
		}
		_, err = connect(ctx, r, "docker", nil, map[string]any{"container": "c", "user": "x"})
		if err == nil || err.Error() != `docker: unexpected keyword "user"` {
			t.Errorf("bad keyword: %v", err)
		}
	})
	t.Run("docker-su", func(t *testing.T) {
		c := mustConnect(t, ctx, r, "docker", nil, kw())
		su := mustConnect(t, ctx, r, "su", c, map[string]any{"username": testbed.ImageUser})
		if w := info(t, ctx, su); w.uid != "1000" || w.hostname != id {
			t.Errorf("docker → su: %+v", w)
		}
	})
	t.Run("ssh-docker", func(t *testing.T) {
		s := testbed.SSHD(t)
		ssh := mustConnect(t, ctx, r, "ssh", nil, map[string]any{
			"hostname": s.Host, "port": int64(s.Port), "username": "root", "identity_file": s.IdentityFile,
			"ssh_args": []any{"-o", "UserKnownHostsFile=" + s.KnownHosts}})
		c := mustConnect(t, ctx, r, "docker", ssh, kw())
		if w := info(t, ctx, c); w.hostname != id || w.uid != "0" {
			t.Errorf("ssh → docker: %+v", w)
		}
		if c.Via() != ssh {
			t.Errorf("via %v", c.Via())
		}
		_, err := connect(ctx, r, "docker", ssh, map[string]any{"container": "mt-nope", "docker_path": e.Path})
		if err == nil || !strings.Contains(err.Error(), `docker container "mt-nope" not found`) {
			t.Errorf("ssh → unknown container: %v", err)
		}
	})
	t.Run("setns", func(t *testing.T) {
		testbed.Require(t, "nsenter")
		c := mustConnect(t, ctx, r, "setns", nil, map[string]any{"container": "mt-c1", "kind": "docker", "docker_path": e.Path})
		if c.Name() != "setns.mt-c1" {
			t.Errorf("name %q", c.Name())
		}
		if w := info(t, ctx, c); w.hostname != id || w.uid != "0" || w.exe != cachedPath(t, "/root") {
			t.Errorf("setns into docker: %+v", w)
		}
		u := mustConnect(t, ctx, r, "setns", nil, map[string]any{"container": "mt-c1", "kind": "docker", "docker_path": e.Path, "username": testbed.ImageUser})
		if w := info(t, ctx, u); w.uid != "1000" || w.home != "/home/"+testbed.ImageUser || w.hostname != id {
			t.Errorf("setns as %s: %+v", testbed.ImageUser, w)
		}
		_, err := connect(ctx, r, "setns", nil, map[string]any{"container": "mt-nope", "kind": "docker", "docker_path": e.Path})
		wantErr(t, err, `docker container "mt-nope" not found`)
		_, err = connect(ctx, r, "setns", nil, map[string]any{"container": "mt-c2", "kind": "docker", "docker_path": e.Path})
		wantErr(t, err, `docker container "mt-c2" is not running`)
		_, err = connect(ctx, r, "setns", nil, map[string]any{"container": "mt-c1", "kind": "docker", "docker_path": e.Path, "username": "nobody-here"})
		wantErr(t, err, `user "nobody-here" in docker container "mt-c1": no such user`)
	})
}

func TestPodmanAndBuildah(t *testing.T) {
	e := testbed.Podman(t)
	e.StartContainer(t, "mt-p1")
	r, rep := newMaster(t)
	ctx := testCtx(t, 4*time.Minute)
	id := containerID(t, e, "mt-p1")

	t.Run("podman", func(t *testing.T) {
		kw := map[string]any{"container": "mt-p1", "podman_path": e.Path}
		c := mustConnect(t, ctx, r, "podman", nil, kw)
		if c.Name() != "podman.mt-p1" {
			t.Errorf("name %q", c.Name())
		}
		if w := info(t, ctx, c); w.uid != "0" || w.hostname != id || w.exe != cachedPath(t, "/root") {
			t.Errorf("in the container: %+v, want hostname %s", w, id)
		}
		c.ShutdownWait(ctx)
		checkCached(t, ctx, r, rep, "podman", kw, "/root")
		u := mustConnect(t, ctx, r, "podman", nil, map[string]any{"container": "mt-p1", "podman_path": e.Path, "username": testbed.ImageUser})
		if w := info(t, ctx, u); w.uid != "1000" || w.home != "/home/"+testbed.ImageUser {
			t.Errorf("as %s: %+v", testbed.ImageUser, w)
		}
	})
	t.Run("podman-image", func(t *testing.T) {
		c := mustConnect(t, ctx, r, "podman", nil, map[string]any{"image": "localhost/" + testbed.ImageName, "podman_path": e.Path})
		w := info(t, ctx, c)
		if w.hostname == id || !strings.Contains(e.Run(t, "ps", "--format", "{{.ID}}"), w.hostname) {
			t.Errorf("not in a new container: %+v", w)
		}
		c.ShutdownWait(ctx)
		deadline := time.Now().Add(20 * time.Second)
		for strings.Contains(e.Run(t, "ps", "-a", "--format", "{{.ID}}"), w.hostname) {
			if time.Now().After(deadline) {
				t.Fatalf("container %s still exists 20s after shutdown", w.hostname)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	t.Run("podman-errors", func(t *testing.T) {
		_, err := connect(ctx, r, "podman", nil, map[string]any{"container": "mt-nope", "podman_path": e.Path})
		wantErr(t, err, `podman container "mt-nope" not found`)
		e.StartContainer(t, "mt-p2")
		e.StopContainer(t, "mt-p2")
		_, err = connect(ctx, r, "podman", nil, map[string]any{"container": "mt-p2", "podman_path": e.Path})
		wantErr(t, err, `podman container "mt-p2" is not running`)
	})
	b := testbed.Buildah(t, e)
	t.Run("buildah", func(t *testing.T) {
		b.StartContainer(t, "mt-b1")
		c := mustConnect(t, ctx, r, "buildah", nil, map[string]any{"container": "mt-b1", "buildah_path": b.Path})
		if c.Name() != "buildah.mt-b1" {
			t.Errorf("name %q", c.Name())
		}
		if w := info(t, ctx, c); w.uid != "0" || w.exe != cachedPath(t, "/root") {
			t.Errorf("in the container: %+v", w)
		}
		_, err := connect(ctx, r, "buildah", nil, map[string]any{"container": "mt-nope", "buildah_path": b.Path})
		wantErr(t, err, `buildah container "mt-nope" not found`)
	})
	t.Run("buildah-image", func(t *testing.T) {
		c := mustConnect(t, ctx, r, "buildah", nil, map[string]any{"image": "localhost/" + testbed.ImageName, "buildah_path": b.Path})
		if w := info(t, ctx, c); w.uid != "0" {
			t.Errorf("in the container: %+v", w)
		}
		if !strings.Contains(b.Run(t, "containers", "--format", "{{.ContainerName}}"), "mitostar-") {
			t.Error("no working container mitostar-* while connected")
		}
		c.ShutdownWait(ctx)
		deadline := time.Now().Add(20 * time.Second)
		for strings.Contains(b.Run(t, "containers", "--format", "{{.ContainerName}}"), "mitostar-") {
			if time.Now().After(deadline) {
				t.Fatal("the working container still exists 20s after shutdown")
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

func TestLXC(t *testing.T) {
	e := testbed.LXC(t)
	e.StartContainer(t, "mt-l1")
	r, rep := newMaster(t)
	ctx := testCtx(t, 3*time.Minute)
	kw := map[string]any{"container": "mt-l1", "lxc_attach_path": e.Path}
	c := mustConnect(t, ctx, r, "lxc", nil, kw)
	if c.Name() != "lxc.mt-l1" {
		t.Errorf("name %q", c.Name())
	}
	// lxc-attach --clear-env leaves HOME unset: the stub falls back to /tmp.
	w := info(t, ctx, c)
	// lxc-attach --clear-env leaves HOME unset: the cache is /.cache.
	if w.uid != "0" || w.hostname != "mt-l1" || w.exe != cachedPath(t, "") {
		t.Errorf("in the container: %+v", w)
	}
	c.ShutdownWait(ctx)
	c2 := mustConnect(t, ctx, r, "lxc", nil, kw)
	if b := rep.last(t); b.Shipped {
		t.Errorf("second connection shipped %d bytes", b.Written)
	}
	if w2 := info(t, ctx, c2); w2.exe != w.exe {
		t.Errorf("second child runs %s, first %s", w2.exe, w.exe)
	}
	t.Run("setns", func(t *testing.T) {
		testbed.Require(t, "nsenter")
		c := mustConnect(t, ctx, r, "setns", nil, map[string]any{"container": "mt-l1", "kind": "lxc", "lxc_info_path": e.LXCInfo()})
		if w := info(t, ctx, c); w.hostname != "mt-l1" || w.uid != "0" {
			t.Errorf("setns into lxc: %+v", w)
		}
	})
	t.Run("errors", func(t *testing.T) {
		_, err := connect(ctx, r, "lxc", nil, map[string]any{"container": "mt-nope", "lxc_attach_path": e.Path})
		wantErr(t, err, `lxc container "mt-nope"`, "not running or not found")
		e.StopContainer(t, "mt-l1")
		_, err = connect(ctx, r, "lxc", nil, kw)
		wantErr(t, err, `lxc container "mt-l1"`, "not running")
		_, err = connect(ctx, r, "setns", nil, map[string]any{"container": "mt-l1", "kind": "lxc", "lxc_info_path": e.LXCInfo()})
		wantErr(t, err, `lxc container "mt-l1" is not running`)
	})
}

func TestLXD(t *testing.T) {
	e := testbed.LXD(t)
	e.StartContainer(t, "mt-x1")
	r, rep := newMaster(t)
	ctx := testCtx(t, 3*time.Minute)
	kw := map[string]any{"container": "mt-x1", "lxc_path": e.Path}
	c := mustConnect(t, ctx, r, "lxd", nil, kw)
	if c.Name() != "lxd.mt-x1" {
		t.Errorf("name %q", c.Name())
	}
	if w := info(t, ctx, c); w.uid != "0" || w.hostname != "mt-x1" || w.exe != cachedPath(t, "/root") {
		t.Errorf("in the container: %+v", w)
	}
	c.ShutdownWait(ctx)
	checkCached(t, ctx, r, rep, "lxd", kw, "/root")
	t.Run("setns", func(t *testing.T) {
		testbed.Require(t, "nsenter")
		c := mustConnect(t, ctx, r, "setns", nil, map[string]any{"container": "mt-x1", "kind": "lxd", "lxc_path": e.Path})
		if w := info(t, ctx, c); w.hostname != "mt-x1" || w.uid != "0" {
			t.Errorf("setns into lxd: %+v", w)
		}
	})
	t.Run("errors", func(t *testing.T) {
		_, err := connect(ctx, r, "lxd", nil, map[string]any{"container": "mt-nope", "lxc_path": e.Path})
		wantErr(t, err, `lxd container "mt-nope" not found`)
		e.StopContainer(t, "mt-x1")
		_, err = connect(ctx, r, "lxd", nil, kw)
		wantErr(t, err, `lxd container "mt-x1" is not running`)
	})
}

// unshared starts a process in new pid, mount, uts and ipc namespaces
// whose hostname is host, and returns the pid of its first process
// inside them (the one to enter: the unshare process itself stays in
// the host's pid namespace).
func unshared(t *testing.T, host string) int {
	t.Helper()
	testbed.RequireRoot(t, "unshare", "nsenter", "hostname")
	cmd := exec.Command("unshare", "--fork", "--pid", "--mount-proc", "--uts", "--mount", "--ipc",
		"sh", "-c", "hostname "+host+" && exec sleep 2147483647")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		testbed.KillTree(cmd.Process.Pid)
		cmd.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if kids := testbed.Descendants(cmd.Process.Pid); len(kids) > 0 {
			if data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", kids[0])); strings.HasPrefix(string(data), "sleep") {
				return kids[0]
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the unshared process did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSetnsUnshare(t *testing.T) {
	pid := unshared(t, "mt-ns1")
	r, _ := newMaster(t)
	ctx := testCtx(t, time.Minute)
	c := mustConnect(t, ctx, r, "setns", nil, map[string]any{"pid": int64(pid)})
	if c.Name() != "setns."+strconv.Itoa(pid) {
		t.Errorf("name %q", c.Name())
	}
	w := info(t, ctx, c)
	// In the new pid namespace, sleep is pid 1 and the child a low pid.
	if n, _ := strconv.Atoi(w.pid); w.hostname != "mt-ns1" || w.uid != "0" || n < 2 || n > 20 {
		t.Errorf("in the namespace: %+v", w)
	}
	testbed.Users(t)
	u := mustConnect(t, ctx, r, "setns", nil, map[string]any{"pid": int64(pid), "username": "mtcarol"})
	if w := info(t, ctx, u); w.uid != uidOf(t, "mtcarol") || w.home != "/home/mtcarol" || w.hostname != "mt-ns1" {
		t.Errorf("as mtcarol: %+v", w)
	}
	_, err := connect(ctx, r, "setns", nil, map[string]any{"pid": int64(1 << 22)})
	wantErr(t, err, fmt.Sprintf("process %d is not running", 1<<22))
	for _, bad := range []map[string]any{
		{"kind": "docker"},
		{"container": "x", "kind": "podman"},
		{"container": "x", "kind": "docker", "pid": int64(1)},
	} {
		if _, err := connect(ctx, r, "setns", nil, bad); err == nil || !strings.HasPrefix(err.Error(), "setns: ") {
			t.Errorf("%v: %v", bad, err)
		}
	}
}

package testbed

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The image runs the test binary's own libraries: check that a dynamic
// executable (this test binary) starts inside each engine's container.
func checkExec(t *testing.T, e *Engine, prefix ...string) {
	t.Helper()
	out := e.Run(t, append(prefix, "sh", "-c", "cat /etc/passwd; ls /lib64/")...)
	if !strings.Contains(out, "root:x:0:0") || !strings.Contains(out, "ld-linux") {
		t.Errorf("%s: output %q", e.Kind, out)
	}
}

func TestDockerEngine(t *testing.T) {
	start := time.Now()
	e := Docker(t)
	e.StartContainer(t, "mt-tb1")
	t.Logf("docker ready with a container in %s", time.Since(start))
	checkExec(t, e, "exec", "-i", "mt-tb1")
	if out := e.Run(t, "exec", "-u", ImageUser, "mt-tb1", "id", "-u"); strings.TrimSpace(out) != "1000" {
		t.Errorf("id -u as %s: %q", ImageUser, out)
	}
}

func TestPodmanAndBuildahEngines(t *testing.T) {
	e := Podman(t)
	e.StartContainer(t, "mt-tbp1")
	checkExec(t, e, "exec", "-i", "mt-tbp1")
	b := Buildah(t, e)
	b.StartContainer(t, "mt-tbb1")
	checkExec(t, b, "run", "mt-tbb1", "--")
}

func TestLXCEngine(t *testing.T) {
	e := LXC(t)
	e.StartContainer(t, "mt-tbl1")
	checkExec(t, e, "-n", "mt-tbl1", "--")
	e.StopContainer(t, "mt-tbl1")
	out, _ := runErr(time.Minute, nil, e.LXCInfo(), "-n", "mt-tbl1", "-s")
	if !strings.Contains(out, "STOPPED") {
		t.Errorf("lxc-info after stop: %q", out)
	}
}

func TestLXDEngine(t *testing.T) {
	e := LXD(t)
	e.StartContainer(t, "mt-tbx1")
	checkExec(t, e, "exec", "--mode=non-interactive", "mt-tbx1", "--")
}

func TestDebianContainer(t *testing.T) {
	c := Debian(t)
	if out := c.Exec(t, "cat", "/etc/os-release"); !strings.Contains(out, "ID=debian") {
		t.Errorf("/etc/os-release in the container:\n%s", out)
	}
	if out := c.Exec(t, "ip", "-o", "addr"); !strings.Contains(out, DebianAddress+"/24") {
		t.Errorf("ip addr in the container:\n%s", out)
	}
	if out := c.Exec(t, "sh", "-c", "echo $$"); strings.TrimSpace(out) == "1" || strings.TrimSpace(out) == "" {
		t.Errorf("a process in the container has pid %q", out)
	}
	c.Exec(t, "sh", "-c", "echo changed > /etc/mt-marker")
	if data, err := os.ReadFile(filepath.Join(c.Upper, "etc", "mt-marker")); err != nil || string(data) != "changed\n" {
		t.Errorf("a file written in the container is not in the overlay's upper directory: %q, %v", data, err)
	}
	if _, err := os.Stat(filepath.Join(DebianRootfs(t), "etc", "mt-marker")); err == nil {
		t.Errorf("a file written in the container reached the shared root filesystem")
	}
	for _, p := range DebianPackages {
		if m, _ := filepath.Glob(filepath.Join(DebianRootfs(t), "var/cache/apt/archives", p+"_*.deb")); len(m) != 1 {
			t.Errorf("apt's cache holds %v for %s, want one .deb", m, p)
		}
	}
}

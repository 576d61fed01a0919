package testbed

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// asUser runs argv as a test user without a terminal.
func asUser(user string, argv ...string) (string, error) {
	args := append([]string{"setpriv", "--reuid=" + user, "--regid=" + user, "--init-groups", "env", "HOME=/home/" + user}, argv...)
	return runErr(30*time.Second, nil, args...)
}

func TestSSHDKeyAuth(t *testing.T) {
	s := SSHD(t)
	for _, u := range []string{"root", "mtalice", "mtcarol"} {
		if got := strings.TrimSpace(s.Run(t, u, "id -un")); got != u {
			t.Errorf("ssh as %s: id -un = %q", u, got)
		}
	}
	if !strings.HasPrefix(s.HostKeyPub, "ssh-ed25519 ") {
		t.Errorf("HostKeyPub = %q", s.HostKeyPub)
	}
	kh, err := os.ReadFile(s.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	if want := "[127.0.0.1]:" + strconv.Itoa(s.Port) + " " + s.HostKeyPub + "\n"; string(kh) != want {
		t.Errorf("known_hosts = %q, want %q", kh, want)
	}
}

func TestSSHDPasswordAuth(t *testing.T) {
	Require(t, "sshpass")
	s := SSHD(t)
	base := []string{"ssh", "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + s.KnownHosts,
		"-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password",
		"-p", strconv.Itoa(s.Port), "mtbob@127.0.0.1", "id -un"}
	out, err := runErr(30*time.Second, nil, append([]string{"sshpass", "-p", Passwords["mtbob"]}, base...)...)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out) != "mtbob" {
		t.Errorf("id -un over password auth = %q", out)
	}
	cmd := exec.Command("sshpass", append([]string{"-p", "wrong"}, base...)...)
	if err := cmd.Run(); cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 5 {
		t.Errorf("a wrong password: sshpass gave %v, want exit status 5", err)
	}
}

func TestSSHDKillEndsSessions(t *testing.T) {
	s := SSHD(t)
	cmd := exec.Command("ssh", append(s.SSHArgs(), "mtalice@127.0.0.1", "echo started; exec sleep 1000")...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	buf := make([]byte, 8)
	if n, err := stdout.Read(buf); err != nil || string(buf[:n]) != "started\n" {
		t.Fatalf("session output %q, %v", buf[:n], err)
	}
	// The shell printed "started" and is about to exec sleep: wait for it.
	var below []int
	var sleeper int
	for deadline := time.Now().Add(5 * time.Second); sleeper == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		below = Descendants(s.PID)
		for _, p := range below {
			if strings.HasPrefix(cmdline(p), "sleep 1000") {
				sleeper = p
			}
		}
	}
	if sleeper == 0 {
		t.Fatalf("the session's sleep is not below sshd %d: %v", s.PID, below)
	}
	s.Kill()
	if !ProcessesGone(t, 5*time.Second, append(below, s.PID)...) {
		return
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if cmd.ProcessState.ExitCode() != 255 {
			t.Errorf("ssh after the server was killed: %v, want exit status 255", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("ssh did not exit after the server was killed")
	}
}

func TestSudoersRule(t *testing.T) {
	Users(t)
	path := Sudoers(t, "mtcarol ALL=(ALL:ALL) NOPASSWD: /usr/bin/id")
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o440 {
		t.Fatalf("%s: %v %v", path, fi, err)
	}
	out, err := asUser("mtcarol", "sudo", "-n", "/usr/bin/id", "-u")
	if err != nil || strings.TrimSpace(out) != "0" {
		t.Errorf("sudo -n id -u as mtcarol = %q, %v; want 0", out, err)
	}
	out, err = asUser("mtcarol", "sudo", "-n", "/bin/true")
	if err == nil || !strings.Contains(out, "a password is required") {
		t.Errorf("sudo -n true (no rule) = %q, %v; want 'a password is required'", out, err)
	}
	t.Run("invalid", func(t *testing.T) {
		ft := &fatalRecorder{TB: t}
		func() {
			defer func() { recover() }()
			Sudoers(ft, "this is not sudoers syntax")
		}()
		if !strings.Contains(ft.msg, "invalid") {
			t.Errorf("invalid sudoers: %q", ft.msg)
		}
	})
	entries, _ := filepath.Glob("/etc/sudoers.d/mt-test-*")
	for _, e := range entries {
		if data, _ := os.ReadFile(e); strings.Contains(string(data), "not sudoers syntax") {
			t.Errorf("the invalid rules were left in %s", e)
		}
	}
}

// fatalRecorder records a Fatalf and stops the helper with a panic.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = strings.TrimSpace(sprintf(format, args...))
	panic(f)
}

func TestDoasRule(t *testing.T) {
	Users(t)
	t.Run("rule", func(t *testing.T) {
		Doas(t, "permit nopass mtcarol as root cmd /usr/bin/id")
		out, err := asUser("mtcarol", "doas", "-n", "/usr/bin/id", "-u")
		if err != nil || strings.TrimSpace(out) != "0" {
			t.Errorf("doas -n id -u as mtcarol = %q, %v; want 0", out, err)
		}
		data, _ := os.ReadFile(DoasConf)
		if !strings.Contains(string(data), "permit nopass mtcarol as root cmd /usr/bin/id\n") {
			t.Errorf("%s lacks the rule: %q", DoasConf, data)
		}
	})
	data, _ := os.ReadFile(DoasConf)
	if strings.Contains(string(data), "mtcarol as root cmd /usr/bin/id") {
		t.Errorf("the rule was left in %s: %q", DoasConf, data)
	}
	out, err := asUser("mtcarol", "doas", "-n", "/usr/bin/id", "-u")
	if err == nil || !strings.Contains(out, "Operation not permitted") {
		t.Errorf("doas without the rule = %q, %v", out, err)
	}
}

func TestProcessesGone(t *testing.T) {
	cmd := exec.Command("sleep", "1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	ft := &errorRecorder{TB: t}
	if ProcessesGone(ft, 100*time.Millisecond, pid) || !strings.Contains(ft.msg, strconv.Itoa(pid)+" (sleep 1000)") {
		t.Errorf("a live process: message %q", ft.msg)
	}
	cmd.Process.Kill()
	// Not reaped yet: a zombie counts as gone.
	if !ProcessesGone(t, 5*time.Second, pid) {
		t.Error("a killed process is not gone")
	}
	cmd.Wait()
}

type errorRecorder struct {
	testing.TB
	msg string
}

func (e *errorRecorder) Errorf(format string, args ...any) { e.msg = sprintf(format, args...) }

func TestRootfs(t *testing.T) {
	dir := Rootfs(t)
	for _, f := range []string{"bin/busybox", "bin/sh", "bin/sleep", "sbin/init", "etc/passwd"} {
		if _, err := os.Lstat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	out, err := runErr(30*time.Second, nil, "tar", "-tf", RootfsTar(t))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "./bin/busybox\n") || !strings.Contains(out, "./etc/passwd\n") {
		t.Errorf("rootfs tar lacks files: %.200s", out)
	}
	out, err = runErr(30*time.Second, nil, "tar", "-xOf", LXDMetadataTar(t), "metadata.yaml")
	if err != nil || !strings.Contains(out, "architecture: x86_64") {
		t.Errorf("metadata: %q %v", out, err)
	}
	if Rootfs(t) != dir {
		t.Error("Rootfs is not cached")
	}
}

func TestRequireStrict(t *testing.T) {
	t.Setenv(RequireEnv, "1")
	ft := &fatalRecorder{TB: t}
	func() {
		defer func() { recover() }()
		Require(ft, "no-such-tool-mitostar")
	}()
	if !strings.Contains(ft.msg, "no-such-tool-mitostar") || !strings.Contains(ft.msg, RequireEnv+"=1") {
		t.Errorf("Require in strict mode: %q", ft.msg)
	}
}

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

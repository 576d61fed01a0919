package connect

import (
	"fmt"
	"net"
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

// Test users of this package (distinct from other packages' so that
// their tests may run at the same time), with their passwords.
const (
	userAlice = "mtcalice" // sudo and doas with a password, requiretty
	userBob   = "mtcbob"   // sudo and doas NOPASSWD
	passAlice = "alice-pw-1"
	passBob   = "bob-pw-2"
)

var (
	usersOnce sync.Once
	usersErr  error
)

// setupUsers creates the test users, their sudo and doas rules, once per
// test binary; TestMain removes them.
func setupUsers(t *testing.T) {
	t.Helper()
	requireRoot(t, "useradd", "chpasswd", "sudo", "doas", "su")
	usersOnce.Do(func() {
		for _, u := range []string{userAlice, userBob} {
			exec.Command("userdel", "-r", u).Run()
			if out, err := exec.Command("useradd", "-m", "-s", "/bin/bash", u).CombinedOutput(); err != nil {
				usersErr = fmt.Errorf("useradd %s: %v: %s", u, err, out)
				return
			}
		}
		// Noise from the login shell must not disturb the bootstrap.
		bashrc := "/home/" + userAlice + "/.bashrc"
		old, _ := os.ReadFile(bashrc)
		noise := "echo 'Welcome, this is .bashrc noise: password: mitostar:0:stage2'\necho '.bashrc noise on stderr' >&2\n"
		if err := os.WriteFile(bashrc, append([]byte(noise), old...), 0o644); err != nil {
			usersErr = err
			return
		}
		chpasswd := exec.Command("chpasswd")
		chpasswd.Stdin = strings.NewReader(userAlice + ":" + passAlice + "\n" + userBob + ":" + passBob + "\n")
		if out, err := chpasswd.CombinedOutput(); err != nil {
			usersErr = fmt.Errorf("chpasswd: %v: %s", err, out)
			return
		}
		sudoers := fmt.Sprintf("Defaults:%s requiretty\n%s ALL=(ALL:ALL) ALL\n%s ALL=(ALL:ALL) NOPASSWD: ALL\n", userAlice, userAlice, userBob)
		if err := os.WriteFile(sudoersFile, []byte(sudoers), 0o440); err != nil {
			usersErr = err
			return
		}
		if out, err := exec.Command("visudo", "-cf", sudoersFile).CombinedOutput(); err != nil {
			usersErr = fmt.Errorf("visudo: %v: %s", err, out)
			return
		}
		f, err := os.OpenFile("/etc/doas.conf", os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			usersErr = err
			return
		}
		_, usersErr = f.WriteString(doasRules)
		f.Close()
	})
	if usersErr != nil {
		t.Fatal(usersErr)
	}
}

const sudoersFile = "/etc/sudoers.d/mt-connect-test"

var doasRules = fmt.Sprintf("permit %s as root\npermit nopass %s as root\n", userAlice, userBob)

// teardownUsers undoes setupUsers, if it ran.
func teardownUsers() {
	if os.Getuid() != 0 {
		return
	}
	os.Remove(sudoersFile)
	if data, err := os.ReadFile("/etc/doas.conf"); err == nil && strings.Contains(string(data), doasRules) {
		os.WriteFile("/etc/doas.conf", []byte(strings.Replace(string(data), doasRules, "", 1)), 0o600)
	}
	for _, u := range []string{userAlice, userBob} {
		if _, err := os.Stat("/home/" + u); err == nil {
			killUserProcesses(u)
			exec.Command("userdel", "-r", u).Run()
		}
	}
}

// sshd is a throwaway OpenSSH server on 127.0.0.1.
type sshd struct {
	Port         int
	Dir          string
	IdentityFile string // a key every test user accepts
	KnownHosts   string // holds the server's host key
	HostKeyPub   string
	cmd          *exec.Cmd
	exited       chan struct{}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startSSHD starts an sshd that lets the test users (and root) in with
// the key IdentityFile or their password.
func startSSHD(t *testing.T) *sshd {
	t.Helper()
	setupUsers(t)
	requireRoot(t, "/usr/sbin/sshd", "ssh-keygen", "ssh")
	dir, err := os.MkdirTemp("", "mtc-sshd.")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	s := &sshd{Port: freePort(t), Dir: dir, IdentityFile: filepath.Join(dir, "id"), KnownHosts: filepath.Join(dir, "known_hosts")}
	for _, k := range []string{"hostkey", "id"} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, k)).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v: %s", err, out)
		}
	}
	pub, _ := os.ReadFile(s.IdentityFile + ".pub")
	os.Mkdir(filepath.Join(dir, "auth"), 0o755)
	for _, u := range []string{"root", userAlice, userBob} {
		os.WriteFile(filepath.Join(dir, "auth", u), pub, 0o644)
	}
	hostPub, _ := os.ReadFile(filepath.Join(dir, "hostkey.pub"))
	f := strings.Fields(string(hostPub))
	s.HostKeyPub = f[0] + " " + f[1]
	os.WriteFile(s.KnownHosts, []byte(fmt.Sprintf("[127.0.0.1]:%d %s\n", s.Port, s.HostKeyPub)), 0o644)
	os.MkdirAll("/run/sshd", 0o755)
	conf := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s/hostkey
PidFile %s/sshd.pid
AuthorizedKeysFile %s/auth/%%u
StrictModes no
PasswordAuthentication yes
KbdInteractiveAuthentication no
PermitRootLogin yes
UsePAM yes
UseDNS no
MaxStartups 50
`, s.Port, dir, dir, dir)
	os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(conf), 0o644)
	s.cmd = exec.Command("/usr/sbin/sshd", "-D", "-f", filepath.Join(dir, "sshd_config"), "-E", filepath.Join(dir, "sshd.log"))
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.exited = make(chan struct{})
	go func() { s.cmd.Wait(); close(s.exited) }()
	t.Cleanup(s.Kill)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(s.Port))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "sshd.log"))
			t.Fatalf("sshd did not start listening on %d: %s", s.Port, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return s
}

// Kill kills the server and every session process it started.
func (s *sshd) Kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	for _, pid := range descendants(s.cmd.Process.Pid) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	s.cmd.Process.Kill()
	<-s.exited
}

// kwargs returns ssh keywords for user with the test key and known hosts.
func (s *sshd) kwargs(user string, extra ...any) map[string]any {
	kw := map[string]any{
		"hostname": "127.0.0.1", "port": int64(s.Port), "username": user,
		"identity_file": s.IdentityFile,
		"ssh_args":      []any{"-o", "UserKnownHostsFile=" + s.KnownHosts},
	}
	for i := 0; i+1 < len(extra); i += 2 {
		kw[extra[i].(string)] = extra[i+1]
	}
	return kw
}

// descendants lists the processes below pid, deepest last.
func descendants(pid int) []int {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(data)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		pp, _ := strconv.Atoi(f[1])
		children[pp] = append(children[pp], p)
	}
	var out []int
	var walk func(int)
	walk = func(p int) {
		for _, c := range children[p] {
			out = append(out, c)
			walk(c)
		}
	}
	walk(pid)
	return out
}

// liveProcessesOf lists the pids (not zombies) running an executable
// whose path contains substr.
func liveProcessesOf(substr string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink("/proc/" + e.Name() + "/exe")
		if err != nil || !strings.Contains(exe, substr) {
			continue
		}
		stat, _ := os.ReadFile("/proc/" + e.Name() + "/stat")
		if i := strings.LastIndexByte(string(stat), ')'); i > 0 && strings.HasPrefix(string(stat[i+1:]), " Z") {
			continue
		}
		pids = append(pids, p)
	}
	return pids
}

// killUserProcesses kills, by pid, what the tests left running as one of
// this package's own test users.
func killUserProcesses(user string) {
	out, err := exec.Command("id", "-u", user).Output()
	if err != nil {
		return
	}
	uid := strings.TrimSpace(string(out))
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		status, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "Uid:" && f[1] == uid {
				syscall.Kill(p, syscall.SIGKILL)
			}
		}
	}
}

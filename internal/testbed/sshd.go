package testbed

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

// SSHServer is a throwaway OpenSSH server on 127.0.0.1 (TESTBED §2), or
// on an address inside a test network namespace (SSHOptions.Netns).
// Root and the test users log in with the key IdentityFile or with
// their passwords (Passwords).
type SSHServer struct {
	Host         string // "127.0.0.1", or the address in the namespace
	Port         int
	Netns        string // the network namespace it runs in; "" for the host's
	Dir          string // holds the keys, sshd_config and sshd.log
	IdentityFile string // a private key that root and every test user accept
	KnownHosts   string // a known_hosts file with the host keys as [HOST]:PORT (HOST for port 22)
	HostKeyPub   string // the first host key: "ssh-ed25519 AAAA..."
	HostKeyPubs  []string
	Config       string // the sshd_config path
	Log          string // the server's log
	PID          int

	cmd      *exec.Cmd
	exited   chan struct{}
	killOnce sync.Once
}

// SSHD starts an sshd for t (creating the test users first), waits for
// its pid file and for its port to accept, and kills it with all its
// session processes when the test ends. extraConfig lines are appended
// to its sshd_config (e.g. "MaxStartups 50").
func SSHD(t testing.TB, extraConfig ...string) *SSHServer {
	t.Helper()
	return SSHDWith(t, SSHOptions{Config: extraConfig})
}

// SSHOptions are the choices of SSHDWith.
type SSHOptions struct {
	Config []string // lines appended to sshd_config; a later one does not override an earlier one
	// HostKeyTypes are the host keys' types (ssh-keygen -t), in the
	// order sshd_config lists them; the default is ed25519 alone.
	HostKeyTypes []string
	Netns        string // run inside this network namespace (see Network)
	Addr         string // the listen address; 127.0.0.1 by default
	Port         int    // 0: a free port on 127.0.0.1, or 22 in a namespace
}

// SSHDWith starts an sshd as SSHD does, with the given options. A
// server in a namespace is ready when it has written its pid file
// (sshd writes it once it listens); only clients in that network reach
// it.
func SSHDWith(t testing.TB, o SSHOptions) *SSHServer {
	t.Helper()
	RequireRoot(t, "/usr/sbin/sshd", "ssh-keygen", "ssh")
	Users(t)
	dir := TempDir(t, "mt-sshd.")
	s := &SSHServer{
		Host:         "127.0.0.1",
		Port:         o.Port,
		Netns:        o.Netns,
		Dir:          dir,
		IdentityFile: filepath.Join(dir, "id"),
		KnownHosts:   filepath.Join(dir, "known_hosts"),
		Config:       filepath.Join(dir, "sshd_config"),
		Log:          filepath.Join(dir, "sshd.log"),
	}
	if o.Addr != "" {
		s.Host = o.Addr
	}
	if s.Port == 0 {
		if o.Netns != "" {
			s.Port = 22
		} else {
			s.Port = FreePort(t)
		}
	}
	run(t, 30*time.Second, nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "mitostar-test", "-f", s.IdentityFile)
	types := o.HostKeyTypes
	if len(types) == 0 {
		types = []string{"ed25519"}
	}
	var hostKeys, known strings.Builder
	name := fmt.Sprintf("[%s]:%d", s.Host, s.Port)
	if s.Port == 22 {
		name = s.Host
	}
	for i, typ := range types {
		file := filepath.Join(dir, "hostkey")
		if i > 0 {
			file += "_" + typ
		}
		run(t, 30*time.Second, nil, "ssh-keygen", "-q", "-t", typ, "-N", "", "-C", "mitostar-test", "-f", file)
		hostPub, err := os.ReadFile(file + ".pub")
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(string(hostPub))
		s.HostKeyPubs = append(s.HostKeyPubs, f[0]+" "+f[1])
		fmt.Fprintf(&hostKeys, "HostKey %s\n", file)
		fmt.Fprintf(&known, "%s %s %s\n", name, f[0], f[1])
	}
	s.HostKeyPub = s.HostKeyPubs[0]
	pub, err := os.ReadFile(s.IdentityFile + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	auth := filepath.Join(dir, "auth")
	must(t, os.Mkdir(auth, 0o755))
	for _, u := range append([]string{"root"}, UserNames...) {
		must(t, os.WriteFile(filepath.Join(auth, u), pub, 0o644))
	}
	must(t, os.WriteFile(s.KnownHosts, []byte(known.String()), 0o644))
	must(t, os.MkdirAll("/run/sshd", 0o755))
	// Options given in o.Config come first: sshd keeps the first value
	// of most options.
	conf := strings.Join(o.Config, "\n") + "\n" + fmt.Sprintf(`Port %d
ListenAddress %s
%sPidFile %s/sshd.pid
AuthorizedKeysFile %s/%%u
StrictModes no
PasswordAuthentication yes
KbdInteractiveAuthentication no
PermitRootLogin yes
UsePAM yes
UseDNS no
MaxStartups 100
`, s.Port, s.Host, hostKeys.String(), dir, auth)
	must(t, os.WriteFile(s.Config, []byte(conf), 0o644))
	run(t, 30*time.Second, nil, "/usr/sbin/sshd", "-t", "-f", s.Config)

	argv := []string{"/usr/sbin/sshd", "-D", "-f", s.Config, "-E", s.Log}
	if o.Netns != "" {
		// ip netns exec execs sshd without forking: the pid is sshd's.
		argv = append([]string{"ip", "netns", "exec", o.Netns}, argv...)
	}
	s.cmd = exec.Command(argv[0], argv[1:]...)
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("testbed: starting sshd: %v", err)
	}
	s.PID = s.cmd.Process.Pid
	s.exited = make(chan struct{})
	go func() { s.cmd.Wait(); close(s.exited) }()
	t.Cleanup(s.Kill)

	pidFile := filepath.Join(dir, "sshd.pid")
	deadline := time.Now().Add(15 * time.Second)
	for {
		data, _ := os.ReadFile(pidFile)
		if strings.TrimSpace(string(data)) == strconv.Itoa(s.PID) {
			if o.Netns != "" {
				return s
			}
			if c, err := net.DialTimeout("tcp", net.JoinHostPort(s.Host, strconv.Itoa(s.Port)), time.Second); err == nil {
				c.Close()
				return s
			}
		}
		select {
		case <-s.exited:
			log, _ := os.ReadFile(s.Log)
			t.Fatalf("testbed: sshd exited at start: %s: %s", s.cmd.ProcessState, log)
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(s.Log)
			t.Fatalf("testbed: sshd did not listen on port %d within 15s: %s", s.Port, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
}

// Authorize lets a public key ("ssh-ed25519 AAAA..." as in a .pub file)
// log in as user, beside IdentityFile.
func (s *SSHServer) Authorize(t testing.TB, user, pub string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(s.Dir, "auth", user), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	defer f.Close()
	if _, err := f.WriteString(strings.TrimSpace(pub) + "\n"); err != nil {
		t.Fatalf("testbed: %v", err)
	}
}

// LogCount counts the lines of the server's log that contain text.
func (s *SSHServer) LogCount(t testing.TB, text string) int {
	t.Helper()
	data, err := os.ReadFile(s.Log)
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	return strings.Count(string(data), text)
}

// Addr is "127.0.0.1:PORT".
func (s *SSHServer) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// SSHArgs are the ssh options that reach this server with the test key
// and strict host key checking against KnownHosts (no prompts).
func (s *SSHServer) SSHArgs() []string {
	return []string{
		"-o", "StrictHostKeyChecking=yes",
		"-o", "UserKnownHostsFile=" + s.KnownHosts,
		"-o", "BatchMode=yes",
		"-i", s.IdentityFile,
		"-p", strconv.Itoa(s.Port),
	}
}

// Run runs command as user over plain ssh (key authentication) and
// returns its stdout; a failure or a run longer than 60 s fails the
// test with the output.
func (s *SSHServer) Run(t testing.TB, user, command string) string {
	t.Helper()
	argv := append([]string{"ssh"}, s.SSHArgs()...)
	argv = append(argv, user+"@"+s.Host, command)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("testbed: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("testbed: ssh %s@%s %q: %v: %s%s", user, s.Addr(), command, err, stdout.String(), stderr.String())
		}
	case <-time.After(60 * time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		t.Fatalf("testbed: ssh %s@%s %q: no exit within 60s: %s", user, s.Addr(), command, stderr.String())
	}
	return stdout.String()
}

// Kill kills the server and every process below it (its per-connection
// sshd processes, which call setsid, and the sessions' commands) and
// waits for the server to be reaped. Tests call it to cut connections
// mid-call; it is also the cleanup, and may be called more than once.
func (s *SSHServer) Kill() {
	s.killOnce.Do(func() {
		if s.cmd == nil || s.cmd.Process == nil {
			return
		}
		select {
		case <-s.exited:
		default:
			KillTree(s.PID)
		}
		<-s.exited
	})
}

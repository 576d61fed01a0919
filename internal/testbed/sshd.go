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

// SSHServer is a throwaway OpenSSH server on 127.0.0.1,
// or on a NetHost's address inside its namespace (§6). Root and the test
// users log in with the key IdentityFile or with their passwords
// (Passwords).
type SSHServer struct {
	Host         string // "127.0.0.1", or the NetHost's address
	Port         int
	NetHost      *NetHost // the namespace it runs in; nil: the root namespace
	Dir          string   // holds the keys, sshd_config and sshd.log
	IdentityFile string   // a private key that root and every test user accept
	KnownHosts   string   // a known_hosts file with the host key as [HOST]:PORT (HOST for port 22)
	HostKeyPub   string   // the (first) host key: "ssh-ed25519 AAAA..."
	HostKeyPubs  []string // every host key, in sshd_config's order
	Config       string   // the sshd_config path
	Log          string   // the server's log
	PID          int

	cmd      *exec.Cmd
	exited   chan struct{}
	killOnce sync.Once
}

// SSHD starts an sshd for t (creating the test users first), waits for
// its pid file and for its port to accept, and kills it with all its
// session processes when the test ends. extraConfig lines go into its
// sshd_config before the defaults, which they override (sshd keeps the
// first value of a keyword): e.g. "MaxStartups 200:30:400".
func SSHD(t testing.TB, extraConfig ...string) *SSHServer {
	t.Helper()
	return startSSHD(t, nil, extraConfig, nil)
}

// SSHDWithHostKeys is SSHD with one host key of each type (ssh-keygen
// -t: "ed25519", "ecdsa", "rsa"), in that order in sshd_config, all of
// them in KnownHosts.
func SSHDWithHostKeys(t testing.TB, types []string, extraConfig ...string) *SSHServer {
	t.Helper()
	return startSSHD(t, nil, extraConfig, types)
}

// SSHD starts an sshd inside the host's namespace, listening on its
// address, port 22; otherwise as the package's SSHD. Clients reach it
// only from other hosts of the same Network (RunFrom).
func (h *NetHost) SSHD(t testing.TB, extraConfig ...string) *SSHServer {
	t.Helper()
	return startSSHD(t, h, extraConfig, nil)
}

func startSSHD(t testing.TB, h *NetHost, extraConfig, hostKeyTypes []string) *SSHServer {
	t.Helper()
	RequireRoot(t, "/usr/sbin/sshd", "ssh-keygen", "ssh")
	Users(t)
	dir := TempDir(t, "mt-sshd.")
	s := &SSHServer{
		Host:         "127.0.0.1",
		NetHost:      h,
		Dir:          dir,
		IdentityFile: filepath.Join(dir, "id"),
		KnownHosts:   filepath.Join(dir, "known_hosts"),
		Config:       filepath.Join(dir, "sshd_config"),
		Log:          filepath.Join(dir, "sshd.log"),
	}
	if h != nil {
		s.Host, s.Port = h.Addr, 22
	} else {
		s.Port = FreePort(t)
	}
	run(t, 30*time.Second, nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "mitostar-test", "-f", s.IdentityFile)
	if len(hostKeyTypes) == 0 {
		hostKeyTypes = []string{"ed25519"}
	}
	var hostKeys strings.Builder
	for i, typ := range hostKeyTypes {
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
	known := fmt.Sprintf("[%s]:%d", s.Host, s.Port)
	if s.Port == 22 {
		known = s.Host // ssh looks up the default port's keys by address alone
	}
	var knownHosts strings.Builder
	for _, k := range s.HostKeyPubs {
		knownHosts.WriteString(known + " " + k + "\n")
	}
	must(t, os.WriteFile(s.KnownHosts, []byte(knownHosts.String()), 0o644))
	must(t, os.MkdirAll("/run/sshd", 0o755))
	// sshd keeps the first value of a keyword: extraConfig goes first,
	// so it can change the defaults below (MaxStartups).
	conf := strings.Join(extraConfig, "\n") + "\n" + fmt.Sprintf(`Port %d
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
	if h != nil {
		argv = append([]string{"ip", "netns", "exec", h.NS}, argv...) // ip execs sshd: same pid
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
			if h != nil {
				return s // sshd writes its pid file once it listens
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
// test with the output. The client runs in the root namespace: for a
// server in a NetHost, use RunFrom.
func (s *SSHServer) Run(t testing.TB, user, command string) string {
	t.Helper()
	return s.RunFrom(t, nil, user, command)
}

// RunFrom is Run with the ssh client inside the namespace of from (nil:
// the root namespace).
func (s *SSHServer) RunFrom(t testing.TB, from *NetHost, user, command string) string {
	t.Helper()
	argv := append([]string{"ssh"}, s.SSHArgs()...)
	argv = append(argv, user+"@"+s.Host, command)
	var cmd *exec.Cmd
	if from != nil {
		cmd = from.Command(argv...)
	} else {
		cmd = exec.Command(argv[0], argv[1:]...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
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

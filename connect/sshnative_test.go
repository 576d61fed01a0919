package connect

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/crypto/ssh"

	"github.com/mitostar/mitostar/core"
	"github.com/mitostar/mitostar/internal/testbed"
)

// keygen makes a key pair dir/name (encrypted when passphrase is not
// empty) and returns the private key's path and the public key.
func keygen(t *testing.T, dir, name, typ, passphrase string) (string, string) {
	t.Helper()
	path := filepath.Join(dir, name)
	if out, err := exec.Command("ssh-keygen", "-q", "-t", typ, "-N", passphrase, "-C", name, "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	pub, err := os.ReadFile(path + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return path, strings.TrimSpace(string(pub))
}

// fingerprintOf is the SHA256 fingerprint of a public key line.
func fingerprintOf(t *testing.T, pub string) string {
	t.Helper()
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(pub))
	if err != nil {
		t.Fatal(err)
	}
	return ssh.FingerprintSHA256(k)
}

// startAgent runs an ssh-agent on a socket of its own, stopped by its
// pid when the test ends, and adds the keys to it.
func startAgent(t *testing.T, keys ...string) string {
	t.Helper()
	testbed.Require(t, "ssh-agent", "ssh-add")
	sock := filepath.Join(testbed.TempDir(t, "mt-agent."), "agent.sock")
	cmd := exec.Command("ssh-agent", "-D", "-a", sock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("ssh-agent did not create its socket")
		}
	}
	for _, k := range keys {
		add := exec.Command("ssh-add", k)
		add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
		if out, err := add.CombinedOutput(); err != nil {
			t.Fatalf("ssh-add %s: %v: %s", k, err, out)
		}
	}
	return sock
}

func TestNativeAgent(t *testing.T) {
	s := startSSHD(t)
	dir := t.TempDir()
	key, pub := keygen(t, dir, "agentkey", "ed25519", "")
	s.Authorize(t, userAlice, pub)
	sock := startAgent(t, key)
	// The key lives in the agent only.
	os.Remove(key)
	os.Remove(key + ".pub")
	t.Setenv("SSH_AUTH_SOCK", sock)
	r, _ := newMaster(t)
	ctx := testCtx(t, 60*time.Second)
	for _, tr := range SSHTransports {
		kw := s.kwargs(userAlice, "transport", tr)
		delete(kw, "identity_file")
		before := s.LogCount(t, fingerprintOf(t, pub))
		c := mustConnect(t, ctx, r, "ssh", nil, kw)
		if uid, _ := whoami(t, ctx, c); uid != uidOf(t, userAlice) {
			t.Errorf("%s: uid %s", tr, uid)
		}
		if n := s.LogCount(t, fingerprintOf(t, pub)) - before; n != 1 {
			t.Errorf("%s: the server accepted the agent's key %d times, want 1", tr, n)
		}
		r.Disconnect(c)
	}
	// IdentityAgent=none: no agent, and no other key works.
	kw := s.kwargs(userAlice, "transport", "native", "ssh_args", []any{"-o", "UserKnownHostsFile=" + s.KnownHosts, "-o", "IdentityAgent=none"})
	delete(kw, "identity_file")
	_, err := connect(ctx, r, "ssh", nil, kw)
	wantKind(t, err, "PasswordError", "SSH password was requested, but none specified", "Permission denied (publickey,password)")
}

// askpass writes an SSH_ASKPASS program that answers passphrase and
// appends each prompt it is shown to the returned log.
func askpass(t *testing.T, passphrase string) (prog, log string) {
	t.Helper()
	dir := t.TempDir()
	prog, log = filepath.Join(dir, "askpass"), filepath.Join(dir, "prompts")
	script := fmt.Sprintf("#!/bin/sh\nprintf '%%s\\n' \"$1\" >>%s\necho '%s'\n", log, passphrase)
	if err := os.WriteFile(prog, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return prog, log
}

func TestNativeEncryptedKey(t *testing.T) {
	setupUsers(t)
	s := &sshd{testbed.SSHD(t, "LogLevel VERBOSE")}
	dir := t.TempDir()
	key, pub := keygen(t, dir, "locked", "ed25519", "s3cret phrase")
	s.Authorize(t, userAlice, pub)
	other, otherPub := keygen(t, dir, "locked2", "ecdsa", "right")
	s.Authorize(t, userAlice, otherPub)
	t.Setenv("SSH_AUTH_SOCK", "")
	r, _ := newMaster(t)
	ctx := testCtx(t, 60*time.Second)

	t.Run("askpass", func(t *testing.T) {
		prog, log := askpass(t, "s3cret phrase")
		t.Setenv("SSH_ASKPASS", prog)
		t.Setenv("SSH_ASKPASS_REQUIRE", "force")
		// Two connections, one after the other: the passphrase is asked
		// for the first only.
		for i := range 2 {
			c := mustConnect(t, ctx, r, "ssh", nil, s.kwargs(userAlice, "transport", "native", "identity_file", key))
			if uid, _ := whoami(t, ctx, c); uid != uidOf(t, userAlice) {
				t.Errorf("uid %s", uid)
			}
			r.Disconnect(c)
			waitLogins(t, s.SSHServer, "Closing connection to", i+1)
		}
		prompts, _ := os.ReadFile(log)
		if want := fmt.Sprintf("Enter passphrase for key '%s': \n", key); string(prompts) != want {
			t.Errorf("askpass was shown %q, want %q once", prompts, want)
		}
	})
	t.Run("wrong-passphrase", func(t *testing.T) {
		prog, log := askpass(t, "wrong")
		t.Setenv("SSH_ASKPASS", prog)
		t.Setenv("SSH_ASKPASS_REQUIRE", "force")
		_, err := connect(ctx, r, "ssh", nil, s.kwargs(userAlice, "transport", "native", "identity_file", other))
		wantKind(t, err, "PasswordError", "identity file "+other+": wrong passphrase (3 tries)")
		prompts, _ := os.ReadFile(log)
		if n := strings.Count(string(prompts), "\n"); n != 3 || !strings.Contains(string(prompts), "Bad passphrase, try again for") {
			t.Errorf("askpass was shown %q, want 3 prompts", prompts)
		}
	})
	t.Run("no-terminal", func(t *testing.T) {
		t.Setenv("SSH_ASKPASS", "")
		old := ttyPath
		ttyPath = filepath.Join(dir, "no-such-tty")
		t.Cleanup(func() { ttyPath = old })
		_, err := connect(ctx, r, "ssh", nil, s.kwargs(userAlice, "transport", "native", "identity_file", other))
		wantKind(t, err, "PasswordError", "identity file "+other+" is encrypted and its passphrase could not be asked: no terminal")
	})
	t.Run("terminal", func(t *testing.T) {
		// A master of its own whose controlling terminal is a pty: the
		// passphrase is typed there, once for two connections.
		testbed.Require(t, "ssh")
		params, _ := json.Marshal(roleParams{Kwargs: s.kwargs(userAlice, "transport", "native", "identity_file", key)})
		// The key was unlocked in this process above, not in the child.
		cmd := exec.Command("/proc/self/exe")
		cmd.Env = append(os.Environ(), core.RoleEnv+"=connecttest-passphrase", "MTC_PARAMS="+string(params), "SSH_ASKPASS=")
		f, err := pty.Start(cmd)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		defer func() {
			cmd.Process.Kill()
			<-done
		}()
		out := &testbed.SyncBuffer{}
		go io.Copy(out, f)
		waitFor(t, out, "Enter passphrase for key '"+key+"': ", 30*time.Second)
		io.WriteString(f, "s3cret phrase\n")
		waitFor(t, out, "connected 2 times", 30*time.Second)
		if n := strings.Count(out.String(), "Enter passphrase"); n != 1 {
			t.Errorf("the passphrase was asked %d times, want once:\n%s", n, out)
		}
		if strings.Contains(out.String(), "s3cret") {
			t.Errorf("the passphrase was echoed:\n%s", out)
		}
	})
}

// roleParams tell a test role started by this test binary what to do,
// in $MTC_PARAMS.
type roleParams struct {
	Kwargs map[string]any
	Calls  int // connecttest-keepalive: pending calls to fail
}

// readRoleParams reads $MTC_PARAMS; the keywords' numbers are ints again.
func readRoleParams() (roleParams, error) {
	var p roleParams
	if err := json.Unmarshal([]byte(os.Getenv("MTC_PARAMS")), &p); err != nil {
		return p, err
	}
	for k, v := range p.Kwargs {
		if f, ok := v.(float64); ok {
			p.Kwargs[k] = int64(f)
		}
	}
	return p, nil
}

// testRole registers a role this test binary plays in a process of its
// own: fn gets $MTC_PARAMS and a master, for at most limit.
func testRole(name string, limit time.Duration, fn func(ctx context.Context, r *core.Router, p roleParams) int) {
	core.RegisterRole(name, func() int {
		p, err := readRoleParams()
		if err != nil {
			fmt.Println(err)
			return 1
		}
		r := core.NewMaster(core.Options{})
		defer r.Close()
		ctx, cancel := context.WithTimeout(context.Background(), limit)
		defer cancel()
		return fn(ctx, r, p)
	})
}

func init() {
	// connecttest-passphrase connects twice with the keywords of
	// $MTC_PARAMS, one connection after the other, and says so.
	testRole("connecttest-passphrase", 60*time.Second, func(ctx context.Context, r *core.Router, p roleParams) int {
		for i := range 2 {
			c, err := r.Connect(ctx, "ssh", &core.ConnectOptions{Kwargs: p.Kwargs})
			if err != nil {
				fmt.Printf("connect: %v\n", err)
				return 1
			}
			var out []any
			if err := c.Call(ctx, &out, "connecttest.whoami"); err != nil {
				fmt.Printf("call: %v\n", err)
				return 1
			}
			r.Disconnect(c)
			fmt.Printf("connected %d times\n", i+1)
		}
		return 0
	})
}

func waitFor(t *testing.T, b *testbed.SyncBuffer, text string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !strings.Contains(b.String(), text) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q within %v; output:\n%s", text, within, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitLogins waits until the server's log holds text n times.
func waitLogins(t *testing.T, s *testbed.SSHServer, text string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.LogCount(t, text) < n {
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(s.Log)
			t.Fatalf("%q does not appear %d times in the server's log:\n%s", text, n, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSSHKeyboardInteractive(t *testing.T) {
	setupUsers(t)
	s := &sshd{testbed.SSHD(t, "KbdInteractiveAuthentication yes", "PasswordAuthentication no")}
	r, _ := newMaster(t)
	ctx := testCtx(t, 60*time.Second)
	for _, tr := range SSHTransports {
		kw := func(extra ...any) map[string]any {
			m := s.kwargs(userBob, append([]any{"transport", tr}, extra...)...)
			delete(m, "identity_file")
			return m
		}
		c := mustConnect(t, ctx, r, "ssh", nil, kw("password", passBob))
		if uid, _ := whoami(t, ctx, c); uid != uidOf(t, userBob) {
			t.Errorf("%s: uid %s", tr, uid)
		}
		began := time.Now()
		_, err := connect(ctx, r, "ssh", nil, kw("password", "wrong"))
		wantKind(t, err, "PasswordError", "SSH password is incorrect")
		if d := time.Since(began); d > 10*time.Second {
			t.Errorf("%s: a wrong password took %v", tr, d)
		}
		_, err = connect(ctx, r, "ssh", nil, kw())
		wantKind(t, err, "PasswordError", "SSH authentication is incorrect", "Permission denied (publickey,keyboard-interactive)")
	}
}

// TestSSHHostKeyAlgorithms is x/crypto's known_hosts trap: a server with
// an ed25519 and an ECDSA host key, of which known_hosts holds one. The
// client must ask for the algorithm of the key it knows, whichever it
// is, or it sees the other key and takes it for a changed one.
func TestSSHHostKeyAlgorithms(t *testing.T) {
	setupUsers(t)
	s := &sshd{testbed.SSHDWithHostKeys(t, []string{"ed25519", "ecdsa", "rsa"})}
	r, _ := newMaster(t)
	ctx := testCtx(t, 60*time.Second)
	dir := t.TempDir()
	for i, pub := range s.HostKeyPubs {
		known := filepath.Join(dir, fmt.Sprintf("known%d", i))
		os.WriteFile(known, []byte(fmt.Sprintf("[127.0.0.1]:%d %s\n", s.Port, pub)), 0o644)
		for _, tr := range SSHTransports {
			c, err := connect(ctx, r, "ssh", nil, s.kwargs(userAlice, "transport", tr, "check_host_keys", "enforce",
				"ssh_args", []any{"-o", "UserKnownHostsFile=" + known}))
			if err != nil {
				t.Errorf("%s with only %s known: %v", tr, strings.Fields(pub)[0], err)
				continue
			}
			r.Disconnect(c)
		}
	}
	// The preference puts the known key's algorithms first.
	cfg := &sshConfig{strictHostKeyChecking: "yes", port: s.Port, hostname: "127.0.0.1",
		userKnownHosts: []string{filepath.Join(dir, "known2")}}
	hk, err := newHostKeys(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := hk.algorithms(); len(got) < 3 || strings.Join(got[:2], " ") != "rsa-sha2-512 rsa-sha2-256" {
		t.Errorf("algorithms with an RSA key known: %v", got)
	}
}

func TestNativeProxyJump(t *testing.T) {
	setupUsers(t)
	jump := testbed.SSHD(t, "LogLevel VERBOSE")
	target := startSSHD(t)
	conf := filepath.Join(t.TempDir(), "ssh_config")
	hop := func(name, user string) string {
		return fmt.Sprintf("Host %s\n  HostName 127.0.0.1\n  Port %d\n  User %s\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n  StrictHostKeyChecking yes\n  BatchMode yes\n",
			name, jump.Port, user, jump.IdentityFile, jump.KnownHosts)
	}
	os.WriteFile(conf, []byte(hop("jump1", userBob)+hop("jump2", userCarol)+
		fmt.Sprintf("Host viajump\n  HostName 127.0.0.1\n  Port %d\n  ProxyJump jump1\n", target.Port)), 0o644)
	r, _ := newMaster(t)
	ctx := testCtx(t, 90*time.Second)
	for _, tr := range SSHTransports {
		t.Run(tr, func(t *testing.T) {
			args := func(extra ...any) []any {
				return append([]any{"-F", conf, "-o", "UserKnownHostsFile=" + target.KnownHosts}, extra...)
			}
			bob, carol := jump.LogCount(t, "Accepted publickey for "+userBob), jump.LogCount(t, "Accepted publickey for "+userCarol)
			// ProxyJump from the configuration, one hop; two targets
			// behind it.
			a := mustConnect(t, ctx, r, "ssh", nil, target.kwargs(userAlice, "transport", tr, "hostname", "viajump", "port", nil, "ssh_args", args()))
			b := mustConnect(t, ctx, r, "ssh", nil, target.kwargs(userBob, "transport", tr, "hostname", "viajump", "port", nil, "ssh_args", args()))
			for c, user := range map[*core.Context]string{a: userAlice, b: userBob} {
				if uid, _ := whoami(t, ctx, c); uid != uidOf(t, user) {
					t.Errorf("uid %s, want %s's", uid, user)
				}
			}
			logins := jump.LogCount(t, "Accepted publickey for "+userBob) - bob
			// OpenSSH runs one jump connection per target; the native
			// transport shares one.
			if want := map[string]int{"openssh": 2, "native": 1}[tr]; logins != want {
				t.Errorf("%d logins on the jump host for two targets, want %d", logins, want)
			}
			// A chain of two jump hosts given with -J.
			c := mustConnect(t, ctx, r, "ssh", nil, target.kwargs(userCarol, "transport", tr, "ssh_args", args("-J", "jump1,jump2")))
			if uid, _ := whoami(t, ctx, c); uid != uidOf(t, userCarol) {
				t.Errorf("through two jump hosts: uid %s", uid)
			}
			if n := jump.LogCount(t, "Accepted publickey for "+userCarol) - carol; n != 1 {
				t.Errorf("%d logins of the second jump host, want 1", n)
			}
			// ProxyCommand: ssh -W through the jump host.
			d := mustConnect(t, ctx, r, "ssh", nil, target.kwargs(userCarol, "transport", tr,
				"ssh_args", args("-o", "ProxyCommand=ssh -F "+conf+" -W %h:%p jump2")))
			if uid, _ := whoami(t, ctx, d); uid != uidOf(t, userCarol) {
				t.Errorf("through a ProxyCommand: uid %s", uid)
			}
			for _, x := range []*core.Context{a, b, c, d} {
				r.Disconnect(x)
			}
		})
	}
	// A jump host that refuses: the error says which hop failed.
	os.WriteFile(conf+".bad", []byte(hop("jump1", "nosuchuser")), 0o644)
	_, err := connect(ctx, r, "ssh", nil, target.kwargs(userAlice, "transport", "native",
		"ssh_args", []any{"-F", conf + ".bad", "-J", "jump1"}))
	wantKind(t, err, "PasswordError", "through jump host nosuchuser@127.0.0.1:", "SSH password was requested, but none specified")
}

func TestNativeSharedConnection(t *testing.T) {
	setupUsers(t)
	s := &sshd{testbed.SSHD(t, "LogLevel VERBOSE")}
	r, _ := newMaster(t)
	ctx := testCtx(t, 60*time.Second)
	kw := s.kwargs(userBob, "transport", "native")
	first := mustConnect(t, ctx, r, "ssh", nil, kw)
	second, err := r.Connect(ctx, "ssh", &core.ConnectOptions{Name: "second", Kwargs: kw})
	if err != nil {
		t.Fatal(err)
	}
	root := mustConnect(t, ctx, r, "sudo", first, nil)
	for c, want := range map[*core.Context]string{first: uidOf(t, userBob), second: uidOf(t, userBob), root: "0"} {
		if uid, _ := whoami(t, ctx, c); uid != want {
			t.Errorf("%s: uid %s, want %s", c.Name(), uid, want)
		}
	}
	// On the server: one login, two sessions on the same connection.
	log, _ := os.ReadFile(s.Log)
	if n := strings.Count(string(log), "Accepted publickey for "+userBob); n != 1 {
		t.Errorf("%d logins, want 1:\n%s", n, log)
	}
	sessions := regexp.MustCompile(`Starting session: command for `+userBob+` from 127.0.0.1 port (\d+) id (\d+)`).FindAllStringSubmatch(string(log), -1)
	if len(sessions) != 2 || sessions[0][1] != sessions[1][1] {
		t.Errorf("sessions %v, want two on one connection:\n%s", sessions, log)
	}
	// The connection closes with its last context.
	for _, c := range []*core.Context{root, second, first} {
		r.Disconnect(c)
	}
	waitLogins(t, s.SSHServer, "Closing connection to", 1)
}

func TestNativeSSHConfig(t *testing.T) {
	s := startSSHD(t)
	conf := filepath.Join(t.TempDir(), "ssh_config")
	os.WriteFile(conf, []byte(fmt.Sprintf(`Host mtalias
  HostName 127.0.0.1
  Port %d
  User %s
  IdentityFile %s
  UserKnownHostsFile %s
  ServerAliveInterval 7
  ServerAliveCountMax 4
  ConnectTimeout 5
  SetEnv MTC_NOISE=
Host *
  StrictHostKeyChecking no
`, s.Port, userCarol, s.IdentityFile, s.KnownHosts)), 0o644)
	r, _ := newMaster(t)
	ctx := testCtx(t, 60*time.Second)
	for _, tr := range SSHTransports {
		c := mustConnect(t, ctx, r, "ssh", nil, map[string]any{"hostname": "mtalias", "transport": tr, "ssh_args": []any{"-F", conf}})
		if uid, _ := whoami(t, ctx, c); uid != uidOf(t, userCarol) {
			t.Errorf("%s: uid %s, want %s's (User from the configuration)", tr, uid, userCarol)
		}
		if c.Name() != "ssh.mtalias:22" {
			t.Errorf("name %q", c.Name())
		}
	}
	// What the native transport takes from ssh -G: mitostar's own
	// options come first, as they do for ssh.
	for _, tc := range []struct {
		kw       map[string]any
		interval time.Duration
		count    int
		strict   string
	}{
		{map[string]any{"hostname": "mtalias", "ssh_args": []any{"-F", conf}}, 15 * time.Second, 3, "yes"},
		{map[string]any{"hostname": "mtalias", "ssh_args": []any{"-F", conf}, "keepalive_interval": int64(0), "check_host_keys": "accept"}, 0, 4, "accept-new"}, // 0: off, whatever the configuration says
	} {
		tr, err := newSSH(nil, &core.ConnectOptions{Kwargs: tc.kw})
		if err != nil {
			t.Fatal(err)
		}
		st := tr.(*sshTransport)
		cfg, err := resolveSSHConfig(ctx, "ssh", st.options(), "mtalias")
		if err != nil {
			t.Fatal(err)
		}
		if cfg.hostname != "127.0.0.1" || cfg.port != s.Port || cfg.user != userCarol || strings.Join(cfg.identityFiles, " ") != s.IdentityFile ||
			cfg.serverAliveInterval != tc.interval || cfg.serverAliveCountMax != tc.count || cfg.connectTimeout != 5*time.Second ||
			cfg.strictHostKeyChecking != tc.strict || strings.Join(cfg.userKnownHosts, " ") != s.KnownHosts || cfg.batchMode != true ||
			len(cfg.setEnv) != 1 || cfg.setEnv[0] != [2]string{"MTC_NOISE", ""} {
			t.Errorf("%v: resolved %+v", tc.kw, cfg)
		}
	}
}

func TestSSHConfigWithoutSSH(t *testing.T) {
	c, err := resolveSSHConfig(context.Background(), "/nonexistent/ssh", []string{"-o", "LogLevel=ERROR", "-l", "bob", "-p", "2222",
		"-o", "IdentitiesOnly=yes", "-i", "/k", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=2", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=accept-new", "-T", "-o", "UserKnownHostsFile=/x /y", "-o", "ServerAliveInterval=9",
		"-J", "jump@j:2200,[::1]:22", "-oSetEnv=A=b c"}, "example.org")
	if err != nil {
		t.Fatal(err)
	}
	want := &sshConfig{host: "example.org", hostname: "example.org", port: 2222, user: "bob", identityFiles: []string{"/k"},
		identitiesOnly: true, proxyJump: "jump@j:2200,[::1]:22", serverAliveInterval: 5 * time.Second, serverAliveCountMax: 2,
		strictHostKeyChecking: "accept-new", userKnownHosts: []string{"/x", "/y"}, batchMode: true, setEnv: [][2]string{{"A", "b c"}}}
	got := fmt.Sprintf("%v %v %v %v %v %v %v %v %v %v %v %v %v", c.host, c.hostname, c.port, c.user, c.identityFiles, c.identitiesOnly,
		c.proxyJump, c.serverAliveInterval, c.serverAliveCountMax, c.strictHostKeyChecking, c.userKnownHosts, c.batchMode, c.setEnv)
	wantS := fmt.Sprintf("%v %v %v %v %v %v %v %v %v %v %v %v %v", want.host, want.hostname, want.port, want.user, want.identityFiles, want.identitiesOnly,
		want.proxyJump, want.serverAliveInterval, want.serverAliveCountMax, want.strictHostKeyChecking, want.userKnownHosts, want.batchMode, want.setEnv)
	if got != wantS {
		t.Errorf("resolved\n got %s\nwant %s", got, wantS)
	}
	home, _ := os.UserHomeDir()
	if got, want := c.expandPath("~/k_%r@%h:%p_%n_%%_%x"), home+"/k_bob@example.org:2222_example.org_%_%x"; got != want {
		t.Errorf("expandPath = %q, want %q", got, want)
	}
	hops, err := parseProxyJump(c.proxyJump)
	if err != nil || len(hops) != 2 || hops[0] != (jumpHop{"jump", "j", 2200}) || hops[1] != (jumpHop{"", "::1", 22}) {
		t.Errorf("hops %+v, %v", hops, err)
	}
	for _, bad := range [][]string{{"-F", "/etc/x"}, {"-o", "Port=http"}, {"-o"}, {"host"}} {
		if _, err := resolveSSHConfig(context.Background(), "/nonexistent/ssh", bad, "h"); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	for _, bad := range []string{"", "u@", "h:0", "[::1", "-oProxyCommand=x"} {
		if _, err := parseProxyJump(bad); err == nil {
			t.Errorf("ProxyJump %q: no error", bad)
		}
	}
}

func TestNativeConnectErrors(t *testing.T) {
	requireRoot(t, "ssh")
	r, _ := newMaster(t)
	ctx := testCtx(t, 30*time.Second)
	port := testbed.FreePort(t)
	_, err := connect(ctx, r, "ssh", nil, map[string]any{"hostname": "127.0.0.1", "port": int64(port), "transport": "native"})
	wantKind(t, err, "StreamError", fmt.Sprintf("connect ssh.127.0.0.1:%d: ssh to 127.0.0.1 port %d: dial tcp 127.0.0.1:%d: connect: connection refused", port, port, port))
	_, err = connect(ctx, r, "ssh", nil, map[string]any{"hostname": "127.0.0.1", "transport": "native",
		"ssh_args": []any{"-o", "ProxyCommand=echo no way to %h:%p >&2; exit 3"}})
	wantKind(t, err, "StreamError", "ssh: handshake failed", "no way to 127.0.0.1:22")
}

func init() {
	// connecttest-keepalive runs in a network namespace: it connects with
	// the keywords of $MTC_PARAMS, starts Calls calls that sleep, prints
	// "ready", and then one line per call as it fails.
	testRole("connecttest-keepalive", 120*time.Second, func(ctx context.Context, r *core.Router, p roleParams) int {
		began := time.Now()
		c, err := r.Connect(ctx, "ssh", &core.ConnectOptions{Kwargs: p.Kwargs})
		if err != nil {
			fmt.Printf("connect failed after %v: %v\n", time.Since(began).Round(time.Millisecond), err)
			return 0
		}
		// A second context on the same connection (native) and one
		// through the first.
		c2, err := r.Connect(ctx, "ssh", &core.ConnectOptions{Name: "second", Kwargs: p.Kwargs})
		if err != nil {
			fmt.Printf("connect failed: %v\n", err)
			return 1
		}
		c3, err := r.Connect(ctx, "sudo", &core.ConnectOptions{Via: c})
		if err != nil {
			fmt.Printf("connect failed: %v\n", err)
			return 1
		}
		ctxs := []*core.Context{c, c2, c3}
		var out []any
		for _, x := range ctxs {
			if err := x.Call(ctx, &out, "connecttest.whoami"); err != nil {
				fmt.Printf("call failed: %v\n", err)
				return 1
			}
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		for i := range p.Calls {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var s string
				err := ctxs[i%len(ctxs)].Call(ctx, &s, "connecttest.sleep", 100.0)
				mu.Lock()
				fmt.Printf("call %d ended: %s: %v\n", i, core.KindOf(err), err)
				mu.Unlock()
			}()
		}
		time.Sleep(500 * time.Millisecond) // the calls reach their contexts
		fmt.Println("ready")
		wg.Wait()
		return 0
	})
}

// TestSSHKeepalive cuts the network under an ssh connection: with
// keepalive_interval=1 and keepalive_count=2 the client gives up after
// at most 3 s of silence, and every pending call of every context on
// the connection fails then. The master runs in a network namespace of
// its own (a child process), the server in another.
func TestSSHKeepalive(t *testing.T) {
	setupUsers(t)
	nw := testbed.NewNetwork(t)
	client, server := nw.Host(t), nw.Host(t)
	s := &sshd{server.SSHD(t)}
	const interval, count = 1, 2
	for _, tr := range SSHTransports {
		t.Run(tr, func(t *testing.T) {
			lines, stderr := runInNetns(t, client.Command(testExe(t)), "connecttest-keepalive", roleParams{Calls: 6,
				Kwargs: s.kwargs(userBob, "transport", tr, "keepalive_interval", interval, "keepalive_count", count)},
				func() { server.Cut(t, testbed.LinkDown) })
			server.Restore(t)
			bound := time.Duration(count+1)*interval*time.Second + 2*time.Second
			failed := 0
			for _, l := range lines {
				if !strings.HasPrefix(l.text, "call ") {
					continue
				}
				failed++
				t.Logf("%v after the cut: %s", l.after.Round(time.Millisecond), l.text)
				if !strings.Contains(l.text, "ChannelError: the respondent Context has disconnected") {
					t.Errorf("%s", l.text)
				}
				if l.after < time.Second || l.after > bound {
					t.Errorf("%q %v after the cut, want within 1s..%v", l.text, l.after, bound)
				}
			}
			if failed != 6 {
				t.Errorf("%d calls ended, want 6: %v", failed, lines)
			}
			if tr == "native" && !strings.Contains(stderr, "is lost: no answer to keepalives for 3s") {
				t.Errorf("no warning about the keepalives on stderr:\n%s", stderr)
			}
		})
	}
}

// TestNativeConnectTimeout: ConnectTimeout from the configuration bounds
// the TCP connection to a host that does not answer.
func TestNativeConnectTimeout(t *testing.T) {
	setupUsers(t)
	ns := testbed.SilentNetns(t)
	lines, _ := runInNetns(t, exec.Command("ip", "netns", "exec", ns, testExe(t)), "connecttest-keepalive", roleParams{Kwargs: map[string]any{
		"hostname": testbed.SilentAddr, "transport": "native", "ssh_args": []any{"-o", "ConnectTimeout=1"}}}, nil)
	if len(lines) != 1 || !strings.Contains(lines[0].text, "i/o timeout") {
		t.Fatalf("output %v, want a connect timeout", lines)
	}
	if d, err := time.ParseDuration(strings.TrimSuffix(strings.Fields(lines[0].text)[3], ":")); err != nil || d < time.Second || d > 2500*time.Millisecond {
		t.Errorf("%q: want about 1s", lines[0].text)
	}
}

type timedLine struct {
	text  string
	after time.Duration // since cut was called
}

// testExe is this test binary's path.
func testExe(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// runInNetns runs cmd (this test binary in a network namespace) in role
// with params, calls cut once it prints "ready", and returns its lines
// and its stderr.
func runInNetns(t *testing.T, cmd *exec.Cmd, role string, params any, cut func()) ([]timedLine, string) {
	t.Helper()
	data, _ := json.Marshal(params)
	cmd.Env = append(os.Environ(), core.RoleEnv+"="+role, "MTC_PARAMS="+string(data))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr := &testbed.SyncBuffer{}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	timer := time.AfterFunc(90*time.Second, func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	defer func() {
		timer.Stop()
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}()
	go func() { cmd.Wait(); close(done) }()
	var lines []timedLine
	var cutAt time.Time
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		l := sc.Text()
		if l == "ready" && cut != nil {
			cut()
			cutAt = time.Now()
			continue
		}
		tl := timedLine{text: l}
		if !cutAt.IsZero() {
			tl.after = time.Since(cutAt)
		}
		lines = append(lines, tl)
	}
	<-done
	return lines, stderr.String()
}

// TestSSHUserCertificate: a key the server does not list, signed by a
// CA it trusts, logs in with its certificate: FILE-cert.pub beside the
// key, or one named by CertificateFile.
func TestSSHUserCertificate(t *testing.T) {
	setupUsers(t)
	dir := testbed.TempDir(t, "mt-ca.")
	ca, caPub := keygen(t, dir, "ca", "ed25519", "")
	os.WriteFile(filepath.Join(dir, "ca.pub"), []byte(caPub+"\n"), 0o644)
	s := &sshd{testbed.SSHD(t, "TrustedUserCAKeys "+filepath.Join(dir, "ca.pub"))}
	key, _ := keygen(t, dir, "user", "ed25519", "")
	if out, err := exec.Command("ssh-keygen", "-q", "-s", ca, "-I", "mitostar-test", "-n", userAlice, key+".pub").CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -s: %v: %s", err, out)
	}
	elsewhere := filepath.Join(dir, "elsewhere-cert.pub")
	data, _ := os.ReadFile(key + "-cert.pub")
	os.WriteFile(elsewhere, data, 0o644)
	r, _ := newMaster(t)
	ctx := testCtx(t, 60*time.Second)
	for _, tr := range SSHTransports {
		c := mustConnect(t, ctx, r, "ssh", nil, s.kwargs(userAlice, "transport", tr, "identity_file", key))
		if uid, _ := whoami(t, ctx, c); uid != uidOf(t, userAlice) {
			t.Errorf("%s: uid %s", tr, uid)
		}
	}
	os.Remove(key + "-cert.pub")
	c := mustConnect(t, ctx, r, "ssh", nil, s.kwargs(userAlice, "transport", "native", "identity_file", key,
		"ssh_args", []any{"-o", "UserKnownHostsFile=" + s.KnownHosts, "-o", "CertificateFile=" + elsewhere}))
	if uid, _ := whoami(t, ctx, c); uid != uidOf(t, userAlice) {
		t.Errorf("CertificateFile: uid %s", uid)
	}
	// Without a certificate the key is refused (a master of its own: r
	// still shares the connection made with the certificate).
	r2, _ := newMaster(t)
	_, err := connect(ctx, r2, "ssh", nil, s.kwargs(userAlice, "transport", "native", "identity_file", key))
	wantKind(t, err, "PasswordError", "SSH password was requested, but none specified")
}

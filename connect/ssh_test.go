package connect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mitostar/mitostar/core"
	"github.com/mitostar/mitostar/internal/testbed"
)

func connect(ctx context.Context, r *core.Router, method string, via *core.Context, kw map[string]any) (*core.Context, error) {
	return r.Connect(ctx, method, &core.ConnectOptions{Kwargs: kw, Via: via, ConnectTimeout: 30 * time.Second})
}

func mustConnect(t *testing.T, ctx context.Context, r *core.Router, method string, via *core.Context, kw map[string]any) *core.Context {
	t.Helper()
	c, err := connect(ctx, r, method, via, kw)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	return c
}

// whoami returns the uid and HOME of the process behind c.
func whoami(t *testing.T, ctx context.Context, c *core.Context) (uid string, home string) {
	t.Helper()
	var out []any
	if err := c.Call(ctx, &out, "connecttest.whoami"); err != nil {
		t.Fatalf("whoami in %s: %v", c.Name(), err)
	}
	return fmt.Sprint(out[0]), fmt.Sprint(out[1])
}

func uidOf(t *testing.T, name string) string {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return u.Uid
}

// wantKind checks an error's kind and that its message holds each text.
func wantKind(t *testing.T, err error, kind string, texts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("connected, want %s", kind)
	}
	if k := core.KindOf(err); k != kind {
		t.Errorf("kind %s, want %s: %v", k, kind, err)
	}
	for _, s := range texts {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
}

// eachTransport runs fn as a subtest for each ssh transport; kw adds the
// transport keyword to a test server's keywords.
func eachTransport(t *testing.T, fn func(t *testing.T, tr string, kw func(user string, extra ...any) map[string]any)) {
	t.Helper()
	s := startSSHD(t)
	for _, tr := range SSHTransports {
		t.Run(tr, func(t *testing.T) {
			fn(t, tr, func(user string, extra ...any) map[string]any {
				return s.kwargs(user, append([]any{"transport", tr}, extra...)...)
			})
		})
	}
}

// clearCache removes the cached binary of this test build from a user's home.
func clearCache(t *testing.T, user string) {
	t.Helper()
	os.RemoveAll(filepath.Join("/home", user, ".cache", "mitostar", selfHash(t)))
}

func TestSSHKeyAuth(t *testing.T) {
	eachTransport(t, func(t *testing.T, tr string, kwargs func(string, ...any) map[string]any) {
		r, rep := newMaster(t)
		ctx := testCtx(t, 60*time.Second)
		clearCache(t, userAlice)
		kw := kwargs(userAlice)
		c := mustConnect(t, ctx, r, "ssh", nil, kw)
		if want := fmt.Sprintf("ssh.127.0.0.1:%d", kw["port"]); c.Name() != want {
			t.Errorf("name %q, want %q", c.Name(), want)
		}
		uid, home := whoami(t, ctx, c)
		if uid != uidOf(t, userAlice) || home != "/home/"+userAlice {
			t.Errorf("child runs as uid %s home %s", uid, home)
		}
		first := rep.last(t)
		want := filepath.Join("/home", userAlice, ".cache", "mitostar", selfHash(t), "mitostar")
		if exe := callString(t, ctx, c, "connecttest.exe"); exe != want {
			t.Errorf("child runs %s, want %s", exe, want)
		}
		c2 := mustConnect(t, ctx, r, "ssh", nil, kw)
		second := rep.last(t)
		if !first.Shipped || second.Shipped || second.Written >= 2048 {
			t.Errorf("first shipped=%v (%d bytes), second shipped=%v (%d bytes); want only the first to ship and the second < 2 KB",
				first.Shipped, first.Written, second.Shipped, second.Written)
		}
		t.Logf("ssh (%s): first connect %v, %d bytes; second %v, %d bytes", tr, first.Elapsed, first.Written, second.Elapsed, second.Written)
		whoami(t, ctx, c2)
	})
}

func TestSSHPassword(t *testing.T) {
	eachTransport(t, func(t *testing.T, tr string, kwargs func(string, ...any) map[string]any) {
		r, _ := newMaster(t)
		ctx := testCtx(t, 60*time.Second)
		kw := func(extra ...any) map[string]any {
			m := kwargs(userBob, extra...)
			delete(m, "identity_file")
			return m
		}
		c := mustConnect(t, ctx, r, "ssh", nil, kw("password", passBob))
		if uid, _ := whoami(t, ctx, c); uid != uidOf(t, userBob) {
			t.Errorf("uid %s", uid)
		}
		// ssh -vvv talks about passwords on every other line: only the
		// prompt is answered.
		c = mustConnect(t, ctx, r, "ssh", nil, kw("password", passBob, "ssh_debug_level", int64(3), "compression", false, "keepalive_interval", int64(0)))
		if uid, _ := whoami(t, ctx, c); uid != uidOf(t, userBob) {
			t.Errorf("uid %s", uid)
		}

		began := time.Now()
		_, err := connect(ctx, r, "ssh", nil, kw("password", "wrong"))
		wantKind(t, err, "PasswordError", "SSH password is incorrect", "connect ssh.127.0.0.1", "Permission denied")
		// sshd itself waits about 3 s before it refuses a password.
		if d := time.Since(began); d > 10*time.Second {
			t.Errorf("wrong password took %v", d)
		}

		began = time.Now()
		_, err = connect(ctx, r, "ssh", nil, kw())
		wantKind(t, err, "PasswordError", "SSH password was requested, but none specified")
		if d := time.Since(began); d > 5*time.Second {
			t.Errorf("missing password took %v", d)
		}
	})
}

func TestSSHHostKeys(t *testing.T) {
	s := startSSHD(t)
	for _, tr := range SSHTransports {
		t.Run(tr, func(t *testing.T) { testHostKeys(t, s, tr) })
	}
}

func testHostKeys(t *testing.T, s *sshd, tr string) {
	r, _ := newMaster(t)
	ctx := testCtx(t, 90*time.Second)
	dir := t.TempDir()
	changed := filepath.Join(dir, "changed")
	other, _ := os.ReadFile(s.IdentityFile + ".pub") // a key that is not the host's
	f := strings.Fields(string(other))
	os.WriteFile(changed, []byte(fmt.Sprintf("[127.0.0.1]:%d %s %s\n", s.Port, f[0], f[1])), 0o644)

	try := func(mode, knownHosts string) error {
		kw := s.kwargs(userAlice, "transport", tr, "check_host_keys", mode, "ssh_args", []any{"-o", "UserKnownHostsFile=" + knownHosts})
		c, err := connect(ctx, r, "ssh", nil, kw)
		if err == nil {
			whoami(t, ctx, c)
			r.Disconnect(c)
		}
		return err
	}
	fresh := func() string {
		p := filepath.Join(dir, fmt.Sprintf("known%d", time.Now().UnixNano()))
		os.WriteFile(p, nil, 0o644)
		return p
	}

	// The known key: every mode connects.
	for _, mode := range []string{"enforce", "accept", "ignore"} {
		if err := try(mode, s.KnownHosts); err != nil {
			t.Errorf("%s with the known key: %v", mode, err)
		}
	}
	wantKind(t, try("enforce", fresh()), "HostKeyError", "Host key checking is enabled")
	wantKind(t, try("enforce", changed), "HostKeyError", "Host key checking is enabled")

	accepted := fresh()
	if err := try("accept", accepted); err != nil {
		t.Errorf("accept with an unknown key: %v", err)
	}
	if data, _ := os.ReadFile(accepted); !strings.Contains(string(data), s.HostKeyPub) {
		t.Errorf("accept did not record the host key: %q", data)
	}
	wantKind(t, try("accept", changed), "HostKeyError")

	if err := try("ignore", fresh()); err != nil {
		t.Errorf("ignore with an unknown key: %v", err)
	}
	if err := try("ignore", changed); err != nil {
		t.Errorf("ignore with a changed key: %v", err)
	}

	_, err := connect(ctx, r, "ssh", nil, s.kwargs(userAlice, "transport", tr, "check_host_keys", "sometimes"))
	wantKind(t, err, "Error", "check_host_keys must be set to accept, enforce or ignore")
}

func TestSSHKeywords(t *testing.T) {
	for _, tc := range []struct {
		kw   map[string]any
		want string
	}{
		{map[string]any{}, "ssh: hostname is required"},
		{map[string]any{"hostname": "h", "port": int64(70000)}, "ssh: port must be from 1 to 65535, got 70000"},
		{map[string]any{"hostname": "h", "port": "22"}, `ssh: port must be an int, got string "22"`},
		{map[string]any{"hostname": "h", "colour": "red"}, `ssh: unexpected keyword "colour"`},
		{map[string]any{"hostname": "-oProxyCommand=x"}, "must not start with '-'"},
		{map[string]any{"hostname": "h", "ssh_args": "-v"}, "ssh: ssh_args must be a list of strings"},
		{map[string]any{"hostname": "h", "transport": "quic"}, `ssh: transport must be "openssh" or "native", got "quic"`},
		{map[string]any{"hostname": "h", "transport": true}, `ssh: transport must be a string, got bool true`},
	} {
		_, err := newSSH(nil, &core.ConnectOptions{Kwargs: tc.kw})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.kw, err, tc.want)
		}
	}
	tr, err := newSSH(nil, &core.ConnectOptions{Kwargs: map[string]any{
		"hostname": "example.org", "username": "bob", "port": int64(2222), "identity_file": "/k",
		"compression": false, "keepalive_interval": int64(5), "keepalive_count": int64(2),
		"ssh_debug_level": int64(2), "ssh_args": []any{"-o", "UserKnownHostsFile=/x"}, "check_host_keys": "accept",
	}})
	if err != nil {
		t.Fatal(err)
	}
	argv := tr.(*sshTransport).argv("sh -c 'S'")
	got := strings.Join(argv, " ")
	want := "ssh -vv -l bob -p 2222 -o IdentitiesOnly=yes -i /k -o ServerAliveInterval=5 -o ServerAliveCountMax=2 -o BatchMode=yes -o StrictHostKeyChecking=accept-new -T -o UserKnownHostsFile=/x -- example.org sh -c 'S'"
	if got != want {
		t.Errorf("argv\n got %s\nwant %s", got, want)
	}
	// keepalive_interval=0 is said to ssh, so that no ServerAliveInterval
	// of ~/.ssh/config turns keepalives back on.
	off, err := newSSH(nil, &core.ConnectOptions{Kwargs: map[string]any{"hostname": "h", "keepalive_interval": int64(0)}})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(off.(*sshTransport).argv("x"), " "); !strings.Contains(got, "-o ServerAliveInterval=0 -o BatchMode") {
		t.Errorf("keepalive_interval=0: argv %s", got)
	}
	if n := tr.DefaultName(); n != "ssh.example.org:2222" {
		t.Errorf("name %q", n)
	}
	native, err := newSSH(nil, &core.ConnectOptions{Kwargs: map[string]any{"hostname": "example.org", "transport": "native"}})
	if _, ok := native.(*nativeSSH); !ok || err != nil {
		t.Errorf("transport=native: %T, %v", native, err)
	}
	r := core.NewMaster(core.Options{})
	defer r.Close()
	if err := SetDefaultSSHTransport(r, "rsh"); err == nil || !strings.Contains(err.Error(), `unknown ssh transport "rsh" (want openssh or native)`) {
		t.Errorf("SetDefaultSSHTransport(rsh): %v", err)
	}
	if err := SetDefaultSSHTransport(r, "native"); err != nil {
		t.Fatal(err)
	}
	if tr, _ := newSSH(r, &core.ConnectOptions{Kwargs: map[string]any{"hostname": "h"}}); fmt.Sprintf("%T", tr) != "*connect.nativeSSH" {
		t.Errorf("with the default set to native: %T", tr)
	}
	if tr, _ := newSSH(r, &core.ConnectOptions{Kwargs: map[string]any{"hostname": "h", "transport": "openssh"}}); fmt.Sprintf("%T", tr) != "*connect.sshTransport" {
		t.Errorf("transport=openssh with the default set to native: %T", tr)
	}
}

func TestSSHConnectTimeout(t *testing.T) {
	requireRoot(t, "ssh")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	r, _ := newMaster(t)
	ctx := testCtx(t, 30*time.Second)
	for _, tr := range SSHTransports {
		began := time.Now()
		_, err = r.Connect(ctx, "ssh", &core.ConnectOptions{ConnectTimeout: 2 * time.Second, Kwargs: map[string]any{
			"hostname": "127.0.0.1", "port": int64(l.Addr().(*net.TCPAddr).Port), "transport": tr,
		}})
		d := time.Since(began)
		// It says what timed out, never Go's "context deadline exceeded".
		want := "timed out with nothing received from the target"
		if tr == "native" {
			want = "timed out in the SSH handshake with 127.0.0.1:"
		}
		wantKind(t, err, "StreamError", "connection timed out after 2s", "ssh to 127.0.0.1", want)
		if err != nil && strings.Contains(err.Error(), "deadline exceeded") {
			t.Errorf("%s: the error names Go's context: %v", tr, err)
		}
		if d < 2*time.Second || d > 4*time.Second {
			t.Errorf("%s: gave up after %v, want about 2s", tr, d)
		}
	}
}

// wrongPasswordLimit bounds how long a refused password may take to
// fail a connect through su, sudo or doas: those programs sleep 2–3 s
// before they say no (pam_faildelay), and a loaded 2-vCPU CI machine adds
// more; a failure that waited for the 30 s connect timeout instead of
// the program's answer would still be caught.
const wrongPasswordLimit = 15 * time.Second

func TestSSHChains(t *testing.T) {
	s := startSSHD(t)
	for _, tr := range SSHTransports {
		t.Run(tr, func(t *testing.T) { testChains(t, s, tr) })
	}
}

// testChains runs sudo, su, doas and ssh through an ssh context of the
// given transport.
func testChains(t *testing.T, s *sshd, tr string) {
	r, _ := newMaster(t)
	ctx := testCtx(t, 90*time.Second)
	// alice's own copy of the client key, for hops that run as alice.
	aliceKey := filepath.Join("/home", userAlice, fmt.Sprintf("connect_test_id.%d", os.Getpid()))
	data, _ := os.ReadFile(s.IdentityFile)
	os.WriteFile(aliceKey, data, 0o600)
	t.Cleanup(func() { os.Remove(aliceKey) })
	if out, err := exec.Command("chown", userAlice, aliceKey).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v: %s", err, out)
	}

	alice := mustConnect(t, ctx, r, "ssh", nil, s.kwargs(userAlice, "transport", tr))

	t.Run("ssh-sudo-password", func(t *testing.T) {
		c := mustConnect(t, ctx, r, "sudo", alice, map[string]any{"password": passAlice})
		if c.Name() != "sudo.root" {
			t.Errorf("name %q", c.Name())
		}
		if uid, _ := whoami(t, ctx, c); uid != "0" {
			t.Errorf("uid %s", uid)
		}
	})
	t.Run("ssh-sudo-wrong-password", func(t *testing.T) {
		began := time.Now()
		_, err := connect(ctx, r, "sudo", alice, map[string]any{"password": "nope"})
		wantKind(t, err, "PasswordError", "sudo password is incorrect")
		if d := time.Since(began); d > wrongPasswordLimit {
			t.Errorf("took %v", d)
		}
		_, err = connect(ctx, r, "sudo", alice, nil)
		wantKind(t, err, "PasswordError", "sudo password is required")
	})
	t.Run("ssh-sudo-nopasswd", func(t *testing.T) {
		bob := mustConnect(t, ctx, r, "ssh", nil, s.kwargs(userBob, "transport", tr))
		c := mustConnect(t, ctx, r, "sudo", bob, map[string]any{"username": userAlice, "set_home": true})
		if uid, home := whoami(t, ctx, c); uid != uidOf(t, userAlice) || home != "/home/"+userAlice {
			t.Errorf("uid %s home %s", uid, home)
		}
		login := mustConnect(t, ctx, r, "sudo", bob, map[string]any{"sudo_args": []any{"-i", "-u", "root"}})
		if uid, home := whoami(t, ctx, login); uid != "0" || home != "/root" {
			t.Errorf("sudo -i: uid %s home %s", uid, home)
		}
	})
	t.Run("ssh-su", func(t *testing.T) {
		// su runs on a raw pty: the binary itself crosses it.
		clearCache(t, userBob)
		c := mustConnect(t, ctx, r, "su", alice, map[string]any{"username": userBob, "password": passBob})
		want := filepath.Join("/home", userBob, ".cache", "mitostar", selfHash(t), "mitostar")
		if exe := callString(t, ctx, c, "connecttest.exe"); exe != want {
			t.Errorf("child runs %s, want %s", exe, want)
		}
		if uid, _ := whoami(t, ctx, c); uid != uidOf(t, userBob) {
			t.Errorf("uid %s", uid)
		}
		began := time.Now()
		_, err := connect(ctx, r, "su", alice, map[string]any{"username": userBob, "password": "nope"})
		wantKind(t, err, "PasswordError", "su password is incorrect")
		if d := time.Since(began); d > wrongPasswordLimit {
			t.Errorf("took %v", d)
		}
	})
	t.Run("ssh-doas", func(t *testing.T) {
		c := mustConnect(t, ctx, r, "doas", alice, map[string]any{"password": passAlice})
		if uid, _ := whoami(t, ctx, c); uid != "0" {
			t.Errorf("uid %s", uid)
		}
		began := time.Now()
		_, err := connect(ctx, r, "doas", alice, map[string]any{"password": "nope"})
		wantKind(t, err, "PasswordError", "doas password is incorrect")
		if d := time.Since(began); d > wrongPasswordLimit {
			t.Errorf("took %v", d)
		}
	})
	t.Run("ssh-via-ssh-sudo", func(t *testing.T) {
		kw := s.kwargs(userBob, "transport", tr)
		kw["identity_file"] = aliceKey
		bob := mustConnect(t, ctx, r, "ssh", alice, kw)
		if uid, _ := whoami(t, ctx, bob); uid != uidOf(t, userBob) {
			t.Errorf("uid %s", uid)
		}
		root := mustConnect(t, ctx, r, "sudo", bob, nil)
		if uid, _ := whoami(t, ctx, root); uid != "0" {
			t.Errorf("uid %s", uid)
		}
	})
}

func TestSuAndDoasLocally(t *testing.T) {
	setupUsers(t)
	r, _ := newMaster(t)
	ctx := testCtx(t, 60*time.Second)
	// root needs no password for either.
	c := mustConnect(t, ctx, r, "su", nil, map[string]any{"username": userBob})
	if c.Name() != "su."+userBob {
		t.Errorf("name %q", c.Name())
	}
	if uid, _ := whoami(t, ctx, c); uid != uidOf(t, userBob) {
		t.Errorf("uid %s", uid)
	}
	d := mustConnect(t, ctx, r, "doas", c, nil) // bob: nopass
	if d.Name() != "doas.root" {
		t.Errorf("name %q", d.Name())
	}
	if uid, _ := whoami(t, ctx, d); uid != "0" {
		t.Errorf("uid %s", uid)
	}
}

func TestSSHConcurrentFreshTarget(t *testing.T) {
	s := startSSHD(t)
	for _, tr := range SSHTransports {
		t.Run(tr, func(t *testing.T) { testConcurrentFreshTarget(t, s, tr) })
	}
}

func testConcurrentFreshTarget(t *testing.T, s *sshd, tr string) {
	r, rep := newMaster(t)
	ctx := testCtx(t, 90*time.Second)
	clearCache(t, userBob)
	const n = 10
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := r.Connect(ctx, "ssh", &core.ConnectOptions{Name: fmt.Sprintf("bob%d", i), Kwargs: s.kwargs(userBob, "transport", tr)})
			if err == nil {
				var out []any
				err = c.Call(ctx, &out, "connecttest.whoami")
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	rep.mu.Lock()
	shipped := 0
	for _, b := range rep.all {
		if b.Shipped {
			shipped++
		}
	}
	rep.mu.Unlock()
	if shipped != 1 {
		t.Errorf("%d connections shipped the binary, want 1", shipped)
	}
	entries, _ := os.ReadDir(filepath.Join("/home", userBob, ".cache", "mitostar", selfHash(t)))
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "mitostar ok" {
		t.Errorf("cache holds %v, want [mitostar ok]", names)
	}
}

func TestSSHServerKilledMidCall(t *testing.T) {
	for _, tr := range SSHTransports {
		t.Run(tr, func(t *testing.T) { testServerKilledMidCall(t, tr) })
	}
}

func testServerKilledMidCall(t *testing.T, tr string) {
	s := startSSHD(t)
	r, _ := newMaster(t)
	ctx := testCtx(t, 60*time.Second)
	c := mustConnect(t, ctx, r, "ssh", nil, s.kwargs(userBob, "transport", tr))
	exe := callString(t, ctx, c, "connecttest.exe")
	remote := liveProcessesOf(exe)
	var client []int
	for _, p := range testbed.Descendants(os.Getpid()) {
		if target, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", p)); filepath.Base(target) == "ssh" {
			client = append(client, p)
		}
	}
	// The native transport runs no ssh program.
	if wantClients := tr == "openssh"; len(remote) == 0 || (len(client) > 0) != wantClients {
		t.Fatalf("found %d child processes running %s and %d ssh clients", len(remote), exe, len(client))
	}
	done := make(chan error, 1)
	go func() {
		var out string
		done <- c.Call(ctx, &out, "connecttest.sleep", 30.0)
	}()
	time.Sleep(300 * time.Millisecond)
	began := time.Now()
	s.Kill()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("call succeeded")
		}
		if k := core.KindOf(err); k != "ChannelError" && k != "StreamError" {
			t.Errorf("kind %s: %v", k, err)
		}
		t.Logf("call failed after %v: %v", time.Since(began), err)
	case <-time.After(10 * time.Second):
		t.Fatal("the call did not fail within 10s of sshd's death")
	}
	testbed.ProcessesGone(t, 3*time.Second, append(remote, client...)...)
}

func TestSSHLoginNoise(t *testing.T) {
	s := startSSHD(t)
	// carol's .bashrc (read by bash for ssh commands) prints lines that
	// look like prompts and like the stub's own, but only for connections
	// that send MTC_NOISE, so that other tests using carol see nothing.
	bashrc := filepath.Join("/home", userCarol, ".bashrc")
	old, err := os.ReadFile(bashrc)
	if err != nil {
		t.Fatal(err)
	}
	noise := "[ -n \"$MTC_NOISE\" ] && { echo 'Welcome! password: mitostar:0123456789abcdef:send 1'; echo 'MITOSTAR-READY-ish noise' >&2; }\n"
	if err := os.WriteFile(bashrc, append([]byte(noise), old...), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.WriteFile(bashrc, old, 0o644) })

	var logs strings.Builder
	var mu sync.Mutex
	r := core.NewMaster(core.Options{
		LogLevel: slog.LevelDebug,
		Sink: sinkFunc(func(rec core.LogRecord) {
			mu.Lock()
			fmt.Fprintf(&logs, "[%s] %s\n", rec.Context, rec.Text)
			mu.Unlock()
		}),
		Logger: slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	t.Cleanup(r.Close)
	ctx := testCtx(t, 60*time.Second)
	for i := range 4 { // each transport shipping the binary, then from the cache
		tr := SSHTransports[i/2]
		if i%2 == 0 {
			clearCache(t, userCarol)
		}
		kw := s.kwargs(userCarol, "transport", tr)
		kw["ssh_args"] = []any{"-o", "UserKnownHostsFile=" + s.KnownHosts, "-o", "SetEnv=MTC_NOISE=1"}
		c := mustConnect(t, ctx, r, "ssh", nil, kw)
		if uid, _ := whoami(t, ctx, c); uid != uidOf(t, userCarol) {
			t.Errorf("uid %s", uid)
		}
		r.Disconnect(c)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, want := range []string{"MITOSTAR-READY-ish noise", "Welcome! password:"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the noise %q was not logged:\n%s", want, logs.String())
		}
	}
}

type sinkFunc func(core.LogRecord)

func (f sinkFunc) Log(rec core.LogRecord) { f(rec) }

type lockedWriter struct {
	mu *sync.Mutex
	w  *strings.Builder
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestSudoArgs(t *testing.T) {
	for _, tc := range []struct {
		kw   map[string]any
		want string // the sudo options, or the error
	}{
		{map[string]any{}, "-u root"},
		{map[string]any{"username": "bob", "set_home": true, "preserve_env": true, "login": true}, "-u bob -E -H -i"},
		{map[string]any{"sudo_args": []any{"-H", "--user=carol", "-S", "-n", "-r", "role_r", "--type", "t_t"}}, "-u carol -H -r role_r -t t_t"},
		{map[string]any{"username": "dave", "sudo_args": []any{"-u", "carol"}}, "-u dave"},
		{map[string]any{"sudo_args": []any{"-k"}}, `sudo: unsupported option "-k" in sudo_args`},
		{map[string]any{"sudo_args": []any{"-u"}}, "sudo: sudo_args option -u needs a value"},
		{map[string]any{"set_home": "yes"}, `sudo: set_home must be a bool, got string "yes"`},
	} {
		tr, err := newSudo(nil, &core.ConnectOptions{Kwargs: tc.kw})
		if err != nil {
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%v: error %v, want %q", tc.kw, err, tc.want)
			}
			continue
		}
		got := strings.Join(tr.(*sudoTransport).options(), " ")
		if got != tc.want {
			t.Errorf("%v: options %q, want %q", tc.kw, got, tc.want)
		}
	}
}

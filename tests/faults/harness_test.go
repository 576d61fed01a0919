package faults

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mitostar/mitostar/core"
	"github.com/mitostar/mitostar/internal/testbed"
)

func TestMain(m *testing.M) {
	core.RunRole()
	testbed.QuickRaceExit()
	code := m.Run()
	forgetBinary(farUser)
	os.Exit(code)
}

// A transport is a way to reach a host over ssh. Every fault test runs
// once per transport: a new transport is a new row.
type transport struct {
	name   string
	method string
	// kwargs are the method's keywords to log in to s as user, with a
	// keepalive every interval seconds and the link given up after
	// count of them go unanswered.
	kwargs func(s *testbed.SSHServer, user string, interval, count int) map[string]any
}

var transports = []transport{
	{name: "openssh", method: "ssh", kwargs: func(s *testbed.SSHServer, user string, interval, count int) map[string]any {
		return map[string]any{
			"hostname": s.Host, "port": s.Port, "username": user,
			"identity_file": s.IdentityFile, "check_host_keys": "enforce",
			"ssh_args":           []string{"-o", "UserKnownHostsFile=" + s.KnownHosts},
			"keepalive_interval": interval, "keepalive_count": count,
		}
	}},
	{name: "native", method: "ssh", kwargs: func(s *testbed.SSHServer, user string, interval, count int) map[string]any {
		return map[string]any{
			"hostname": s.Host, "port": s.Port, "username": user, "transport": "native",
			"identity_file": s.IdentityFile, "check_host_keys": "enforce",
			"ssh_args":           []string{"-o", "UserKnownHostsFile=" + s.KnownHosts},
			"keepalive_interval": interval, "keepalive_count": count,
		}
	}},
}

// forEachTransport runs test once per transport, as a subtest.
func forEachTransport(t *testing.T, test func(t *testing.T, tr transport)) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) { test(t, tr) })
	}
}

// The user the far contexts run as.
const farUser = "mtbob"

// Keepalives are sent every interval seconds, and the link is given up
// after count of them go unanswered: a dead link must fail its calls
// within bound.
type keepalive struct{ interval, count int }

func (k keepalive) bound() time.Duration {
	return time.Duration(k.interval*k.count)*time.Second + 2*time.Second
}

// quickKeepalive notices a dead link within 4 s.
var quickKeepalive = keepalive{interval: 1, count: 2}

// A farTree is a test network and a master in it with its tree: the
// master runs on client; far runs on farHost, the host the test breaks,
// with a local child; other runs on otherHost, whose link stays up.
type farTree struct {
	client, farHost, otherHost *testbed.NetHost
	m                          *masterProc
	pids                       treePids
}

// newFarTree builds the network, its two sshd servers and the master's
// tree for tr, with keepalives ka and pending calls left waiting in the
// far context and in its child.
func newFarTree(t *testing.T, tr transport, ka keepalive, pending int) *farTree {
	t.Helper()
	testbed.RequireRoot(t, "ip", "iptables", "tc", "ssh", "/usr/sbin/sshd")
	testbed.Users(t)
	start := time.Now()
	n := testbed.NewNetwork(t)
	ft := &farTree{client: n.Host(t), farHost: n.Host(t), otherHost: n.Host(t)}
	// The servers give up on a silent client too, so that the far side
	// of a cut link does not wait for ever.
	alive := []string{"ClientAliveInterval 1", "ClientAliveCountMax 2"}
	farSSHD, otherSSHD := ft.farHost.SSHD(t, alive...), ft.otherHost.SSHD(t, alive...)
	ft.m = startMaster(t, ft.client, plan{
		Method:  tr.method,
		Far:     tr.kwargs(farSSHD, farUser, ka.interval, ka.count),
		Other:   tr.kwargs(otherSSHD, farUser, ka.interval, ka.count),
		Pending: pending,
		Bound:   ka.bound().Seconds(),
	})
	ft.m.do(t, "tree", &ft.pids, 2*time.Minute)
	t.Logf("network, servers and tree up in %s: %+v", time.Since(start).Round(time.Millisecond), ft.pids)
	return ft
}

// checkCallsFailed checks that every call a fault report lists failed
// with the far context's disconnection, within bound of at; it returns
// the slowest failure.
func checkCallsFailed(t *testing.T, rep faultReport, want int, at time.Time, bound time.Duration) time.Duration {
	t.Helper()
	if len(rep.Calls) != want {
		t.Errorf("%d calls through the far link ended, want %d: %+v", len(rep.Calls), want, rep.Calls)
	}
	var slowest time.Duration
	for _, c := range rep.Calls {
		took := time.Unix(0, c.At).Sub(at)
		slowest = max(slowest, took)
		// A call sent once the context is known gone is refused at once.
		gone := strings.Contains(c.Error, "the respondent Context has disconnected") ||
			(c.Sent == "after" && strings.Contains(c.Error, "no route to "))
		if c.Kind != "ChannelError" || !gone {
			t.Errorf("call into %s sent %s the fault ended with %s %q, want ChannelError: the respondent Context has disconnected", c.Context, c.Sent, c.Kind, c.Error)
		}
		if took > bound {
			t.Errorf("call into %s sent %s the fault failed %s after it, past the bound %s", c.Context, c.Sent, took.Round(time.Millisecond), bound)
		}
	}
	if rep.Disconnect == "" {
		t.Error("the far context was not declared disconnected")
	}
	return slowest
}

// checkRestAnswered checks that the local child and the other host
// answered every call the master made while something else went on.
func checkRestAnswered(t *testing.T, what string, l liveness) {
	t.Helper()
	t.Logf("%s: the local child and the other host answered %d calls, the slowest in %.1f ms", what, l.Answered, l.SlowestMs)
	if len(l.Failed) > 0 || l.Answered == 0 {
		t.Errorf("%s: the rest of the tree answered %d calls and failed %q", what, l.Answered, l.Failed)
	}
	if l.SlowestMs > 1000 {
		t.Errorf("%s: a call to the rest of the tree took %.0f ms", what, l.SlowestMs)
	}
}

// checkReconnect has the master call the old far context (which must
// fail) and connect to the far host anew (which must work).
func (ft *farTree) checkReconnect(t *testing.T) {
	t.Helper()
	var rr callReport
	ft.m.do(t, "reconnect", &rr, time.Minute)
	t.Logf("a new connection to the far host in %.1fs: pid %d %s; a call to the old context: %q", rr.Seconds, rr.Pid, rr.Error, rr.OldError)
	if rr.Error != "" || rr.Pid == 0 || rr.Pid == ft.pids.Far {
		t.Errorf("a new connection to the far host: pid %d (the old one was %d), %s %s", rr.Pid, ft.pids.Far, rr.Kind, rr.Error)
	}
	if rr.OldError == "" {
		t.Error("a call to the old far context worked after it was declared gone")
	}
}

// forgetBinary removes this test binary from user's cache (each build
// of the tests adds one there).
func forgetBinary(user string) {
	self, err := os.Executable()
	if err != nil {
		return
	}
	f, err := os.Open(self)
	if err != nil {
		return
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return
	}
	os.RemoveAll(filepath.Join("/home", user, ".cache", "mitostar", hex.EncodeToString(h.Sum(nil))))
}

// A masterProc is the master role running in a namespace.
type masterProc struct {
	pid    int
	stdin  io.WriteCloser
	lines  chan string
	stderr *testbed.SyncBuffer
	exited chan struct{} // closed once it is reaped, with err set
	err    error
}

// startMaster runs this test binary in the master role inside host's
// namespace with plan p. It is killed, with everything below it, when
// the test ends; before that the master is told to quit, and must exit
// with status 0.
func startMaster(t *testing.T, host *testbed.NetHost, p plan) *masterProc {
	t.Helper()
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := host.Command(self)
	cmd.Env = append(os.Environ(), core.RoleEnv+"="+masterRole, planEnv+"="+string(data))
	m := &masterProc{lines: make(chan string, 16), stderr: &testbed.SyncBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = m.stderr
	if m.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	m.pid = cmd.Process.Pid
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			m.lines <- sc.Text()
		}
		close(m.lines)
		m.err = cmd.Wait()
		close(m.exited)
	}()
	t.Cleanup(func() {
		if !t.Failed() {
			m.quit(t)
		}
		testbed.KillTree(m.pid)
		select {
		case <-m.exited:
		case <-time.After(10 * time.Second):
		}
		if t.Failed() {
			t.Logf("the master's log:\n%s", m.stderr.String())
		}
	})
	return m
}

// do sends the master a command and waits up to d for its answer, which
// is decoded into v.
func (m *masterProc) do(t *testing.T, command string, v any, d time.Duration) {
	t.Helper()
	if _, err := io.WriteString(m.stdin, command+"\n"); err != nil {
		t.Fatalf("telling the master %q: %v", command, err)
	}
	word, _, _ := strings.Cut(command, " ")
	select {
	case line, ok := <-m.lines:
		if !ok {
			<-m.exited
			t.Fatalf("the master exited (%v) instead of answering %q:\n%s", m.err, command, m.stderr.String())
		}
		got, data, _ := strings.Cut(line, " ")
		if got != word {
			t.Fatalf("the master answered %q to %q", line, command)
		}
		if err := json.Unmarshal([]byte(data), v); err != nil {
			t.Fatalf("the master's answer to %q: %v: %s", command, err, data)
		}
	case <-time.After(d):
		t.Fatalf("no answer to %q from the master within %s:\n%s", command, d, m.stderr.String())
	}
}

// quit tells the master to close its tree and exit, which it must do
// within 30 s with status 0 and no data race reported.
func (m *masterProc) quit(t *testing.T) {
	t.Helper()
	io.WriteString(m.stdin, "quit\n")
	m.stdin.Close()
	select {
	case <-m.exited:
		if m.err != nil {
			t.Errorf("the master: %v\n%s", m.err, m.stderr.String())
		}
		if strings.Contains(m.stderr.String(), "DATA RACE") {
			t.Errorf("a data race in the tree:\n%s", m.stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Error("the master did not exit within 30s of quit")
	}
}

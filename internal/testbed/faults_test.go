package testbed

import (
	"io"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestStopContinueKill(t *testing.T) {
	cmd := exec.Command("sleep", "1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	Stop(t, pid)
	if st, _ := readStat(pid); st.state != 'T' {
		t.Fatalf("after Stop: state %c", st.state)
	}
	Continue(t, pid)
	if st, _ := readStat(pid); st.state == 'T' {
		t.Fatalf("after Continue: state %c", st.state)
	}
	Stop(t, pid)
	Kill(t, pid) // a stopped process dies of SIGKILL too
	if Alive(pid) {
		t.Fatal("alive after Kill")
	}

	// A process left stopped is continued by the cleanup.
	other := exec.Command("sleep", "1000")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Process.Kill(); other.Wait() })
	t.Run("left-stopped", func(t *testing.T) { Stop(t, other.Process.Pid) })
	if st, _ := readStat(other.Process.Pid); st.state == 'T' {
		t.Error("a process stopped in a subtest is still stopped after it")
	}
}

// sshFrom starts ssh from one host to s, running command, with
// keepalives of one second, two of them unanswered: a dead link ends it
// after about 3 s.
func sshFrom(t *testing.T, from *NetHost, s *SSHServer, command string) (*exec.Cmd, io.Reader) {
	t.Helper()
	argv := append([]string{"ssh", "-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=2", "-o", "ConnectTimeout=2"}, s.SSHArgs()...)
	cmd := from.Command(append(argv, "mtalice@"+s.Host, command)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
	return cmd, out
}

// waitExit waits up to d for cmd and returns how long it took.
func waitExit(t *testing.T, cmd *exec.Cmd, d time.Duration) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return time.Since(start), err
	case <-time.After(d):
		t.Fatalf("%v still running after %s", cmd.Args, d)
		return 0, nil
	}
}

func TestNetworkCutRestoreSlow(t *testing.T) {
	RequireRoot(t, "ip", "iptables", "tc")
	n := NewNetwork(t)
	client, server := n.Host(t), n.Host(t)
	if client.Addr != "10.77.0.1" || server.Addr != "10.77.0.2" {
		t.Fatalf("addresses %s, %s", client.Addr, server.Addr)
	}
	s := server.SSHD(t)
	if s.Host != server.Addr || s.Port != 22 {
		t.Fatalf("sshd on %s", s.Addr())
	}
	if got := strings.TrimSpace(s.RunFrom(t, client, "mtalice", "id -un")); got != "mtalice" {
		t.Fatalf("id -un over the test network = %q", got)
	}
	// The guard: from the root namespace the address is unreachable at once.
	start := time.Now()
	out, err := runErr(10*time.Second, nil, append([]string{"ssh", "-o", "ConnectTimeout=5"}, append(s.SSHArgs(), "mtalice@"+s.Host, "true")...)...)
	if err == nil || time.Since(start) > 3*time.Second {
		t.Errorf("ssh to %s from the root namespace: %v after %s: %s", s.Host, err, time.Since(start), out)
	}

	for _, mode := range []CutMode{LinkDown, DropPackets} {
		t.Run(mode.String(), func(t *testing.T) {
			cmd, stdout := sshFrom(t, client, s, "echo up; exec sleep 1000")
			buf := make([]byte, 3)
			if _, err := io.ReadFull(stdout, buf); err != nil || string(buf) != "up\n" {
				t.Fatalf("session output %q, %v", buf, err)
			}
			server.Cut(t, mode)
			took, err := waitExit(t, cmd, 15*time.Second)
			t.Logf("%s: a live ssh session with 1 s keepalives ended after %s: %v", mode, took.Round(time.Millisecond), err)
			if cmd.ProcessState.ExitCode() != 255 || took > 5*time.Second {
				t.Errorf("ssh after the cut: %v after %s, want exit status 255 within 5s", err, took)
			}
			if out, err := client.Try(10*time.Second, append([]string{"ssh", "-o", "ConnectTimeout=1"}, append(s.SSHArgs(), "mtalice@"+s.Host, "true")...)...); err == nil {
				t.Errorf("a new ssh while the link is cut worked: %s", out)
			}
			server.Restore(t)
			if got := strings.TrimSpace(s.RunFrom(t, client, "mtalice", "echo back")); got != "back" {
				t.Errorf("after Restore: %q", got)
			}
		})
	}

	t.Run("slow", func(t *testing.T) {
		const size = 256 << 10
		fetch := func() time.Duration {
			start := time.Now()
			out := s.RunFrom(t, client, "mtalice", "head -c 262144 /dev/zero")
			if len(out) != size {
				t.Fatalf("fetched %d bytes, want %d", len(out), size)
			}
			return time.Since(start)
		}
		fast := fetch()
		server.Slow(t, "1mbit")
		slow := fetch()
		server.Unslow(t)
		again := fetch()
		t.Logf("256 KiB over ssh: %s, at 1 mbit/s %s, then %s", fast.Round(time.Millisecond), slow.Round(time.Millisecond), again.Round(time.Millisecond))
		// 2 Mbit at 1 mbit/s take 2 s, ssh's own traffic aside.
		if slow < 1500*time.Millisecond || slow < fast+time.Second {
			t.Errorf("at 1 mbit/s the fetch took %s (%s unlimited)", slow, fast)
		}
	})
}

func TestNetworkRemovedAfterTest(t *testing.T) {
	RequireRoot(t, "ip")
	var names []string
	t.Run("net", func(t *testing.T) {
		n := NewNetwork(t)
		h := n.Host(t)
		names = []string{n.Switch, h.NS}
		if out := h.Run(t, 10*time.Second, "ip", "-br", "addr", "show", "eth0"); !strings.Contains(out, "10.77.0.1/24") {
			t.Errorf("eth0 in %s: %q", h.NS, out)
		}
	})
	out, err := runErr(10*time.Second, nil, "ip", "netns", "list")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if strings.Contains(out, name) {
			t.Errorf("namespace %s is left after its test", name)
		}
	}
}

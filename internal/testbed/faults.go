package testbed

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Fault injection: freeze, resume and kill processes, and cut, restore
// and slow the link of a NetHost. Tests use these to check how the tree
// behaves when a context or a connection fails, the same way for every
// transport. Every fault is undone or made harmless when the test ends:
// a process stopped here is continued by the test's cleanup (the process
// itself is killed by whoever started it), and links live in the test's
// own namespaces, deleted with its Network.

// Stop freezes pid with SIGSTOP and returns once the kernel reports it
// stopped. The test's cleanup sends SIGCONT, so that a process stopped
// here never stays frozen past the test.
func Stop(t testing.TB, pid int) {
	t.Helper()
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGCONT) })
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("testbed: stopping %d: %v", pid, err)
	}
	waitState(t, pid, "stopped", func(s byte) bool { return s == 'T' || s == 't' })
}

// Continue resumes a process stopped with Stop (SIGCONT) and returns
// once the kernel no longer reports it stopped.
func Continue(t testing.TB, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatalf("testbed: continuing %d: %v", pid, err)
	}
	waitState(t, pid, "running", func(s byte) bool { return s != 'T' && s != 't' })
}

// Kill sends SIGKILL to pid and waits up to 10 s for it to be gone (a
// zombie counts as gone), failing the test otherwise.
func Kill(t testing.TB, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && err != syscall.ESRCH {
		t.Fatalf("testbed: killing %d: %v", pid, err)
	}
	if !ProcessesGone(t, 10*time.Second, pid) {
		t.FailNow()
	}
}

// waitState waits up to 5 s until pid's state (from /proc/PID/stat)
// satisfies ok. A process that has exited fails the test.
func waitState(t testing.TB, pid int, want string, ok func(byte) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, found := readStat(pid)
		if !found || st.state == 'Z' || st.state == 'X' {
			t.Fatalf("testbed: process %d exited while it was to be %s", pid, want)
		}
		if ok(st.state) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testbed: process %d is not %s after 5s (state %c)", pid, want, st.state)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A CutMode says how Cut stops a host's packets.
type CutMode int

const (
	// LinkDown takes the switch's end of the host's veth pair down: the
	// host's eth0 loses its carrier, as when a cable is pulled.
	LinkDown CutMode = iota + 1
	// DropPackets makes iptables drop everything in and out of eth0
	// inside the host's namespace: the link stays up and packets vanish,
	// as behind a firewall that starts dropping a connection.
	DropPackets
)

func (m CutMode) String() string {
	switch m {
	case LinkDown:
		return "link-down"
	case DropPackets:
		return "drop"
	}
	return fmt.Sprintf("CutMode(%d)", int(m))
}

// dropRules are the iptables rules of DropPackets, in the host's
// namespace (-w: iptables' lock is shared by every namespace).
var dropRules = [][]string{
	{"INPUT", "-i", "eth0", "-j", "DROP"},
	{"OUTPUT", "-o", "eth0", "-j", "DROP"},
}

// Cut stops every packet to and from the host, the way mode says, until
// Restore. TCP connections through the link stay open at both ends and
// hear nothing more: only keepalives or timeouts notice.
func (h *NetHost) Cut(t testing.TB, mode CutMode) {
	t.Helper()
	if h.cut != 0 {
		t.Fatalf("testbed: %s is already cut (%s)", h.NS, h.cut)
	}
	switch mode {
	case LinkDown:
		h.Net.ip(t, h.Net.Switch, "link", "set", h.Port, "down")
	case DropPackets:
		RequireRoot(t, "iptables")
		for _, rule := range dropRules {
			h.Run(t, 30*time.Second, append([]string{"iptables", "-w", "10", "-I"}, rule...)...)
		}
	default:
		t.Fatalf("testbed: unknown cut mode %s", mode)
	}
	h.cut = mode
}

// Restore undoes Cut and returns once the host's interface and its
// switch port are up again.
func (h *NetHost) Restore(t testing.TB) {
	t.Helper()
	switch h.cut {
	case 0:
		t.Fatalf("testbed: %s is not cut", h.NS)
	case LinkDown:
		h.Net.ip(t, h.Net.Switch, "link", "set", h.Port, "up")
	case DropPackets:
		for _, rule := range dropRules {
			h.Run(t, 30*time.Second, append([]string{"iptables", "-w", "10", "-D"}, rule...)...)
		}
	}
	h.cut = 0
	h.waitLinkUp(t)
}

// waitLinkUp waits up to 10 s for eth0 and the switch port to report
// LOWER_UP (carrier on both ends).
func (h *NetHost) waitLinkUp(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		a, _ := runErr(10*time.Second, nil, "ip", "-n", h.NS, "link", "show", "eth0")
		b, _ := runErr(10*time.Second, nil, "ip", "-n", h.Net.Switch, "link", "show", h.Port)
		if strings.Contains(a, "LOWER_UP") && strings.Contains(b, "LOWER_UP") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testbed: the link of %s is not up after 10s:\n%s\n%s", h.NS, a, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Slow limits the host's link to rate in each direction (tc's rate
// syntax: "1mbit", "200kbit") with a token bucket filter (tbf) on both
// ends of its veth pair, until Unslow. (This kernel has no netem, so
// delay, loss and reordering cannot be injected; a rate limit that fills
// queues makes latency grow under load.)
func (h *NetHost) Slow(t testing.TB, rate string) {
	t.Helper()
	RequireRoot(t, "tc")
	tbf := []string{"root", "tbf", "rate", rate, "burst", "16kb", "latency", "1s"}
	run(t, 30*time.Second, nil, append([]string{"tc", "-n", h.Net.Switch, "qdisc", "replace", "dev", h.Port}, tbf...)...)
	run(t, 30*time.Second, nil, append([]string{"tc", "-n", h.NS, "qdisc", "replace", "dev", "eth0"}, tbf...)...)
	h.slow = true
}

// Unslow removes the rate limits Slow put in place.
func (h *NetHost) Unslow(t testing.TB) {
	t.Helper()
	if !h.slow {
		t.Fatalf("testbed: %s is not slowed", h.NS)
	}
	run(t, 30*time.Second, nil, "tc", "-n", h.Net.Switch, "qdisc", "del", "dev", h.Port, "root")
	run(t, 30*time.Second, nil, "tc", "-n", h.NS, "qdisc", "del", "dev", "eth0", "root")
	h.slow = false
}

package testbed

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// BlackholeNet is the test network (see Network), which network
// namespaces use; from the root namespace it must never be routed.
const BlackholeNet = "10.77.0.0/24"

// Blackhole installs the test network's guard: a blackhole route for
// BlackholeNet in the root network namespace, so that a connection to
// a test address made outside the test namespaces fails at once instead
// of leaving the machine. The route is left in place when the test ends
// (other test processes may rely on it, and it is harmless).
func Blackhole(t testing.TB) {
	t.Helper()
	RequireRoot(t, "ip")
	err := withLock("blackhole", func() error {
		out, err := runErr(30*time.Second, nil, "ip", "route", "show", "type", "blackhole", BlackholeNet)
		if err != nil {
			return err
		}
		if strings.Contains(out, BlackholeNet[:len(BlackholeNet)-3]) {
			return nil
		}
		_, err = runErr(30*time.Second, nil, "ip", "route", "add", "blackhole", BlackholeNet)
		return err
	})
	if err != nil {
		t.Fatalf("testbed: blackhole guard: %v", err)
	}
}

// A Network is a test network, made for one test: a
// switch namespace holding a bridge, and host namespaces (Host), each
// joined to the bridge by a veth pair and addressed in BlackholeNet.
// Namespace names carry this process's pid, so that test processes
// running at the same time never share one; the namespaces are deleted
// when the test ends, after the processes started in them were stopped
// by their own cleanups.
type Network struct {
	Switch string // the switch namespace, which holds br0 and every host's port
	prefix string
	hosts  int
	ns     []string // every namespace made, deleted in reverse order
}

// A NetHost is a network namespace on a Network, with one interface
// eth0 at Addr. Programs run in it through Command (ip netns exec).
type NetHost struct {
	Net  *Network
	NS   string // the namespace's name
	Addr string // its address, 10.77.0.N
	Port string // the switch's end of its veth pair, in Net.Switch

	cut  CutMode // the fault Cut put in place, if any
	slow bool    // Slow put rate limits in place
}

// netSeq numbers the networks of this process.
var netSeq atomic.Int64

// NewNetwork creates an empty test network behind the Blackhole guard
// (namespaces left behind by test processes that died are deleted
// first).
func NewNetwork(t testing.TB) *Network {
	t.Helper()
	RequireRoot(t, "ip")
	Blackhole(t)
	removeStaleNamespaces()
	n := &Network{prefix: fmt.Sprintf("mt-%d-%d-", os.Getpid(), netSeq.Add(1))}
	n.Switch = n.prefix + "sw"
	t.Cleanup(func() {
		for i := len(n.ns) - 1; i >= 0; i-- {
			if _, err := runErr(30*time.Second, nil, "ip", "netns", "del", n.ns[i]); err != nil {
				t.Errorf("testbed: %v", err)
			}
		}
	})
	n.addNS(t, n.Switch)
	n.ip(t, n.Switch, "link", "add", "br0", "type", "bridge")
	n.ip(t, n.Switch, "link", "set", "br0", "up")
	return n
}

// addNS creates a namespace with its loopback interface up, deleted
// when the test ends.
func (n *Network) addNS(t testing.TB, name string) {
	t.Helper()
	run(t, 30*time.Second, nil, "ip", "netns", "add", name)
	n.ns = append(n.ns, name)
	n.ip(t, name, "link", "set", "lo", "up")
}

// Host adds a namespace to the network with the next free address
// (10.77.0.1 first) and its loopback interface up.
func (n *Network) Host(t testing.TB) *NetHost {
	t.Helper()
	n.hosts++
	if n.hosts > 250 {
		t.Fatal("testbed: a test network holds at most 250 hosts")
	}
	h := &NetHost{
		Net:  n,
		NS:   n.prefix + "h" + strconv.Itoa(n.hosts),
		Addr: "10.77.0." + strconv.Itoa(n.hosts),
		Port: "p" + strconv.Itoa(n.hosts),
	}
	n.addNS(t, h.NS)
	// Both ends are created in their namespaces: the root namespace
	// never holds them, so names cannot clash with other tests'.
	run(t, 30*time.Second, nil, "ip", "link", "add", "eth0", "netns", h.NS, "type", "veth", "peer", "name", h.Port, "netns", n.Switch)
	n.ip(t, n.Switch, "link", "set", h.Port, "master", "br0", "up")
	n.ip(t, h.NS, "addr", "add", h.Addr+"/24", "dev", "eth0")
	n.ip(t, h.NS, "link", "set", "eth0", "up")
	return h
}

// ip runs ip -n ns ARGS.
func (n *Network) ip(t testing.TB, ns string, args ...string) {
	t.Helper()
	run(t, 30*time.Second, nil, append([]string{"ip", "-n", ns}, args...)...)
}

// Command returns a command that runs argv inside the host's namespace
// (ip netns exec, which execs argv: the process keeps ip's pid). It
// starts its own process group, so that KillTree or a kill of -pid
// reaches what it starts.
func (h *NetHost) Command(argv ...string) *exec.Cmd {
	cmd := exec.Command("ip", append([]string{"netns", "exec", h.NS}, argv...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

// Run runs argv inside the host's namespace with a deadline and returns
// its combined output; a failure fails the test.
func (h *NetHost) Run(t testing.TB, timeout time.Duration, argv ...string) string {
	t.Helper()
	return run(t, timeout, nil, append([]string{"ip", "netns", "exec", h.NS}, argv...)...)
}

// Try is Run that returns the error instead of failing the test.
func (h *NetHost) Try(timeout time.Duration, argv ...string) (string, error) {
	return runErr(timeout, nil, append([]string{"ip", "netns", "exec", h.NS}, argv...)...)
}

// removeStaleNamespaces deletes the namespaces NewNetwork made in test
// processes that are gone (killed before their cleanup ran).
func removeStaleNamespaces() {
	withLock("netns", func() error {
		out, err := runErr(30*time.Second, nil, "ip", "netns", "list")
		if err != nil {
			return err
		}
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) == 0 {
				continue
			}
			parts := strings.SplitN(f[0], "-", 4)
			if len(parts) != 4 || parts[0] != "mt" {
				continue
			}
			pid, err := strconv.Atoi(parts[1])
			if err != nil || pid <= 0 || Alive(pid) {
				continue
			}
			if _, err := strconv.Atoi(parts[2]); err != nil {
				continue
			}
			runErr(30*time.Second, nil, "ip", "netns", "del", f[0])
		}
		return nil
	})
}

// SilentAddr is an address that never answers inside a SilentNetns: a
// connection to it waits until the caller's own deadline.
const SilentAddr = "10.77.0.99"

// SilentNetns creates a network namespace for t (deleted when the test
// ends) whose only route leads to BlackholeNet over a veth pair with
// nobody at the far end, and a static neighbour entry for SilentAddr: a
// SYN to SilentAddr leaves and is never answered, and no packet leaves
// the namespace. The root namespace's guard (Blackhole) is installed
// first. It returns the namespace's name.
func SilentNetns(t testing.TB) string {
	t.Helper()
	Blackhole(t)
	b := make([]byte, 4)
	rand.Read(b)
	ns := "mt-silent-" + hex.EncodeToString(b)
	run(t, 30*time.Second, nil, "ip", "netns", "add", ns)
	t.Cleanup(func() { runErr(30*time.Second, nil, "ip", "netns", "del", ns) })
	for _, argv := range [][]string{
		{"ip", "-n", ns, "link", "set", "lo", "up"},
		{"ip", "-n", ns, "link", "add", "mts0", "type", "veth", "peer", "name", "mts1"},
		{"ip", "-n", ns, "addr", "add", "10.77.0.1/24", "dev", "mts0"},
		{"ip", "-n", ns, "link", "set", "mts0", "up"},
		{"ip", "-n", ns, "link", "set", "mts1", "up"},
		{"ip", "-n", ns, "neigh", "add", SilentAddr, "lladdr", "02:00:00:00:00:99", "dev", "mts0"},
	} {
		run(t, 30*time.Second, nil, argv...)
	}
	return ns
}

// NetnsCommand writes dir/bin/NAME, an executable that runs prog inside
// the network namespace ns (ip netns exec), for a method's *_path
// keyword; it returns its path.
func NetnsCommand(t testing.TB, ns, dir, name, prog string) string {
	t.Helper()
	return writeWrapper(t, dir, name, nil, "ip", "netns", "exec", ns, prog)
}

package testbed

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// BlackholeNet is the test network of TESTBED §6, which network
// namespaces use; from the root namespace it must never be routed.
const BlackholeNet = "10.77.0.0/24"

// Blackhole installs the guard of TESTBED §6: a blackhole route for
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

// A Network is the test network of TESTBED §6: a switch namespace with a
// bridge, and host namespaces plugged into it, host i (from 0) with the
// address 10.77.0.(i+1)/24 on its eth0. Names carry the test process's
// pid, so that concurrent test processes do not share them.
type Network struct {
	Switch string   // the switch namespace
	Hosts  []string // the host namespaces
	Addrs  []string // their addresses
}

var networkSeq int

// NewNetwork creates a network of n hosts behind the blackhole guard
// and deletes its namespaces when the test ends (after the daemons the
// test starts later are stopped: cleanups run last first).
func NewNetwork(t testing.TB, n int) *Network {
	t.Helper()
	Blackhole(t)
	networkSeq++
	prefix := fmt.Sprintf("mt%dn%d", os.Getpid(), networkSeq)
	nw := &Network{Switch: prefix + "-sw"}
	t.Cleanup(func() {
		for _, ns := range append(nw.Hosts, nw.Switch) {
			runErr(30*time.Second, nil, "ip", "netns", "del", ns)
		}
	})
	ip := func(args ...string) { run(t, 30*time.Second, nil, append([]string{"ip"}, args...)...) }
	ip("netns", "add", nw.Switch)
	ip("-n", nw.Switch, "link", "set", "lo", "up")
	ip("-n", nw.Switch, "link", "add", "br0", "type", "bridge")
	ip("-n", nw.Switch, "link", "set", "br0", "up")
	for i := range n {
		h := fmt.Sprintf("%s-h%d", prefix, i+1)
		addr := fmt.Sprintf("10.77.0.%d", i+1)
		ip("netns", "add", h)
		nw.Hosts = append(nw.Hosts, h)
		nw.Addrs = append(nw.Addrs, addr)
		ip("-n", h, "link", "set", "lo", "up")
		ip("link", "add", "eth0", "netns", h, "type", "veth", "peer", "name", fmt.Sprintf("p%d", i+1), "netns", nw.Switch)
		ip("-n", nw.Switch, "link", "set", fmt.Sprintf("p%d", i+1), "master", "br0", "up")
		ip("-n", h, "addr", "add", addr+"/24", "dev", "eth0")
		ip("-n", h, "link", "set", "eth0", "up")
	}
	return nw
}

// Cut takes host i's port on the switch down: its packets are lost from
// then on, and nothing tells either end.
func (nw *Network) Cut(t testing.TB, i int) {
	t.Helper()
	run(t, 30*time.Second, nil, "ip", "-n", nw.Switch, "link", "set", fmt.Sprintf("p%d", i+1), "down")
}

// Command returns a command that runs argv inside host i's namespace.
func (nw *Network) Command(i int, argv ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", nw.Hosts[i]}, argv...)...)
}

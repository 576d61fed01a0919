package testbed

import (
	"crypto/rand"
	"encoding/hex"
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

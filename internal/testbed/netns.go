package testbed

import (
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

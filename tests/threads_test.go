package tests

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// A master's threads do not grow with its children: every stream, every
// child's stderr and every child's exit are waited for in the runtime's
// poller, not on a thread of their own. The master runs the real binary
// (not the race-instrumented test binary) with 10 and then 200 children
// and reports its thread count after calling each of them.
func TestThreadsDoNotGrowWithChildren(t *testing.T) {
	mitostar := build(t, "cmd/mitostar")
	dir := t.TempDir()
	script := filepath.Join(dir, "threads.star")
	src := `
def threads():
    for line in exec.run(["cat", "/proc/%d/status" % os.getpid()], check = True).stdout.splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])

def main():
    kids = []
    for n in [10, 200]:
        for _ in range(n - len(kids)):
            kids.append(router.local())
        pids = Select.all([k.call_async(os.getpid) for k in kids])
        if len(pids) != n:
            fail("%d answers from %d children" % (len(pids), n))
        print(n, threads())
`
	if err := os.WriteFile(script, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ := runExample(t, dir, mitostar, script)
	counts := map[int]int{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			t.Fatalf("unexpected output %q", out)
		}
		n, _ := strconv.Atoi(f[0])
		c, _ := strconv.Atoi(f[1])
		counts[n] = c
	}
	t.Logf("threads: %d with 10 children, %d with 200", counts[10], counts[200])
	if counts[10] == 0 || counts[200] == 0 {
		t.Fatalf("no thread counts in %q", out)
	}
	// A thread per child would be 200 or more. The runtime keeps the
	// threads that served blocking system calls while children started
	// (forks, exec pipes), so how many depends on the machine's load, not
	// on the number of children: a fixed bound, not a comparison.
	if counts[200] > 24 {
		t.Fatalf("the master runs %d threads with 200 children (%d with 10): want a small fixed number", counts[200], counts[10])
	}
}

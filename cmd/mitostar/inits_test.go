package main

import (
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
)

// TestMasterPackagesInitLittle: every context runs every package init of
// the binary when it starts, a child too, so the packages only a master
// uses build nothing in theirs (regexps, tables): they do that at first
// use. A child's memory at start depends on it.
func TestMasterPackagesInitLittle(t *testing.T) {
	cmd := exec.Command(os.Args[0], "version")
	cmd.Env = append(os.Environ(), cliEnv+"=1", "GODEBUG=inittrace=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mitostar version: %v\n%s", err, out)
	}
	line := regexp.MustCompile(`(?m)^init (\S+) @.* ms clock, (\d+) bytes, (\d+) allocs$`)
	allocated := map[string]int{}
	for _, m := range line.FindAllStringSubmatch(string(out), -1) {
		allocated[m[1]], _ = strconv.Atoi(m[2])
	}
	if len(allocated) == 0 {
		t.Fatalf("no init trace in the output:\n%s", out)
	}
	for _, pkg := range []string{"bundle", "check", "docs", "fanout", "inventory", "repl"} {
		if n := allocated["github.com/mitostar/mitostar/"+pkg]; n > 512 {
			t.Errorf("package %s allocates %d bytes in its inits (want at most 512)", pkg, n)
		}
	}
}

package main

import (
	"strings"
	"testing"
)

// mitostar check prints each problem as file:line: message on stdout and
// exits 1; a sound script exits 0 and prints nothing; bad usage exits 2.
func TestCheck(t *testing.T) {
	t.Parallel()
	dir := script(t, map[string]string{
		"good.star":     "load(\"lib/util.star\", \"twice\")\n\ndef main():\n    print(router.local().call(twice, 2))\n",
		"lib/util.star": "def twice(x):\n    return 2 * x\n",
		"bad.star": `load("lib/util.star", "twice", "thrice")

def main():
    c = router.local()
    c.call(lambda: 1)
    c.call(twice)
    print(nothing)
`,
	})
	r := mitostar(t, dir, nil, "check", "good.star")
	r.want(t, 0)
	if r.stdout != "" || r.stderr != "" {
		t.Errorf("a sound script printed:\nstdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	}
	r = mitostar(t, dir, nil, "check", "bad.star")
	r.want(t, 1)
	want := "bad.star:1: load: module lib/util.star has no global named thrice\n" +
		"bad.star:5: c.call: a lambda cannot run in another context: functions travel by reference (module path and name), and an anonymous function has none; define it with def at the top level of a module\n" +
		"bad.star:6: c.call: twice is missing 1 argument: x\n" +
		"bad.star:7: undefined: nothing\n"
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
	contains(t, "stderr", r.stderr, "mitostar check: 4 problems\n")

	// -I adds a module root, as it does for a run.
	other := script(t, map[string]string{"extra/m.star": "def m():\n    return 1\n", "s.star": "load(\"m.star\", \"m\")\n"})
	mitostar(t, other, nil, "check", "s.star").want(t, 1)
	mitostar(t, other, nil, "check", "-I", "extra", "s.star").want(t, 0)

	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"check"}, "mitostar check: want one script"},
		{[]string{"check", "a.star", "b.star"}, "mitostar check: want one script"},
		{[]string{"check", "nothere.star"}, "mitostar check: stat nothere.star: no such file or directory"},
		{[]string{"check", "-I", "nothere", "good.star"}, "mitostar check: -I nothere: no such file or directory"},
		{[]string{"check", "--bogus", "good.star"}, "mitostar check: flag provided but not defined: --bogus"},
	} {
		r := mitostar(t, dir, nil, tc.args...)
		r.want(t, 2)
		if !strings.HasPrefix(r.stderr, tc.msg) {
			t.Errorf("%v: stderr %q, want it to start with %q", tc.args, r.stderr, tc.msg)
		}
	}
}

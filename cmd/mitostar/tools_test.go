package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mitostar/mitostar/bundle"
	"github.com/mitostar/mitostar/internal/testbed"
	"github.com/mitostar/mitostar/internal/trailer"
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

const bundleApp = `load("lib/work.star", "work")

def main():
    c = router.local()
    print("argv", argv)
    print("child", c.call(work, 21), c.call(os.getpid) != os.getpid())
    print("hosts", [h.name for h in inventory.hosts()])
`

// A bundle runs its script from an empty directory with no source
// beside it: the module a local child calls is inside, the inventory
// too, and the run's flags and arguments pass through. Its temporary
// files are gone when it ends.
func TestBundle(t *testing.T) {
	t.Parallel()
	src := script(t, map[string]string{
		"app.star":      bundleApp,
		"lib/work.star": "def work(x):\n    return 2 * x\n",
		"hosts.ini":     "web1\nweb2\ndb1\n",
	})
	out := filepath.Join(t.TempDir(), "app")
	r := mitostar(t, src, nil, "bundle", "app.star", "-o", out, "-i", "hosts.ini")
	r.want(t, 0)
	contains(t, "stdout", r.stdout, out+": app.star for "+goruntime.GOOS+"/"+goruntime.GOARCH+" with 2 modules, 0 other files and 1 inventory source\n")
	// No source left anywhere the bundle could read it.
	if err := os.RemoveAll(src); err != nil {
		t.Fatal(err)
	}
	empty, tmp := t.TempDir(), t.TempDir()
	env := []string{"TMPDIR=" + tmp}

	r = runFile(t, empty, out, env, "one", "two")
	r.want(t, 0)
	if want := "argv [\"one\", \"two\"]\nchild 42 True\nhosts [\"web1\", \"web2\", \"db1\"]\n"; r.stdout != want {
		t.Errorf("stdout %q, want %q", r.stdout, want)
	}
	// The flags of a run, then arguments; after --, flags are arguments.
	r = runFile(t, empty, out, env, "--limit", "web*:!web2", "-v", "--", "-x", "--y")
	r.want(t, 0)
	if want := "argv [\"-x\", \"--y\"]\nchild 42 True\nhosts [\"web1\"]\n"; r.stdout != want {
		t.Errorf("stdout %q, want %q", r.stdout, want)
	}
	contains(t, "stderr", r.stderr, "DEBUG")
	// -i replaces the bundled inventory.
	r = runFile(t, empty, out, env, "-i", "h9,", "x")
	r.want(t, 0)
	contains(t, "stdout", r.stdout, "hosts [\"h9\"]\n")
	// A bad flag is bad usage, as for mitostar SCRIPT.
	r = runFile(t, empty, out, env, "--bogus")
	r.want(t, 2)
	contains(t, "stderr", r.stderr, "mitostar: flag provided but not defined: --bogus")
	if left, _ := os.ReadDir(tmp); len(left) > 0 {
		t.Errorf("the bundle left files in TMPDIR: %v", left)
	}
	if left, _ := os.ReadDir(empty); len(left) > 0 {
		t.Errorf("the bundle wrote into its working directory: %v", left)
	}
}

// A bundle of a script with problems is refused; so is bad usage.
func TestBundleErrors(t *testing.T) {
	t.Parallel()
	dir := script(t, map[string]string{
		"bad.star":  "def main():\n    router.local().call(lambda: 1)\n",
		"good.star": "def main():\n    print(1)\n",
	})
	r := mitostar(t, dir, nil, "bundle", "bad.star", "-o", "out")
	r.want(t, 1)
	contains(t, "stderr", r.stderr, "bad.star:2: router.local().call: a lambda cannot run in another context",
		"mitostar bundle: bad.star has 1 problem (see mitostar check): not bundled")
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"bundle", "good.star"}, 2, "mitostar bundle: want the output file"},
		{[]string{"bundle", "-o", "x"}, 2, "mitostar bundle: want one script"},
		{[]string{"bundle", "good.star", "-o", "x", "--target", "linux"}, 2, `mitostar bundle: --target must be OS/ARCH (linux/arm64), got "linux"`},
		{[]string{"bundle", "good.star", "-o", "x", "-i", "nothere.ini"}, 2, "mitostar bundle: inventory: stat nothere.ini: no such file or directory"},
		{[]string{"bundle", "good.star", "-o", "x", "--target", "plan9/mips"}, 1, "mitostar bundle: no mitostar binary for a plan9/mips target: mitostar-plan9-mips not found"},
	} {
		r := mitostar(t, dir, []string{"MITOSTAR_DIST=" + t.TempDir()}, tc.args...)
		r.want(t, tc.code)
		if !strings.HasPrefix(r.stderr, tc.msg) {
			t.Errorf("%v: stderr %q, want it to start with %q", tc.args, r.stderr, tc.msg)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "out")); err == nil {
		t.Errorf("a refused bundle left its output file")
	}
}

// A bundle for another target starts from mitostar-<os>-<arch> found
// through $MITOSTAR_DIST: built here for linux/arm64, and the bundle is
// an arm64 ELF executable whose archive holds the script.
func TestBundleCrossTarget(t *testing.T) {
	t.Parallel()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(goruntime.GOROOT(), "bin", "go")
	}
	dist := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, goTool, "build", "-o", filepath.Join(dist, "mitostar-linux-arm64"), ".")
	build.Env = append(os.Environ(), "GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build for linux/arm64: %v\n%s", err, out)
	}
	dir := script(t, map[string]string{"app.star": bundleApp, "lib/work.star": "def work(x):\n    return x\n"})
	out := filepath.Join(dir, "app-arm64")
	r := mitostar(t, dir, []string{"MITOSTAR_DIST=" + dist}, "bundle", "--target", "linux/arm64", "app.star", "-o", out)
	r.want(t, 0)
	contains(t, "stdout", r.stdout, "app.star for linux/arm64 with 2 modules")
	f, err := elf.Open(out)
	if err != nil {
		t.Fatalf("the bundle is not an ELF file: %v", err)
	}
	defer f.Close()
	if f.Machine != elf.EM_AARCH64 || f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		t.Errorf("the bundle is %v %v, want an AArch64 executable", f.Machine, f.Type)
	}
	b, err := bundle.Open(out)
	if err != nil || b == nil {
		t.Fatalf("opening the bundle: %v", err)
	}
	defer b.Close()
	if b.Manifest.Target != "linux/arm64" || b.Manifest.Script != "app.star" {
		t.Errorf("manifest %+v", b.Manifest)
	}
	if got, want := b.Files(), []string{"root/0/app.star", "root/0/lib/work.star"}; !slices.Equal(got, want) {
		t.Errorf("files %q, want %q", got, want)
	}
}

const bundleSSH = `load("lib/work.star", "work")

def exe():
    # The executable of this context: the shell's parent.
    return exec.shell("readlink /proc/$PPID/exe", check = True).stdout.strip()

def main():
    host = router.ssh(argv[0], port = int(argv[1]), username = "mtcarol", identity_file = argv[2],
                      ssh_args = ["-o", "UserKnownHostsFile=" + argv[3]], connect_timeout = 20)
    print("over ssh", host.call(work, 5), os.username() != host.call(os.username))
    below = router.local(via = host)
    print("below it", below.call(work, 6))
    print("exe", host.call(exe))
`

// A bundle ships over ssh as mitostar ships itself, but only its binary:
// the target runs the executable part (cached under its sha256) in the
// child role, a function of a bundled module runs there and in a context
// below it, and the script, modules and inventory never reach the
// target's disk.
func TestBundleOverSSH(t *testing.T) {
	testbed.RequireRoot(t, "/usr/sbin/sshd")
	sshd := testbed.SSHD(t)
	src := script(t, map[string]string{"app.star": bundleSSH, "lib/work.star": "def work(x):\n    return x * 10\n"})
	out := filepath.Join(t.TempDir(), "app")
	mitostar(t, src, nil, "bundle", "app.star", "-o", out).want(t, 0)
	os.RemoveAll(src)
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	off, ok, err := trailer.Offset(bytes.NewReader(data), int64(len(data)))
	if err != nil || !ok {
		t.Fatalf("the bundle has no archive: %v", err)
	}
	sum := sha256.Sum256(data[:off])
	r := runFile(t, t.TempDir(), out, nil, sshd.Host, fmt.Sprint(sshd.Port), sshd.IdentityFile, sshd.KnownHosts)
	r.want(t, 0)
	contains(t, "stdout", r.stdout, "over ssh 50 True\n", "below it 60\n", hex.EncodeToString(sum[:]))
	// The target's cached executable (the loopback sshd: this machine).
	exe := regexp.MustCompile(`(?m)^exe (\S+)$`).FindStringSubmatch(r.stdout)
	if exe == nil {
		t.Fatalf("no exe line in %q", r.stdout)
	}
	shipped, err := os.ReadFile(exe[1])
	if err != nil {
		t.Fatal(err)
	}
	if len(shipped) >= len(data) || !bytes.Equal(shipped, data[:off]) {
		t.Errorf("the target's %s (%d bytes) is not the bundle's binary part (%d bytes) alone", exe[1], len(shipped), off)
	}
}

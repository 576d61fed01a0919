package tests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mitostar/mitostar/internal/testbed"
)

// exampleDir is scripts/examples, relative to this package.
var exampleDir = filepath.Join("..", "scripts", "examples")

// binaries built once for the whole package run, in buildDir.
var (
	buildDir  string
	buildMu   sync.Mutex
	built     = map[string]string{} // package → binary
	buildErrs = map[string]error{}
)

// build compiles pkg (relative to the module root) once and returns the
// path of the binary.
func build(t *testing.T, pkg string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if bin, ok := built[pkg]; ok {
		return bin
	}
	if err, ok := buildErrs[pkg]; ok {
		t.Fatal(err)
	}
	if buildDir == "" {
		d, err := os.MkdirTemp("", "mitostar-tests-")
		if err != nil {
			t.Fatal(err)
		}
		buildDir = d
	}
	bin := filepath.Join(buildDir, filepath.Base(pkg))
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", bin, "./"+pkg)
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		buildErrs[pkg] = fmt.Errorf("go build ./%s: %v\n%s", pkg, err, out)
		t.Fatal(buildErrs[pkg])
	}
	built[pkg] = bin
	return bin
}

// runExample runs bin with args in dir and returns its output; a
// non-zero exit or a run longer than a minute fails the test.
func runExample(t *testing.T, dir, bin string, args ...string) (stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %v did not finish within a minute\nstdout:\n%s\nstderr:\n%s", bin, args, out.String(), errb.String())
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		t.Fatalf("%s %v: %v\nstdout:\n%s\nstderr:\n%s", bin, args, err, out.String(), errb.String())
	} else if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(errb.String(), "DATA RACE") {
		t.Errorf("%s %v: data race:\n%s", bin, args, errb.String())
	}
	return out.String(), errb.String()
}

func wantMatch(t *testing.T, what, s string, patterns ...string) {
	t.Helper()
	for _, p := range patterns {
		if !regexp.MustCompile(p).MatchString(s) {
			t.Errorf("%s does not match %q; it is:\n%s", what, p, s)
		}
	}
}

// TestExamples runs every script in scripts/examples with the mitostar
// command, and the embedding example with go build; each case checks
// what the example prints.
func TestExamples(t *testing.T) {
	cases := map[string]func(t *testing.T, mitostar string){
		"hello.star": func(t *testing.T, mitostar string) {
			out, _ := runExample(t, ".", mitostar, filepath.Join(exampleDir, "hello.star"))
			wantMatch(t, "stdout", out, `(?m)^hello world from \S+ \(pid \d+, context 1\)$`, `(?m)^child pid: \d+ master pid: \d+$`)
		},
		"fanout.star": func(t *testing.T, mitostar string) {
			out, _ := runExample(t, ".", mitostar, filepath.Join(exampleDir, "fanout.star"), "3")
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 5 {
				t.Fatalf("want 5 lines, got:\n%s", out)
			}
			// The workers report in whatever order they finish.
			workers := slices.Clone(lines[:3])
			slices.Sort(workers)
			want := []string{
				"worker-0 counted 859 primes in [0, 6666)",
				"worker-1 counted 724 primes in [6666, 13332)",
				"worker-2 counted 679 primes in [13332, 20000)",
			}
			if !slices.Equal(workers, want) {
				t.Errorf("worker lines %q, want %q", workers, want)
			}
			if lines[3] != "3 children: 2262 primes below 20000" || lines[4] != "distinct child pids: 3" {
				t.Errorf("summary %q", lines[3:])
			}
		},
		"stream.star": func(t *testing.T, mitostar string) {
			out, _ := runExample(t, ".", mitostar, filepath.Join(exampleDir, "stream.star"))
			want := "step 1 from producer: 1\nstep 2 from producer: 4\nstep 3 from producer: 9\n" +
				"step 4 from producer: 16\nstep 5 from producer: 25\nthe call returned 5\nsum of squares: 55\n"
			if out != want {
				t.Errorf("stdout = %q, want %q", out, want)
			}
		},
		"errors.star": func(t *testing.T, mitostar string) {
			out, _ := runExample(t, ".", mitostar, filepath.Join(exampleDir, "errors.star"))
			wantMatch(t, "stdout", out,
				`(?m)^risky\(2\) = 20 error: None$`,
				`== remote failure through two contexts\nkind:    CallError\nmessage: fail: n is too large: 3\ncontext: beta\n`+
					`str:     CallError: fail: n is too large: 3\nTraceback \(most recent call last\):\n`+
					`  \[alpha\] errors.star:\d+:\d+: in relay\n  \[beta\] errors.star:\d+:\d+: in risky\n`,
				`== OSError in a child\nkind:    CallError\nmessage: OSError: fs.read /nonexistent/file: no such file or directory\ncontext: alpha\n`,
				`== timeout\nkind:    TimeoutError\nmessage: call timed out after 0.2s\ncontext: alpha\n`,
				`(?m)^alpha still answers: 10$`,
				`== refused locally\nkind:    Error\nmessage: cannot call a lambda in another context`,
				`== dead context\nkind:    ChannelError\nmessage: the respondent Context has disconnected\n`,
				`(?m)^n=1 -> 10\nn=5 failed remotely, using a default\nn=5 -> -1\n\z`)
		},
		"modules.star": func(t *testing.T, mitostar string) {
			// Run from elsewhere: module roots do not depend on the cwd.
			out, _ := runExample(t, t.TempDir(), mitostar, filepath.Join(mustAbs(t, exampleDir), "modules.star"))
			want := "------------------\n| helper modules |\n------------------\n" +
				"in master: 11 words, longest \"modules\"\nin reader: 11 words, longest \"modules\"\n" +
				"--------------------\n| loaded on demand |\n--------------------\n"
			if out != want {
				t.Errorf("stdout = %q, want %q", out, want)
			}
		},
		"many_hosts.star": func(t *testing.T, mitostar string) {
			out, errOut := runExample(t, ".", mitostar, "-i", filepath.Join(exampleDir, "hosts.ini"), "--progress", "never",
				filepath.Join(exampleDir, "many_hosts.star"))
			want := "web hosts: [\"web1\", \"web2\"]\n" +
				"connected: [\"web1\", \"web2\", \"db1\"] unreachable: []\n" +
				"web1 -> web1 (frontend, groups web): hello\n" +
				"web2 -> web2 (frontend, groups web): hello\n" +
				"db1 -> db1 (database, groups db): hello\n" +
				"host in the master: None\n"
			if out != want {
				t.Errorf("stdout = %q, want %q", out, want)
			}
			wantMatch(t, "stderr", errOut, `(?m)^RECAP\n`, `(?m)^db1\s+1\s+0\s+0\s+0\s+0\s+\d+\.\d\ds$`)
		},
		"deploy.star": func(t *testing.T, mitostar string) {
			dir := filepath.Join(t.TempDir(), "demo")
			script := filepath.Join(exampleDir, "deploy.star")
			out, _ := runExample(t, ".", mitostar, "--check", "--diff", script, dir)
			wantMatch(t, "--check --diff", out,
				`(?m)^\[web\] ops\.template \S+/demo/app\.conf: would create file\n--- before: \S+/app\.conf\n\+\+\+ after: \S+/app\.conf\n@@ -0,0 \+1,5 @@\n\+# demo on \S+: written by mitostar's ops\.template\n\+listen = 127\.0\.0\.1:8080\n`,
				`(?m)^changed: would create file; insert block at line 1$`)
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("--check made %s: %v", dir, err)
			}
			out, _ = runExample(t, ".", mitostar, script, dir)
			want := "changed: create directory\nchanged: create file\nchanged: create file; insert line 1\n" +
				"changed: create file; insert block at line 1\nchanged: run sh -c 'echo reloaded >> reloads'\n"
			if out != want {
				t.Errorf("first run: stdout = %q, want %q", out, want)
			}
			out, _ = runExample(t, ".", mitostar, script, dir)
			want = "ok: directory as asked\nok: content, mode and owner as asked\nok: line present\nok: block present\n"
			if out != want {
				t.Errorf("second run: stdout = %q, want %q", out, want)
			}
			if data, err := os.ReadFile(filepath.Join(dir, "reloads")); err != nil || string(data) != "reloaded\n" {
				t.Errorf("the command ran %q, %v; want once", data, err)
			}
		},
		"ssh_sudo.star": func(t *testing.T, mitostar string) {
			sshd := testbed.SSHD(t)
			out, _ := runExample(t, ".", mitostar, filepath.Join(exampleDir, "ssh_sudo.star"),
				sshd.Host, fmt.Sprint(sshd.Port), "root", sshd.IdentityFile, sshd.KnownHosts)
			wantMatch(t, "stdout", out, `(?m)^ssh\.127\.0\.0\.1:\d+: root \(uid 0\) on \S+$`,
				`(?m)^sudo\.root: root \(uid 0\) on \S+, via ssh\.127\.0\.0\.1:\d+$`)
		},
	}

	mitostar := build(t, "cmd/mitostar")
	scripts, err := filepath.Glob(filepath.Join(exampleDir, "*.star"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range scripts {
		name := filepath.Base(s)
		if cases[name] == nil {
			t.Errorf("scripts/examples/%s has no test in TestExamples", name)
		}
	}
	for name, fn := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fn(t, mitostar)
		})
	}
}

// Every example passes mitostar check.
func TestExamplesCheck(t *testing.T) {
	mitostar := build(t, "cmd/mitostar")
	scripts, err := filepath.Glob(filepath.Join(exampleDir, "*.star"))
	if err != nil {
		t.Fatal(err)
	}
	if len(scripts) == 0 {
		t.Fatal("no examples")
	}
	for _, s := range scripts {
		t.Run(filepath.Base(s), func(t *testing.T) {
			out, errOut := runExample(t, ".", mitostar, "check", s)
			if out != "" || errOut != "" {
				t.Errorf("mitostar check %s printed:\n%s%s", s, out, errOut)
			}
		})
	}
}

// modules.star bundled by the built mitostar runs from an empty
// directory, its modules inside the bundle.
func TestExampleBundle(t *testing.T) {
	mitostar := build(t, "cmd/mitostar")
	out := filepath.Join(t.TempDir(), "modules")
	runExample(t, ".", mitostar, "bundle", filepath.Join(exampleDir, "modules.star"), "-o", out)
	got, _ := runExample(t, t.TempDir(), out)
	want := "------------------\n| helper modules |\n------------------\n" +
		"in master: 11 words, longest \"modules\"\nin reader: 11 words, longest \"modules\"\n" +
		"--------------------\n| loaded on demand |\n--------------------\n"
	if got != want {
		t.Errorf("stdout = %q, want %q", got, want)
	}
}

func TestEmbedExample(t *testing.T) {
	bin := build(t, "scripts/examples/embed")
	out, _ := runExample(t, t.TempDir(), bin, "one", "two")
	want := fmt.Sprintf("master: label=master platform=%s/%s\n"+
		"child-0: label=child-0 same host=True other pid=True\n"+
		"child-1: label=child-1 same host=True other pid=True\n"+
		"args: [\"one\", \"two\"]\n", runtime.GOOS, runtime.GOARCH)
	if out != want {
		t.Errorf("stdout = %q, want %q", out, want)
	}
}

// The README's "Embedding in Go" is scripts/examples/readme/main.go,
// verbatim, and that program works: its builtin is known in the master
// and in a child.
func TestReadmeEmbedding(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)### Embedding in Go\n.*?```go\n(.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README.md has no go block under \"### Embedding in Go\"")
	}
	src, err := os.ReadFile(filepath.Join(exampleDir, "readme", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	if string(m[1]) != string(src) {
		t.Errorf("the README's Embedding in Go differs from scripts/examples/readme/main.go:\n%s", m[1])
	}
	bin := build(t, "scripts/examples/readme")
	out, _ := runExample(t, t.TempDir(), bin, filepath.Join(mustAbs(t, exampleDir), "readme", "deploy.star"), "a1")
	if want := "master: [\"web1\", \"web2\"] [\"a1\"]\nworker: [\"web1\", \"web2\"]\n"; out != want {
		t.Errorf("stdout = %q, want %q", out, want)
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

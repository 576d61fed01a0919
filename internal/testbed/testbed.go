// Package testbed stands up real targets for integration tests: a
// throwaway OpenSSH server on 127.0.0.1, test users with known
// passwords, sudo and doas rules, a busybox root filesystem, and the
// container engines (docker, podman, buildah,
// lxc, lxd) with their storage under a temporary directory.
//
// It is imported only from _test.go files. Every helper takes a
// testing.TB, calls t.Helper, and registers what it started or changed
// with t.Cleanup; daemons are stopped by pid, never by name.
//
// A missing tool or missing root skips the test, unless
// MITOSTAR_REQUIRE_INTEGRATION=1 (as in CI), where it fails it.
package testbed

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RequireEnv is the environment variable that turns a missing tool into
// a test failure instead of a skip.
const RequireEnv = "MITOSTAR_REQUIRE_INTEGRATION"

// Strict reports whether integration tests must run (CI): a missing tool
// or privilege is then a failure.
func Strict() bool { return os.Getenv(RequireEnv) == "1" }

// Unavailable skips t because something it needs is missing here (a
// tool, a user, a device, a kernel feature), or fails it when Strict.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if Strict() {
		t.Fatalf(format+" ("+RequireEnv+"=1)", args...)
	}
	t.Skipf(format, args...)
}

// Require checks that each tool is found by exec.LookPath (a name on
// $PATH or a path); a missing one skips the test, or fails it when
// MITOSTAR_REQUIRE_INTEGRATION=1.
func Require(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			Unavailable(t, "integration test needs %s: %v", tool, err)
		}
	}
}

// RequireRoot checks that the test runs as root, then calls Require with
// tools.
func RequireRoot(t testing.TB, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "integration test needs root (euid is %d)", os.Geteuid())
	}
	Require(t, tools...)
}

// The test users and their passwords. They are created once and left in
// place: other test processes may be using them at the same time.
var Passwords = map[string]string{
	"mtalice": "alicepw",
	"mtbob":   "bobpw",
	"mtcarol": "carolpw",
}

// UserNames lists the test users in a fixed order.
var UserNames = []string{"mtalice", "mtbob", "mtcarol"}

var (
	usersOnce sync.Once
	usersErr  error
)

// Users makes sure the test users mtalice, mtbob and mtcarol exist with
// home directories (login shell /bin/bash) and the passwords in
// Passwords. It is idempotent and safe against other test processes
// doing the same (an flock serialises them).
func Users(t testing.TB) {
	t.Helper()
	RequireRoot(t, "useradd", "chpasswd")
	usersOnce.Do(func() {
		usersErr = withLock("users", func() error {
			for _, u := range UserNames {
				if _, err := exec.Command("id", "-u", u).Output(); err == nil {
					continue
				}
				if out, err := exec.Command("useradd", "-m", "-s", "/bin/bash", u).CombinedOutput(); err != nil {
					return fmt.Errorf("useradd %s: %v: %s", u, err, out)
				}
			}
			var in strings.Builder
			for _, u := range UserNames {
				fmt.Fprintf(&in, "%s:%s\n", u, Passwords[u])
			}
			cmd := exec.Command("chpasswd")
			cmd.Stdin = strings.NewReader(in.String())
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("chpasswd: %v: %s", err, out)
			}
			return nil
		})
	})
	if usersErr != nil {
		t.Fatalf("testbed: creating test users: %v", usersErr)
	}
}

// lockDir holds the lock files that serialise edits of shared system
// files between test processes.
const lockDir = "/run/mitostar-testbed"

// withLock runs fn holding an exclusive flock on the lock file name.
func withLock(name string, fn func() error) error {
	if err := os.MkdirAll(lockDir, 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(lockDir, name+".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if err != syscall.EWOULDBLOCK || time.Now().After(deadline) {
			return fmt.Errorf("locking %s: %w", f.Name(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return fn()
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testbed: finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TempDir returns a fresh directory under /tmp with mode 0755 (so that
// the test users can read it), removed when the test ends. Unlike
// t.TempDir its path is short, which unix socket paths need.
func TempDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("testbed: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// procStat is the part of /proc/PID/stat the helpers need.
type procStat struct {
	state byte
	ppid  int
}

func readStat(pid int) (procStat, bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return procStat{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	return procStat{state: f[0][0], ppid: ppid}, true
}

// Alive reports whether pid is a process that has not exited (a zombie
// has exited: PID 1 here reaps late, and kill -0 succeeds on zombies).
func Alive(pid int) bool {
	st, ok := readStat(pid)
	return ok && st.state != 'Z' && st.state != 'X'
}

// Descendants lists the live processes below pid by walking the ppid
// links in /proc, parents before their children.
func Descendants(pid int) []int {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := readStat(p); ok && st.state != 'Z' {
			children[st.ppid] = append(children[st.ppid], p)
		}
	}
	var out []int
	var walk func(int)
	walk = func(p int) {
		kids := children[p]
		sort.Ints(kids)
		for _, c := range kids {
			out = append(out, c)
			walk(c)
		}
	}
	walk(pid)
	return out
}

// KillTree stops pid and every process below it and then kills them
// all with SIGKILL. The tree is frozen with SIGSTOP first, so that no
// process escapes by being reparented while it is being killed.
func KillTree(pid int) {
	stopped := map[int]bool{}
	syscall.Kill(pid, syscall.SIGSTOP)
	stopped[pid] = true
	for range 50 {
		added := false
		for _, p := range Descendants(pid) {
			if !stopped[p] {
				syscall.Kill(p, syscall.SIGSTOP)
				stopped[p] = true
				added = true
			}
		}
		if !added {
			break
		}
	}
	for p := range stopped {
		syscall.Kill(p, syscall.SIGKILL)
	}
}

// cmdline returns a process's command line for messages.
func cmdline(pid int) string {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(strings.ReplaceAll(string(data), "\x00", " "))
}

// ProcessesGone waits up to within for every pid to exit (a zombie
// counts as gone) and reports the survivors, with their command lines,
// as a test error. It returns whether all were gone.
func ProcessesGone(t testing.TB, within time.Duration, pids ...int) bool {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var alive []int
		for _, p := range pids {
			if Alive(p) {
				alive = append(alive, p)
			}
		}
		if len(alive) == 0 {
			return true
		}
		if time.Now().After(deadline) {
			var desc []string
			for _, p := range alive {
				desc = append(desc, fmt.Sprintf("%d (%s)", p, cmdline(p)))
			}
			t.Errorf("processes still running after %s: %s", within, strings.Join(desc, ", "))
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// run runs a command with a deadline and returns its combined output,
// failing the test with that output when it fails.
func run(t testing.TB, timeout time.Duration, env []string, argv ...string) string {
	t.Helper()
	out, err := runErr(timeout, env, argv...)
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	return out
}

// runErr runs a command with a deadline; the error quotes its output.
func runErr(timeout time.Duration, env []string, argv ...string) (string, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var buf strings.Builder
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return buf.String(), fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, strings.TrimSpace(buf.String()))
		}
		return buf.String(), nil
	case <-time.After(timeout):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return buf.String(), fmt.Errorf("%s: no exit within %s: %s", strings.Join(argv, " "), timeout, strings.TrimSpace(buf.String()))
	}
}

// QuickRaceExit drops the race detector's 1 s sleep at exit
// (GORACE=atexit_sleep_ms=0) for the processes a test starts from now
// on, the children it re-executes included: each would otherwise take a
// second longer to go. Races are still reported. Call it from TestMain.
func QuickRaceExit() {
	if g := os.Getenv("GORACE"); !strings.Contains(g, "atexit_sleep_ms") {
		os.Setenv("GORACE", strings.TrimSpace(g+" atexit_sleep_ms=0"))
	}
}

// SyncBuffer collects output that one goroutine writes (a process's
// stderr, a script's print) while others read it.
type SyncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

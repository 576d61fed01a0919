package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/charmbracelet/x/vt"
	"github.com/creack/pty"

	"github.com/mitostar/mitostar/internal/testbed"
)

// ptyRun runs the command in a real terminal of cols×rows, answers the
// prompts in order (each answer once its prompt shows), calls during(),
// once the output shows duringMark, while the run goes on, and returns
// all the bytes the terminal received and the exit status.
func ptyRun(t *testing.T, dir string, env []string, cols, rows int, prompts [][2]string, duringMark string, during func(), args ...string) ([]byte, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := command(ctx, dir, env, args...)
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Cols: uint16(cols), Rows: uint16(rows)})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var mu sync.Mutex
	var out bytes.Buffer
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, 32<<10)
		for {
			n, err := f.Read(buf)
			mu.Lock()
			out.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	seen := func(s string) bool {
		mu.Lock()
		defer mu.Unlock()
		return bytes.Contains(out.Bytes(), []byte(s))
	}
	waitFor := func(s string) {
		deadline := time.Now().Add(time.Minute)
		for !seen(s) {
			if time.Now().After(deadline) {
				mu.Lock()
				t.Fatalf("the terminal never showed %q; it got:\n%q", s, out.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for _, p := range prompts {
		waitFor(p[0])
		io.WriteString(f, p[1]+"\n")
	}
	if during != nil {
		waitFor(duringMark)
		during()
	}
	cmd.Wait()
	<-readDone
	mu.Lock()
	defer mu.Unlock()
	return out.Bytes(), cmd.ProcessState.ExitCode()
}

// screen replays terminal output on an emulated cols×rows screen and
// returns its lines, trailing blanks removed.
func screen(raw []byte, cols, rows int) []string {
	e := vt.NewEmulator(cols, rows)
	e.Write(raw)
	var lines []string
	for _, l := range strings.Split(e.String(), "\n") {
		lines = append(lines, strings.TrimRight(l, " "))
	}
	for len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}

const terminalScript = `
def slow(seconds):
    time.sleep(seconds)
    if host.name == "t2":
        fail("t2 breaks")
    return os.username()

def main():
    hosts = connect("all")
    for r in each(hosts, slow, 1.5):
        print("result", r.host, r.value)
`

// TestFanoutTerminal drives the live display in a real terminal: -K is
// asked and answered there, the display shows running hosts while they
// work and failures as they happen, and the final screen holds the
// failures, the script's output and the recap — no trace of the display,
// no password (-k's for ssh, -K's for sudo). Colour on a terminal, none
// with NO_COLOR.
func TestFanoutTerminal(t *testing.T) {
	testbed.RequireRoot(t, "/usr/sbin/sshd", "sudo")
	sshd := testbed.SSHD(t, "MaxStartups 200:30:400", "MaxSessions 200")
	testbed.Sudoers(t, "mtalice ALL=(ALL:ALL) ALL")
	dir := testbed.TempDir(t, "mt-fo-tty.")
	inv := filepath.Join(dir, "hosts.ini")
	os.WriteFile(inv, []byte(fmt.Sprintf(`t1
t2
t3 ansible_user=mtalice ansible_become=true
t4 ansible_user=mtbob ansible_ssh_private_key_file=/nonexistent/key
r1 ansible_port=%d
[all:vars]
ansible_host=127.0.0.1
ansible_port=%d
ansible_user=mtcarol
ansible_ssh_private_key_file=%s
ansible_ssh_common_args=-o UserKnownHostsFile=%s
`, testbed.FreePort(t), sshd.Port, sshd.IdentityFile, sshd.KnownHosts)), 0o644)
	script := filepath.Join(dir, "tty.star")
	os.WriteFile(script, []byte(terminalScript), 0o644)
	const cols, rows = 100, 30
	password := testbed.Passwords["mtalice"]
	sshPassword := testbed.Passwords["mtbob"]
	prompts := [][2]string{{"SSH password: ", sshPassword}, {"BECOME password: ", password}}
	var argvLeak []string
	checkArgv := func() {
		// While hosts work, no process's command line holds the password.
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			if err == nil && (bytes.Contains(data, []byte(password)) || bytes.Contains(data, []byte(sshPassword))) {
				argvLeak = append(argvLeak, e.Name()+": "+strings.ReplaceAll(string(data), "\x00", " "))
			}
		}
	}
	raw, code := ptyRun(t, dir, []string{"TERM=xterm-256color"}, cols, rows, prompts, "running", checkArgv,
		"-i", inv, "-k", "-K", script)
	if code != 3 {
		t.Errorf("exit status %d, want 3 (t2 failed)", code)
	}
	if len(argvLeak) > 0 {
		t.Errorf("the password is in a process's argv: %q", argvLeak)
	}
	if bytes.Contains(raw, []byte(password)) || bytes.Contains(raw, []byte(sshPassword)) {
		t.Errorf("the password reached the terminal:\n%q", raw)
	}
	lines := screen(raw, cols, rows)
	text := strings.Join(lines, "\n")
	// The display was drawn (with the running hosts and their time)...
	if !regexp.MustCompile(`each slow  \d/4 done  `).Match(raw) || !regexp.MustCompile(`  t\d +\d+\.\ds`).Match(raw) {
		t.Errorf("the live display never showed the running hosts:\n%q", raw)
	}
	// ...in colour, and erased at the end.
	if !bytes.Contains(raw, []byte("\x1b[31")) && !bytes.Contains(raw, []byte(";31m")) {
		t.Errorf("no colour on a terminal:\n%q", raw)
	}
	if strings.Contains(text, "running") || strings.Contains(text, " done ") {
		t.Errorf("the display's block is left on the final screen:\n%s", text)
	}
	wantOnce := []string{
		"[r1] UNREACHABLE",
		"[t2] FAILED",
		"result t1 mtcarol",
		"result t2 None",
		"result t3 root",
		"result t4 mtbob",
		"RECAP",
		"  t2: CallError: fail: t2 breaks",
	}
	for _, w := range wantOnce {
		if n := strings.Count(text, w); n != 1 {
			t.Errorf("the final screen shows %q %d times, want once:\n%s", w, n, text)
		}
	}
	for _, re := range []string{`(?m)^t1\s+1\s+0\s+0\s+0\s+0\s+\d+\.\d\ds$`, `(?m)^t2\s+0\s+0\s+1\s+0\s+0\s`, `(?m)^r1\s+0\s+0\s+0\s+1\s+0\s`} {
		if !regexp.MustCompile(re).MatchString(text) {
			t.Errorf("the final screen lacks the recap line %s:\n%s", re, text)
		}
	}
	// The failures come before the results and the recap, in order.
	if i, j, k := strings.Index(text, "[t2] FAILED"), strings.Index(text, "result t1"), strings.Index(text, "RECAP"); !(i < j && j < k) {
		t.Errorf("the final screen is out of order:\n%s", text)
	}

	// NO_COLOR: the same display without colours.
	raw, _ = ptyRun(t, dir, []string{"TERM=xterm-256color", "NO_COLOR=1"}, cols, rows, prompts, "", nil,
		"-i", inv, "-k", "-K", script)
	if regexp.MustCompile(`\x1b\[[0-9;]*m`).Match(raw) {
		t.Errorf("colours with NO_COLOR set:\n%q", raw)
	}
	if !strings.Contains(strings.Join(screen(raw, cols, rows), "\n"), "RECAP") {
		t.Errorf("no recap with NO_COLOR:\n%q", raw)
	}
}

package runtime_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mitostar/mitostar/builtins"
	"github.com/mitostar/mitostar/connect"
	"github.com/mitostar/mitostar/core"
	"github.com/mitostar/mitostar/internal/testbed"
	"github.com/mitostar/mitostar/runtime"
)

// cacheScript connects over ssh and calls a function of its own module,
// which is padded to 8 KB: more than a repeated connection may write.
var cacheScript = `
def version():
    return "v1"

def main():
    kw = {"hostname": "127.0.0.1", "port": int(argv[0]), "username": "root", "identity_file": argv[1],
          "ssh_args": ["-o", "UserKnownHostsFile=" + argv[2]], "transport": argv[3], "compression": False}
    if argv[4]:
        kw["ssh_path"] = argv[4]
    c = router.ssh(**kw)
    print(c.call(version))
    c.shutdown(wait = True)
` + strings.Repeat("# padding padding padding padding padding padding padding padding\n", 128)

// TestModulesFromTargetCache: a repeated connection finds the script's
// module in the target's module cache, and the master sends only its
// name; a damaged copy there is not used.
func TestModulesFromTargetCache(t *testing.T) {
	s := testbed.SSHD(t)
	exe, _ := os.Executable()
	data, _ := os.ReadFile(exe)
	sum := sha256.Sum256(data)
	home, _ := os.UserHomeDir()
	binDir := filepath.Join(home, ".cache", "mitostar", hex.EncodeToString(sum[:]))
	t.Cleanup(func() { os.RemoveAll(binDir) }) // this test binary's copy on the target
	dir := t.TempDir()
	script := filepath.Join(dir, "cached.star")
	os.WriteFile(script, []byte(cacheScript), 0o644)
	modSum := sha256.Sum256([]byte(cacheScript))
	cached := filepath.Join(binDir, connect.ModuleCacheDir, hex.EncodeToString(modSum[:]))
	// ssh's stdin, counted by a wrapper (the OpenSSH transport); the
	// native one says what its session sent in the debug log.
	tee := filepath.Join(dir, "sent")
	wrapper := filepath.Join(dir, "ssh")
	os.WriteFile(wrapper, []byte("#!/bin/bash\nexec ssh \"$@\" < <(exec tee "+tee+")\n"), 0o755)

	for _, tr := range connect.SSHTransports {
		t.Run(tr, func(t *testing.T) {
			os.RemoveAll(filepath.Join(binDir, connect.ModuleCacheDir))
			run := func() int {
				t.Helper()
				var log testbed.SyncBuffer
				r := core.NewMaster(core.Options{Logger: slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))})
				defer r.CloseTimeout(5 * time.Second)
				var out bytes.Buffer
				sshPath := ""
				if tr == "openssh" {
					sshPath = wrapper
				}
				rt := runtime.New(r, runtime.Options{Roots: []string{dir}, Stdout: &out,
					Argv: []string{strconv.Itoa(s.Port), s.IdentityFile, s.KnownHosts, tr, sshPath}})
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				if err := rt.RunScript(ctx, script); err != nil {
					t.Fatal(builtins.Backtrace(err))
				}
				if out.String() != "v1\n" {
					t.Errorf("printed %q", out.String())
				}
				if tr == "openssh" {
					st, err := os.Stat(tee)
					if err != nil {
						t.Fatal(err)
					}
					return int(st.Size())
				}
				r.CloseTimeout(5 * time.Second)
				m := regexp.MustCompile(`ssh session ended: (\d+) bytes sent`).FindStringSubmatch(log.String())
				if m == nil {
					t.Fatalf("no byte count in the log:\n%s", log.String())
				}
				n, _ := strconv.Atoi(m[1])
				return n
			}
			first := run()
			if first < len(cacheScript) {
				t.Errorf("the first connection wrote %d bytes, less than the module (%d)", first, len(cacheScript))
			}
			waitFile(t, cached)
			second := run()
			if second > 1024 {
				t.Errorf("the second connection wrote %d bytes, want the module's name only (< 1 KiB)", second)
			}
			t.Logf("%s: %d bytes written, then %d", tr, first, second)
			// A damaged copy is not run: the module comes from the parent.
			os.WriteFile(cached, []byte(strings.Replace(cacheScript, `"v1"`, `"evil"`, 1)), 0o600)
			if third := run(); third < len(cacheScript) {
				t.Errorf("with a damaged copy, the connection wrote %d bytes: the module was not sent", third)
			}
		})
	}
}

func waitFile(t *testing.T, p string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(p); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s was not written", p)
		}
	}
}

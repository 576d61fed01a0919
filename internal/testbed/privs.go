package testbed

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// Sudoers installs lines as /etc/sudoers.d/mt-test-RANDOM (mode 0440),
// checked with visudo -cf, and removes the file when the test ends.
// It returns the file's path.
func Sudoers(t testing.TB, lines ...string) string {
	t.Helper()
	RequireRoot(t, "sudo", "visudo")
	b := make([]byte, 6)
	rand.Read(b)
	path := "/etc/sudoers.d/mt-test-" + hex.EncodeToString(b)
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o440); err != nil {
		t.Fatalf("testbed: writing %s: %v", path, err)
	}
	t.Cleanup(func() { os.Remove(path) })
	if err := os.Chmod(path, 0o440); err != nil {
		t.Fatalf("testbed: %v", err)
	}
	if _, err := runErr(30*time.Second, nil, "visudo", "-cf", path); err != nil {
		t.Fatalf("testbed: sudoers rules %q are invalid: %v", lines, err)
	}
	return path
}

// DoasConf is the only configuration file doas reads.
const DoasConf = "/etc/doas.conf"

// Doas appends lines to /etc/doas.conf, which other test processes share
// (edits hold an flock), checks the file with doas -C, and removes
// exactly those lines when the test ends.
func Doas(t testing.TB, lines ...string) {
	t.Helper()
	RequireRoot(t, "doas")
	block := strings.Join(lines, "\n") + "\n"
	err := withLock("doas", func() error {
		data, err := os.ReadFile(DoasConf)
		if err != nil && !os.IsNotExist(err) {
			return err
		}
		if len(data) > 0 && data[len(data)-1] != '\n' {
			data = append(data, '\n')
		}
		if err := writeDoas(append(data, block...)); err != nil {
			return err
		}
		if _, err := runErr(30*time.Second, nil, "doas", "-C", DoasConf); err != nil {
			writeDoas(data)
			return fmt.Errorf("doas rules %q are invalid: %v", lines, err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	t.Cleanup(func() {
		err := withLock("doas", func() error {
			data, err := os.ReadFile(DoasConf)
			if err != nil {
				return err
			}
			s := string(data)
			i := strings.LastIndex(s, block)
			if i < 0 || (i > 0 && s[i-1] != '\n') {
				return fmt.Errorf("the rules %q are no longer in %s", lines, DoasConf)
			}
			return writeDoas([]byte(s[:i] + s[i+len(block):]))
		})
		if err != nil {
			t.Errorf("testbed: removing doas rules: %v", err)
		}
	})
}

// writeDoas replaces /etc/doas.conf atomically, keeping mode 0600.
func writeDoas(data []byte) error {
	tmp := DoasConf + ".mt-tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, DoasConf)
}

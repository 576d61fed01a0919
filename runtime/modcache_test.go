package runtime

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestModuleCache(t *testing.T) {
	c := &moduleCache{dir: filepath.Join(t.TempDir(), "m")}
	src := []byte("def f():\n    return 1\n")
	sha := sha256Hex(src)
	if _, ok := c.load(sha); ok {
		t.Fatal("load from an empty cache")
	}
	if err := c.store(sha, src); err != nil {
		t.Fatal(err)
	}
	if got, ok := c.load(sha); !ok || string(got) != string(src) {
		t.Fatalf("load = %q, %v", got, ok)
	}
	if err := c.store(sha256Hex([]byte("x")), src); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("storing under the wrong sha256: %v", err)
	}
	// A damaged copy is not used, and goes.
	p := filepath.Join(c.dir, sha)
	os.WriteFile(p, []byte("def f():\n    return 2\n"), 0o600)
	if _, ok := c.load(sha); ok {
		t.Error("a damaged copy was loaded")
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Errorf("the damaged copy is still there: %v", err)
	}
	if _, ok := c.load("../../etc/passwd"); ok {
		t.Error("loaded a path that is not a sha256")
	}
	// Past moduleCacheMax the least recently used go.
	old := time.Now().Add(-time.Hour)
	var first string
	for i := range moduleCacheMax + 2 {
		s := []byte(fmt.Sprintf("x = %d\n", i))
		if err := c.store(sha256Hex(s), s); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = sha256Hex(s)
			os.Chtimes(filepath.Join(c.dir, first), old, old)
			c.load(first) // used again: kept
		} else if i < 3 {
			os.Chtimes(filepath.Join(c.dir, sha256Hex(s)), old, old)
		}
	}
	entries, _ := os.ReadDir(c.dir)
	if len(entries) != moduleCacheMax {
		t.Errorf("%d files kept, want %d", len(entries), moduleCacheMax)
	}
	if _, err := os.Stat(filepath.Join(c.dir, first)); err != nil {
		t.Errorf("the module used last was dropped: %v", err)
	}
}

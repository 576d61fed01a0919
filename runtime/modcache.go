package runtime

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/mitostar/mitostar/connect"
)

// A child that runs from the target's binary cache (the bootstrap stub
// exec'd CACHE/SHA256/mitostar) keeps the modules it receives beside its
// binary, in CACHE/SHA256/m/, under the sha256 of their source. The next
// connection's stub lists them (connect.ObserveCachedModules), and its
// parent then sends only their path and sha256: a repeated connection
// does not carry the script's modules again. What is read back is
// checked against the sha256 the parent named, so the code that runs is
// always the master's; a module missing from the cache is asked of the
// parent (GET_MODULE) as any other.

// moduleCacheMax bounds the modules kept per binary: the stub lists them
// all on each connection. The least recently used go first.
const moduleCacheMax = 128

// moduleCache is a child's directory of cached modules.
type moduleCache struct {
	dir string
}

// openModuleCache returns the module cache of this process, or nil when
// it does not run from a binary cache directory.
func openModuleCache() *moduleCache {
	exe, err := os.Executable()
	if err != nil {
		return nil
	}
	dir := filepath.Dir(exe)
	if filepath.Base(exe) != "mitostar" || !isSHA256(filepath.Base(dir)) {
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, "ok")); err != nil {
		return nil
	}
	return &moduleCache{dir: filepath.Join(dir, connect.ModuleCacheDir)}
}

func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// load returns the cached source whose sha256 is sha, marking it used.
func (c *moduleCache) load(sha string) ([]byte, bool) {
	if !isSHA256(sha) {
		return nil, false
	}
	p := filepath.Join(c.dir, sha)
	src, err := os.ReadFile(p)
	if err != nil {
		return nil, false
	}
	if sha256Hex(src) != sha {
		os.Remove(p) // damaged: the next copy received replaces it
		return nil, false
	}
	now := time.Now()
	os.Chtimes(p, now, now)
	return src, true
}

// store writes a module (temporary file, then rename) and drops the
// least recently used ones past moduleCacheMax. Failing to is harmless:
// the module travels again next time.
func (c *moduleCache) store(sha string, src []byte) error {
	if !isSHA256(sha) || sha256Hex(src) != sha {
		return fmt.Errorf("module cache: source does not match sha256 %s", sha)
	}
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return err
	}
	p := filepath.Join(c.dir, sha)
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	tmp := fmt.Sprintf("%s.%d.tmp", p, os.Getpid())
	if err := os.WriteFile(tmp, src, 0o600); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return err
	}
	return c.prune()
}

func (c *moduleCache) prune() error {
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		return err
	}
	type aged struct {
		name string
		mod  time.Time
	}
	var files []aged
	for _, e := range entries {
		if !isSHA256(e.Name()) {
			continue
		}
		if info, err := e.Info(); err == nil {
			files = append(files, aged{e.Name(), info.ModTime()})
		}
	}
	if len(files) <= moduleCacheMax {
		return nil
	}
	slices.SortFunc(files, func(a, b aged) int { return a.mod.Compare(b.mod) })
	for _, f := range files[:len(files)-moduleCacheMax] {
		os.Remove(filepath.Join(c.dir, f.name))
	}
	return nil
}

package connect

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"

	"github.com/mitostar/mitostar/core"
	"github.com/mitostar/mitostar/internal/trailer"
)

// DistEnv names the environment variable of a directory holding
// mitostar-<os>-<arch> binaries for other platforms (`make dist`).
const DistEnv = "MITOSTAR_DIST"

// A binary is a mitostar executable the master can ship. Its hash and its
// gzip'd form are computed once, when first needed.
type binary struct {
	path string
	mem  []byte // the content, for a binary received from the parent
	// size, when not zero, is how many leading bytes of the file are the
	// executable: a bundle ships its binary without its archive (its
	// script, modules, files and inventory stay on this machine).
	size int64

	once sync.Once
	meta binaryInfo
	err  error

	gzOnce sync.Once
	gz     []byte
	gzErr  error

	sizeOnce sync.Once // selfBinary sets size once
	sizeErr  error
}

type binaryInfo struct {
	hash string // hex sha256
	size int64
}

var (
	binariesMu sync.Mutex
	binaries   = map[string]*binary{}
)

func binaryAt(path string) *binary {
	binariesMu.Lock()
	defer binariesMu.Unlock()
	b := binaries[path]
	if b == nil {
		b = &binary{path: path}
		binaries[path] = b
	}
	return b
}

// selfBinary is the running executable. On Linux it is read through
// /proc/self/exe, which works even when it runs from a memfd or was
// replaced on disk since it started.
func selfBinary() (*binary, error) {
	path := "/proc/self/exe"
	if _, err := os.Stat(path); runtime.GOOS != "linux" || err != nil {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("finding this executable: %w", err)
		}
		path = exe
	}
	b := binaryAt(path)
	b.sizeOnce.Do(func() { b.size, b.sizeErr = executableSize(path) })
	if b.sizeErr != nil {
		return nil, fmt.Errorf("reading this executable: %w", b.sizeErr)
	}
	return b, nil
}

// executableSize returns the size of the executable in the file at path
// when it is a bundle, and 0 for a plain binary (all of it).
func executableSize(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	n, err := trailer.Executable(f, st.Size())
	if err != nil || n == st.Size() {
		return 0, err
	}
	return n, nil
}

// binaryFor returns the binary to ship to a goos/goarch target: this
// executable when the platform is the same, else mitostar-<os>-<arch>
// from $MITOSTAR_DIST or beside this executable, else (in a child) the
// parent's, fetched up the tree.
func binaryFor(ctx context.Context, r *core.Router, goos, goarch string) (*binary, error) {
	if goos == runtime.GOOS && goarch == runtime.GOARCH {
		return selfBinary()
	}
	name := "mitostar-" + goos + "-" + goarch
	missing := &missingDistError{goos: goos, goarch: goarch, name: name}
	if dir := os.Getenv(DistEnv); dir != "" {
		missing.tried = append(missing.tried, filepath.Join(dir, name))
	}
	if exe, err := os.Executable(); err == nil {
		missing.tried = append(missing.tried, filepath.Join(filepath.Dir(exe), name))
	}
	for _, p := range missing.tried {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return binaryAt(p), nil
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("mitostar binary for %s/%s: %w", goos, goarch, err)
		}
	}
	if r == nil || r.IsMaster() {
		return nil, missing
	}
	b, err := fetchDistOnce(ctx, r, goos, goarch)
	if err != nil {
		missing.parent = err
		return nil, missing
	}
	return b, nil
}

// DistBinary returns the path of the mitostar binary for a goos/goarch
// target as connections find it: this executable for its own platform,
// else mitostar-<os>-<arch> from $MITOSTAR_DIST or beside this
// executable. mitostar bundle --target starts from it.
func DistBinary(goos, goarch string) (string, error) {
	b, err := binaryFor(context.Background(), nil, goos, goarch)
	if err != nil {
		return "", err
	}
	return b.path, nil
}

// missingDistError reports that no binary for a platform could be found.
type missingDistError struct {
	goos, goarch, name string
	tried              []string
	parent             error // what the parent said, in a child
}

func (e *missingDistError) Error() string {
	if e.parent != nil {
		return fmt.Sprintf("no mitostar binary for a %s/%s target in %s (looked in %v), and its parent has none: %v",
			e.goos, e.goarch, "this context", e.tried, e.parent)
	}
	return fmt.Sprintf("no mitostar binary for a %s/%s target: %s not found (looked in %v); build it with `make dist` and put it beside the mitostar executable, or point $%s at the dist directory",
		e.goos, e.goarch, e.name, e.tried, DistEnv)
}

func (b *binary) info() (binaryInfo, error) {
	b.once.Do(func() {
		f, err := b.open()
		if err != nil {
			b.err = fmt.Errorf("reading the mitostar binary: %w", err)
			return
		}
		defer f.Close()
		var memo string
		if osf, ok := f.(*os.File); ok && !strings.HasPrefix(osf.Name(), "/memfd:") && !runsFromMemfd(b.path) {
			memo = hashMemoPath(osf)
			if m, ok := readHashMemo(memo); ok {
				b.meta = m
				return
			}
		}
		h := sha256.New()
		n, err := io.Copy(h, f)
		if err != nil {
			b.err = fmt.Errorf("reading the mitostar binary %s: %w", b.path, err)
			return
		}
		b.meta = binaryInfo{hash: hex.EncodeToString(h.Sum(nil)), size: n}
		if memo != "" {
			writeHashMemo(memo, b.meta)
		}
	})
	return b.meta, b.err
}

// Hashing the binary costs a noticeable part of a repeated ssh
// connection's time; so the hash is remembered in the user's cache
// under the file's device, inode, size and modification time, which
// change whenever the file is replaced or rewritten.
func hashMemoPath(f *os.File) string {
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "mitostar", "hashes", fmt.Sprintf("%v.%v.%d.%d", sys.Dev, sys.Ino, st.Size(), st.ModTime().UnixNano()))
}

// runsFromMemfd reports whether path is /proc/self/exe of a process
// started from a memfd, whose inode numbers are not stable identities.
func runsFromMemfd(path string) bool {
	if path != "/proc/self/exe" {
		return false
	}
	target, err := os.Readlink(path)
	return err == nil && strings.HasPrefix(target, "/memfd:")
}

func readHashMemo(path string) (binaryInfo, bool) {
	if path == "" {
		return binaryInfo{}, false
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return binaryInfo{}, false
	}
	var m binaryInfo
	if _, err := fmt.Sscanf(string(data), "%64s %d\n", &m.hash, &m.size); err != nil || len(m.hash) != 64 {
		return binaryInfo{}, false
	}
	if _, err := hex.DecodeString(m.hash); err != nil {
		return binaryInfo{}, false
	}
	return m, true
}

// writeHashMemo records a hash, atomically; failing to is harmless.
func writeHashMemo(path string, m binaryInfo) {
	if os.MkdirAll(filepath.Dir(path), 0o700) != nil {
		return
	}
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	if os.WriteFile(tmp, []byte(fmt.Sprintf("%s %d\n", m.hash, m.size)), 0o600) != nil {
		os.Remove(tmp)
		return
	}
	if os.Rename(tmp, path) != nil {
		os.Remove(tmp)
	}
}

// gzipped returns the binary compressed with gzip, computed once.
func (b *binary) gzipped() ([]byte, error) {
	b.gzOnce.Do(func() {
		f, err := b.open()
		if err != nil {
			b.gzErr = fmt.Errorf("reading the mitostar binary: %w", err)
			return
		}
		defer f.Close()
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
		if _, err := io.Copy(zw, f); err != nil {
			b.gzErr = fmt.Errorf("compressing the mitostar binary %s: %w", b.path, err)
			return
		}
		if err := zw.Close(); err != nil {
			b.gzErr = err
			return
		}
		b.gz = buf.Bytes()
	})
	return b.gz, b.gzErr
}

// open returns the uncompressed binary.
func (b *binary) open() (binaryReader, error) {
	if b.mem != nil {
		return memFile{bytes.NewReader(b.mem)}, nil
	}
	f, err := os.Open(b.path)
	if err != nil || b.size == 0 {
		return f, err
	}
	return sectionFile{io.NewSectionReader(f, 0, b.size), f}, nil
}

// sectionFile reads the leading part of a file that is the executable.
type sectionFile struct {
	*io.SectionReader
	f *os.File
}

func (s sectionFile) Close() error { return s.f.Close() }

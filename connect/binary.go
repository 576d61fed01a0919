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
	"sync"

	"github.com/mitostar/mitostar/core"
)

// DistEnv names the environment variable of a directory holding
// mitostar-<os>-<arch> binaries for other platforms (`make dist`).
const DistEnv = "MITOSTAR_DIST"

// A binary is a mitostar executable the master can ship. Its hash and its
// gzip'd form are computed once, when first needed.
type binary struct {
	path string
	mem  []byte // the content, for a binary received from the parent

	once sync.Once
	meta binaryInfo
	err  error

	gzOnce sync.Once
	gz     []byte
	gzErr  error
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
	if runtime.GOOS == "linux" {
		if _, err := os.Stat("/proc/self/exe"); err == nil {
			return binaryAt("/proc/self/exe"), nil
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding this executable: %w", err)
	}
	return binaryAt(exe), nil
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
		h := sha256.New()
		n, err := io.Copy(h, f)
		if err != nil {
			b.err = fmt.Errorf("reading the mitostar binary %s: %w", b.path, err)
			return
		}
		b.meta = binaryInfo{hash: hex.EncodeToString(h.Sum(nil)), size: n}
	})
	return b.meta, b.err
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
	return os.Open(b.path)
}

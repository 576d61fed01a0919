package connect

import (
	"bytes"
	"compress/gzip"
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
)

// DistEnv names the environment variable of a directory holding
// mitostar-<os>-<arch> binaries for other platforms (`make dist`).
const DistEnv = "MITOSTAR_DIST"

// A binary is a mitostar executable the master can ship. Its hash and its
// gzip'd form are computed once, when first needed.
type binary struct {
	path string

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
// from $MITOSTAR_DIST or beside this executable.
func binaryFor(goos, goarch string) (*binary, error) {
	if goos == runtime.GOOS && goarch == runtime.GOARCH {
		return selfBinary()
	}
	name := "mitostar-" + goos + "-" + goarch
	var tried []string
	if dir := os.Getenv(DistEnv); dir != "" {
		tried = append(tried, filepath.Join(dir, name))
	}
	if exe, err := os.Executable(); err == nil {
		tried = append(tried, filepath.Join(filepath.Dir(exe), name))
	}
	for _, p := range tried {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return binaryAt(p), nil
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("mitostar binary for %s/%s: %w", goos, goarch, err)
		}
	}
	return nil, fmt.Errorf("no mitostar binary for a %s/%s target: %s not found (looked in %v); build it with `make dist` and put it beside the mitostar executable, or point $%s at the dist directory",
		goos, goarch, name, tried, DistEnv)
}

func (b *binary) info() (binaryInfo, error) {
	b.once.Do(func() {
		f, err := os.Open(b.path)
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
		f, err := os.Open(b.path)
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

// open returns the uncompressed binary, for targets without gzip.
func (b *binary) open() (*os.File, error) { return os.Open(b.path) }

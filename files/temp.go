package files

// Temporary names of transfers. A file is received under a temporary
// name beside its destination and renamed over it once complete; a new
// tree is built in a temporary directory renamed into place. On Linux a
// file is first received into an anonymous file (O_TMPFILE) and linked
// under its temporary name only once complete, so a transfer killed
// while receiving leaves no data behind. What a killed transfer leaves
// (a temporary directory, a file between link and rename, any temporary
// file elsewhere) is removed by the next transfer that creates a
// temporary name in that directory: names carry their host and process,
// and those of a process of this host that no longer runs are stale.

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// hostTag identifies this host in temporary names (a file system may be
// shared between hosts, whose process ids mean nothing here).
var hostTag = sync.OnceValue(func() string {
	h, _ := os.Hostname()
	sum := sha256.Sum256([]byte(h))
	return hex.EncodeToString(sum[:4])
})

// tempPrefix starts the temporary names of base made by this process:
// ".BASE.mitostar-HOST-PID-".
func tempPrefix(base string) string {
	return fmt.Sprintf(".%s.mitostar-%s-%d-", base, hostTag(), os.Getpid())
}

var tempSeq atomic.Uint64

// tempName returns a fresh temporary name for base.
func tempName(base string) string {
	return tempPrefix(base) + strconv.FormatUint(uint64(time.Now().UnixNano())+tempSeq.Add(1), 36)
}

// tempPattern matches a temporary name and captures its host and pid.
var tempPattern = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^\..*\.mitostar-([0-9a-f]{8})-([0-9]+)-[0-9a-z]+$`) })

// staleTemp reports whether name is a temporary name left by a process
// of this host that is gone.
func staleTemp(name string) bool {
	m := tempPattern().FindStringSubmatch(name)
	if m == nil || m[1] != hostTag() {
		return false
	}
	pid, err := strconv.Atoi(m[2])
	if err != nil || pid <= 0 || pid == os.Getpid() {
		return false
	}
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// sweep removes the stale temporary names in dir (relative to rc.root),
// once per transfer and directory.
func (rc *receiver) sweep(dir string) {
	if rc.swept == nil {
		rc.swept = map[string]bool{}
	}
	if dir == "" {
		dir = "."
	}
	if rc.swept[dir] {
		return
	}
	rc.swept[dir] = true
	sweepDir(rc.root, dir)
}

// sweepDir removes the stale temporary names in dir of root.
func sweepDir(root *os.Root, dir string) {
	d, err := root.Open(dir)
	if err != nil {
		return
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	for _, n := range names {
		if staleTemp(n) {
			root.RemoveAll(filepath.Join(dir, n))
		}
	}
}

// sweepParent removes the stale temporary names beside path, before a
// new tree is built there.
func sweepParent(path string) {
	root, err := os.OpenRoot(filepath.Dir(path))
	if err != nil {
		return
	}
	defer root.Close()
	sweepDir(root, ".")
}

// A tempFile is a file being received: anonymous (O_TMPFILE; dir is its
// directory, to link it into) or named (name, in rc.root).
type tempFile struct {
	f    *os.File
	dir  *os.File
	name string
}

// createTemp opens the file that receives base in dir (of rc.root):
// anonymous where the system allows, else under a temporary name.
func (rc *receiver) createTemp(dir, base string) (*tempFile, error) {
	if tf, ok := openAnonymous(rc.root, dir); ok {
		return tf, nil
	}
	rc.sweep(dir)
	var err error
	for i := 0; i < 10; i++ {
		name := filepath.Join(dir, tempName(base))
		var f *os.File
		if f, err = rc.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err == nil {
			rc.temps = append(rc.temps, name)
			return &tempFile{f: f, name: name}, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	return nil, err
}

// name gives an anonymous file its temporary name (a named one has it
// already) and returns it; the file is then removed on failure.
func (rc *receiver) nameTemp(tf *tempFile, dir, base string) (string, error) {
	if tf.name != "" {
		return tf.name, nil
	}
	rc.sweep(dir)
	name := tempName(base)
	if err := linkAnonymous(tf, name); err != nil {
		return "", err
	}
	tf.name = filepath.Join(dir, name)
	rc.temps = append(rc.temps, tf.name)
	return tf.name, nil
}

// close closes the file and, for an anonymous one, its directory.
func (tf *tempFile) close() error {
	if tf.dir != nil {
		tf.dir.Close()
		tf.dir = nil
	}
	return tf.f.Close()
}

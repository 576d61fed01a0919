package files

import (
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// useAnonymous turns O_TMPFILE off (tests of the named fallback).
var useAnonymous = true

// canLink reports whether an anonymous file can be linked: with
// AT_EMPTY_PATH as root, else through /proc/self/fd.
var canLink = sync.OnceValue(func() bool {
	if os.Geteuid() == 0 {
		return true
	}
	_, err := os.Stat("/proc/self/fd")
	return err == nil
})

// openAnonymous opens an O_TMPFILE file in dir of root; ok false when
// the system or its file system cannot.
func openAnonymous(root *os.Root, dir string) (*tempFile, bool) {
	if !useAnonymous || !canLink() {
		return nil, false
	}
	if dir == "" {
		dir = "."
	}
	d, err := root.Open(dir)
	if err != nil {
		return nil, false
	}
	fd, err := unix.Openat(int(d.Fd()), ".", unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err != nil {
		d.Close() // EOPNOTSUPP, EISDIR (old kernels), ...: a named file instead
		return nil, false
	}
	return &tempFile{f: os.NewFile(uintptr(fd), d.Name()), dir: d}, true
}

// linkAnonymous links tf's anonymous file as name in its directory.
func linkAnonymous(tf *tempFile, name string) error {
	dirfd := int(tf.dir.Fd())
	err := unix.Linkat(int(tf.f.Fd()), "", dirfd, name, unix.AT_EMPTY_PATH)
	if err != nil {
		err = unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(int(tf.f.Fd())), dirfd, name, unix.AT_SYMLINK_FOLLOW)
	}
	if err != nil {
		return &os.LinkError{Op: "linkat", Old: tf.f.Name(), New: name, Err: err}
	}
	return nil
}

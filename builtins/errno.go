package builtins

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

// errnoText returns the bare errno text of err ("permission denied")
// when err wraps a syscall.Errno, else err's own text without Go's
// "open /path:" prefixes.
func errnoText(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err.Error()
	}
	return err.Error()
}

// Package lookpath finds a program in a PATH value the way os/exec's
// LookPath finds it in $PATH, for callers that search another PATH than
// their own environment's: exec.run with env=, and fakessh.
//
// Every entry is searched in order, an empty one meaning the current
// directory, and the first executable file found wins. A program found
// through a relative entry ("", ".", "bin") is refused with
// exec.ErrDot, as os/exec refuses it: a PATH lookup never runs a
// program picked from wherever the process happens to be.
package lookpath

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Find returns the file that runs for name under the search path
// pathList. A name with a slash is not searched for and comes back as it
// is (starting it reports what is wrong with it). The errors are
// exec.ErrNotFound and exec.ErrDot (with the relative path found).
func Find(name, pathList string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	for _, dir := range filepath.SplitList(pathList) {
		if dir == "" {
			dir = "." // POSIX: an empty entry is the current directory
		}
		p := filepath.Join(dir, name)
		if !executable(p) {
			continue
		}
		if !filepath.IsAbs(p) {
			return p, exec.ErrDot
		}
		return p, nil
	}
	return "", exec.ErrNotFound
}

// executable reports whether p is a file with an execute bit.
func executable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&fs.FileMode(0o111) != 0
}

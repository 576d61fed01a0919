//go:build !linux

package files

import (
	"errors"
	"os"
)

// useAnonymous: only Linux has O_TMPFILE.
var useAnonymous = false

// openAnonymous is Linux only: elsewhere files are received under a
// temporary name from the start.
func openAnonymous(*os.Root, string) (*tempFile, bool) { return nil, false }

func linkAnonymous(*tempFile, string) error { return errors.New("no anonymous files here") }

//go:build !linux

package core

import (
	"io"
	"os"
)

// NewPipeReader returns f: the raw reads are Linux only.
func NewPipeReader(f *os.File) io.Reader { return f }

//go:build !linux

package core

import (
	"io"
	"os"
)

// NewPipeReader returns f: the raw reads are Linux only.
func NewPipeReader(f *os.File) io.Reader { return f }

// WakeSysmon does nothing here: streams read with ordinary syscalls,
// which keep the runtime's sysmon awake while the process is busy.
func WakeSysmon() {}

//go:build !linux

package wire

import (
	"os"
	"os/exec"
)

// GrowPipe leaves the pipe's buffer as the system sizes it.
func GrowPipe(*os.File) {}

// PrepareWait does nothing here: WaitExited returns at once and cmd.Wait
// does the waiting.
func PrepareWait(*exec.Cmd) *int { fd := -1; return &fd }

// WaitExited returns at once (see PrepareWait).
func WaitExited(*int) {}

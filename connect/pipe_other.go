//go:build !linux

package connect

import "os"

// growPipe leaves the pipe's buffer as the system sizes it.
func growPipe(*os.File) {}

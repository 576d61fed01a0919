//go:build unix && !linux

package core

import "golang.org/x/sys/unix"

// writevFD is writev(2) on a non-blocking descriptor.
func writevFD(fd uintptr, bufs [][]byte) (int, error) {
	return unix.Writev(int(fd), bufs)
}

//go:build unix && !linux

package core

import "syscall"

// writevFD writes bufs to a non-blocking descriptor like writev(2):
// what it took (a piece at a time; golang.org/x/sys has no Writev on
// every system), or the error of a first write that took nothing.
func writevFD(fd uintptr, bufs [][]byte) (int, error) {
	n := 0
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		m, err := syscall.Write(int(fd), b)
		if m > 0 {
			n += m
		}
		if err != nil {
			if n > 0 {
				return n, nil
			}
			return 0, err
		}
		if m < len(b) {
			break
		}
	}
	return n, nil
}

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

// spliceMin is 0: other systems copy every piece (see lend.go).
const spliceMin = 0

func vmspliceFD(fd uintptr, b []byte) (int, error) { return 0, syscall.ENOSYS }

func pipeUnread(fd uintptr) (int, error) { return 0, syscall.ENOSYS }

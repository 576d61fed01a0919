//go:build !linux

package files

import "os"

// readNoWait and writeNoWait are Linux only: elsewhere f.Read and
// f.Write are used.
func readNoWait(*os.File, []byte) (int, bool)  { return 0, false }
func writeNoWait(*os.File, []byte) (int, bool) { return 0, false }

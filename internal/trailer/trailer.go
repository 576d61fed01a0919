// Package trailer reads and writes the trailer that ends a mitostar
// bundle: the offset of the archive appended to the binary, then a magic
// string. The bundle package writes bundles; connect uses Executable to
// ship only the binary part of a bundle to other machines.
package trailer

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Magic ends every bundle.
const Magic = "mitostar-bundle1"

// Size is the trailer's size: the archive's offset and the magic.
const Size = 8 + len(Magic)

// Encode returns the trailer of an archive that starts at offset.
func Encode(offset int64) [Size]byte {
	var t [Size]byte
	binary.LittleEndian.PutUint64(t[:8], uint64(offset))
	copy(t[8:], Magic)
	return t
}

// Offset reads the trailer of r, a file of size bytes: the offset of its
// archive, ok false when it has none (a plain binary).
func Offset(r io.ReaderAt, size int64) (off int64, ok bool, err error) {
	if size < int64(Size) {
		return 0, false, nil
	}
	var t [Size]byte
	if _, err := r.ReadAt(t[:], size-int64(Size)); err != nil {
		return 0, false, err
	}
	if string(t[8:]) != Magic {
		return 0, false, nil
	}
	off = int64(binary.LittleEndian.Uint64(t[:8]))
	if off <= 0 || off > size-int64(Size) {
		return 0, false, fmt.Errorf("a bundle trailer with a bad archive offset %d (the file has %d bytes)", off, size)
	}
	return off, true, nil
}

// Executable returns how many leading bytes of r, a file of size bytes,
// are the executable: all of them for a plain binary, those before the
// archive for a bundle.
func Executable(r io.ReaderAt, size int64) (int64, error) {
	off, ok, err := Offset(r, size)
	if err != nil || !ok {
		return size, err
	}
	return off, nil
}

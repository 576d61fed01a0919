// Package cborhead reads and writes the heads of CBOR items (RFC 8949
// §3), for the hand-written codecs of mitostar: Starlark values
// (builtins) and byte-stream frames (core). Every other payload goes
// through fxamacker/cbor.
package cborhead

import (
	"errors"
	"fmt"
)

// ErrTruncated is the error of an item cut short.
var ErrTruncated = errors.New("unexpected end of data")

// Append appends the head of a CBOR item of the given major type
// and argument, in its shortest form.
func Append(b []byte, major byte, n uint64) []byte {
	m := major << 5
	switch {
	case n < 24:
		return append(b, m|byte(n))
	case n <= 0xff:
		return append(b, m|24, byte(n))
	case n <= 0xffff:
		return append(b, m|25, byte(n>>8), byte(n))
	case n <= 0xffffffff:
		return append(b, m|26, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, m|27, byte(n>>56), byte(n>>48), byte(n>>40), byte(n>>32), byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// Read reads the head of the CBOR item at the start of b: its major
// type, additional information and argument (for major type 7, the
// bits of a float or the simple value), and the bytes after the head.
// Indefinite lengths and reserved values are errors.
func Read(b []byte) (major, info byte, n uint64, rest []byte, err error) {
	if len(b) == 0 {
		return 0, 0, 0, nil, ErrTruncated
	}
	major, info = b[0]>>5, b[0]&31
	switch {
	case info < 24:
		return major, info, uint64(info), b[1:], nil
	case info <= 27:
		size := 1 << (info - 24)
		if len(b) < 1+size {
			return 0, 0, 0, nil, ErrTruncated
		}
		for _, c := range b[1 : 1+size] {
			n = n<<8 | uint64(c)
		}
		return major, info, n, b[1+size:], nil
	case info == 31:
		return 0, 0, 0, nil, fmt.Errorf("indefinite-length CBOR item (major type %d)", major)
	}
	return 0, 0, 0, nil, fmt.Errorf("malformed CBOR head %#02x", b[0])
}

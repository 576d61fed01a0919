// Package wire reads and writes mitostar frames on a byte stream and runs
// the two loops of a link between neighbouring contexts: one goroutine
// reads frames and hands each to its owner, one goroutine writes the
// frames queued for it. It holds mitostar's system-call-level techniques
// for its streams and processes (growing a pipe's buffer, waiting for a
// process through its pidfd in the runtime's poller, taking a child's
// stdio): each is here because a goal of docs/benchmarks.md or a rule of
// docs/protocol.md needs it, as its comment says. Nothing in mitostar
// uses unsafe or the Go runtime's scheduler and collector settings, and
// no I/O path uses raw system calls (the few elsewhere, such as
// O_TMPFILE for received files, are there for what they do, not for
// speed).
//
// A frame is a 26-byte header and a payload (docs/protocol.md, "Frames"):
//
//	+-------+--------+--------+---------+--------+----------+--------+---------------+
//	| magic | dst_id | src_id | auth_id | handle | reply_to | length | payload       |
//	| u16   | u32    | u32    | u32     | u32    | u32      | u32    | length bytes  |
//	+-------+--------+--------+---------+--------+----------+--------+---------------+
//
// All integers are big-endian. The payload is opaque here.
package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Magic starts every frame; any other value means the stream is corrupt.
const Magic uint16 = 0x6d73 // "ms"

// HeaderSize is the size in bytes of a frame header.
const HeaderSize = 2 + 6*4

// A Header is a frame's routing header without its length.
type Header struct {
	Dst     uint32 // the context the frame is for
	Src     uint32 // the context that wrote it
	Auth    uint32 // the context on whose authority it was sent
	Handle  uint32 // the handler in Dst that receives it
	ReplyTo uint32 // the handle in Src for replies, 0 for none
}

// A Frame is a header and its payload. The payload is Data followed by
// the strings of More: a sender passes a large string value as it is,
// and it is written to the stream from its own memory (strings never
// change), instead of being copied next to the rest.
type Frame struct {
	Header
	Data []byte
	More []string
	// Buf, when set, is the pooled memory under Data: the link frees it
	// once the frame is written.
	Buf *Buf
}

// Len is the payload's length.
func (f *Frame) Len() int {
	n := len(f.Data)
	for _, p := range f.More {
		n += len(p)
	}
	return n
}

// PutHeader writes h and a payload length n into b[:HeaderSize].
func PutHeader(b []byte, h Header, n int) {
	binary.BigEndian.PutUint16(b[0:], Magic)
	binary.BigEndian.PutUint32(b[2:], h.Dst)
	binary.BigEndian.PutUint32(b[6:], h.Src)
	binary.BigEndian.PutUint32(b[10:], h.Auth)
	binary.BigEndian.PutUint32(b[14:], h.Handle)
	binary.BigEndian.PutUint32(b[18:], h.ReplyTo)
	binary.BigEndian.PutUint32(b[22:], uint32(n))
}

// ErrTooLarge is wrapped by the error of a frame over the size limit.
var ErrTooLarge = errors.New("message too large")

// ErrCorrupt is wrapped by the error of a frame with a bad magic number.
var ErrCorrupt = errors.New("corrupt stream")

// ReadFrame reads one frame from r (from a *bufio.Reader without copying
// its header out). A frame whose payload is longer than max is an error
// wrapping ErrTooLarge, and nothing of its payload is read or allocated.
// io.EOF is returned only for a clean end before a header; an end inside
// a frame is io.ErrUnexpectedEOF, wrapped with what was being read.
func ReadFrame(r io.Reader, max int) (Header, []byte, error) {
	h, payload, _, err := readFrame(r, max, false)
	return h, payload, err
}

// readFrame is ReadFrame; with pool, a large payload is read into a
// pooled buffer, returned with it.
func readFrame(r io.Reader, max int, pool bool) (Header, []byte, *Buf, error) {
	var b []byte
	var err error
	br, buffered := r.(*bufio.Reader)
	if buffered {
		b, err = br.Peek(HeaderSize)
	} else {
		var hdr [HeaderSize]byte
		var n int
		n, err = io.ReadFull(r, hdr[:])
		b = hdr[:n]
	}
	if err != nil {
		if err == io.EOF && len(b) > 0 {
			err = io.ErrUnexpectedEOF
		}
		if err == io.EOF {
			return Header{}, nil, nil, io.EOF
		}
		return Header{}, nil, nil, fmt.Errorf("reading frame header: %w", err)
	}
	if magic := binary.BigEndian.Uint16(b[0:]); magic != Magic {
		return Header{}, nil, nil, fmt.Errorf("%w: bad frame magic %#04x (want %#04x)", ErrCorrupt, magic, Magic)
	}
	h := Header{
		Dst:     binary.BigEndian.Uint32(b[2:]),
		Src:     binary.BigEndian.Uint32(b[6:]),
		Auth:    binary.BigEndian.Uint32(b[10:]),
		Handle:  binary.BigEndian.Uint32(b[14:]),
		ReplyTo: binary.BigEndian.Uint32(b[18:]),
	}
	n := binary.BigEndian.Uint32(b[22:])
	if buffered {
		br.Discard(HeaderSize)
	}
	if uint64(n) > uint64(max) {
		return h, nil, nil, fmt.Errorf("%w: frame of %d bytes (max %d bytes) from context %d", ErrTooLarge, n, max, h.Src)
	}
	var buf *Buf
	var payload []byte
	if pool {
		payload, buf = Payload(int(n))
	} else {
		payload = make([]byte, n)
	}
	if _, err := io.ReadFull(r, payload); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		buf.Free()
		return h, nil, nil, fmt.Errorf("reading %d-byte frame payload: %w", n, err)
	}
	return h, payload, buf, nil
}

// WriteFrame writes f to w, through w's buffer: large payload pieces go
// to the underlying writer without a copy when the buffer is empty (an
// *os.File writes a string from its own memory). The caller flushes.
func WriteFrame(w *bufio.Writer, f *Frame) error {
	if w.Available() < HeaderSize {
		if err := w.Flush(); err != nil {
			return err
		}
	}
	hdr := w.AvailableBuffer()[:HeaderSize]
	PutHeader(hdr, f.Header, f.Len())
	w.Write(hdr)
	_, err := w.Write(f.Data)
	for _, p := range f.More {
		if err != nil {
			break
		}
		_, err = w.WriteString(p)
	}
	return err
}

// AppendFrame appends f's whole frame to b.
func AppendFrame(b []byte, f *Frame) []byte {
	n := len(b)
	b = append(b, make([]byte, HeaderSize)...)
	PutHeader(b[n:], f.Header, f.Len())
	b = append(b, f.Data...)
	for _, p := range f.More {
		b = append(b, p...)
	}
	return b
}

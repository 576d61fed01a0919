package files

// The tree format carried by a byte stream from the sending end to the
// receiving end (docs/protocol.md, "Byte streams"):
//
//	entry*  end
//	entry = u32 length, CBOR header; for a file then Size bytes of
//	        content and the CRC-32C of that content (4 bytes, big-endian)
//	end   = u32 length, CBOR header of Kind kindEnd
//
// The first entry is the root (Path ""); the entries of a directory
// follow it in lexical order, parents before children. When the receiver
// is done it writes one status record back (u32 length, CBOR status) and
// half-closes.
//
// The CRC-32C is an end-to-end check of the stream layer (a lost,
// duplicated or reordered chunk), not a defence against the sender: the
// transport is reliable and authenticated already, and a hostile sender
// could send any content with a matching digest of any kind.

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mitostar/mitostar/core"
)

const (
	kindEnd     = 0
	kindFile    = 1
	kindDir     = 2
	kindSymlink = 3
)

// maxHeader bounds a CBOR header or status record.
const maxHeader = 64 << 10

// crcTable returns the CRC-32C table; crc32.Update computes CRC-32C with
// the CPU's instructions (SSE 4.2 on amd64, the CRC32 extension on
// arm64) when given it. Made at first use: a context that moves no file
// does not build its tables.
var crcTable = sync.OnceValue(func() *crc32.Table { return crc32.MakeTable(crc32.Castagnoli) })

// sumSize is the size of a file's checksum trailer.
const sumSize = 4

// ioBuffer is the size of the buffers between files and streams.
const ioBuffer = 256 << 10

// recordBuffer is the receiver's read buffer, for headers and small
// files; larger contents come in the stream's own chunks.
const recordBuffer = 32 << 10

// A chunkReader is the receiving end of a transfer (core.ByteStream):
// a Reader whose reads a context can end.
type chunkReader interface {
	io.Reader
	ReadContext(ctx context.Context, p []byte) (int, error)
}

type header struct {
	Kind  int    `cbor:"1,keyasint"`
	Path  string `cbor:"2,keyasint,omitempty"` // slash-separated, relative to the root
	Mode  uint32 `cbor:"3,keyasint,omitempty"` // permission bits (0o7777)
	MTime int64  `cbor:"4,keyasint,omitempty"` // unix nanoseconds
	Size  int64  `cbor:"5,keyasint,omitempty"`
	Link  string `cbor:"6,keyasint,omitempty"` // symlink target
}

type status struct {
	Kind    string `cbor:"1,keyasint,omitempty"` // "" means success
	Message string `cbor:"2,keyasint,omitempty"`
	Files   int    `cbor:"3,keyasint,omitempty"`
	Bytes   int64  `cbor:"4,keyasint,omitempty"`
}

func writeRecord(w io.Writer, v any) error {
	data, err := core.Marshal(v)
	if err != nil {
		return err
	}
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(data)))
	if _, err := w.Write(n[:]); err != nil {
		return err
	}
	_, err = w.Write(data)
	return err
}

func readRecord(r io.Reader, v any) error {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > maxHeader {
		return fmt.Errorf("record of %d bytes (max %d)", size, maxHeader)
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(r, data); err != nil {
		return err
	}
	return core.Unmarshal(data, v)
}

// osError is the OSError of a failing system call: "fs.put /p: permission denied".
func osError(op, p string, err error) error {
	var re *core.RemoteError
	if errors.As(err, &re) {
		return err
	}
	return &core.RemoteError{Kind: "OSError", Message: op + " " + p + ": " + errnoText(err)}
}

func errnoText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err.Error()
	}
	return err.Error()
}

// sender writes a tree to a byte stream.
type sender struct {
	op   string // "fs.put", "fs.get": names errors
	w    *bufio.Writer
	mode *os.FileMode // overrides the mode of files
}

// sendTree sends root (a file, or with recursive a directory tree).
func sendTree(ctx context.Context, op string, w io.Writer, root string, recursive bool, mode *os.FileMode) error {
	st, err := os.Stat(root)
	if err != nil {
		return osError(op, root, err)
	}
	if st.IsDir() && !recursive {
		return &core.RemoteError{Kind: "OSError", Message: op + " " + root + ": is a directory (recursive=True copies a tree)"}
	}
	s := &sender{op: op, w: bufio.NewWriterSize(w, ioBuffer), mode: mode}
	if !st.IsDir() {
		if !st.Mode().IsRegular() {
			return &core.RemoteError{Kind: "OSError", Message: op + " " + root + ": not a regular file"}
		}
		if err := s.file(ctx, root, "", st); err != nil {
			return err
		}
	} else {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return osError(op, p, err)
			}
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			rel = filepath.ToSlash(rel)
			if rel == "." {
				rel = ""
			}
			info, err := os.Lstat(p)
			if err != nil {
				return osError(op, p, err)
			}
			switch t := info.Mode().Type(); {
			case t == fs.ModeDir:
				return s.header(header{Kind: kindDir, Path: rel, Mode: perm(info.Mode()), MTime: info.ModTime().UnixNano()})
			case t == fs.ModeSymlink:
				link, err := os.Readlink(p)
				if err != nil {
					return osError(op, p, err)
				}
				return s.header(header{Kind: kindSymlink, Path: rel, Link: link, MTime: info.ModTime().UnixNano()})
			case t.IsRegular():
				return s.file(ctx, p, rel, info)
			}
			return nil // sockets, devices and fifos are skipped, as rsync -a does
		})
		if err != nil {
			return err
		}
	}
	if err := s.header(header{Kind: kindEnd}); err != nil {
		return err
	}
	return s.w.Flush()
}

// perm converts a Go FileMode to the permission bits sent on the wire.
func perm(m fs.FileMode) uint32 {
	p := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		p |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		p |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		p |= 0o1000
	}
	return p
}

// ModeOf turns Unix permission bits (0 to 0o7777: rwx for user, group
// and others, then setuid, setgid and sticky) into an fs.FileMode.
func ModeOf(p uint32) fs.FileMode {
	m := fs.FileMode(p & 0o777)
	if p&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if p&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if p&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

func (s *sender) header(h header) error { return writeRecord(s.w, &h) }

// file sends the file at p (whose entry path is rel).
func (s *sender) file(ctx context.Context, p, rel string, info fs.FileInfo) error {
	f, err := os.Open(p)
	if err != nil {
		return osError(s.op, p, err)
	}
	defer f.Close()
	return s.openFile(ctx, f, p, rel)
}

// openFile sends the open file f: its header, its content and the
// CRC-32C of the content.
func (s *sender) openFile(ctx context.Context, f *os.File, p, rel string) error {
	st, err := f.Stat()
	if err != nil {
		return osError(s.op, p, err)
	}
	mode := perm(st.Mode())
	if s.mode != nil {
		mode = perm(*s.mode)
	}
	size := st.Size()
	if err := s.header(header{Kind: kindFile, Path: rel, Mode: mode, MTime: st.ModTime().UnixNano(), Size: size}); err != nil {
		return err
	}
	src := &sumReader{ctx: ctx, op: s.op, path: p, f: f, size: size, left: size}
	// The bytes are read straight into the stream's frames (bufio.Writer
	// hands the reader to the stream's ReadFrom once its buffer is
	// flushed), and summed as they are read.
	if _, err := s.w.ReadFrom(src); err != nil {
		return err
	}
	var sum [sumSize]byte
	binary.BigEndian.PutUint32(sum[:], src.crc)
	_, err = s.w.Write(sum[:])
	return err
}

// A sumReader reads the size bytes of a file being sent, computing
// their CRC-32C, and then reports io.EOF; a file that ends early is an
// OSError.
type sumReader struct {
	ctx        context.Context
	op, path   string
	f          *os.File
	crc        uint32 // CRC-32C of the bytes read so far
	size, left int64
}

func (r *sumReader) Read(b []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	if err := r.ctx.Err(); err != nil {
		return 0, context.Cause(r.ctx)
	}
	if int64(len(b)) > r.left {
		b = b[:r.left]
	}
	n, err := r.f.Read(b)
	r.crc = crc32.Update(r.crc, crcTable(), b[:n])
	r.left -= int64(n)
	switch {
	case err == io.EOF && r.left > 0:
		return n, &core.RemoteError{Kind: "OSError", Message: fmt.Sprintf("%s %s: file shrank while being sent (%d of %d bytes)", r.op, r.path, r.size-r.left, r.size)}
	case err != nil && err != io.EOF:
		return n, osError(r.op, r.path, err)
	}
	return n, nil
}

// receiver builds a tree at dest from a byte stream.
type receiver struct {
	op    string
	dest  string          // the destination path the caller named
	r     *bufio.Reader   // headers and small files
	cs    chunkReader     // r's source, for the content of larger files
	buf   []byte          // ioBuffer bytes for file content, made at first use
	root  *os.Root        // the directory being filled, for trees
	top   string          // its path
	temps []string        // temporary names to remove on failure
	swept map[string]bool // directories cleared of stale temporary names
	dirs  []header        // directories whose mode and mtime are set at the end
	stat  status

	keepSetuid bool // files keep their setuid and setgid bits
}

// A ReceiveOptions says how received files are written.
type ReceiveOptions struct {
	// KeepSetuid keeps the setuid and setgid bits of the files
	// received; without it they are cleared (a directory keeps its
	// setgid bit, which only says which group its new files get).
	KeepSetuid bool `cbor:"1,keyasint,omitempty"`
}

// receiveTree reads a tree from r and creates it at dest atomically: a
// file through a temp file renamed over dest; a new directory tree built
// in a temp directory renamed to dest; into an existing directory, file
// by file. On failure nothing partial stays behind.
func receiveTree(ctx context.Context, op string, r chunkReader, dest string, opts ReceiveOptions) (st status, err error) {
	rc := &receiver{op: op, dest: dest, r: bufio.NewReaderSize(r, recordBuffer), cs: r, keepSetuid: opts.KeepSetuid}
	var first header
	if err := readRecord(rc.r, &first); err != nil {
		return st, fmt.Errorf("%s %s: reading the first entry: %w", op, dest, err)
	}
	switch first.Kind {
	case kindFile:
		if first.Path != "" {
			return st, fmt.Errorf("%s %s: first entry has path %q", op, dest, first.Path)
		}
		if fi, err := os.Stat(dest); err == nil && fi.IsDir() {
			return st, &core.RemoteError{Kind: "OSError", Message: op + " " + dest + ": is a directory"}
		}
		dir, base := filepath.Split(dest)
		if dir == "" {
			dir = "."
		}
		// Assigned, not declared: cleanup must see the error returned.
		var root *os.Root
		if root, err = os.OpenRoot(dir); err != nil {
			return st, osError(op, dest, err)
		}
		defer root.Close()
		rc.root, rc.top = root, dir
		defer rc.cleanup(&err)
		if err := rc.file(ctx, first, base); err != nil {
			return st, err
		}
	case kindDir:
		if err := rc.tree(ctx, first); err != nil {
			return st, err
		}
		return rc.stat, nil
	default:
		return st, fmt.Errorf("%s %s: unexpected first entry kind %d", op, dest, first.Kind)
	}
	var end header
	if err := readRecord(rc.r, &end); err != nil || end.Kind != kindEnd {
		return st, fmt.Errorf("%s %s: missing end of transfer (%v)", op, dest, err)
	}
	return rc.stat, nil
}

// cleanup removes temp files when *err is set.
func (rc *receiver) cleanup(err *error) {
	if *err == nil {
		return
	}
	for _, t := range rc.temps {
		rc.root.Remove(t)
	}
}

// tree receives a directory tree whose root entry is first.
func (rc *receiver) tree(ctx context.Context, first header) (err error) {
	op, dest := rc.op, rc.dest
	fi, statErr := os.Stat(dest)
	fresh := errors.Is(statErr, fs.ErrNotExist)
	switch {
	case statErr != nil && !fresh:
		return osError(op, dest, statErr)
	case !fresh && !fi.IsDir():
		return &core.RemoteError{Kind: "OSError", Message: op + " " + dest + ": not a directory"}
	}
	top := dest
	if fresh {
		sweepParent(dest)
		// Assigned, not declared: the deferred removal must see the
		// error this function returns.
		if top, err = os.MkdirTemp(filepath.Dir(dest), tempPrefix(filepath.Base(dest))); err != nil {
			return osError(op, dest, err)
		}
		defer func() {
			if err != nil {
				os.RemoveAll(top)
			}
		}()
	}
	root, err := os.OpenRoot(top)
	if err != nil {
		return osError(op, dest, err)
	}
	defer root.Close()
	rc.root, rc.top = root, top
	defer rc.cleanup(&err)
	rc.dirs = append(rc.dirs, first)
	for {
		var h header
		if err := readRecord(rc.r, &h); err != nil {
			return fmt.Errorf("%s %s: reading an entry: %w", op, dest, err)
		}
		if h.Kind == kindEnd {
			break
		}
		rel, err := cleanRel(h.Path)
		if err != nil {
			return fmt.Errorf("%s %s: %w", op, dest, err)
		}
		full := filepath.Join(dest, rel)
		switch h.Kind {
		case kindDir:
			if err := root.Mkdir(rel, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
				return osError(op, full, err)
			}
			if fi, err := root.Lstat(rel); err != nil || !fi.IsDir() {
				return &core.RemoteError{Kind: "OSError", Message: op + " " + full + ": not a directory"}
			}
			rc.dirs = append(rc.dirs, h)
		case kindSymlink:
			if fi, err := root.Lstat(rel); err == nil {
				if fi.IsDir() {
					return &core.RemoteError{Kind: "OSError", Message: op + " " + full + ": is a directory"}
				}
				if err := root.Remove(rel); err != nil {
					return osError(op, full, err)
				}
			}
			if err := root.Symlink(h.Link, rel); err != nil {
				return osError(op, full, err)
			}
		case kindFile:
			if err := rc.file(ctx, h, rel); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s %s: unknown entry kind %d", op, dest, h.Kind)
		}
	}
	// Modes and mtimes of directories last, deepest first, since
	// creating their entries changed their mtimes.
	for i := len(rc.dirs) - 1; i >= 0; i-- {
		d := rc.dirs[i]
		rel := d.Path
		if rel == "" {
			rel = "."
		}
		if err := root.Chmod(rel, ModeOf(d.Mode)); err != nil {
			return osError(op, filepath.Join(dest, rel), err)
		}
		t := time.Unix(0, d.MTime)
		if err := root.Chtimes(rel, t, t); err != nil {
			return osError(op, filepath.Join(dest, rel), err)
		}
	}
	if fresh {
		if err := os.Rename(top, dest); err != nil {
			return osError(op, dest, err)
		}
	}
	return nil
}

// cleanRel checks a relative slash path from the wire: no absolute
// paths, no empty or dot components, no "..".
func cleanRel(p string) (string, error) {
	if p == "" || path.IsAbs(p) || path.Clean(p) != p || p == ".." || strings.HasPrefix(p, "../") || strings.Contains(p, "\\") {
		return "", fmt.Errorf("refusing entry path %q", p)
	}
	return filepath.FromSlash(p), nil
}

// file receives one file's content into a temporary file beside rel (in
// rc.root), verifies size and CRC-32C, sets mode and mtime, and renames it
// over rel.
func (rc *receiver) file(ctx context.Context, h header, rel string) error {
	full := filepath.Join(rc.dest, rel)
	if h.Path == "" {
		full = rc.dest
	}
	if h.Size < 0 {
		return fmt.Errorf("%s %s: negative size", rc.op, full)
	}
	dir, base := filepath.Split(rel)
	tf, err := rc.createTemp(dir, base)
	if err != nil {
		return osError(rc.op, full, err)
	}
	f := tf.f
	fail := func(err error) error {
		tf.close()
		return err
	}
	var crc uint32
	left := h.Size
	// Bytes already in rc.r come first: sum and write them here.
	if n := int(min(int64(rc.r.Buffered()), left)); n > 0 {
		c, _ := rc.r.Peek(n)
		crc = crc32.Update(crc, crcTable(), c)
		_, err := f.Write(c)
		rc.r.Discard(n)
		if err != nil {
			return fail(osError(rc.op, full, err))
		}
		left -= int64(n)
	}
	// Then the rest, straight from the stream.
	if left > 0 {
		if crc, err = rc.chunks(ctx, f, crc, full, h.Size, left); err != nil {
			return fail(err)
		}
	}
	var trailer [sumSize]byte
	if _, err := io.ReadFull(rc.r, trailer[:]); err != nil {
		return fail(fmt.Errorf("%s %s: reading the checksum: %w", rc.op, full, err))
	}
	if want := binary.BigEndian.Uint32(trailer[:]); crc != want {
		return fail(fmt.Errorf("%s %s: checksum mismatch: received crc32c 0x%08x, sender had 0x%08x", rc.op, full, crc, want))
	}
	mode := ModeOf(h.Mode)
	if !rc.keepSetuid {
		mode &^= fs.ModeSetuid | fs.ModeSetgid
	}
	if err := f.Chmod(mode); err != nil {
		return fail(osError(rc.op, full, err))
	}
	tmp, err := rc.nameTemp(tf, dir, base)
	if err != nil {
		return fail(osError(rc.op, full, err))
	}
	if err := tf.close(); err != nil {
		return osError(rc.op, full, err)
	}
	t := time.Unix(0, h.MTime)
	if err := rc.root.Chtimes(tmp, t, t); err != nil {
		return osError(rc.op, full, err)
	}
	if err := rc.root.Rename(tmp, rel); err != nil {
		return osError(rc.op, full, err)
	}
	rc.temps = rc.temps[:len(rc.temps)-1]
	rc.stat.Files++
	rc.stat.Bytes += h.Size
	return nil
}

// chunks receives the last left of a file's size bytes into f, summing
// them. They are copied out of the stream's frames, which lets the
// stream give the frames' memory back at once (a transfer then reuses a
// few buffers however large it is), and written in pieces of up to
// ioBuffer bytes.
func (rc *receiver) chunks(ctx context.Context, f *os.File, crc uint32, full string, size, left int64) (uint32, error) {
	if rc.buf == nil {
		rc.buf = make([]byte, ioBuffer)
	}
	for left > 0 {
		n, err := rc.cs.ReadContext(ctx, rc.buf[:min(left, int64(len(rc.buf)))])
		if n > 0 {
			crc = crc32.Update(crc, crcTable(), rc.buf[:n])
			if _, werr := f.Write(rc.buf[:n]); werr != nil {
				return crc, osError(rc.op, full, werr)
			}
			left -= int64(n)
		}
		if err != nil {
			if ctx.Err() != nil {
				return crc, context.Cause(ctx)
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return crc, fmt.Errorf("%s %s: transfer broke after %d of %d bytes: %w", rc.op, full, size-left, size, err)
		}
	}
	return crc, nil
}

package files

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mitostar/mitostar/core"
	"github.com/mitostar/mitostar/internal/testbed"
)

func init() {
	// A child started with this variable receives into named temporary
	// files from the start, as on a system without O_TMPFILE.
	if os.Getenv("MITOSTAR_TEST_NAMED_TEMPS") == "1" {
		useAnonymous = false
	}
	// files.test.evil_send(addr, variant, outside) is a hostile sender:
	// a child that answers fs.get with a tree crafted to escape.
	core.RegisterFunc("files.test.evil_send", func(ctx context.Context, c *core.Call) (any, error) {
		var a struct {
			_       struct{} `cbor:",toarray"`
			Addr    core.StreamAddr
			Variant string
			Outside string
		}
		if err := c.Args(&a); err != nil {
			return nil, err
		}
		s, err := c.Router.DialByteStream(ctx, a.Addr, nil)
		if err != nil {
			return nil, err
		}
		// As files.send: the call returns, the sending goes on.
		c.Router.Go(func() { evilSend(c.Router.Lifetime(), s, a.Variant, a.Outside) })
		return nil, nil
	})
	core.RegisterFunc("files.test.pid", func(ctx context.Context, c *core.Call) (any, error) { return os.Getpid(), nil })
}

// evilSend writes variant's crafted tree to s.
func evilSend(ctx context.Context, s *core.ByteStream, variant, outside string) {
	defer s.Close()
	if err := writeEntries(s, evilTree(variant, outside)); err != nil {
		return
	}
	s.CloseWrite()
	var b [1]byte
	s.ReadContext(ctx, b[:]) // until the receiver is done
}

// writeEntries writes entries in the tree format, each file followed by
// its checksum trailer (or not, or a wrong one, as the entry says).
func writeEntries(s io.Writer, entries []evilEntry) error {
	w := bufio.NewWriter(s)
	for _, e := range entries {
		if err := writeRecord(w, &e.h); err != nil {
			return err
		}
		if e.h.Kind == kindFile {
			sum := trailer(e.data)
			if e.badSum {
				sum[0] ^= 1
			}
			w.Write(corrupted(e))
			if !e.short {
				w.Write(sum[:])
			}
		}
	}
	return w.Flush()
}

// trailer is the checksum a sender writes after data: its CRC-32C,
// big-endian.
func trailer(data []byte) [sumSize]byte {
	var b [sumSize]byte
	binary.BigEndian.PutUint32(b[:], crc32.Checksum(data, crcTable()))
	return b
}

// corrupted is the content of e as it arrives: with e.corrupt, one bit
// in its middle flipped after the sender summed it.
func corrupted(e evilEntry) []byte {
	if !e.corrupt {
		return e.data
	}
	d := bytes.Clone(e.data)
	d[len(d)/2] ^= 0x10
	return d
}

type evilEntry struct {
	h       header
	data    []byte
	badSum  bool // the checksum does not match
	corrupt bool // the content changes in flight, after the sender summed it
	short   bool // the stream ends inside the file
}

func evilFile(path string, data string) evilEntry {
	return evilEntry{h: header{Kind: kindFile, Path: path, Mode: 0o644, Size: int64(len(data))}, data: []byte(data)}
}

// evilTree is what a hostile sender sends for variant; outside is a
// directory the receiver must never touch.
func evilTree(variant, outside string) []evilEntry {
	root := evilEntry{h: header{Kind: kindDir, Mode: 0o755}}
	end := evilEntry{h: header{Kind: kindEnd}}
	link := func(path, target string) evilEntry {
		return evilEntry{h: header{Kind: kindSymlink, Path: path, Link: target}}
	}
	switch variant {
	case "dotdot":
		return []evilEntry{root, evilFile("ok", "fine"), evilFile("../escaped", "evil"), end}
	case "deep-dotdot":
		return []evilEntry{root, {h: header{Kind: kindDir, Path: "a", Mode: 0o755}}, evilFile("a/../../escaped", "evil"), end}
	case "absolute":
		return []evilEntry{root, evilFile(filepath.Join(outside, "escaped"), "evil"), end}
	case "symlink-out":
		return []evilEntry{root, link("link", outside), evilFile("link/escaped", "evil"), end}
	case "symlink-up":
		return []evilEntry{root, link("up", ".."), evilFile("up/escaped", "evil"), end}
	case "dir-over-symlink":
		return []evilEntry{root, link("d", outside), {h: header{Kind: kindDir, Path: "d", Mode: 0o755}}, evilFile("d/escaped", "evil"), end}
	case "through-existing-link":
		return []evilEntry{root, evilFile("out/escaped", "evil"), end} // dest already holds out -> outside
	case "bad-sum":
		e := evilFile("f", "tampered")
		e.badSum = true
		return []evilEntry{root, evilFile("ok", "fine"), e, end}
	case "bad-content":
		// Larger than the receiver's read buffer: it arrives through
		// the stream's own chunks.
		e := evilFile("f", string(bigContent()))
		e.corrupt = true
		return []evilEntry{root, evilFile("ok", "fine"), e, end}
	case "file-bad-content":
		e := evilFile("", string(bigContent()))
		e.corrupt = true
		return []evilEntry{e, end}
	case "short":
		e := evilFile("f", "cut short")
		e.short = true
		return []evilEntry{root, evilFile("ok", "fine"), e}
	case "file-with-path":
		return []evilEntry{evilFile("x", "evil"), end}
	}
	panic("unknown variant " + variant)
}

// A hostile sender's tree is refused, and the refusal leaves nothing:
// no temporary directory or file, nothing outside the destination, an
// existing destination as it was.
func TestHostileSender(t *testing.T) {
	r := newMaster(t)
	c := child(t, r, nil)
	for _, tc := range []struct{ variant, want string }{
		{"dotdot", `refusing entry path "../escaped"`},
		{"deep-dotdot", `refusing entry path "a/../../escaped"`},
		{"absolute", "refusing entry path"},
		{"symlink-out", "escapes"},
		{"symlink-up", "escapes"},
		{"dir-over-symlink", "not a directory"},
		{"through-existing-link", "escapes"},
		{"bad-sum", "f: checksum mismatch: received crc32c 0x"},
		{"bad-content", "f: checksum mismatch: received crc32c 0x"},
		{"file-bad-content", "dest: checksum mismatch: received crc32c 0x"},
		{"short", "reading"},
		{"file-with-path", `first entry has path "x"`},
	} {
		t.Run(tc.variant, func(t *testing.T) {
			base := t.TempDir()
			outside := filepath.Join(base, "outside")
			os.Mkdir(outside, 0o755)
			dest := filepath.Join(base, "dest")
			merge := tc.variant == "through-existing-link"
			if merge {
				os.Mkdir(dest, 0o755)
				if err := os.Symlink(outside, filepath.Join(dest, "out")); err != nil {
					t.Fatal(err)
				}
			}
			s, err := r.NewByteStream(c, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ctx := testCtx(t)
			if err := c.Call(ctx, nil, "files.test.evil_send", s.Addr(), tc.variant, outside); err != nil {
				t.Fatal(err)
			}
			_, err = receiveTree(ctx, "fs.get", s, dest, ReceiveOptions{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
			s.Abort(err)
			// Nothing anywhere but what was there before.
			var got []string
			filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
				if p != base {
					rel, _ := filepath.Rel(base, p)
					got = append(got, rel)
				}
				return nil
			})
			want := "[outside]"
			if merge {
				want = "[dest dest/out outside]"
			}
			if fmt.Sprint(got) != want {
				t.Errorf("left behind: %v, want %s", got, want)
			}
		})
	}
}

// bigContent is 1 MiB of a fixed pseudo-random pattern: larger than the
// receiver's read buffer, so that it arrives through the stream's chunks.
// startReceive opens a byte stream to c and has c receive what comes on
// it into dest (files.receive); the stream is closed when the test ends.
func startReceive(ctx context.Context, t *testing.T, r *core.Router, c *core.Context, dest string) *core.ByteStream {
	t.Helper()
	s, err := r.NewByteStream(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := c.Call(ctx, nil, "files.receive", s.Addr(), dest, ReceiveOptions{}); err != nil {
		t.Fatal(err)
	}
	return s
}

func bigContent() []byte {
	b := make([]byte, 1<<20)
	x := uint32(1)
	for i := range b {
		x = x*1664525 + 1013904223
		b[i] = byte(x >> 24)
	}
	return b
}

// Content changed between the sender's read and the receiver (what a
// bug in the stream layer would do: a lost, duplicated or reordered
// chunk) is refused with an OSError naming the path and both checksums,
// and leaves nothing behind: no temporary file or directory, an
// existing destination file as it was. The receiver is a child's
// files.receive, as for fs.put, writing into anonymous and into named
// temporary files.
func TestCorruptedInFlight(t *testing.T) {
	for _, named := range []bool{false, true} {
		name := "anonymous"
		if named {
			name = "named"
		}
		t.Run(name, func(t *testing.T) {
			useTemps(t, named)
			r := newMaster(t)
			c := child(t, r, nil)
			ctx := testCtx(t)
			for _, tc := range []struct {
				name string
				tree bool
				data []byte
			}{
				{"small-file", false, []byte("a small file, read along with its header")},
				{"big-file", false, bigContent()},
				{"tree", true, bigContent()},
			} {
				t.Run(tc.name, func(t *testing.T) {
					dir := t.TempDir()
					dest := filepath.Join(dir, "dest")
					end := evilEntry{h: header{Kind: kindEnd}}
					bad := evilEntry{h: header{Kind: kindFile, Mode: 0o644, Size: int64(len(tc.data))}, data: tc.data, corrupt: true}
					full, entries := dest, []evilEntry{bad, end}
					mtime := time.Date(2020, 2, 2, 2, 2, 2, 0, time.UTC)
					if tc.tree {
						bad.h.Path = "f"
						full = filepath.Join(dest, "f")
						entries = []evilEntry{{h: header{Kind: kindDir, Mode: 0o755}}, evilFile("ok", "fine"), bad, end}
					} else {
						writeFile(t, dest, []byte("before"), 0o600, mtime)
					}
					s := startReceive(ctx, t, r, c, dest)
					writeEntries(s, entries) // fails once the receiver has refused
					err := s.CloseWriteContext(ctx)
					if err == nil {
						var st status
						if err = readRecord(s, &st); err == nil {
							t.Fatalf("the corrupted transfer succeeded: %+v", st)
						}
					}
					want := fmt.Sprintf("fs.put %s: checksum mismatch: received crc32c 0x%08x, sender had 0x%08x",
						full, crc32.Checksum(corrupted(bad), crcTable()), crc32.Checksum(tc.data, crcTable()))
					wantOSError(t, preferRemote(s, err), want)
					left := names(t, dir)
					if tc.tree {
						if len(left) != 0 {
							t.Fatalf("a refused tree left %v", left)
						}
						return
					}
					if fmt.Sprint(left) != "[dest]" {
						t.Fatalf("left %v, want only the destination as it was", left)
					}
					got, err := os.ReadFile(dest)
					if err != nil || string(got) != "before" {
						t.Fatalf("the destination now holds %q (%v), want it as it was", got, err)
					}
					if fi, err := os.Stat(dest); err != nil || fi.Mode() != 0o600 || !fi.ModTime().Equal(mtime) {
						t.Fatalf("the destination's mode or mtime changed: %v", fi)
					}
				})
			}
		})
	}
}

// A received file keeps its setuid and setgid bits only when asked;
// directories keep setgid.
func TestSetuidKeptOnlyWhenAsked(t *testing.T) {
	r := newMaster(t)
	c := child(t, r, nil)
	ctx := testCtx(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "tool")
	writeFile(t, src, []byte("#!/bin/sh\n"), 0o755|fs.ModeSetuid|fs.ModeSetgid, time.Now())
	tree := filepath.Join(dir, "tree")
	os.Mkdir(tree, 0o755)
	os.Chmod(tree, 0o755|fs.ModeSetgid)
	writeFile(t, filepath.Join(tree, "tool"), []byte("x"), 0o4711, time.Now())
	os.Chmod(filepath.Join(tree, "tool"), 0o711|fs.ModeSetuid)
	mode := func(p string) fs.FileMode {
		t.Helper()
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Mode()
	}
	check := func(what string, err error, p string, want fs.FileMode) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got := mode(p); got != want {
			t.Errorf("%s: mode %v, want %v", what, got, want)
		}
	}
	out := filepath.Join(dir, "out")
	os.Mkdir(out, 0o755)
	plain, all := fs.FileMode(0o755), 0o755|fs.ModeSetuid|fs.ModeSetgid
	check("put", Put(ctx, r, c, src, filepath.Join(out, "put"), nil, false), filepath.Join(out, "put"), plain)
	check("get", Get(ctx, r, c, src, filepath.Join(out, "get"), false), filepath.Join(out, "get"), plain)
	check("put keep", PutWith(ctx, r, c, src, filepath.Join(out, "putk"), Options{KeepSetuid: true}), filepath.Join(out, "putk"), all)
	check("get keep", GetWith(ctx, r, c, src, filepath.Join(out, "getk"), Options{KeepSetuid: true}), filepath.Join(out, "getk"), all)
	m := 0o711 | fs.ModeSetuid
	check("put mode=0o4711", Put(ctx, r, c, src, filepath.Join(out, "putm"), &m, false), filepath.Join(out, "putm"), m)
	check("get tree", Get(ctx, r, c, tree, filepath.Join(out, "tree"), true), filepath.Join(out, "tree", "tool"), 0o711)
	if got := mode(filepath.Join(out, "tree")); got != fs.ModeDir|0o755|fs.ModeSetgid {
		t.Errorf("tree directory: mode %v, want its setgid kept", got)
	}
	noTemps(t, dir)
}

// A transfer whose receiver is killed leaves no data behind: on Linux
// it writes into an anonymous file until the file is complete; with
// named temporary files (elsewhere), the next transfer into the
// directory removes what the killed one left. A temporary directory of
// a new tree is removed the same way.
func TestKilledTransfer(t *testing.T) {
	for _, tc := range []struct {
		name  string
		named bool
		tree  bool
	}{{"anonymous", false, false}, {"named", true, false}, {"tree", false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			useTemps(t, tc.named)
			r := newMaster(t)
			c := child(t, r, nil)
			ctx := testCtx(t)
			var pid int
			if err := c.Call(ctx, &pid, "files.test.pid"); err != nil {
				t.Fatal(err)
			}
			dst := t.TempDir()
			target := filepath.Join(dst, "big")
			s := startReceive(ctx, t, r, c, target)
			// A 1 GiB file of which 8 MiB arrive before the receiver dies.
			w := bufio.NewWriter(s)
			if tc.tree {
				writeRecord(w, &header{Kind: kindDir, Mode: 0o755})
				writeRecord(w, &header{Kind: kindFile, Path: "done", Mode: 0o644, Size: 4})
				w.WriteString("done")
				sum := trailer([]byte("done"))
				w.Write(sum[:])
				writeRecord(w, &header{Kind: kindFile, Path: "big", Mode: 0o644, Size: 1 << 30})
			} else {
				writeRecord(w, &header{Kind: kindFile, Mode: 0o644, Size: 1 << 30})
			}
			io.CopyN(w, zeros{}, 8<<20)
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the receiver to write", func() bool { return receiving(pid, dst) })
			syscall.Kill(pid, syscall.SIGKILL)
			select {
			case <-c.Disconnected():
			case <-ctx.Done():
				t.Fatal("the killed child was not seen to go")
			}
			left := names(t, dst)
			switch {
			case tc.tree:
				if len(left) != 1 || !strings.HasPrefix(left[0], ".big.mitostar-") {
					t.Fatalf("a killed tree transfer left %v, want its temporary directory", left)
				}
			case tc.named:
				if len(left) != 1 || !strings.HasPrefix(left[0], ".big.mitostar-") {
					t.Fatalf("left %v, want one named temporary file", left)
				}
			default:
				if len(left) != 0 {
					t.Fatalf("a killed transfer left %v", left)
				}
				return
			}
			// The next transfer into the directory removes it.
			src := filepath.Join(t.TempDir(), "small")
			writeFile(t, src, []byte("small"), 0o644, time.Now())
			c2 := child(t, r, nil)
			if err := Put(ctx, r, c2, src, filepath.Join(dst, "small"), nil, false); err != nil {
				t.Fatal(err)
			}
			if left := names(t, dst); fmt.Sprint(left) != "[small]" {
				t.Fatalf("after the next transfer: %v, want [small]", left)
			}
		})
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// receiving reports whether process pid has written into a file under
// dir: an anonymous one (open, "(deleted)" in /proc), or a named
// temporary file or directory with data.
func receiving(pid int, dir string) bool {
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, fd := range fds {
		p, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(p, dir+"/") && strings.HasSuffix(p, "(deleted)") {
			if fi, err := os.Stat(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && fi.Size() > 0 {
				return true
			}
		}
	}
	found := false
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.Contains(p, ".mitostar-") {
			if fi, err := d.Info(); err == nil && fi.Size() > 0 {
				found = true
			}
		}
		return nil
	})
	return found
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// useTemps makes the children a test starts write into named temporary
// files, or skips the test where anonymous ones (O_TMPFILE) are missing.
func useTemps(t *testing.T, named bool) {
	t.Helper()
	if named {
		t.Setenv("MITOSTAR_TEST_NAMED_TEMPS", "1") // read by the children at start
	} else if !useAnonymous {
		testbed.Unavailable(t, "no O_TMPFILE on this system")
	}
}

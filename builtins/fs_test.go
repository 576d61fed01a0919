package builtins

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.starlark.net/starlark"
)

// fsTestDir returns a fresh directory and a Starlark assignment of its
// path to the global d.
func fsTestDir(t *testing.T) (dir, src string) {
	dir = t.TempDir()
	return dir, fmt.Sprintf("d = %q\n", dir)
}

func fsTestWrite(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func fsTestMode(t *testing.T, path string) uint32 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Mode & 0o7777
}

func TestFsReadWrite(t *testing.T) {
	dir, d := fsTestDir(t)
	g := osTestRun(t, d+`
fs.write(d + "/s", "text ✓")
fs.write(d + "/b", b"\x00\xff\xfe", mode=0o600)
fs.write(path=d + "/x", data="#!/bin/sh\n", mode=0o4755)
fs.write(d + "/s", "replaced")
s, b = fs.read(d + "/s"), fs.read(d + "/b")
names = fs.listdir(d)
empty = fs.read("/dev/null")
fs.write(d + "/e", "")
e = fs.read(d + "/e")
`)
	if got := osTestGet[starlark.Bytes](t, g, "s"); got != "replaced" {
		t.Errorf("read = %q", got)
	}
	if got := osTestGet[starlark.Bytes](t, g, "b"); got != "\x00\xff\xfe" {
		t.Errorf("read of bytes = %q", got)
	}
	if osTestGet[starlark.Bytes](t, g, "empty") != "" || osTestGet[starlark.Bytes](t, g, "e") != "" {
		t.Errorf("empty reads: %q %q", g["empty"], g["e"])
	}
	// Modes are exact (no umask), setuid included.
	for name, want := range map[string]uint32{"s": 0o644, "b": 0o600, "x": 0o4755} {
		if got := fsTestMode(t, filepath.Join(dir, name)); got != want {
			t.Errorf("mode of %s = %#o, want %#o", name, got, want)
		}
	}
	// No temporary file is left behind.
	if got := g["names"].String(); got != `["b", "s", "x"]` {
		t.Errorf("listdir after writes = %s", got)
	}
}

func TestFsWriteReplacesLinkAndKeepsOwner(t *testing.T) {
	dir, d := fsTestDir(t)
	target := filepath.Join(dir, "target")
	fsTestWrite(t, target, "target", 0o644)
	if err := os.Symlink("target", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	owned := filepath.Join(dir, "owned")
	fsTestWrite(t, owned, "old", 0o644)
	if os.Geteuid() == 0 {
		if err := os.Chown(owned, 12345, 23456); err != nil {
			t.Fatal(err)
		}
	}
	osTestRun(t, d+`
fs.write(d + "/link", "new")
fs.write(d + "/owned", "new")
`)
	if b, _ := os.ReadFile(target); string(b) != "target" {
		t.Errorf("write through a symlink changed its target: %q", b)
	}
	if fi, err := os.Lstat(filepath.Join(dir, "link")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("link after write: %v %v, want a regular file", fi.Mode(), err)
	}
	if os.Geteuid() == 0 {
		var st syscall.Stat_t
		if err := syscall.Stat(owned, &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != 12345 || st.Gid != 23456 {
			t.Errorf("root's write changed the owner to %d:%d, want 12345:23456", st.Uid, st.Gid)
		}
	}
}

func TestFsReadWriteErrors(t *testing.T) {
	dir, d := fsTestDir(t)
	file := filepath.Join(dir, "file")
	fsTestWrite(t, file, "content", 0o644)
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ src, kind, want string }{
		{`fs.read(d + "/missing")`, "OSError", "fs.read " + dir + "/missing: no such file or directory"},
		{`fs.read(d)`, "OSError", "fs.read " + dir + ": is a directory"},
		{`fs.read(d + "/file/x")`, "OSError", "fs.read " + dir + "/file/x: not a directory"},
		{`fs.write(d + "/missing/f", "x")`, "OSError", "fs.write " + dir + "/missing/f: no such file or directory"},
		{`fs.write(d + "/sub", "x")`, "OSError", "fs.write " + dir + "/sub: is a directory"},
		{`fs.write(d + "/file/x", "x")`, "OSError", "fs.write " + dir + "/file/x: not a directory"},
		{`fs.write(d + "/f", 1)`, "Error", "fs.write: data must be a string or bytes, got int"},
		{`fs.write(d + "/f", "x", mode=0o10000)`, "Error", "fs.write: mode must be between 0 and 0o7777, got 010000"},
		{`fs.write(d + "/f", "x", mode=-1)`, "Error", "fs.write: mode must be between 0 and 0o7777, got -01"},
		{`fs.write(d + "/f")`, "Error", "fs.write: missing argument for data"},
		{`fs.read(1)`, "Error", "fs.read: for parameter path: got int, want string"},
	} {
		osTestWantError(t, d+tc.src, tc.kind, tc.want)
	}
	// A failed write leaves nothing behind.
	if names, _ := os.ReadDir(filepath.Join(dir, "sub")); len(names) != 0 {
		t.Errorf("sub holds %v", names)
	}
	if names, _ := os.ReadDir(dir); len(names) != 2 {
		t.Errorf("%s holds %v, want file and sub", dir, names)
	}
	if os.Geteuid() != 0 {
		fsTestWrite(t, filepath.Join(dir, "secret"), "x", 0)
		osTestWantError(t, d+`fs.read(d + "/secret")`, "OSError", "fs.read "+dir+"/secret: permission denied")
		osTestWantError(t, d+`fs.sha256(d + "/secret")`, "OSError", "fs.sha256 "+dir+"/secret: permission denied")
		if err := os.Chmod(filepath.Join(dir, "sub"), 0o500); err != nil {
			t.Fatal(err)
		}
		osTestWantError(t, d+`fs.write(d + "/sub/f", "x")`, "OSError", "fs.write "+dir+"/sub/f: permission denied")
	}
}

func TestFsReadLimit(t *testing.T) {
	dir, d := fsTestDir(t)
	old := fsReadLimit
	fsReadLimit = 4 << 20
	t.Cleanup(func() { fsReadLimit = old })
	fsTestWrite(t, filepath.Join(dir, "max"), strings.Repeat("x", 4<<20), 0o644)
	fsTestWrite(t, filepath.Join(dir, "over"), strings.Repeat("x", 4<<20+1), 0o644)
	g := osTestRun(t, d+`n = len(fs.read(d + "/max"))`)
	if n := osTestInt(t, g, "n"); n != 4<<20 {
		t.Errorf("read of a file at the limit: %d bytes", n)
	}
	osTestWantError(t, d+`fs.read(d + "/over")`, "Error",
		"fs.read "+dir+"/over: file is larger than the 4 MiB limit of fs.read (fs.get streams big files)")
	// Devices without an end stop at the limit too.
	osTestWantError(t, `fs.read("/dev/zero")`, "Error",
		"fs.read /dev/zero: file is larger than the 4 MiB limit of fs.read (fs.get streams big files)")
}

func TestFsCancelledRead(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	thread := &starlark.Thread{}
	SetThreadContext(thread, ctx)
	for _, fn := range []string{"read", "sha256"} {
		_, err := osTestExec(thread, fmt.Sprintf(`fs.%s("/dev/zero")`, fn))
		if !errors.Is(err, context.Canceled) {
			t.Errorf("fs.%s on a cancelled thread: %v", fn, err)
		}
		if _, msg := osTestError(err); msg != "fs."+fn+" /dev/zero: stopped: context canceled" {
			t.Errorf("fs.%s on a cancelled thread: message %q", fn, msg)
		}
	}
}

func TestFsExistsStat(t *testing.T) {
	dir, d := fsTestDir(t)
	file := filepath.Join(dir, "file")
	fsTestWrite(t, file, "12345", 0o640)
	mtime := time.Unix(1700000000, 500000000)
	if err := os.Chtimes(file, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o2750); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Chmod(filepath.Join(dir, "sub"), 0o2750); err != nil {
		t.Fatal(err)
	}
	os.Symlink("sub", filepath.Join(dir, "dirlink"))
	os.Symlink("nowhere", filepath.Join(dir, "dangling"))
	g := osTestRun(t, d+`
exists = [fs.exists(d + p) for p in ["/file", "/sub", "/dirlink", "/dangling", "/missing", "/file/x"]]
f, s, l, dl = fs.stat(d + "/file"), fs.stat(d + "/sub"), fs.stat(d + "/dirlink"), fs.stat(d + "/dangling")
`)
	if got := g["exists"].String(); got != "[True, True, True, False, False, False]" {
		t.Errorf("exists = %s", got)
	}
	uid, gid := os.Geteuid(), os.Getegid()
	for _, tc := range []struct {
		name  string
		want  string
		fixed bool // mtime known
	}{
		{"f", fmt.Sprintf("size=5 mode=%d uid=%d gid=%d is_dir=False is_link=False", 0o640, uid, gid), true},
		{"s", fmt.Sprintf("mode=%d uid=%d gid=%d is_dir=True is_link=False", 0o2750, uid, gid), false},
		{"l", fmt.Sprintf("size=3 mode=%d uid=%d is_dir=False is_link=True", 0o777, uid), false},
		{"dl", "size=7 is_dir=False is_link=True", false},
	} {
		var parts []string
		for _, attr := range strings.Fields(tc.want) {
			name, _, _ := strings.Cut(attr, "=")
			parts = append(parts, name+"="+osTestAttr(t, g[tc.name], name).String())
		}
		if got := strings.Join(parts, " "); got != tc.want {
			t.Errorf("stat %s: %s, want %s", tc.name, got, tc.want)
		}
	}
	if mt := osTestAttr(t, g["f"], "mtime"); mt != starlark.Float(1700000000.5) {
		t.Errorf("mtime = %v, want 1700000000.5", mt)
	}
	fi, _ := os.Stat(filepath.Join(dir, "sub"))
	if mt := float64(osTestAttr(t, g["s"], "mtime").(starlark.Float)); mt != float64(fi.ModTime().UnixNano())/1e9 {
		t.Errorf("dir mtime = %v, want %v", mt, fi.ModTime())
	}
	osTestWantError(t, d+`fs.stat(d + "/missing")`, "OSError", "fs.stat "+dir+"/missing: no such file or directory")
	osTestWantError(t, d+`fs.stat(d + "/file/x")`, "OSError", "fs.stat "+dir+"/file/x: not a directory")
	osTestWantError(t, `fs.exists()`, "Error", "fs.exists: missing argument for path")
	if os.Geteuid() != 0 {
		os.Chmod(filepath.Join(dir, "sub"), 0)
		t.Cleanup(func() { os.Chmod(filepath.Join(dir, "sub"), 0o755) })
		osTestWantError(t, d+`fs.exists(d + "/sub/x")`, "OSError", "fs.exists "+dir+"/sub/x: permission denied")
	}
}

func TestFsListdirMkdir(t *testing.T) {
	dir, d := fsTestDir(t)
	for _, name := range []string{"c", "a", "B", "b"} {
		fsTestWrite(t, filepath.Join(dir, name), "", 0o644)
	}
	g := osTestRun(t, d+`
names = fs.listdir(d)
fs.mkdir(d + "/p/q/r", mode=0o700)
fs.mkdir(d + "/p/q/r")                   # exists: nothing to do
fs.mkdir(d + "/p/q/r", mode=0o755)       # nor to its mode
fs.mkdir(d + "/one", parents=False, mode=0o2775)
fs.mkdir(path=d + "/dflt")
fs.mkdir(d + "/u/../v/")                 # creates u, as mkdir -p does
empty = fs.listdir(d + "/dflt")
`)
	if got := g["names"].String(); got != `["B", "a", "b", "c"]` {
		t.Errorf("listdir = %s", got)
	}
	for _, p := range []string{"u", "v"} {
		if fi, err := os.Stat(filepath.Join(dir, p)); err != nil || !fi.IsDir() {
			t.Errorf("mkdir u/../v: %s: %v", p, err)
		}
	}
	if got := g["empty"].String(); got != `[]` {
		t.Errorf("listdir of an empty directory = %s", got)
	}
	for name, want := range map[string]uint32{"p/q/r": 0o700, "one": 0o2775, "dflt": 0o755} {
		if got := fsTestMode(t, filepath.Join(dir, name)); got != want {
			t.Errorf("mode of %s = %#o, want %#o", name, got, want)
		}
	}
	for _, tc := range []struct{ src, kind, want string }{
		{`fs.listdir(d + "/a")`, "OSError", "fs.listdir " + dir + "/a: not a directory"},
		{`fs.listdir(d + "/missing")`, "OSError", "fs.listdir " + dir + "/missing: no such file or directory"},
		{`fs.mkdir(d + "/one", parents=False)`, "OSError", "fs.mkdir " + dir + "/one: file exists"},
		{`fs.mkdir(d + "/a")`, "OSError", "fs.mkdir " + dir + "/a: file exists"},
		{`fs.mkdir(d + "/x/y", parents=False)`, "OSError", "fs.mkdir " + dir + "/x/y: no such file or directory"},
		{`fs.mkdir(d + "/a/y/z")`, "OSError", "fs.mkdir " + dir + "/a/y/z: not a directory"},
		{`fs.mkdir(d + "/m", mode=0o17777)`, "Error", "fs.mkdir: mode must be between 0 and 0o7777, got 017777"},
		{`fs.mkdir(d + "/m", parents=1)`, "Error", `fs.mkdir: for parameter "parents": got int, want bool`},
	} {
		osTestWantError(t, d+tc.src, tc.kind, tc.want)
	}
}

func TestFsRemoveRename(t *testing.T) {
	dir, d := fsTestDir(t)
	for _, p := range []string{"tree/a/b", "tree/c", "keep", "empty"} {
		if err := os.MkdirAll(filepath.Join(dir, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	fsTestWrite(t, filepath.Join(dir, "tree/a/b/f"), "x", 0o644)
	fsTestWrite(t, filepath.Join(dir, "keep/f"), "keep", 0o644)
	fsTestWrite(t, filepath.Join(dir, "file"), "file", 0o644)
	os.Symlink("keep", filepath.Join(dir, "link"))
	os.Symlink("keep", filepath.Join(dir, "link2"))
	g := osTestRun(t, d+`
fs.remove(d + "/file")
fs.remove(d + "/empty")
fs.remove(d + "/link")
fs.remove(d + "/link2", recursive=True)  # the link, not what it points to
fs.remove(d + "/tree", recursive=True)
fs.rename(d + "/keep", d + "/kept")
fs.rename(src=d + "/kept/f", dst=d + "/f")
names = fs.listdir(d)
`)
	if got := g["names"].String(); got != `["f", "kept"]` {
		t.Errorf("after remove and rename: %s", got)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "f")); string(b) != "keep" {
		t.Errorf("renamed file holds %q", b)
	}
	if err := os.MkdirAll(filepath.Join(dir, "full/sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ src, kind, want string }{
		{`fs.remove(d + "/missing")`, "OSError", "fs.remove " + dir + "/missing: no such file or directory"},
		{`fs.remove(d + "/missing", recursive=True)`, "OSError", "fs.remove " + dir + "/missing: no such file or directory"},
		{`fs.remove(d + "/full")`, "OSError", "fs.remove " + dir + "/full: directory not empty"},
		{`fs.remove("/", recursive=True)`, "Error", "fs.remove: refusing to remove / recursively"},
		{`fs.remove("//.", recursive=True)`, "Error", "fs.remove: refusing to remove / recursively"},
		{`fs.rename(d + "/missing", d + "/x")`, "OSError", "fs.rename " + dir + "/missing -> " + dir + "/x: no such file or directory"},
		{`fs.rename(d + "/f", d + "/full")`, "OSError", "fs.rename " + dir + "/f -> " + dir + "/full: is a directory"},
		{`fs.rename(d + "/f")`, "Error", "fs.rename: missing argument for dst"},
	} {
		osTestWantError(t, d+tc.src, tc.kind, tc.want)
	}
	if os.Geteuid() != 0 {
		fsTestWrite(t, filepath.Join(dir, "full/sub/f"), "", 0o644)
		os.Chmod(filepath.Join(dir, "full/sub"), 0o500)
		t.Cleanup(func() { os.Chmod(filepath.Join(dir, "full/sub"), 0o755) })
		osTestWantError(t, d+`fs.remove(d + "/full", recursive=True)`, "OSError", "fs.remove "+dir+"/full/sub/f: permission denied")
	}
}

// fs.rename has rename(2)'s semantics: a directory replaces an empty
// one, a file cannot replace a directory.
func TestFsRenameDirectories(t *testing.T) {
	dir, d := fsTestDir(t)
	fsTestWrite(t, filepath.Join(dir, "f"), "", 0o644)
	for _, p := range []string{"dir", "src/x", "empty", "full/y"} {
		if err := os.MkdirAll(filepath.Join(dir, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	osTestRun(t, d+`fs.rename(d + "/src", d + "/empty")`)
	if _, err := os.Stat(filepath.Join(dir, "empty/x")); err != nil {
		t.Errorf("directory renamed over an empty one: %v", err)
	}
	osTestWantError(t, d+`fs.rename(d + "/f", d + "/dir")`, "OSError", "fs.rename "+dir+"/f -> "+dir+"/dir: is a directory")
	osTestWantError(t, d+`fs.rename(d + "/dir", d + "/f")`, "OSError", "fs.rename "+dir+"/dir -> "+dir+"/f: not a directory")
	osTestWantError(t, d+`fs.rename(d + "/dir", d + "/full")`, "OSError", "fs.rename "+dir+"/dir -> "+dir+"/full: directory not empty")
}

func TestFsChmodChown(t *testing.T) {
	dir, d := fsTestDir(t)
	file := filepath.Join(dir, "f")
	fsTestWrite(t, file, "", 0o644)
	osTestRun(t, d+`fs.chmod(d + "/f", 0o1640)`)
	if got := fsTestMode(t, file); got != 0o1640 {
		t.Errorf("mode after chmod = %#o", got)
	}
	for _, tc := range []struct{ src, kind, want string }{
		{`fs.chmod(d + "/missing", 0o644)`, "OSError", "fs.chmod " + dir + "/missing: no such file or directory"},
		{`fs.chmod(d + "/f", 0o20000)`, "Error", "fs.chmod: mode must be between 0 and 0o7777, got 020000"},
		{`fs.chmod(d + "/f")`, "Error", "fs.chmod: missing argument for mode"},
		{`fs.chown(d + "/f")`, "Error", "fs.chown: user or group must be given"},
		{`fs.chown(d + "/f", user="mitostar-no-such-user")`, "Error", `fs.chown: unknown user "mitostar-no-such-user"`},
		{`fs.chown(d + "/f", group="mitostar-no-such-group")`, "Error", `fs.chown: unknown group "mitostar-no-such-group"`},
		{`fs.chown(d + "/f", user=-1)`, "Error", "fs.chown: invalid user id -1"},
		{`fs.chown(d + "/f", group=1 << 40)`, "Error", "fs.chown: invalid group id 1099511627776"},
		{`fs.chown(d + "/f", user=1.5)`, "Error", "fs.chown: user must be a name, an id or None, got float"},
		{`fs.chown(d + "/missing", user=0)`, "OSError", "fs.chown " + dir + "/missing: no such file or directory"},
	} {
		osTestWantError(t, d+tc.src, tc.kind, tc.want)
	}
	if os.Geteuid() != 0 {
		osTestWantError(t, d+`fs.chown(d + "/f", user=0)`, "OSError", "fs.chown "+dir+"/f: operation not permitted")
		return
	}
	owner := func() (uint32, uint32) {
		var st syscall.Stat_t
		if err := syscall.Stat(file, &st); err != nil {
			t.Fatal(err)
		}
		return st.Uid, st.Gid
	}
	for _, tc := range []struct {
		src      string
		uid, gid uint32
	}{
		{`fs.chown(d + "/f", user=12345)`, 12345, 0},
		{`fs.chown(d + "/f", group="23456")`, 12345, 23456},
		{`fs.chown(d + "/f", "root", "root")`, 0, 0},
		{`fs.chown(path=d + "/f", user="34567", group=45678)`, 34567, 45678},
		{`fs.chown(d + "/f", user="root")`, 0, 45678},
	} {
		osTestRun(t, d+tc.src)
		if uid, gid := owner(); uid != tc.uid || gid != tc.gid {
			t.Errorf("%s: owner %d:%d, want %d:%d", tc.src, uid, gid, tc.uid, tc.gid)
		}
	}
}

func TestFsLinks(t *testing.T) {
	dir, d := fsTestDir(t)
	fsTestWrite(t, filepath.Join(dir, "f"), "", 0o644)
	g := osTestRun(t, d+`
fs.symlink("f", d + "/rel")
fs.symlink(target="/nowhere", path=d + "/abs")
rel, abs = fs.readlink(d + "/rel"), fs.readlink(d + "/abs")
`)
	if rel, abs := string(osTestGet[starlark.String](t, g, "rel")), string(osTestGet[starlark.String](t, g, "abs")); rel != "f" || abs != "/nowhere" {
		t.Errorf("readlink: %q %q", rel, abs)
	}
	for _, tc := range []struct{ src, want string }{
		{`fs.readlink(d + "/f")`, "fs.readlink " + dir + "/f: invalid argument"},
		{`fs.readlink(d + "/missing")`, "fs.readlink " + dir + "/missing: no such file or directory"},
		{`fs.symlink("x", d + "/rel")`, "fs.symlink x -> " + dir + "/rel: file exists"},
		{`fs.symlink("x", d + "/missing/l")`, "fs.symlink x -> " + dir + "/missing/l: no such file or directory"},
	} {
		osTestWantError(t, d+tc.src, "OSError", tc.want)
	}
}

func TestFsEmptyPath(t *testing.T) {
	for _, src := range []string{
		`fs.read("")`, `fs.write("", "x")`, `fs.exists("")`, `fs.stat("")`, `fs.listdir("")`, `fs.mkdir("")`,
		`fs.remove("", recursive=True)`, `fs.rename("", "x")`, `fs.rename("x", "")`, `fs.chmod("", 0)`,
		`fs.chown("", 0)`, `fs.readlink("")`, `fs.symlink("", "x")`, `fs.sha256("")`,
	} {
		fn, _, _ := strings.Cut(src, "(")
		osTestWantError(t, src, "Error", fn+": empty path")
	}
}

func TestFsSHA256(t *testing.T) {
	dir, d := fsTestDir(t)
	big := strings.Repeat("mitostar", 1<<19) // 4 MiB, read as a stream
	fsTestWrite(t, filepath.Join(dir, "abc"), "abc", 0o644)
	fsTestWrite(t, filepath.Join(dir, "empty"), "", 0o644)
	fsTestWrite(t, filepath.Join(dir, "big"), big, 0o644)
	g := osTestRun(t, d+`
abc, empty, big = fs.sha256(d + "/abc"), fs.sha256(d + "/empty"), fs.sha256(d + "/big")
`)
	sum := sha256.Sum256([]byte(big))
	for name, want := range map[string]string{
		"abc":   "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
		"empty": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		"big":   hex.EncodeToString(sum[:]),
	} {
		if got := string(osTestGet[starlark.String](t, g, name)); got != want {
			t.Errorf("sha256 of %s = %s, want %s", name, got, want)
		}
	}
	osTestWantError(t, d+`fs.sha256(d)`, "OSError", "fs.sha256 "+dir+": is a directory")
	osTestWantError(t, d+`fs.sha256(d + "/missing")`, "OSError", "fs.sha256 "+dir+"/missing: no such file or directory")
}

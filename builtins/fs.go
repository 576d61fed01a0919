package builtins

// The fs module: files and directories of this context's host
// (docs/reference.md, "fs"; fs.put and fs.get, which stream between
// contexts, live with the file transfer code).
//
// Every failing system call is an OSError naming the call, the path and
// the errno text: "fs.read /etc/shadow: permission denied". Modes are
// the raw permission bits 0 to 0o7777 (setuid, setgid and sticky
// included) and are applied exactly, without the umask. Paths are
// relative to the context's working directory; a final symlink is
// followed except by stat, remove, rename, readlink and symlink, which
// act on the link itself.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

func init() {
	Register("fs.read", fsRead)
	Register("fs.write", fsWrite)
	Register("fs.exists", fsExists)
	Register("fs.stat", fsStat)
	Register("fs.listdir", fsListdir)
	Register("fs.mkdir", fsMkdir)
	Register("fs.remove", fsRemove)
	Register("fs.rename", fsRename)
	Register("fs.chmod", fsChmod)
	Register("fs.chown", fsChown)
	Register("fs.readlink", fsReadlink)
	Register("fs.symlink", fsSymlink)
	Register("fs.sha256", fsSHA256)
}

// fsReadLimit bounds what fs.read holds in memory: the default maximum
// message size, past which the bytes could not be returned to another
// context anyway (fs.get streams files of any size). A variable so that
// tests can lower it.
var fsReadLimit = 128 << 20

// fsCheckMode refuses a mode outside the permission bits.
func fsCheckMode(fn string, mode int) error {
	if mode < 0 || mode > 0o7777 {
		return fmt.Errorf("%s: mode must be between 0 and 0o7777, got %#o", fn, mode)
	}
	return nil
}

// fsCheckPaths refuses an empty path, which the system calls would
// report as a missing file without naming it.
func fsCheckPaths(fn string, paths ...string) error {
	for _, p := range paths {
		if p == "" {
			return fmt.Errorf("%s: empty path", fn)
		}
	}
	return nil
}

// fsReader reads r, failing once ctx (the thread's context) is done, so
// that reading a big file stops when the call is cancelled.
type fsReader struct {
	ctx context.Context
	r   io.Reader
}

func (r fsReader) Read(p []byte) (int, error) {
	if err := context.Cause(r.ctx); err != nil {
		return 0, fmt.Errorf("stopped: %w", err)
	}
	return r.r.Read(p)
}

// fsReadError reports an error of a read: the context's ending as is,
// anything else as an OSError.
func fsReadError(ctx context.Context, fn, path string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s %s: %w", fn, path, err)
	}
	return OSError(fn, path, err)
}

// read(path) returns the file's content as bytes.
func fsRead(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var path string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "path", &path); err != nil {
		return nil, err
	}
	if err := fsCheckPaths(b.Name(), path); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, OSError(b.Name(), path, err)
	}
	defer f.Close()
	ctx := ThreadContext(thread)
	buf := &execCapture{limit: fsReadLimit, full: func() {}}
	if _, err := buf.ReadFrom(fsReader{ctx, f}); errors.Is(err, errExecOverflow) {
		return nil, fmt.Errorf("%s %s: file is larger than the %d MiB limit of fs.read (fs.get streams big files)", b.Name(), path, fsReadLimit>>20)
	} else if err != nil {
		return nil, fsReadError(ctx, b.Name(), path, err)
	}
	return starlark.Bytes(buf.String()), nil
}

// write(path, data, mode=0o644) replaces the file atomically: data goes
// to a temporary file in the same directory, which is given mode,
// fsynced and renamed over path; the directory is fsynced after. A
// symlink at path is replaced, not followed. When root replaces a
// regular file, the new one keeps the old one's owner and group.
func fsWrite(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var path string
	var data starlark.Value
	mode := 0o644
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "path", &path, "data", &data, "mode?", &mode); err != nil {
		return nil, err
	}
	if err := fsCheckPaths(b.Name(), path); err != nil {
		return nil, err
	}
	var content string
	switch v := data.(type) {
	case starlark.String:
		content = string(v)
	case starlark.Bytes:
		content = string(v)
	default:
		return nil, fmt.Errorf("%s: data must be a string or bytes, got %s", b.Name(), data.Type())
	}
	if err := fsCheckMode(b.Name(), mode); err != nil {
		return nil, err
	}
	if err := fsWriteFile(path, content, uint32(mode)); err != nil {
		return nil, OSError(b.Name(), path, err)
	}
	return starlark.None, nil
}

func fsWriteFile(path, content string, mode uint32) (err error) {
	clean := filepath.Clean(path)
	dir, base := filepath.Split(clean)
	if dir == "" {
		dir = "."
	}
	if len(base) > 200 { // keep the temporary name within NAME_MAX
		base = base[:200]
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := io.WriteString(f, content); err != nil {
		return err
	}
	if err := syscall.Fchmod(int(f.Fd()), mode); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		if fi, err := os.Lstat(clean); err == nil && fi.Mode().IsRegular() {
			st := fi.Sys().(*syscall.Stat_t)
			if err := f.Chown(int(st.Uid), int(st.Gid)); err != nil {
				return err
			}
			if mode&0o6000 != 0 { // chown clears setuid and setgid
				if err := syscall.Fchmod(int(f.Fd()), mode); err != nil {
					return err
				}
			}
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := syscall.Rename(tmp, clean); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return nil // the file is in place; only its durability is unknown
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}

// exists(path) reports whether path names something, following a final
// symlink (a dangling link does not exist). A path whose existence
// cannot be known (a directory without search permission) is an error.
func fsExists(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var path string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "path", &path); err != nil {
		return nil, err
	}
	if err := fsCheckPaths(b.Name(), path); err != nil {
		return nil, err
	}
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return starlark.True, nil
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return starlark.False, nil
	}
	return nil, OSError(b.Name(), path, err)
}

// stat(path) returns struct(size, mode, mtime, uid, gid, is_dir,
// is_link) of path itself, like lstat (and Ansible's stat without
// follow): for a symlink is_link is True and the other fields describe
// the link. mode is the permission bits, mtime seconds as a float.
func fsStat(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var path string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "path", &path); err != nil {
		return nil, err
	}
	if err := fsCheckPaths(b.Name(), path); err != nil {
		return nil, err
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, OSError(b.Name(), path, err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return starlarkstruct.FromStringDict(starlarkstruct.Default, starlark.StringDict{
		"size":    starlark.MakeInt64(fi.Size()),
		"mode":    starlark.MakeInt(int(st.Mode & 0o7777)),
		"mtime":   starlark.Float(float64(fi.ModTime().UnixNano()) / 1e9),
		"uid":     starlark.MakeUint64(uint64(st.Uid)),
		"gid":     starlark.MakeUint64(uint64(st.Gid)),
		"is_dir":  starlark.Bool(fi.IsDir()),
		"is_link": starlark.Bool(fi.Mode()&fs.ModeSymlink != 0),
	}), nil
}

// listdir(path) returns the names in a directory, sorted.
func fsListdir(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var path string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "path", &path); err != nil {
		return nil, err
	}
	if err := fsCheckPaths(b.Name(), path); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, OSError(b.Name(), path, err)
	}
	names := make([]starlark.Value, len(entries))
	for i, e := range entries {
		names[i] = starlark.String(e.Name())
	}
	return starlark.NewList(names), nil
}

// mkdir(path, mode=0o755, parents=True) creates a directory with mode.
// With parents, missing parents are created as `mkdir -p` does (0o777
// less the umask) and an existing directory is left as it is; without,
// an existing path is an error.
func fsMkdir(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var path string
	mode, parents := 0o755, true
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "path", &path, "mode?", &mode, "parents?", &parents); err != nil {
		return nil, err
	}
	if err := fsCheckPaths(b.Name(), path); err != nil {
		return nil, err
	}
	if err := fsCheckMode(b.Name(), mode); err != nil {
		return nil, err
	}
	err := syscall.Mkdir(path, uint32(mode&0o777))
	if errors.Is(err, syscall.ENOENT) && parents {
		// The parent as written, not cleaned: like mkdir -p, "a/../b"
		// creates a too.
		parent := strings.TrimRight(path, "/")
		parent = parent[:strings.LastIndexByte(parent, '/')+1]
		if perr := os.MkdirAll(parent, 0o777); parent != "" && perr != nil {
			return nil, OSError(b.Name(), path, perr)
		}
		err = syscall.Mkdir(path, uint32(mode&0o777))
	}
	if errors.Is(err, syscall.EEXIST) && parents {
		if fi, serr := os.Stat(path); serr == nil && fi.IsDir() {
			return starlark.None, nil
		}
	}
	if err != nil {
		return nil, OSError(b.Name(), path, err)
	}
	if err := syscall.Chmod(path, uint32(mode)); err != nil {
		return nil, OSError(b.Name(), path, err)
	}
	return starlark.None, nil
}

// remove(path, recursive=False) removes a file, a symlink or an empty
// directory; recursive removes a directory and everything in it, like
// `rm -r` (but a missing path is still an error, and "/" is refused).
func fsRemove(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var path string
	recursive := false
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "path", &path, "recursive?", &recursive); err != nil {
		return nil, err
	}
	if err := fsCheckPaths(b.Name(), path); err != nil {
		return nil, err
	}
	if !recursive {
		if err := os.Remove(path); err != nil {
			return nil, OSError(b.Name(), path, err)
		}
		return starlark.None, nil
	}
	if filepath.Clean(path) == "/" {
		return nil, fmt.Errorf("%s: refusing to remove / recursively", b.Name())
	}
	if _, err := os.Lstat(path); err != nil {
		return nil, OSError(b.Name(), path, err)
	}
	if err := os.RemoveAll(path); err != nil {
		where := path
		var pe *fs.PathError
		if errors.As(err, &pe) && pe.Path != "" {
			where = pe.Path // the entry that could not be removed
		}
		return nil, OSError(b.Name(), where, err)
	}
	return starlark.None, nil
}

// rename(src, dst) renames src to dst, replacing dst if it exists, with
// rename(2)'s semantics (not os.Rename's, which refuses to replace an
// empty directory): a directory replaces an empty directory, and a file
// replaces anything but a directory.
func fsRename(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var src, dst string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "src", &src, "dst", &dst); err != nil {
		return nil, err
	}
	if err := fsCheckPaths(b.Name(), src, dst); err != nil {
		return nil, err
	}
	if err := syscall.Rename(src, dst); err != nil {
		return nil, OSError(b.Name(), src+" -> "+dst, err)
	}
	return starlark.None, nil
}

// chmod(path, mode) sets the permission bits of path.
func fsChmod(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var path string
	var mode int
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "path", &path, "mode", &mode); err != nil {
		return nil, err
	}
	if err := fsCheckPaths(b.Name(), path); err != nil {
		return nil, err
	}
	if err := fsCheckMode(b.Name(), mode); err != nil {
		return nil, err
	}
	if err := syscall.Chmod(path, uint32(mode)); err != nil {
		return nil, OSError(b.Name(), path, err)
	}
	return starlark.None, nil
}

// chown(path, user=None, group=None) sets the owner and/or group of
// path; each is a name, a numeric id, or None to leave it unchanged.
func fsChown(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var path string
	var owner, group starlark.Value = starlark.None, starlark.None
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "path", &path, "user?", &owner, "group?", &group); err != nil {
		return nil, err
	}
	if err := fsCheckPaths(b.Name(), path); err != nil {
		return nil, err
	}
	if owner == starlark.None && group == starlark.None {
		return nil, fmt.Errorf("%s: user or group must be given", b.Name())
	}
	uid, err := fsID(b.Name(), "user", owner)
	if err != nil {
		return nil, err
	}
	gid, err := fsID(b.Name(), "group", group)
	if err != nil {
		return nil, err
	}
	if err := os.Chown(path, uid, gid); err != nil {
		return nil, OSError(b.Name(), path, err)
	}
	return starlark.None, nil
}

// fsID resolves a user or group given as None (-1: unchanged), an int
// or a name (a name made of digits that is not in the database is an id).
func fsID(fn, kind string, v starlark.Value) (int, error) {
	switch v := v.(type) {
	case starlark.NoneType:
		return -1, nil
	case starlark.Int:
		id, ok := v.Int64()
		if !ok || id < 0 || id > 1<<32-2 {
			return 0, fmt.Errorf("%s: invalid %s id %s", fn, kind, v)
		}
		return int(id), nil
	case starlark.String:
		name := string(v)
		var id string
		var err error
		if kind == "user" {
			var u *user.User
			if u, err = user.Lookup(name); err == nil {
				id = u.Uid
			}
		} else {
			var g *user.Group
			if g, err = user.LookupGroup(name); err == nil {
				id = g.Gid
			}
		}
		if err != nil {
			if n, nerr := strconv.ParseUint(name, 10, 32); nerr == nil && n < 1<<32-1 {
				return int(n), nil
			}
			return 0, fmt.Errorf("%s: unknown %s %q", fn, kind, name)
		}
		n, err := strconv.Atoi(id)
		if err != nil {
			return 0, fmt.Errorf("%s: %s %q has a non-numeric id %q", fn, kind, name, id)
		}
		return n, nil
	}
	return 0, fmt.Errorf("%s: %s must be a name, an id or None, got %s", fn, kind, v.Type())
}

// readlink(path) returns the target of a symlink.
func fsReadlink(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var path string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "path", &path); err != nil {
		return nil, err
	}
	if err := fsCheckPaths(b.Name(), path); err != nil {
		return nil, err
	}
	target, err := os.Readlink(path)
	if err != nil {
		return nil, OSError(b.Name(), path, err)
	}
	return starlark.String(target), nil
}

// symlink(target, path) creates path as a symlink to target.
func fsSymlink(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var target, path string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "target", &target, "path", &path); err != nil {
		return nil, err
	}
	if err := fsCheckPaths(b.Name(), target, path); err != nil {
		return nil, err
	}
	if err := os.Symlink(target, path); err != nil {
		return nil, OSError(b.Name(), target+" -> "+path, err)
	}
	return starlark.None, nil
}

// sha256(path) returns the hex SHA-256 of a file's content, reading it
// as a stream.
func fsSHA256(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var path string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "path", &path); err != nil {
		return nil, err
	}
	if err := fsCheckPaths(b.Name(), path); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, OSError(b.Name(), path, err)
	}
	defer f.Close()
	h := sha256.New()
	ctx := ThreadContext(thread)
	if _, err := io.Copy(h, fsReader{ctx, f}); err != nil {
		return nil, fsReadError(ctx, b.Name(), path, err)
	}
	return starlark.String(hex.EncodeToString(h.Sum(nil))), nil
}

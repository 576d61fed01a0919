package ops

// ops.file and ops.template: a file's content, mode and owner, a
// directory, a symlink, or the absence of all three.

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"

	"go.starlark.net/starlark"

	"github.com/mitostar/mitostar/builtins"
	"github.com/mitostar/mitostar/files"
)

// attrs is the mode and ownership an operation asks for; -1 leaves one
// as it is.
type attrs struct {
	mode, uid, gid int
}

// unpackAttrs resolves mode, owner and group arguments.
func unpackAttrs(fn string, mode, owner, group starlark.Value) (attrs, error) {
	a := attrs{mode: -1, uid: -1, gid: -1}
	var err error
	if a.mode, err = parseMode(fn, mode); err != nil {
		return a, err
	}
	if a.uid, err = builtins.ResolveID(fn, "user", owner); err != nil {
		return a, err
	}
	if a.gid, err = builtins.ResolveID(fn, "group", group); err != nil {
		return a, err
	}
	return a, nil
}

// statOf returns the mode bits, owner and group of fi.
func statOf(fi fs.FileInfo) (perm, uid, gid int) {
	st := fi.Sys().(*syscall.Stat_t)
	return int(st.Mode & 0o7777), int(st.Uid), int(st.Gid)
}

func octal(mode int) string { return "0o" + strconv.FormatInt(int64(mode), 8) }

// userName and groupName name an id for messages.
func userName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return strconv.Itoa(uid)
}

func groupName(gid int) string {
	if g, err := user.LookupGroupId(strconv.Itoa(gid)); err == nil {
		return g.Name
	}
	return strconv.Itoa(gid)
}

// ensureAttrs brings the mode and ownership of the existing path (fi
// describes it) to what a asks. link: path is a symlink, whose own
// ownership is set (a symlink has no mode of its own on Linux).
func (o *op) ensureAttrs(path string, fi fs.FileInfo, a attrs, link bool) error {
	perm, uid, gid := statOf(fi)
	if a.mode >= 0 && perm != a.mode && !link {
		err := o.change(fmt.Sprintf("set mode %s (was %s)", octal(a.mode), octal(perm)), func() error {
			if err := os.Chmod(path, files.ModeOf(uint32(a.mode))); err != nil {
				return o.osError(path, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	newUID, newGID := -1, -1
	if a.uid >= 0 && uid != a.uid {
		newUID = a.uid
		o.changes = append(o.changes, fmt.Sprintf("set owner %s (was %s)", userName(a.uid), userName(uid)))
	}
	if a.gid >= 0 && gid != a.gid {
		newGID = a.gid
		o.changes = append(o.changes, fmt.Sprintf("set group %s (was %s)", groupName(a.gid), groupName(gid)))
	}
	if (newUID < 0 && newGID < 0) || o.check {
		return nil
	}
	chown := os.Chown
	if link {
		chown = os.Lchown
	}
	if err := chown(path, newUID, newGID); err != nil {
		return o.osError(path, err)
	}
	if link {
		return nil
	}
	// chown clears setuid and setgid: put back the mode asked for, or
	// the one the file had.
	want := a.mode
	if want < 0 {
		want = perm
	}
	if fi, err := os.Stat(path); err == nil {
		if p, _, _ := statOf(fi); p != want {
			if err := os.Chmod(path, files.ModeOf(uint32(want))); err != nil {
				return o.osError(path, err)
			}
		}
	}
	return nil
}

// lstat returns path's FileInfo, nil when nothing is there.
func (o *op) lstat(path string, follow bool) (fs.FileInfo, error) {
	stat := os.Lstat
	if follow {
		stat = os.Stat
	}
	fi, err := stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, o.osError(path, err)
	}
	return fi, nil
}

// ensureContent makes path a regular file holding content with attrs a.
// The file is replaced atomically (fs.write's way); a symlink at path is
// replaced by the file, not followed.
func (o *op) ensureContent(path string, content []byte, a attrs) error {
	fi, err := o.lstat(path, false)
	if err != nil {
		return err
	}
	if fi != nil && fi.IsDir() {
		return o.errorf("is a directory")
	}
	regular := fi != nil && fi.Mode().IsRegular()
	var old []byte
	same := false
	if regular {
		if fi.Size() == int64(len(content)) || fi.Size() <= diffLimit {
			if old, err = os.ReadFile(path); err != nil {
				return o.osError(path, err)
			}
			same = bytes.Equal(old, content)
		}
	}
	if same {
		return o.ensureAttrs(path, fi, a, false)
	}
	what := "update content"
	mode := a.mode
	switch {
	case fi == nil:
		what = "create file"
		if mode < 0 {
			mode = 0o644
		}
	case !regular:
		what = "replace symlink with a file"
		if mode < 0 {
			mode = 0o644
		}
	default:
		perm, uid, gid := statOf(fi)
		if mode < 0 {
			mode = perm
		}
		if mode != perm {
			o.changes = append(o.changes, fmt.Sprintf("set mode %s (was %s)", octal(mode), octal(perm)))
		}
		if a.uid >= 0 && a.uid != uid {
			o.changes = append(o.changes, fmt.Sprintf("set owner %s (was %s)", userName(a.uid), userName(uid)))
		}
		if a.gid >= 0 && a.gid != gid {
			o.changes = append(o.changes, fmt.Sprintf("set group %s (was %s)", groupName(a.gid), groupName(gid)))
		}
		if fi.Size() > diffLimit && old == nil {
			old = make([]byte, 0) // too large to read for a diff
			o.diff = fmt.Sprintf("Files before: %s (%d bytes) and after: %s (%d bytes) differ (too large to diff)\n", path, fi.Size(), path, len(content))
		}
	}
	if o.diff == "" {
		o.diff = unifiedDiff(path, old, content)
	}
	// The content change goes first in the message.
	o.changes = append([]string{what}, o.changes...)
	if o.check {
		return nil
	}
	if err := builtins.WriteFileAtomic(path, content, uint32(mode), a.uid, a.gid); err != nil {
		return o.osError(path, err)
	}
	return nil
}

// ensureDirectory makes path a directory with attrs a, creating missing
// parents with mode 0o755.
func (o *op) ensureDirectory(path string, a attrs) error {
	fi, err := o.lstat(path, true)
	if err != nil {
		return err
	}
	if fi != nil {
		if !fi.IsDir() {
			return o.errorf("exists and is not a directory")
		}
		return o.ensureAttrs(path, fi, a, false)
	}
	mode := a.mode
	if mode < 0 {
		mode = 0o755
	}
	return o.change("create directory", func() error {
		if err := os.MkdirAll(filepath.Dir(filepath.Clean(path)), 0o755); err != nil {
			return o.osError(path, err)
		}
		if err := os.Mkdir(path, os.FileMode(mode&0o777)); err != nil {
			return o.osError(path, err)
		}
		if err := os.Chmod(path, files.ModeOf(uint32(mode))); err != nil {
			return o.osError(path, err)
		}
		if a.uid >= 0 || a.gid >= 0 {
			if err := os.Chown(path, a.uid, a.gid); err != nil {
				return o.osError(path, err)
			}
		}
		return nil
	})
}

// ensureAbsent removes path: a file, a symlink, or a directory with
// everything in it.
func (o *op) ensureAbsent(path string) error {
	fi, err := o.lstat(path, false)
	if err != nil || fi == nil {
		return err
	}
	switch {
	case fi.IsDir():
		if filepath.Clean(path) == "/" {
			return o.errorf("refusing to remove /")
		}
		return o.change("remove directory and its content", func() error {
			if err := os.RemoveAll(path); err != nil {
				return o.osError(path, err)
			}
			return nil
		})
	case fi.Mode().IsRegular():
		if fi.Size() <= diffLimit {
			if old, err := os.ReadFile(path); err == nil {
				o.diff = unifiedDiff(path, old, nil)
			}
		}
		return o.change("remove file", func() error { return o.remove(path) })
	case fi.Mode()&fs.ModeSymlink != 0:
		return o.change("remove symlink", func() error { return o.remove(path) })
	}
	return o.change("remove "+fi.Mode().Type().String(), func() error { return o.remove(path) })
}

func (o *op) remove(path string) error {
	if err := os.Remove(path); err != nil {
		return o.osError(path, err)
	}
	return nil
}

// ensureLink makes path a symlink to target, replacing a symlink that
// points elsewhere atomically; anything else at path is an error.
func (o *op) ensureLink(path, target string, a attrs) error {
	fi, err := o.lstat(path, false)
	if err != nil {
		return err
	}
	if fi == nil {
		err := o.change("create symlink to "+target, func() error {
			if err := os.Symlink(target, path); err != nil {
				return o.osError(path, err)
			}
			return nil
		})
		if err != nil || (a.uid < 0 && a.gid < 0) || o.check {
			return err
		}
		if err := os.Lchown(path, a.uid, a.gid); err != nil {
			return o.osError(path, err)
		}
		return nil
	}
	if fi.Mode()&fs.ModeSymlink == 0 {
		return o.errorf("exists and is not a symlink (remove it first with state=\"absent\")")
	}
	old, err := os.Readlink(path)
	if err != nil {
		return o.osError(path, err)
	}
	if old != target {
		err := o.change(fmt.Sprintf("point symlink to %s (was %s)", target, old), func() error {
			tmp := path + ".mitostar-" + randomSuffix()
			if err := os.Symlink(target, tmp); err != nil {
				return o.osError(tmp, err)
			}
			if err := os.Rename(tmp, path); err != nil {
				os.Remove(tmp)
				return o.osError(path, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if !o.check {
			if fi, err = os.Lstat(path); err != nil {
				return o.osError(path, err)
			}
		}
	}
	return o.ensureAttrs(path, fi, a, true)
}

func randomSuffix() string {
	b := make([]byte, 6)
	io.ReadFull(rand.Reader, b)
	return hex.EncodeToString(b)
}

// ensureTouched creates path as an empty file when nothing is there;
// an existing file keeps its content and times (so a second run changes
// nothing) and gets attrs a.
func (o *op) ensureTouched(path string, a attrs) error {
	fi, err := o.lstat(path, true)
	if err != nil {
		return err
	}
	if fi != nil {
		return o.ensureAttrs(path, fi, a, false)
	}
	mode := a.mode
	if mode < 0 {
		mode = 0o644
	}
	return o.change("create empty file", func() error {
		if err := builtins.WriteFileAtomic(path, nil, uint32(mode), a.uid, a.gid); err != nil {
			return o.osError(path, err)
		}
		return nil
	})
}

// fileStates are the states ops.file accepts.
var fileStates = []string{"file", "absent", "directory", "link", "touch"}

// ops.file(path, content=None, src=None, mode=None, owner=None,
// group=None, state="file", target=None)
func opFile(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var path string
	var content, src, mode, owner, group, target starlark.Value = starlark.None, starlark.None, starlark.None, starlark.None, starlark.None, starlark.None
	state := "file"
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "path", &path, "content?", &content, "src?", &src,
		"mode?", &mode, "owner?", &owner, "group?", &group, "state?", &state, "target?", &target); err != nil {
		return nil, err
	}
	if path == "" {
		return nil, fmt.Errorf("%s: empty path", b.Name())
	}
	if !slices.Contains(fileStates, state) {
		return nil, fmt.Errorf("%s: unknown state %q (want file, absent, directory, link or touch)", b.Name(), state)
	}
	a, err := unpackAttrs(b.Name(), mode, owner, group)
	if err != nil {
		return nil, err
	}
	srcPath, err := optString(b.Name(), "src", src)
	if err != nil {
		return nil, err
	}
	targetPath, err := optString(b.Name(), "target", target)
	if err != nil {
		return nil, err
	}
	var data []byte
	hasData := content != starlark.None || srcPath != ""
	switch c := content.(type) {
	case starlark.NoneType:
	case starlark.String:
		data = []byte(c)
	case starlark.Bytes:
		data = []byte(c)
	default:
		return nil, fmt.Errorf("%s: content must be a string, bytes or None, got %s", b.Name(), content.Type())
	}
	switch {
	case content != starlark.None && srcPath != "":
		return nil, fmt.Errorf("%s: give content= or src=, not both", b.Name())
	case hasData && state != "file":
		return nil, fmt.Errorf("%s: content= and src= need state=\"file\", not %q", b.Name(), state)
	case state == "link" && targetPath == "":
		return nil, fmt.Errorf("%s: state=\"link\" needs target=", b.Name())
	case state != "link" && targetPath != "":
		return nil, fmt.Errorf("%s: target= is only for state=\"link\"", b.Name())
	case state == "link" && a.mode >= 0:
		return nil, fmt.Errorf("%s: a symlink has no mode of its own: drop mode=", b.Name())
	case state == "absent" && (a.mode >= 0 || a.uid >= 0 || a.gid >= 0):
		return nil, fmt.Errorf("%s: state=\"absent\" takes no mode, owner or group", b.Name())
	}
	o := newOp(thread, b.Name(), path)
	if srcPath != "" {
		if data, err = o.env.Source(o.ctx(), srcPath); err != nil {
			return nil, fmt.Errorf("%s: %w", b.Name(), err)
		}
	}
	switch state {
	case "file":
		if hasData {
			err = o.ensureContent(path, data, a)
			break
		}
		var fi fs.FileInfo
		if fi, err = o.lstat(path, true); err == nil {
			switch {
			case fi == nil:
				err = o.errorf("does not exist (give content= or src= to create it, or use state=\"touch\")")
			case fi.IsDir():
				err = o.errorf("is a directory (use state=\"directory\")")
			default:
				err = o.ensureAttrs(path, fi, a, false)
			}
		}
	case "directory":
		err = o.ensureDirectory(path, a)
	case "absent":
		err = o.ensureAbsent(path)
	case "link":
		err = o.ensureLink(path, targetPath, a)
	case "touch":
		err = o.ensureTouched(path, a)
	}
	if err != nil {
		return nil, err
	}
	return o.result("ok: " + state + " as asked"), nil
}

package builtins

// fs.put and fs.get: files and trees streamed between this context and
// another (package files does the work; docs/reference.md, "fs").

import (
	"fmt"
	"os"

	"go.starlark.net/starlark"

	"github.com/mitostar/mitostar/files"
)

func init() {
	Register("fs.put", xferPut)
	Register("fs.get", xferGet)
}

// xferPut is fs.put(context, local_path, remote_path, mode=None,
// recursive=False, keep_setuid=False).
func xferPut(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var ctxV, modeV starlark.Value = nil, starlark.None
	var local, remote string
	var recursive, keepSetuid bool
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "context", &ctxV, "local_path", &local, "remote_path", &remote, "mode?", &modeV,
		"recursive?", &recursive, "keep_setuid?", &keepSetuid); err != nil {
		return nil, err
	}
	target, err := ToContext(ctxV, b.Name())
	if err != nil {
		return nil, err
	}
	if local == "" || remote == "" {
		return nil, fmt.Errorf("%s: paths must not be empty", b.Name())
	}
	var mode *os.FileMode
	if modeV != starlark.None {
		var bits int
		if err := starlark.AsInt(modeV, &bits); err != nil {
			return nil, fmt.Errorf("%s: mode must be an int or None, got %s", b.Name(), modeV.Type())
		}
		if err := fsCheckMode(b.Name(), bits); err != nil {
			return nil, err
		}
		m := files.ModeOf(uint32(bits))
		mode = &m
	}
	r, err := RouterOf(thread)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	if err := files.PutWith(ThreadContext(thread), r, target, local, remote, files.Options{Mode: mode, Recursive: recursive, KeepSetuid: keepSetuid}); err != nil {
		return nil, err
	}
	return starlark.None, nil
}

// xferGet is fs.get(context, remote_path, local_path, recursive=False,
// keep_setuid=False).
func xferGet(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var ctxV starlark.Value
	var remote, local string
	var recursive, keepSetuid bool
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "context", &ctxV, "remote_path", &remote, "local_path", &local, "recursive?", &recursive,
		"keep_setuid?", &keepSetuid); err != nil {
		return nil, err
	}
	target, err := ToContext(ctxV, b.Name())
	if err != nil {
		return nil, err
	}
	if local == "" || remote == "" {
		return nil, fmt.Errorf("%s: paths must not be empty", b.Name())
	}
	r, err := RouterOf(thread)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	if err := files.GetWith(ThreadContext(thread), r, target, remote, local, files.Options{Recursive: recursive, KeepSetuid: keepSetuid}); err != nil {
		return nil, err
	}
	return starlark.None, nil
}

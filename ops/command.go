package ops

// ops.command: a command run only when its guards say it is needed.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"go.starlark.net/starlark"
)

// commandArgv reads a command given as a string (run with sh -c) or a
// list of strings (run as it is).
func commandArgv(fn, param string, v starlark.Value) ([]string, error) {
	if s, ok := v.(starlark.String); ok {
		if s == "" {
			return nil, fmt.Errorf("%s: %s is an empty string", fn, param)
		}
		return []string{"/bin/sh", "-c", string(s)}, nil
	}
	if _, ok := v.(starlark.Indexable); !ok || v.Type() == "bytes" {
		return nil, fmt.Errorf("%s: %s must be a string or a list of strings, got %s", fn, param, v.Type())
	}
	argv, err := stringList(fn, param, v)
	if err != nil {
		return nil, err
	}
	if len(argv) == 0 || argv[0] == "" {
		return nil, fmt.Errorf("%s: %s is empty", fn, param)
	}
	return argv, nil
}

// pathExists reports whether something matches path (a glob pattern is
// allowed), relative to cwd when it is not absolute.
func pathExists(path, cwd string) (bool, error) {
	if !filepath.IsAbs(path) && cwd != "" {
		path = filepath.Join(cwd, path)
	}
	matches, err := filepath.Glob(path)
	if err != nil {
		return false, fmt.Errorf("bad pattern %q: %w", path, err)
	}
	if len(matches) > 0 {
		return true, nil
	}
	_, err = os.Lstat(path) // a name with glob characters in it
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, err
}

// ops.command(argv_or_cmd, creates=None, removes=None, unless=None,
// cwd=None, env=None)
func opCommand(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var cmdV, createsV, removesV, unlessV, cwdV, envV starlark.Value = nil, starlark.None, starlark.None, starlark.None, starlark.None, starlark.None
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "argv_or_cmd", &cmdV, "creates?", &createsV,
		"removes?", &removesV, "unless?", &unlessV, "cwd?", &cwdV, "env?", &envV); err != nil {
		return nil, err
	}
	argv, err := commandArgv(b.Name(), "argv_or_cmd", cmdV)
	if err != nil {
		return nil, err
	}
	creates, err := optString(b.Name(), "creates", createsV)
	if err != nil {
		return nil, err
	}
	removes, err := optString(b.Name(), "removes", removesV)
	if err != nil {
		return nil, err
	}
	cwd, err := optString(b.Name(), "cwd", cwdV)
	if err != nil {
		return nil, err
	}
	var unless []string
	if unlessV != starlark.None {
		if unless, err = commandArgv(b.Name(), "unless", unlessV); err != nil {
			return nil, err
		}
	}
	var env []string
	switch e := envV.(type) {
	case starlark.NoneType:
	case *starlark.Dict:
		for _, kv := range e.Items() {
			k, kok := kv[0].(starlark.String)
			v, vok := kv[1].(starlark.String)
			if !kok || !vok {
				return nil, fmt.Errorf("%s: env must map strings to strings, got %s: %s", b.Name(), kv[0].Type(), kv[1].Type())
			}
			env = append(env, string(k)+"="+string(v))
		}
	default:
		return nil, fmt.Errorf("%s: env must be a dict or None, got %s", b.Name(), envV.Type())
	}
	target := quoteArgv(argv)
	if argv[0] == "/bin/sh" && len(argv) == 3 {
		target = argv[2]
	}
	o := newOp(thread, b.Name(), target)
	none := starlark.None
	o.extra = starlark.StringDict{"rc": none, "stdout": none, "stderr": none, "skipped": starlark.False}
	skip := func(why string) starlark.Value {
		o.extra["skipped"] = starlark.True
		return o.result("skipped: " + why)
	}
	if creates != "" {
		found, err := pathExists(creates, cwd)
		if err != nil {
			return nil, o.errorf("creates: %v", err)
		}
		if found {
			return skip(creates + " exists"), nil
		}
	}
	if removes != "" {
		found, err := pathExists(removes, cwd)
		if err != nil {
			return nil, o.errorf("removes: %v", err)
		}
		if !found {
			return skip(removes + " does not exist"), nil
		}
	}
	if unless != nil {
		p, err := o.run(unless, env, cwd, false)
		if err != nil {
			return nil, err
		}
		if p.rc == 0 {
			return skip("unless command succeeded"), nil
		}
	}
	if o.check && creates == "" && removes == "" && unless == nil {
		return skip("check mode cannot tell whether a command without creates, removes or unless would change anything"), nil
	}
	err = o.change("run "+target, func() error {
		p, err := o.run(argv, env, cwd, true)
		if err != nil {
			return err
		}
		o.extra["rc"], o.extra["stdout"], o.extra["stderr"] = starlark.MakeInt(p.rc), starlark.String(p.stdout), starlark.String(p.stderr)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return o.result(""), nil
}

package builtins

// The os module: who and where this context is, its environment, and
// signals to other processes (docs/reference.md, "os").

import (
	"fmt"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
	"golang.org/x/sys/unix"
)

func init() {
	Register("os.getpid", osIntGetter(os.Getpid))
	Register("os.getppid", osIntGetter(os.Getppid))
	Register("os.getuid", osIntGetter(os.Getuid))
	Register("os.geteuid", osIntGetter(os.Geteuid))
	Register("os.username", osUsername)
	Register("os.hostname", osHostname)
	Register("os.getcwd", osGetcwd)
	Register("os.getenv", osGetenv)
	Register("os.environ", osEnviron)
	Register("os.uname", osUname)
	Register("os.kill", osKill)
}

// osIntGetter makes a builtin without arguments that returns get().
func osIntGetter(get func() int) Func {
	return func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
			return nil, err
		}
		return starlark.MakeInt(get()), nil
	}
}

// username() returns the login name of the real user id, read from the
// user database (/etc/passwd); a uid without an entry is an error.
func osUsername(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
		return nil, err
	}
	u, err := user.Current()
	if err != nil {
		return nil, fmt.Errorf("%s: %v", b.Name(), err)
	}
	return starlark.String(u.Username), nil
}

func osHostname(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
		return nil, err
	}
	h, err := os.Hostname()
	if err != nil {
		return nil, OSError(b.Name(), "", err)
	}
	return starlark.String(h), nil
}

func osGetcwd(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
		return nil, err
	}
	wd, err := os.Getwd()
	if err != nil {
		return nil, OSError(b.Name(), "", err)
	}
	return starlark.String(wd), nil
}

// getenv(name, default=None) returns the variable's value, or default
// when it is not set (a variable set to "" is returned as "").
func osGetenv(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name string
	var def starlark.Value = starlark.None
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name, "default?", &def); err != nil {
		return nil, err
	}
	if v, ok := os.LookupEnv(name); ok {
		return starlark.String(v), nil
	}
	return def, nil
}

// environ() returns the environment as a fresh dict, sorted by name.
func osEnviron(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
		return nil, err
	}
	env := os.Environ()
	slices.Sort(env)
	d := starlark.NewDict(len(env))
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		if err := d.SetKey(starlark.String(k), starlark.String(v)); err != nil {
			return nil, fmt.Errorf("%s: %v", b.Name(), err)
		}
	}
	return d, nil
}

// uname() returns struct(sysname, nodename, release, machine).
func osUname(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
		return nil, err
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return nil, OSError(b.Name(), "", err)
	}
	return starlarkstruct.FromStringDict(starlarkstruct.Default, starlark.StringDict{
		"sysname":  starlark.String(unix.ByteSliceToString(u.Sysname[:])),
		"nodename": starlark.String(unix.ByteSliceToString(u.Nodename[:])),
		"release":  starlark.String(unix.ByteSliceToString(u.Release[:])),
		"machine":  starlark.String(unix.ByteSliceToString(u.Machine[:])),
	}), nil
}

// kill(pid, sig=15) sends signal sig to process pid, or to process group
// -pid when pid is below -1. Pids 0 and -1 (the caller's own process
// group, every process the caller may signal) are refused: a script that
// means them is far rarer than one whose pid variable went wrong.
func osKill(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var pid, sig int
	sig = int(syscall.SIGTERM)
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "pid", &pid, "sig?", &sig); err != nil {
		return nil, err
	}
	if pid == 0 || pid == -1 {
		return nil, fmt.Errorf("%s: refusing pid %d (it would signal every process of a group or of the system)", b.Name(), pid)
	}
	if sig < 0 {
		return nil, fmt.Errorf("%s: invalid signal number %d", b.Name(), sig)
	}
	if err := syscall.Kill(pid, syscall.Signal(sig)); err != nil {
		return nil, OSError(b.Name(), strconv.Itoa(pid), err)
	}
	return starlark.None, nil
}

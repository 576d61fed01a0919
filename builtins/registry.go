// Package builtins holds what Starlark scripts see of mitostar: the
// registry of Go builtins (os, exec, fs, fakessh, and those a Go program
// registers), the Starlark faces of core objects (Context, Receiver,
// Sender, Select, Latch, Message, Error), and the codec that carries
// Starlark values across contexts as CBOR.
package builtins

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/mitostar/mitostar/core"
)

// A Func is a Go builtin as go.starlark.net defines them.
type Func = func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error)

var (
	regMu    sync.RWMutex
	registry = map[string]*starlark.Builtin{}
)

// Register makes fn callable from Starlark under a dotted name
// ("os.getpid" is member getpid of the predeclared module os). Because
// every context of the binary registers the same names, a builtin also
// travels by name: ctx.call(os.getpid) runs it in ctx. Call Register from
// init; a second registration of a name panics.
func Register(name string, fn Func) {
	if i := strings.LastIndexByte(name, '.'); i <= 0 || i == len(name)-1 {
		panic(fmt.Sprintf("builtins.Register: %q is not of the form module.name", name))
	}
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := registry[name]; dup {
		panic("builtins.Register: duplicate builtin " + name)
	}
	registry[name] = starlark.NewBuiltin(name, fn)
}

// Lookup returns the registered builtin called name.
func Lookup(name string) (*starlark.Builtin, bool) {
	regMu.RLock()
	defer regMu.RUnlock()
	b, ok := registry[name]
	return b, ok
}

// IsRegistered reports whether b is a registered builtin (and so can
// travel by name), as opposed to a method or a value's attribute.
func IsRegistered(b *starlark.Builtin) bool {
	got, ok := Lookup(b.Name())
	return ok && got == b
}

// Modules groups the registered builtins into predeclared modules by the
// part of their name before the last dot ("os.getpid" → module os).
func Modules() starlark.StringDict {
	regMu.RLock()
	defer regMu.RUnlock()
	members := map[string]starlark.StringDict{}
	for name, b := range registry {
		i := strings.LastIndexByte(name, '.')
		mod, member := name[:i], name[i+1:]
		if members[mod] == nil {
			members[mod] = starlark.StringDict{}
		}
		members[mod][member] = b
	}
	out := starlark.StringDict{}
	mods := make([]string, 0, len(members))
	for m := range members {
		mods = append(mods, m)
	}
	slices.Sort(mods)
	for _, m := range mods {
		out[m] = &starlarkstruct.Module{Name: m, Members: members[m]}
	}
	return out
}

// OSError builds the error of kind "OSError" for a failing system call:
// "fs.read /etc/shadow: permission denied". err's errno text is used
// where there is one.
func OSError(call, path string, err error) error {
	msg := call
	if path != "" {
		msg += " " + path
	}
	return &core.RemoteError{Kind: "OSError", Message: msg + ": " + errnoText(err)}
}

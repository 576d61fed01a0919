// Package ops implements mitostar's operations: idempotent changes to
// the host of the context that runs them (files, templates, lines and
// blocks in files, packages, services, users, groups, guarded commands),
// each returning a result struct(changed, diff, msg), and facts(), what
// a context knows about its host.
//
// An operation first finds out what is on the host, then changes only
// what differs from what was asked. In check mode (the runtime's
// --check) it finds out the same and changes nothing, so its result is
// the one a real run would return. Every change is counted on the
// thread (builtins.MarkChanged) for the per-host recap, and shown with
// its diff under the context's name when the run asked for diffs.
//
// The operations are registered Go builtins (ops.file, ops.template,
// ...), so they run where they are called and also travel by name:
// ctx.call(ops.file, "/etc/motd", content="hi\n") runs in ctx.
package ops

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/mitostar/mitostar/builtins"
)

func init() {
	builtins.Register("ops.file", opFile)
	builtins.Register("ops.template", opTemplate)
	builtins.Register("ops.line", opLine)
	builtins.Register("ops.block", opBlock)
	builtins.Register("ops.package", opPackage)
	builtins.Register("ops.service", opService)
	builtins.Register("ops.user", opUser)
	builtins.Register("ops.group", opGroup)
	builtins.Register("ops.command", opCommand)
	builtins.Register("ops.facts", opFacts)
}

// Env is what operations need from the context they run in; the
// runtime of each context implements it.
type Env interface {
	// CheckMode reports whether operations must change nothing.
	CheckMode() bool
	// ShowChange is told of every change an operation made (or, in check
	// mode, would make): op and target name it, msg says what changed,
	// diff is its unified diff or "". The runtime prints it under the
	// context's name when the run asked for diffs.
	ShowChange(ctx context.Context, op, target, msg, diff string)
	// Source returns the content of a file at path under a module root
	// of the master (the src= of ops.file and ops.template).
	Source(ctx context.Context, path string) ([]byte, error)
	// PredeclaredValue returns the context's predeclared value called
	// name, or nil: templates read the inventory vars of "host".
	PredeclaredValue(name string) starlark.Value
}

// SrcParam reports whether ops.<name> reads a file from a module root,
// and the position of its src parameter: the runtime ships a literal
// src= with the module that names it, or with a direct call of the
// builtin, and `mitostar check` looks for the file.
func SrcParam(name string) (pos int, ok bool) {
	switch name {
	case "file":
		return 2, true
	case "template":
		return 1, true
	}
	return 0, false
}

// envOf returns the Env of the thread's runtime, or one with no check
// mode and no module roots for a thread without a runtime.
func envOf(thread *starlark.Thread) Env {
	if env, ok := builtins.RuntimeOf(thread).(Env); ok {
		return env
	}
	return bareEnv{}
}

type bareEnv struct{}

func (bareEnv) CheckMode() bool                                            { return false }
func (bareEnv) ShowChange(context.Context, string, string, string, string) {}
func (bareEnv) PredeclaredValue(string) starlark.Value                     { return nil }
func (bareEnv) Source(_ context.Context, path string) ([]byte, error) {
	return nil, fmt.Errorf("src %q: no mitostar runtime on this thread to read module roots from", path)
}

// An op is one run of an operation: it records the changes it makes
// (or would make, in check mode) and builds the result.
type op struct {
	thread  *starlark.Thread
	env     Env
	name    string // "ops.file"
	target  string // what it acts on: a path, a service, a user
	check   bool
	changes []string
	diff    string
	extra   starlark.StringDict // operation-specific result fields
}

func newOp(thread *starlark.Thread, name, target string) *op {
	env := envOf(thread)
	return &op{thread: thread, env: env, name: name, target: target, check: env.CheckMode()}
}

// change records a change described by what (imperative: "set mode
// 0o600") and, outside check mode, makes it with do.
func (o *op) change(what string, do func() error) error {
	o.changes = append(o.changes, what)
	if o.check || do == nil {
		return nil
	}
	return do()
}

// changeAll records several changes made by one command.
func (o *op) changeAll(what []string, do func() error) error {
	if len(what) == 0 {
		return nil
	}
	o.changes = append(o.changes, what[:len(what)-1]...)
	return o.change(what[len(what)-1], do)
}

// ctx is the Go context of the operation's thread.
func (o *op) ctx() context.Context { return builtins.ThreadContext(o.thread) }

// errorf returns an error prefixed with the operation and its target.
func (o *op) errorf(format string, args ...any) error {
	return fmt.Errorf("%s %s: %s", o.name, o.target, fmt.Sprintf(format, args...))
}

// osError is the OSError of a failing system call on path.
func (o *op) osError(path string, err error) error { return builtins.OSError(o.name, path, err) }

// result builds struct(changed, diff, msg, ...extra); unchanged says why
// nothing changed. A change is counted on the thread and shown.
func (o *op) result(unchanged string) starlark.Value {
	changed := len(o.changes) > 0
	msg := unchanged
	if changed {
		msg = strings.Join(o.changes, "; ")
		if o.check {
			msg = "would " + msg
		}
		builtins.MarkChanged(o.thread)
		o.env.ShowChange(o.ctx(), o.name, o.target, msg, o.diff)
	}
	d := starlark.StringDict{
		"changed": starlark.Bool(changed),
		"diff":    starlark.String(o.diff),
		"msg":     starlark.String(msg),
	}
	for k, v := range o.extra {
		d[k] = v
	}
	return starlarkstruct.FromStringDict(starlarkstruct.Default, d)
}

// parseMode reads a mode given as None (-1), an int (0o644) or a string
// of octal digits ("0644", "644").
func parseMode(fn string, v starlark.Value) (int, error) {
	var mode int64
	switch v := v.(type) {
	case starlark.NoneType:
		return -1, nil
	case starlark.Int:
		m, ok := v.Int64()
		if !ok {
			return 0, fmt.Errorf("%s: mode %s is out of range", fn, v)
		}
		mode = m
	case starlark.String:
		s := strings.TrimPrefix(strings.TrimPrefix(string(v), "0o"), "0O")
		m, err := strconv.ParseInt(s, 8, 64)
		if err != nil || s == "" {
			return 0, fmt.Errorf("%s: mode %s is not an octal number (symbolic modes are not supported)", fn, v)
		}
		mode = m
	default:
		return 0, fmt.Errorf("%s: mode must be an int, an octal string or None, got %s", fn, v.Type())
	}
	if mode < 0 || mode > 0o7777 {
		return 0, fmt.Errorf("%s: mode must be between 0 and 0o7777, got %#o", fn, mode)
	}
	return int(mode), nil
}

// optString reads a string or None ("" for None) parameter.
func optString(fn, param string, v starlark.Value) (string, error) {
	switch v := v.(type) {
	case starlark.NoneType:
		return "", nil
	case starlark.String:
		return string(v), nil
	}
	return "", fmt.Errorf("%s: %s must be a string or None, got %s", fn, param, v.Type())
}

// optBool reads a bool or None parameter as (value, given).
func optBool(fn, param string, v starlark.Value) (bool, bool, error) {
	switch v := v.(type) {
	case starlark.NoneType:
		return false, false, nil
	case starlark.Bool:
		return bool(v), true, nil
	}
	return false, false, fmt.Errorf("%s: %s must be True, False or None, got %s", fn, param, v.Type())
}

// stringList reads a string or a list/tuple of strings.
func stringList(fn, param string, v starlark.Value) ([]string, error) {
	if s, ok := v.(starlark.String); ok {
		return []string{string(s)}, nil
	}
	seq, ok := v.(starlark.Indexable)
	if !ok || v.Type() == "string" || v.Type() == "bytes" {
		return nil, fmt.Errorf("%s: %s must be a string or a list of strings, got %s", fn, param, v.Type())
	}
	out := make([]string, seq.Len())
	for i := range out {
		s, ok := seq.Index(i).(starlark.String)
		if !ok {
			return nil, fmt.Errorf("%s: %s[%d] must be a string, got %s", fn, param, i, seq.Index(i).Type())
		}
		out[i] = string(s)
	}
	return out, nil
}

// checkName refuses a name that a command line could take for an
// option, that is empty, or that holds a control character, a space or
// one of forbidden.
func checkName(fn, what, name, forbidden string) error {
	switch {
	case name == "":
		return fmt.Errorf("%s: empty %s", fn, what)
	case strings.HasPrefix(name, "-"):
		return fmt.Errorf("%s: %s %q starts with '-'", fn, what, name)
	case strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return fmt.Errorf("%s: %s %q contains a space or a control character", fn, what, name)
	case strings.ContainsAny(name, forbidden):
		return fmt.Errorf("%s: %s %q contains one of %q", fn, what, name, forbidden)
	}
	return nil
}

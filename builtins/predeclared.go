package builtins

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/mitostar/mitostar/core"
)

// callableWithAttrs is a builtin that also has attributes, for
// Message.encoded and Select.all.
type callableWithAttrs struct {
	*starlark.Builtin
	attrs map[string]*starlark.Builtin
}

func (c *callableWithAttrs) Attr(name string) (starlark.Value, error) {
	if b, ok := c.attrs[name]; ok {
		return b, nil
	}
	return nil, nil
}

func (c *callableWithAttrs) AttrNames() []string {
	var out []string
	for n := range c.attrs {
		out = append(out, n)
	}
	sortStrings(out)
	return out
}

// Predeclared returns the names every context predeclares (docs/reference.md)
// besides the standard modules and the per-context values (router,
// context_id, ...), which the runtime adds: the channel constructors,
// catch, log, policy, version and the registered builtin modules.
func Predeclared() starlark.StringDict {
	d := Modules()
	d["Receiver"] = starlark.NewBuiltin("Receiver", newReceiver)
	d["Sender"] = starlark.NewBuiltin("Sender", newSender)
	d["Channel"] = starlark.NewBuiltin("Channel", newChannel)
	d["Latch"] = starlark.NewBuiltin("Latch", newLatch)
	d["Select"] = &callableWithAttrs{
		Builtin: starlark.NewBuiltin("Select", newSelect),
		attrs:   map[string]*starlark.Builtin{"all": starlark.NewBuiltin("Select.all", selectAll)},
	}
	d["Message"] = &callableWithAttrs{
		Builtin: starlark.NewBuiltin("Message", newMessage),
		attrs:   map[string]*starlark.Builtin{"encoded": starlark.NewBuiltin("Message.encoded", messageEncoded)},
	}
	d["catch"] = starlark.NewBuiltin("catch", catch)
	d["log"] = &starlarkstruct.Module{Name: "log", Members: starlark.StringDict{
		"debug":   logFunc("log.debug", slog.LevelDebug),
		"info":    logFunc("log.info", slog.LevelInfo),
		"warning": logFunc("log.warning", slog.LevelWarn),
		"error":   logFunc("log.error", slog.LevelError),
	}}
	d["policy"] = &starlarkstruct.Module{Name: "policy", Members: starlark.StringDict{
		"has_parent_authority": starlark.NewBuiltin("policy.has_parent_authority", policyBuiltin),
		"is_immediate_child":   starlark.NewBuiltin("policy.is_immediate_child", policyBuiltin),
		"allow_any":            starlark.NewBuiltin("policy.allow_any", policyBuiltin),
	}}
	d["service"] = starlark.NewBuiltin("service", newService)
	d["version"] = &starlarkstruct.Module{Name: "version", Members: starlark.StringDict{
		"mitostar": starlark.String(core.BuildVersion),
		"protocol": starlark.MakeInt(core.ProtocolVersion),
		"go":       starlark.String(runtime.Version()),
	}}
	return d
}

// policyBuiltin lets scripts call the policies on a message directly.
func policyBuiltin(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var m *Message
	if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &m); err != nil {
		return nil, err
	}
	r, err := RouterOf(thread)
	if err != nil {
		return nil, err
	}
	switch b.Name() {
	case "policy.has_parent_authority":
		return starlark.Bool(r.HasParentAuthority(m.M)), nil
	case "policy.allow_any":
		return starlark.True, nil
	}
	return starlark.Bool(r.IsImmediateChild(m.M)), nil
}

func logFunc(name string, level slog.Level) *starlark.Builtin {
	return starlark.NewBuiltin(name, func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if len(kwargs) > 0 {
			return nil, fmt.Errorf("%s: unexpected keyword argument %s", name, kwargs[0][0])
		}
		parts := make([]string, len(args))
		for i, a := range args {
			if s, ok := a.(starlark.String); ok {
				parts[i] = string(s)
			} else {
				parts[i] = a.String()
			}
		}
		r, err := RouterOf(thread)
		if err != nil {
			return nil, err
		}
		r.Emit(level, strings.Join(parts, " "))
		return starlark.None, nil
	})
}

// catch(fn, *args, **kwargs) returns (value, None) or (None, err).
func catch(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if len(args) == 0 {
		return nil, errors.New("catch: missing function argument")
	}
	fn, ok := args[0].(starlark.Callable)
	if !ok {
		return nil, fmt.Errorf("catch: first argument must be callable, got %s", args[0].Type())
	}
	v, err := starlark.Call(thread, fn, args[1:], kwargs)
	if err == nil {
		return starlark.Tuple{v, starlark.None}, nil
	}
	if Cancelled(thread) {
		return nil, err
	}
	name := ""
	if r, rerr := RouterOf(thread); rerr == nil {
		name = r.Name()
	}
	return starlark.Tuple{starlark.None, ErrorOf(err, name)}, nil
}

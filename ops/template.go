package ops

// ops.template: a file rendered from a Go text/template under a module
// root, with the host's inventory vars and the call's vars as data.

import (
	"bytes"
	"fmt"
	"text/template"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// ops.template(path, src, vars={}, mode=None, owner=None, group=None)
func opTemplate(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var path, src string
	vars := new(starlark.Dict)
	var mode, owner, group starlark.Value = starlark.None, starlark.None, starlark.None
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "path", &path, "src", &src, "vars?", &vars,
		"mode?", &mode, "owner?", &owner, "group?", &group); err != nil {
		return nil, err
	}
	if path == "" {
		return nil, fmt.Errorf("%s: empty path", b.Name())
	}
	if src == "" {
		return nil, fmt.Errorf("%s: empty src", b.Name())
	}
	a, err := unpackAttrs(b.Name(), mode, owner, group)
	if err != nil {
		return nil, err
	}
	o := newOp(thread, b.Name(), path)
	data, err := templateData(o.env, vars)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	text, err := o.env.Source(o.ctx(), src)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	out, err := render(src, text, data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	if err := o.ensureContent(path, out, a); err != nil {
		return nil, err
	}
	return o.result("ok: content, mode and owner as asked"), nil
}

// render executes the template text (named name in errors) on data; a
// key missing from a map is an error, not "<no value>".
func render(name string, text []byte, data map[string]any) ([]byte, error) {
	t, err := template.New(name).Option("missingkey=error").Parse(string(text))
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// templateData merges the vars of the context's host (the predeclared
// host, when the context was started from the inventory) and vars,
// which win.
func templateData(env Env, vars *starlark.Dict) (map[string]any, error) {
	data := map[string]any{}
	if h, ok := env.PredeclaredValue("host").(starlark.HasAttrs); ok {
		hv, err := h.Attr("vars")
		if err != nil {
			return nil, fmt.Errorf("host.vars: %w", err)
		}
		if d, ok := hv.(*starlark.Dict); ok {
			if err := mergeVars(data, d, "host.vars"); err != nil {
				return nil, err
			}
		}
	}
	if err := mergeVars(data, vars, "vars"); err != nil {
		return nil, err
	}
	return data, nil
}

func mergeVars(into map[string]any, d *starlark.Dict, what string) error {
	for _, kv := range d.Items() {
		k, ok := kv[0].(starlark.String)
		if !ok {
			return fmt.Errorf("%s: keys must be strings, got %s", what, kv[0].Type())
		}
		v, err := toGo(kv[1], 0)
		if err != nil {
			return fmt.Errorf("%s[%q]: %w", what, string(k), err)
		}
		into[string(k)] = v
	}
	return nil
}

// maxDepth bounds the nesting of template data (a list that holds
// itself would never end).
const maxDepth = 100

// toGo converts a Starlark value into the Go value a template reads:
// dicts and structs become maps (string keys when all keys are
// strings), lists, tuples and sets slices, numbers int64 (or the
// decimal string of a big int) and float64.
func toGo(v starlark.Value, depth int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("data nested more than %d levels deep", maxDepth)
	}
	switch v := v.(type) {
	case starlark.NoneType:
		return nil, nil
	case starlark.Bool:
		return bool(v), nil
	case starlark.Int:
		if i, ok := v.Int64(); ok {
			return i, nil
		}
		return v.String(), nil
	case starlark.Float:
		return float64(v), nil
	case starlark.String:
		return string(v), nil
	case starlark.Bytes:
		return string(v), nil
	case *starlark.Dict:
		return dictToGo(v.Items(), depth)
	case *starlarkstruct.Struct:
		var items []starlark.Tuple
		for _, name := range v.AttrNames() {
			f, _ := v.Attr(name)
			items = append(items, starlark.Tuple{starlark.String(name), f})
		}
		return dictToGo(items, depth)
	case starlark.Iterable:
		var out []any
		it := v.Iterate()
		defer it.Done()
		var x starlark.Value
		for it.Next(&x) {
			g, err := toGo(x, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, g)
		}
		return out, nil
	}
	return v.String(), nil
}

func dictToGo(items []starlark.Tuple, depth int) (any, error) {
	strs := make(map[string]any, len(items))
	var anys map[any]any
	for _, kv := range items {
		val, err := toGo(kv[1], depth+1)
		if err != nil {
			return nil, err
		}
		if k, ok := kv[0].(starlark.String); ok && anys == nil {
			strs[string(k)] = val
			continue
		}
		if anys == nil {
			anys = make(map[any]any, len(items))
			for k, v := range strs {
				anys[k] = v
			}
		}
		key, err := toGo(kv[0], depth+1)
		if err != nil {
			return nil, err
		}
		switch key.(type) {
		case []any, map[string]any, map[any]any:
			return nil, fmt.Errorf("a dict key of type %s cannot be used in a template", kv[0].Type())
		}
		anys[key] = val
	}
	if anys != nil {
		return anys, nil
	}
	return strs, nil
}

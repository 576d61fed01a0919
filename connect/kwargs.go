package connect

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strings"
)

// kwargs reads a method's keywords (Starlark values converted to Go,
// possibly after a CBOR round trip through a via context). The first
// error is kept; finish reports it, or the first unknown keyword.
type kwargs struct {
	method string
	m      map[string]any
	used   map[string]bool
	err    error
}

func newKwargs(method string, m map[string]any) *kwargs {
	return &kwargs{method: method, m: m, used: map[string]bool{}}
}

func (k *kwargs) get(name string) (any, bool) {
	k.used[name] = true
	v, ok := k.m[name]
	if !ok || v == nil {
		return nil, false
	}
	return v, true
}

func (k *kwargs) fail(name, want string, v any) {
	if k.err == nil {
		k.err = fmt.Errorf("%s: %s must be %s, got %s", k.method, name, want, describeValue(v))
	}
}

func describeValue(v any) string {
	switch v.(type) {
	case string:
		return fmt.Sprintf("string %q", v)
	case bool:
		return fmt.Sprintf("bool %v", v)
	case []any:
		return "a list"
	case map[string]any, map[any]any:
		return "a dict"
	}
	return fmt.Sprintf("%T %v", v, v)
}

// str returns a string keyword, def when absent or None.
func (k *kwargs) str(name, def string) string {
	v, ok := k.get(name)
	if !ok {
		return def
	}
	s, ok := v.(string)
	if !ok {
		k.fail(name, "a string", v)
		return def
	}
	return s
}

// optStr returns a string keyword and whether it was given (not None).
func (k *kwargs) optStr(name string) (string, bool) {
	if _, ok := k.m[name]; !ok || k.m[name] == nil {
		k.used[name] = true
		return "", false
	}
	return k.str(name, ""), true
}

func (k *kwargs) boolean(name string, def bool) bool {
	v, ok := k.get(name)
	if !ok {
		return def
	}
	b, ok := v.(bool)
	if !ok {
		k.fail(name, "a bool", v)
		return def
	}
	return b
}

// integer returns an int keyword within [lo, hi].
func (k *kwargs) integer(name string, def, lo, hi int) int {
	v, ok := k.get(name)
	if !ok {
		return def
	}
	var n int64
	switch x := v.(type) {
	case int:
		n = int64(x)
	case int64:
		n = x
	case uint64:
		if x > math.MaxInt64 {
			k.fail(name, fmt.Sprintf("an int from %d to %d", lo, hi), v)
			return def
		}
		n = int64(x)
	case float64:
		if x != math.Trunc(x) {
			k.fail(name, "an int", v)
			return def
		}
		n = int64(x)
	case *big.Int:
		k.fail(name, fmt.Sprintf("an int from %d to %d", lo, hi), v)
		return def
	default:
		k.fail(name, "an int", v)
		return def
	}
	if n < int64(lo) || n > int64(hi) {
		if k.err == nil {
			k.err = fmt.Errorf("%s: %s must be from %d to %d, got %d", k.method, name, lo, hi, n)
		}
		return def
	}
	return int(n)
}

// strings returns a list-of-strings keyword (a list or tuple).
func (k *kwargs) strings(name string) []string {
	v, ok := k.get(name)
	if !ok {
		return nil
	}
	var out []string
	switch x := v.(type) {
	case []string:
		return slices.Clone(x)
	case []any:
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				k.fail(name, "a list of strings", v)
				return nil
			}
			out = append(out, s)
		}
	default:
		k.fail(name, "a list of strings", v)
		return nil
	}
	return out
}

// finish reports the first bad value, or the first unknown keyword.
func (k *kwargs) finish() error {
	if k.err != nil {
		return k.err
	}
	k.used["remote_name"] = true // Mitogen's argv[0] of the child: meaningless here
	var unknown []string
	for name := range k.m {
		if !k.used[name] {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return errors.New(k.method + ": unexpected keyword " + strings.Join(quoteAll(unknown), ", "))
	}
	return nil
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = fmt.Sprintf("%q", x)
	}
	return out
}

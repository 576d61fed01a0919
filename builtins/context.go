package builtins

import (
	"fmt"
	"slices"
	"sync/atomic"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"

	"github.com/mitostar/mitostar/core"
)

// Context is the Starlark face of a core.Context (type "context").
// Contexts compare equal and hash by id.
type Context struct {
	C *core.Context

	// methods are the bound methods used so far, each made at its first
	// access: a script calling ctx.call in a loop would otherwise make
	// two builtins per call. Copied on write.
	methods atomic.Pointer[[]boundMethod]
}

type boundMethod struct {
	name string
	fn   *starlark.Builtin
}

var (
	_ starlark.Value      = (*Context)(nil)
	_ starlark.HasAttrs   = (*Context)(nil)
	_ starlark.Comparable = (*Context)(nil)
)

// NewContext wraps c.
func NewContext(c *core.Context) *Context { return &Context{C: c} }

func (c *Context) String() string        { return fmt.Sprintf("Context(%d, %q)", c.C.ID, c.C.Name()) }
func (c *Context) Type() string          { return "context" }
func (c *Context) Freeze()               {}
func (c *Context) Truth() starlark.Bool  { return true }
func (c *Context) Hash() (uint32, error) { return c.C.ID, nil }

// CompareSameType compares contexts by id.
func (c *Context) CompareSameType(op syntaxToken, y starlark.Value, depth int) (bool, error) {
	return compareIDs(op, c.C.ID, y.(*Context).C.ID)
}

// ToContext returns the core.Context of a Starlark context value, or an
// error naming what was given instead.
func ToContext(v starlark.Value, what string) (*core.Context, error) {
	c, ok := v.(*Context)
	if !ok {
		return nil, fmt.Errorf("%s: want a context, got %s", what, v.Type())
	}
	return c.C, nil
}

type syntaxToken = syntax.Token

// compareIDs implements == and != (and ordering, for sorting) on ids.
func compareIDs(op syntax.Token, x, y uint32) (bool, error) {
	switch op {
	case syntax.EQL:
		return x == y, nil
	case syntax.NEQ:
		return x != y, nil
	case syntax.LT:
		return x < y, nil
	case syntax.LE:
		return x <= y, nil
	case syntax.GT:
		return x > y, nil
	case syntax.GE:
		return x >= y, nil
	}
	return false, fmt.Errorf("unsupported comparison %s", op)
}

// Attr returns the context's attributes and methods; methods are
// provided by contextMethods, filled in by the runtime's call layer.
func (c *Context) Attr(name string) (starlark.Value, error) {
	switch name {
	case "id":
		return starlark.MakeInt64(int64(c.C.ID)), nil
	case "name":
		return starlark.String(c.C.Name()), nil
	case "via":
		return viaOf(c.C), nil
	}
	fn, ok := contextMethods[name]
	if !ok {
		return nil, nil
	}
	for {
		old := c.methods.Load()
		if old != nil {
			for _, m := range *old {
				if m.name == name {
					return m.fn, nil
				}
			}
		}
		b := starlark.NewBuiltin(name, fn).BindReceiver(c)
		var next []boundMethod
		if old != nil {
			next = append(next, *old...)
		}
		next = append(next, boundMethod{name, b})
		if c.methods.CompareAndSwap(old, &next) {
			return b, nil
		}
	}
}

// AttrNames lists the context's attributes.
func (c *Context) AttrNames() []string {
	names := []string{"id", "name", "via"}
	for n := range contextMethods {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// contextMethods are the Context methods (call, send, shutdown, ...).
var contextMethods = map[string]Func{}

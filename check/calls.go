package check

import (
	"fmt"
	"slices"
	"strings"

	"go.starlark.net/resolve"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"

	"github.com/mitostar/mitostar/builtins"
	"github.com/mitostar/mitostar/ops"
	"github.com/mitostar/mitostar/runtime"
)

// travelMethods are the Context methods whose first argument is a
// function that runs in another context.
var travelMethods = []string{"call", "call_async", "call_no_reply"}

// eachKeywords are each's own keywords, not passed on to its function.
var eachKeywords = []string{"_timeout", "_forks", "serial", "max_fail_percentage"}

// callee is what a call expression is known to call.
type callee struct {
	name   string     // as the script spells it, for messages
	sig    *signature // nil: unknown
	travel string     // why it cannot run in another context; "" if it can or is unknown
}

// calls checks every call expression of m.
func (c *checker) calls(m *module) {
	syntax.Walk(m.file, func(n syntax.Node) bool {
		call, ok := n.(*syntax.CallExpr)
		if !ok {
			return true
		}
		args := splitArgs(call.Args)
		fn := c.callee(m, call.Fn)
		if fn.sig != nil {
			c.arity(call.Lparen, fn.name, fn.sig, args)
		}
		switch {
		case isTravelCall(call.Fn):
			c.travel(m, call, args, 0, "_timeout")
		case isPredeclared(call.Fn, "each"):
			c.travel(m, call, args, 1, "")
		case isOps(call.Fn):
			c.src(call, args)
		}
		return true
	})
}

// isTravelCall reports whether fn is X.call, X.call_async or
// X.call_no_reply on a value (not on a predeclared module, whose call
// member is a function of its own: fanout.call).
func isTravelCall(fn syntax.Expr) bool {
	dot, ok := fn.(*syntax.DotExpr)
	if !ok || !slices.Contains(travelMethods, dot.Name.Name) {
		return false
	}
	if id, ok := dot.X.(*syntax.Ident); ok {
		if b, ok := id.Binding.(*resolve.Binding); ok && (b.Scope == resolve.Predeclared || b.Scope == resolve.Universal) {
			return false
		}
	}
	return true
}

// isPredeclared reports whether e is the predeclared name.
func isPredeclared(e syntax.Expr, name string) bool {
	id, ok := e.(*syntax.Ident)
	if !ok || id.Name != name {
		return false
	}
	b, ok := id.Binding.(*resolve.Binding)
	return ok && b.Scope == resolve.Predeclared
}

// isOps reports whether fn is an ops call whose src names a file under
// a module root, as load() names a module (ops.file, ops.template).
func isOps(fn syntax.Expr) bool {
	_, ok := ops.SrcParam(opsName(fn))
	return ok
}

// opsName returns NAME when fn is ops.NAME, else "".
func opsName(fn syntax.Expr) string {
	dot, ok := fn.(*syntax.DotExpr)
	if !ok {
		return ""
	}
	if id, ok := dot.X.(*syntax.Ident); ok && id.Name == "ops" {
		return dot.Name.Name
	}
	return ""
}

// travel checks the function a call sends to another context: the
// argument at index at (or the keyword fn), called with the arguments
// after it less the call's own keywords (skip names one more).
func (c *checker) travel(m *module, call *syntax.CallExpr, args callArgs, at int, skip string) {
	var fnExpr syntax.Expr
	var rest callArgs
	switch {
	case len(args.pos) > at:
		fnExpr = args.pos[at]
		rest = callArgs{pos: args.pos[at+1:], star: args.star, starstar: args.starstar}
	case args.kw["fn"] != nil && at > 0:
		fnExpr = args.kw["fn"].Y
		rest = callArgs{star: args.star, starstar: args.starstar}
	default:
		return
	}
	for _, k := range args.kwOrder {
		if k.X.(*syntax.Ident).Name == "fn" && at > 0 {
			continue
		}
		name := k.X.(*syntax.Ident).Name
		if name == skip || (at > 0 && slices.Contains(eachKeywords, name)) {
			continue
		}
		rest.kwOrder = append(rest.kwOrder, k)
	}
	rest.index()
	what := callName(call.Fn)
	fn := c.callee(m, fnExpr)
	start, _ := fnExpr.Span()
	if fn.travel != "" {
		c.problem(start, "%s: %s", what, fn.travel)
		return
	}
	if fn.sig != nil {
		c.arity(start, what+": "+fn.name, fn.sig, rest)
	}
}

// callName names the function of a call expression for messages.
func callName(fn syntax.Expr) string {
	switch fn := fn.(type) {
	case *syntax.Ident:
		return fn.Name
	case *syntax.DotExpr:
		return callName(fn.X) + "." + fn.Name.Name
	case *syntax.CallExpr:
		return callName(fn.Fn) + "()"
	}
	return "call"
}

// callee says what e, the function of a call or the function sent by
// one, is known to be.
func (c *checker) callee(m *module, e syntax.Expr) callee {
	switch e := e.(type) {
	case *syntax.LambdaExpr:
		return callee{name: "lambda", travel: "a lambda cannot run in another context: functions travel by reference (module path and name), and an anonymous function has none; define it with def at the top level of a module"}
	case *syntax.Ident:
		b, _ := e.Binding.(*resolve.Binding)
		if b == nil {
			return callee{name: e.Name}
		}
		switch b.Scope {
		case resolve.Predeclared, resolve.Universal:
			return c.builtin(e.Name, e.Name)
		case resolve.Global:
			if d := m.defs[e.Name]; d != nil {
				return callee{name: e.Name, sig: defSignature(d)}
			}
		case resolve.Local, resolve.Cell, resolve.Free:
			if d := m.nested[b.First]; d != nil {
				return callee{name: e.Name, sig: defSignature(d),
					travel: fmt.Sprintf("%s is a nested function: only top-level functions of a module travel by reference; move it to the top level of its module", e.Name)}
			}
			if l, ok := m.loads[b.First]; ok && l.m != nil {
				if d := l.m.defs[l.name]; d != nil {
					return callee{name: e.Name, sig: defSignature(d)}
				}
			}
		}
		return callee{name: e.Name}
	case *syntax.DotExpr:
		path := dotted(e)
		if path == "" {
			return callee{name: callName(e)}
		}
		return c.builtin(path, callName(e))
	}
	return callee{name: callName(e)}
}

// dotted returns "a.b.c" for a chain of attributes on a predeclared
// name, else "".
func dotted(e syntax.Expr) string {
	switch e := e.(type) {
	case *syntax.Ident:
		if b, ok := e.Binding.(*resolve.Binding); ok && b.Scope == resolve.Predeclared {
			return e.Name
		}
	case *syntax.DotExpr:
		if x := dotted(e.X); x != "" {
			return x + "." + e.Name.Name
		}
	}
	return ""
}

// builtin says what the predeclared or universal value at path is.
func (c *checker) builtin(path, name string) callee {
	parts := strings.Split(path, ".")
	v, ok := c.opts.Predeclared[parts[0]]
	if !ok {
		v, ok = starlark.Universe[parts[0]]
	}
	if !ok {
		return callee{name: name}
	}
	for _, attr := range parts[1:] {
		h, ok := v.(starlark.HasAttrs)
		if !ok {
			return callee{name: name}
		}
		next, err := h.Attr(attr)
		if err != nil || next == nil {
			return callee{name: name}
		}
		v = next
	}
	out := callee{name: name}
	if c.opts.Signatures != nil {
		if params, ok := c.opts.Signatures(path); ok {
			out.sig = parseSignature(path, params)
		}
	}
	switch f := v.(type) {
	case *starlark.Builtin:
		if !builtins.IsRegistered(f) {
			out.travel = fmt.Sprintf("%s is not a registered builtin, so it cannot run in another context", name)
		}
	case *starlark.Function:
	default:
		if _, ok := v.(starlark.Callable); !ok {
			out.travel = fmt.Sprintf("%s is %s, not a function", name, v.Type())
		}
	}
	return out
}

// src checks the src= file of an ops call: relative to a module root,
// as load() paths are, and there.
func (c *checker) src(call *syntax.CallExpr, args callArgs) {
	var arg syntax.Expr
	if kw := args.kw["src"]; kw != nil {
		arg = kw.Y
	} else if i, ok := ops.SrcParam(opsName(call.Fn)); ok && i < len(args.pos) {
		arg = args.pos[i] // ops.template(path, "templates/app.conf.tmpl")
	}
	if arg == nil {
		return
	}
	lit, ok := arg.(*syntax.Literal)
	if !ok || lit.Token != syntax.STRING {
		return // computed: known only when the script runs
	}
	p := lit.Value.(string)
	what := callName(call.Fn)
	clean, err := runtime.CleanModulePath(p)
	if err != nil {
		c.problem(lit.TokenPos, "%s: src: %v", what, srcError(err))
		return
	}
	file, _, err := runtime.FindModule(c.roots, clean)
	if err != nil {
		c.problem(lit.TokenPos, "%s: src: %v", what, srcError(err))
		return
	}
	c.need(&c.res.Files, file, clean)
}

// srcError words a module-path error for a src= file.
func srcError(err error) string {
	return strings.Replace(err.Error(), "module ", "file ", 1)
}

// callArgs are a call's arguments by kind.
type callArgs struct {
	pos            []syntax.Expr
	kwOrder        []*syntax.BinaryExpr
	kw             map[string]*syntax.BinaryExpr
	star, starstar bool
}

func splitArgs(args []syntax.Expr) callArgs {
	var a callArgs
	for _, arg := range args {
		switch x := arg.(type) {
		case *syntax.BinaryExpr:
			if x.Op == syntax.EQ {
				a.kwOrder = append(a.kwOrder, x)
				continue
			}
		case *syntax.UnaryExpr:
			if x.Op == syntax.STAR {
				a.star = true
				continue
			}
			if x.Op == syntax.STARSTAR {
				a.starstar = true
				continue
			}
		}
		a.pos = append(a.pos, arg)
	}
	a.index()
	return a
}

func (a *callArgs) index() {
	a.kw = map[string]*syntax.BinaryExpr{}
	for _, k := range a.kwOrder {
		a.kw[k.X.(*syntax.Ident).Name] = k
	}
}

// A signature is what a function accepts.
type signature struct {
	positional []param // may be given by position or keyword
	kwonly     []param // after * or *args
	varargs    bool
	kwargs     bool
}

type param struct {
	name     string
	optional bool
}

func (s *signature) find(name string) (param, bool) {
	for _, p := range s.positional {
		if p.name == name {
			return p, true
		}
	}
	for _, p := range s.kwonly {
		if p.name == name {
			return p, true
		}
	}
	return param{}, false
}

// defSignature is the signature of a def statement.
func defSignature(d *syntax.DefStmt) *signature {
	return paramsSignature(d.Params)
}

func paramsSignature(params []syntax.Expr) *signature {
	s := &signature{}
	star := false
	for _, p := range params {
		switch p := p.(type) {
		case *syntax.Ident:
			s.add(star, param{name: p.Name})
		case *syntax.BinaryExpr: // name=default
			s.add(star, param{name: p.X.(*syntax.Ident).Name, optional: true})
		case *syntax.UnaryExpr:
			if p.Op == syntax.STARSTAR {
				s.kwargs = true
			} else {
				star = true
				s.varargs = s.varargs || p.X != nil
			}
		}
	}
	return s
}

func (s *signature) add(kwonly bool, p param) {
	if kwonly {
		s.kwonly = append(s.kwonly, p)
	} else {
		s.positional = append(s.positional, p)
	}
}

// parseSignature reads a parameter list as a def would have it; nil
// when it does not parse.
func parseSignature(name, params string) *signature {
	src := "def f(" + params + "):\n    pass\n"
	f, err := syntax.LegacyFileOptions().Parse(name, src, 0)
	if err != nil || len(f.Stmts) != 1 {
		return nil
	}
	d, ok := f.Stmts[0].(*syntax.DefStmt)
	if !ok {
		return nil
	}
	return paramsSignature(d.Params)
}

// arity checks a call's arguments against what its function accepts,
// as far as they are known: a call with *args or **kwargs may fill any
// parameter.
func (c *checker) arity(pos syntax.Position, name string, s *signature, a callArgs) {
	if len(a.pos) > len(s.positional) && !s.varargs {
		c.problem(pos, "%s takes at most %d positional %s, got %d", name, len(s.positional), plural(len(s.positional), "argument"), len(a.pos))
		return
	}
	filled := map[string]bool{}
	for i := range min(len(a.pos), len(s.positional)) {
		filled[s.positional[i].name] = true
	}
	for _, k := range a.kwOrder {
		kn := k.X.(*syntax.Ident).Name
		if _, ok := s.find(kn); !ok {
			if !s.kwargs {
				c.problem(pos, "%s has no parameter named %s", name, kn)
			}
			continue
		}
		if filled[kn] {
			c.problem(pos, "%s got two values for %s", name, kn)
		}
		filled[kn] = true
	}
	if a.star || a.starstar {
		return
	}
	var missing []string
	for _, p := range append(append([]param(nil), s.positional...), s.kwonly...) {
		if !p.optional && !filled[p.name] {
			missing = append(missing, p.name)
		}
	}
	if len(missing) > 0 {
		c.problem(pos, "%s is missing %d %s: %s", name, len(missing), plural(len(missing), "argument"), strings.Join(missing, ", "))
	}
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// Package check implements mitostar check: it reads a script and every
// module it loads, without starting a context, and reports what would
// fail once the script runs — a load that cannot be found, a name that is
// not defined, a function given to ctx.call or each that cannot travel
// (a lambda, a nested function, a builtin that is not registered), a
// call with the wrong number or names of arguments where the callee's
// signature is known, and a src= file of an ops call that is missing.
//
// The same walk lists the files a script needs (its modules and its
// src= files): mitostar bundle packs them.
package check

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.starlark.net/resolve"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"

	"github.com/mitostar/mitostar/runtime"
)

// Options configure a check.
type Options struct {
	// Roots are the module roots after the script's directory (-I).
	Roots []string
	// Predeclared are the names every module sees (a master runtime's
	// Predeclared); builtins among them are checked for registration and
	// arity.
	Predeclared starlark.StringDict
	// Signatures gives the signature of a predeclared builtin by its
	// dotted name ("fs.write") as a parameter list ("path, data,
	// mode=None"); ok is false when it is not known.
	Signatures func(name string) (params string, ok bool)
}

// A Problem is one thing that would fail.
type Problem struct {
	Pos     syntax.Position
	Message string
}

// String is "file:line: message".
func (p Problem) String() string {
	if !p.Pos.IsValid() {
		return fmt.Sprintf("%s: %s", p.Pos.Filename(), p.Message)
	}
	return fmt.Sprintf("%s:%d: %s", p.Pos.Filename(), p.Pos.Line, p.Message)
}

// A File is a file a script needs: Path relative to the module root
// Roots[Root] of the Result (the script's directory is root 0).
type File struct {
	Root int
	Path string
}

// A Result is what Script found.
type Result struct {
	// Roots are the module roots, the script's directory first.
	Roots []string
	// Script is the script's path relative to Roots[0].
	Script string
	// Problems in file and line order; empty when the script is sound.
	Problems []Problem
	// Modules are the script and every module it loads, transitively.
	Modules []File
	// Files are the src= files of ops calls that were found.
	Files []File
}

// Script checks the script at path and the modules it loads. An error
// is returned only when the script itself cannot be read; everything
// else is a Problem.
func Script(path string, opts Options) (*Result, error) {
	if err := runtime.CheckScript(path); err != nil {
		return nil, err
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	c := &checker{
		opts:    opts,
		roots:   append([]string{filepath.Clean(dir)}, opts.Roots...),
		modules: map[string]*module{},
		seen:    map[File]bool{},
	}
	c.res = &Result{Roots: c.roots, Script: base}
	c.module(base, syntax.Position{}, nil)
	slices.SortStableFunc(c.res.Problems, func(a, b Problem) int {
		if a.Pos.Filename() != b.Pos.Filename() {
			return strings.Compare(a.Pos.Filename(), b.Pos.Filename())
		}
		return int(a.Pos.Line - b.Pos.Line)
	})
	return c.res, nil
}

// checker holds one run of Script.
type checker struct {
	opts    Options
	roots   []string
	res     *Result
	modules map[string]*module // by root-relative path
	seen    map[File]bool
}

// module is one parsed and resolved module.
type module struct {
	path    string // root-relative
	file    *syntax.File
	done    bool                              // its checks ran (false while its loads are checked: a cycle)
	defs    map[string]*syntax.DefStmt        // top-level functions whose name is bound nowhere else
	globals map[string]bool                   // every global name it defines
	loads   map[*syntax.Ident]loaded          // a load's local name → what it names
	nested  map[*syntax.Ident]*syntax.DefStmt // nested defs by their name
}

// loaded is what a load binds: name in module m (nil: not found).
type loaded struct {
	m    *module
	name string
}

func (c *checker) problem(pos syntax.Position, format string, args ...any) {
	c.res.Problems = append(c.res.Problems, Problem{Pos: pos, Message: fmt.Sprintf(format, args...)})
}

// module reads, parses, resolves and checks module p (once), reporting
// a failure to find it at pos; stack holds the modules being loaded, to
// find cycles. It returns nil when p cannot be read or parsed.
func (c *checker) module(p string, pos syntax.Position, stack []string) *module {
	if m, ok := c.modules[p]; ok {
		if m != nil && !m.done {
			c.problem(pos, "load cycle: %s", strings.Join(append(stack, p), " -> "))
		}
		return m
	}
	c.modules[p] = nil
	file, src, err := runtime.FindModule(c.roots, p)
	if err != nil {
		if !pos.IsValid() {
			pos = syntax.MakePosition(&p, 0, 0)
		}
		c.problem(pos, "load: %v", err)
		return nil
	}
	c.need(&c.res.Modules, file, p)
	f, err := runtime.FileOptions.Parse(displayPath(file), src, 0)
	if err != nil {
		var se syntax.Error
		if errors.As(err, &se) {
			c.problem(se.Pos, "%s", se.Msg)
		} else {
			c.problem(syntax.MakePosition(&file, 0, 0), "%v", err)
		}
		return nil
	}
	m := &module{path: p, file: f, defs: map[string]*syntax.DefStmt{}, globals: map[string]bool{},
		loads: map[*syntax.Ident]loaded{}, nested: map[*syntax.Ident]*syntax.DefStmt{}}
	c.modules[p] = m
	if err := resolve.File(f, c.isPredeclared, starlark.Universe.Has); err != nil {
		var list resolve.ErrorList
		if errors.As(err, &list) {
			for _, e := range list {
				c.problem(e.Pos, "%s", e.Msg)
			}
		} else {
			c.problem(syntax.MakePosition(&file, 0, 0), "%v", err)
		}
	}
	m.index()
	stack = append(stack, p)
	for _, stmt := range f.Stmts {
		if l, ok := stmt.(*syntax.LoadStmt); ok {
			c.load(m, l, stack)
		}
	}
	m.done = true
	c.calls(m)
	return m
}

// need records a file the script needs, once.
func (c *checker) need(list *[]File, file, p string) {
	for i, root := range c.roots {
		if filepath.Join(root, filepath.FromSlash(p)) == file {
			f := File{Root: i, Path: p}
			if !c.seen[f] {
				c.seen[f] = true
				*list = append(*list, f)
			}
			return
		}
	}
}

// displayPath is how problems name a file: relative to the working
// directory when it is below it.
func displayPath(file string) string {
	if filepath.IsAbs(file) {
		if wd, err := os.Getwd(); err == nil {
			if rel, err := filepath.Rel(wd, file); err == nil && !strings.HasPrefix(rel, "..") {
				return rel
			}
		}
	}
	return filepath.Clean(file)
}

func (c *checker) isPredeclared(name string) bool {
	_, ok := c.opts.Predeclared[name]
	return ok
}

// index finds the module's top-level functions, its global names and
// its nested functions.
func (m *module) index() {
	assigned := map[string]int{}
	for _, stmt := range m.file.Stmts {
		syntax.Walk(stmt, func(n syntax.Node) bool {
			switch n := n.(type) {
			case *syntax.DefStmt, *syntax.LambdaExpr:
				return false // their bodies bind locals
			case *syntax.Comprehension:
				return false
			case *syntax.LoadStmt:
				return false
			case *syntax.AssignStmt:
				for _, id := range boundIdents(n.LHS) {
					assigned[id.Name]++
				}
			case *syntax.ForStmt:
				for _, id := range boundIdents(n.Vars) {
					assigned[id.Name]++
				}
			}
			return true
		})
		if d, ok := stmt.(*syntax.DefStmt); ok {
			assigned[d.Name.Name]++
		}
	}
	for _, stmt := range m.file.Stmts {
		if d, ok := stmt.(*syntax.DefStmt); ok && assigned[d.Name.Name] == 1 {
			m.defs[d.Name.Name] = d
		}
		if d, ok := stmt.(*syntax.DefStmt); ok {
			m.globals[d.Name.Name] = true
		}
	}
	for name := range assigned {
		m.globals[name] = true
	}
	for _, stmt := range m.file.Stmts {
		syntax.Walk(stmt, func(n syntax.Node) bool {
			if d, ok := n.(*syntax.DefStmt); ok && d != stmt {
				m.nested[d.Name] = d
			}
			return true
		})
	}
}

// boundIdents returns the identifiers an assignment's left side binds.
func boundIdents(e syntax.Expr) []*syntax.Ident {
	switch e := e.(type) {
	case *syntax.Ident:
		return []*syntax.Ident{e}
	case *syntax.TupleExpr:
		var out []*syntax.Ident
		for _, x := range e.List {
			out = append(out, boundIdents(x)...)
		}
		return out
	case *syntax.ListExpr:
		var out []*syntax.Ident
		for _, x := range e.List {
			out = append(out, boundIdents(x)...)
		}
		return out
	case *syntax.ParenExpr:
		return boundIdents(e.X)
	}
	return nil
}

// load checks one load statement: the module exists and is sound, and
// defines each name.
func (c *checker) load(m *module, l *syntax.LoadStmt, stack []string) {
	p := l.ModuleName()
	clean, err := runtime.CleanModulePath(p)
	if err != nil {
		c.problem(l.Load, "load: %v", err)
		return
	}
	dep := c.module(clean, l.Load, stack)
	for i, from := range l.From {
		id := l.To[i]
		if dep == nil || !dep.done {
			m.loads[id] = loaded{}
			continue
		}
		if !dep.globals[from.Name] {
			c.problem(from.NamePos, "load: module %s has no global named %s", clean, from.Name)
		}
		m.loads[id] = loaded{m: dep, name: from.Name}
	}
}

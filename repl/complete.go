package repl

import (
	"regexp"
	"sort"
	"strings"
	"sync"

	"go.starlark.net/starlark"
)

// keywords are Starlark's, offered with the names.
var keywords = []string{"and", "break", "continue", "def", "elif", "else", "for", "if", "in", "lambda",
	"load", "not", "or", "pass", "return", "while"}

// dottedTail is the name being typed at the end of the line: an
// identifier, or attributes of one (web.ca, os.get).
var dottedTail = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\.?$`)
})

// indent is what Tab inserts at the start of a line.
const indent = "    "

// completer completes names (globals, predeclared names, Starlark's
// universe and keywords) and attributes (a Context's methods, a
// module's functions) from the values the session holds. It never calls
// a function: only attributes are read.
type completer struct{ r *REPL }

// Do implements readline.AutoCompleter: the endings of the candidates
// for what is typed before pos, and how many runes of it they share.
func (c *completer) Do(line []rune, pos int) ([][]rune, int) {
	before := string(line[:pos])
	if strings.TrimSpace(before) == "" {
		return [][]rune{[]rune(indent)}, 0 // indentation, in a def's body
	}
	var tail string
	if loc := dottedTail().FindStringIndex(before); loc != nil {
		if loc[0] > 0 && before[loc[0]-1] == '.' {
			return nil, 0 // an attribute of an expression ("x".upp): not evaluated
		}
		tail = before[loc[0]:]
	}
	parts := strings.Split(tail, ".")
	partial := parts[len(parts)-1]
	var candidates []string
	if len(parts) == 1 {
		candidates = c.names()
	} else {
		v := c.lookup(parts[:len(parts)-1])
		h, ok := v.(starlark.HasAttrs)
		if !ok {
			return nil, 0
		}
		candidates = h.AttrNames()
	}
	var out [][]rune
	for _, name := range candidates {
		if strings.HasPrefix(name, partial) && !(partial == "" && strings.HasPrefix(name, "_")) {
			out = append(out, []rune(name[len(partial):]))
		}
	}
	return out, len([]rune(partial))
}

// names are the names a statement may start with.
func (c *completer) names() []string {
	seen := map[string]bool{}
	var out []string
	add := func(names ...string) {
		for _, n := range names {
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	add(names(c.r.globals)...)
	add(names(starlark.Universe)...)
	add(keywords...)
	sort.Strings(out)
	return out
}

// lookup returns the value of a dotted path of names, nil when it has
// none.
func (c *completer) lookup(path []string) starlark.Value {
	v, ok := c.r.globals[path[0]]
	if !ok {
		if v, ok = starlark.Universe[path[0]]; !ok {
			return nil
		}
	}
	for _, attr := range path[1:] {
		h, ok := v.(starlark.HasAttrs)
		if !ok {
			return nil
		}
		next, err := h.Attr(attr)
		if err != nil || next == nil {
			return nil
		}
		v = next
	}
	return v
}

package repl

import (
	"slices"
	"testing"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

func TestComplete(t *testing.T) {
	r := &REPL{globals: starlark.StringDict{
		"web":    starlarkstruct.FromStringDict(starlarkstruct.Default, starlark.StringDict{"call": starlark.None, "call_async": starlark.None, "name": starlark.String("web")}),
		"fs":     &starlarkstruct.Module{Name: "fs", Members: starlark.StringDict{"listdir": starlark.None, "read": starlark.None}},
		"worker": starlark.None,
		"_last":  starlark.None,
	}}
	c := &completer{r: r}
	for _, tc := range []struct {
		line string
		want []string
		n    int
	}{
		{"wor", []string{"ker"}, 3},
		{"x = wo", []string{"rker"}, 2},
		{"web.ca", []string{"ll", "ll_async"}, 2},
		{"print(fs.li", []string{"stdir"}, 2},
		{"fs.", []string{"listdir", "read"}, 0},
		{"lam", []string{"bda"}, 3},         // a keyword
		{"le", []string{"n"}, 2},            // a Starlark builtin
		{"nothing.x", nil, 0},               // no such value
		{`"abc".up`, nil, 0},                // an attribute of an expression
		{"    ", []string{"    "}, 0},       // Tab at the start of a line indents
		{"web.name.up", []string{"per"}, 2}, // a string's methods
	} {
		got, n := c.Do([]rune(tc.line), len([]rune(tc.line)))
		var strs []string
		for _, g := range got {
			strs = append(strs, string(g))
		}
		if !slices.Equal(strs, tc.want) || n != tc.n {
			t.Errorf("Do(%q) = %q, %d; want %q, %d", tc.line, strs, n, tc.want, tc.n)
		}
	}
	// Names starting with _ are offered only once _ is typed.
	got, _ := c.Do([]rune("_"), 1)
	if !slices.ContainsFunc(got, func(r []rune) bool { return string(r) == "last" }) {
		t.Errorf("_ does not complete _last: %q", got)
	}
}

// Package docs holds mitostar's reference (reference.md, embedded) and
// finds its entries, for `mitostar doc` and for the test that checks the
// reference covers every predeclared name, method and attribute.
package docs

import (
	_ "embed"
	"regexp"
	"slices"
	"strings"
	"sync"
)

// Reference is docs/reference.md.
//
//go:embed reference.md
var Reference string

// An Entry is one documented name: a heading that starts with code
// ("### `fs.read(path)`"), with the text up to the next heading of its
// level or above, or a table row whose first cell starts with code.
type Entry struct {
	Name string // "fs.read", "Receiver.get", "mitostar doc"
	Text string // the markdown of the entry
}

// A Section is a part of the reference under a heading without code
// ("## Channels"), with everything up to the next heading of its level
// or above.
type Section struct {
	Title string
	Text  string
}

// The patterns Parse reads a reference with, compiled at first use:
// package inits run in every context at start, and only `mitostar doc`
// reads the reference.
var (
	headingRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile("^(#{2,4}) +(.*)$") })
	codeRE    = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile("^`([^`]+)`") })
	rowRE     = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile("^\\| *`([^`]+)`") })
	wordRE    = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile("^[a-z]+$") })
	spanRE    = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile("`([^`]+)`") })
)

// keyOf is the name a code span documents: its first word up to a
// parenthesis, then the lower-case words that follow ("mitostar doc
// [NAME]" is "mitostar doc").
func keyOf(code string) string {
	code = strings.TrimSpace(code)
	if i := strings.IndexAny(code, "(["); i >= 0 {
		code = code[:i]
	}
	words := strings.Fields(code)
	if len(words) == 0 {
		return ""
	}
	key := words[0]
	for _, w := range words[1:] {
		if !wordRE().MatchString(w) {
			break
		}
		key += " " + w
	}
	return key
}

// rowText renders a table row "| `f(x)` | what it does |" as an entry:
// "`f(x)`", then the other cells indented below it.
func rowText(row string) string {
	cells := strings.Split(strings.Trim(strings.TrimSpace(row), "|"), " | ")
	var b strings.Builder
	b.WriteString(strings.TrimSpace(cells[0]) + "\n")
	for _, c := range cells[1:] {
		b.WriteString("    " + strings.TrimSpace(c) + "\n")
	}
	return b.String()
}

// Parse finds the entries and sections of a reference page.
func Parse(md string) ([]Entry, []Section) {
	lines := strings.Split(md, "\n")
	type open struct {
		level   int
		start   int
		name    string
		section bool
	}
	type found struct {
		line int
		e    Entry
	}
	var entries []found
	var sections []Section
	var stack []open
	closeTo := func(level, end int) {
		for len(stack) > 0 && stack[len(stack)-1].level >= level {
			o := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			text := strings.TrimRight(strings.Join(lines[o.start:end], "\n"), "\n") + "\n"
			if o.section {
				sections = append(sections, Section{Title: o.name, Text: text})
			} else {
				entries = append(entries, found{o.start, Entry{Name: o.name, Text: text}})
			}
		}
	}
	inFence := false
	for i, l := range lines {
		if strings.HasPrefix(l, "```") {
			inFence = !inFence
			continue
		}
		if inFence {
			continue
		}
		if m := headingRE().FindStringSubmatch(l); m != nil {
			level := len(m[1])
			closeTo(level, i)
			if c := codeRE().FindStringSubmatch(m[2]); c != nil {
				stack = append(stack, open{level: level, start: i, name: keyOf(c[1])})
			} else {
				stack = append(stack, open{level: level, start: i, name: m[2], section: true})
			}
			continue
		}
		if m := rowRE().FindStringSubmatch(l); m != nil {
			entries = append(entries, found{i, Entry{Name: keyOf(m[1]), Text: rowText(l)}})
		}
	}
	closeTo(0, len(lines))
	slices.SortFunc(entries, func(a, b found) int { return a.line - b.line }) // the page's order
	out := make([]Entry, len(entries))
	for i, f := range entries {
		out[i] = f.e
	}
	return out, sections
}

// Lookup returns the text documenting name: every entry of that name,
// else the section of that title (case does not matter; "ctx." stands
// for "Context."). ok is false when nothing matches.
func Lookup(md, name string) (string, bool) {
	entries, sections := Parse(md)
	want := strings.ToLower(strings.TrimSpace(name))
	if rest, ok := strings.CutPrefix(want, "ctx."); ok {
		want = "context." + rest
	}
	var b strings.Builder
	for _, e := range entries {
		if strings.ToLower(e.Name) == want {
			if b.Len() > 0 {
				b.WriteString("\n")
			}
			b.WriteString(e.Text)
		}
	}
	if b.Len() > 0 {
		return b.String(), true
	}
	for _, s := range sections {
		if strings.ToLower(s.Title) == want {
			return s.Text, true
		}
	}
	return "", false
}

// Near returns the entry names that start with prefix (case does not
// matter), for an unknown name.
func Near(md, prefix string) []string {
	entries, _ := Parse(md)
	p := strings.ToLower(strings.TrimSpace(prefix))
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		p = p[:i+1]
	}
	seen := map[string]bool{}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(strings.ToLower(e.Name), p) && !seen[e.Name] {
			seen[e.Name] = true
			out = append(out, e.Name)
		}
	}
	return out
}

// Signature returns the parameter list of the entry for name when the
// reference gives it one signature ("path, data, mode=None" for
// "fs.write"); mitostar check checks calls of builtins against it.
func Signature(md, name string) (string, bool) {
	entries, _ := Parse(md)
	var sig string
	found := false
	for _, e := range entries {
		if e.Name != name {
			continue
		}
		first, _, _ := strings.Cut(e.Text, "\n")
		c := spanRE().FindStringSubmatch(first)
		if c == nil {
			continue
		}
		open, end := strings.IndexByte(c[1], '('), strings.LastIndexByte(c[1], ')')
		if open < 0 || end < open || strings.TrimSpace(c[1][:open]) != name {
			continue
		}
		params := c[1][open+1 : end]
		if found && params != sig {
			return "", false // two entries that disagree
		}
		sig, found = params, true
	}
	return sig, found
}

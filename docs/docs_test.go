package docs

import (
	"fmt"
	"testing"
)

const page = "# Title\n\nintro `not an entry`\n\n" +
	"## Section A\n\ntext of A\n\n### `f.g(x, y=1)`\n\nwhat f.g does\n\n" +
	"```python\n### `not.an.entry()`\n| `nor.this` | x |\n```\n\n" +
	"| entry | meaning |\n|---|---|\n| `f.h(x)` | what f.h does | more |\n\n" +
	"### `mitostar doc [NAME]`\n\ndoc text\n\n#### `f.g.deeper`\n\ndeeper\n\n" +
	"## Section B\n\n### `F.G`\n\nupper\n"

func TestParse(t *testing.T) {
	entries, sections := Parse(page)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name)
	}
	if got := fmt.Sprint(names); got != "[f.g f.h mitostar doc f.g.deeper F.G]" {
		t.Errorf("entries %s", got)
	}
	text, ok := Lookup(page, "F.g")
	if !ok || text != "### `f.g(x, y=1)`\n\nwhat f.g does\n\n```python\n### `not.an.entry()`\n| `nor.this` | x |\n```\n\n| entry | meaning |\n|---|---|\n| `f.h(x)` | what f.h does | more |\n\n### `F.G`\n\nupper\n" {
		t.Errorf("Lookup(F.g) = %q, %v", text, ok)
	}
	if text, _ := Lookup(page, "f.h"); text != "`f.h(x)`\n    what f.h does\n    more\n" {
		t.Errorf("a table row: %q", text)
	}
	if text, _ := Lookup(page, "mitostar doc"); text != "### `mitostar doc [NAME]`\n\ndoc text\n\n#### `f.g.deeper`\n\ndeeper\n" {
		t.Errorf("an entry holds its deeper ones: %q", text)
	}
	if text, _ := Lookup(page, "section b"); text != "## Section B\n\n### `F.G`\n\nupper\n" {
		t.Errorf("a section: %q", text)
	}
	if len(sections) != 2 {
		t.Errorf("sections: %v", sections)
	}
	if _, ok := Lookup(page, "nor.this"); ok {
		t.Error("a code block's lines are entries")
	}
	if got := fmt.Sprint(Near(page, "f.x")); got != "[f.g f.h f.g.deeper F.G]" {
		t.Errorf("Near = %s", got)
	}
}

func TestSignature(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		ok         bool
	}{
		{"f.g", "x, y=1", true},
		{"f.h", "x", true},
		{"F.G", "", false},          // no parameter list
		{"mitostar doc", "", false}, // a command, not a call
		{"none.such", "", false},
	} {
		got, ok := Signature(page, tc.name)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Signature(%q) = %q, %v; want %q, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
	// Two entries of one name that disagree give none.
	if _, ok := Signature(page+"\n### `f.g(z)`\n", "f.g"); ok {
		t.Error("two different signatures of f.g")
	}
	// The reference's own entries.
	if got, ok := Signature(Reference, "fs.write"); !ok || got != "path, data, mode=0o644" {
		t.Errorf("fs.write: %q, %v", got, ok)
	}
}

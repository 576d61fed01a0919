package check

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/mitostar/mitostar/core"
	"github.com/mitostar/mitostar/docs"
	_ "github.com/mitostar/mitostar/fanout" // predeclares connect and each
	"github.com/mitostar/mitostar/runtime"
)

// options are the options mitostar check uses, with an ops module
// predeclared: its file and template calls take src= files.
func options(t *testing.T, roots ...string) Options {
	t.Helper()
	r := core.NewMaster(core.Options{Sink: core.NewWriterSink(io.Discard)})
	t.Cleanup(r.Close)
	pre := starlark.StringDict{}
	for k, v := range runtime.New(r, runtime.Options{}).Predeclared() {
		pre[k] = v
	}
	stub := func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		return starlark.None, nil
	}
	pre["ops"] = &starlarkstruct.Module{Name: "ops", Members: starlark.StringDict{
		"file": starlark.NewBuiltin("ops.file", stub), "template": starlark.NewBuiltin("ops.template", stub),
	}}
	return Options{
		Roots:       roots,
		Predeclared: pre,
		Signatures:  func(name string) (string, bool) { return docs.Signature(docs.Reference, name) },
	}
}

var wantRE = regexp.MustCompile(`###\s*(.*)$`)

// wants reads the "### message" comments of every .star file under dir:
// "file:line" → the start of the message expected there.
func wants(t *testing.T, dir string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".star") {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(data), "\n") {
			if m := wantRE.FindStringSubmatch(line); m != nil {
				key := fmt.Sprintf("%s:%d", p, i+1)
				out[key] = append(out[key], strings.TrimSpace(m[1]))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestProblems checks one script per kind of problem: each line marked
// "### message" is reported with that message, and nothing else is.
func TestProblems(t *testing.T) {
	cases, err := os.ReadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.Name(), func(t *testing.T) {
			dir := filepath.Join("testdata", c.Name())
			res, err := Script(filepath.Join(dir, "main.star"), options(t))
			if err != nil {
				t.Fatal(err)
			}
			want := wants(t, dir)
			got := map[string][]string{}
			for _, p := range res.Problems {
				key := fmt.Sprintf("%s:%d", p.Pos.Filename(), p.Pos.Line)
				got[key] = append(got[key], p.Message)
				if s := p.String(); !strings.HasPrefix(s, key+": ") {
					t.Errorf("problem %q does not start with %q", s, key+": ")
				}
			}
			for key, msgs := range want {
				for _, w := range msgs {
					if !slices.ContainsFunc(got[key], func(g string) bool { return strings.HasPrefix(g, w) }) {
						t.Errorf("%s: no problem %q; got %q", key, w, got[key])
					}
				}
			}
			for key, msgs := range got {
				if len(want[key]) == 0 {
					t.Errorf("%s: unexpected problems %q", key, msgs)
				}
			}
		})
	}
}

// The files a script needs: its modules, transitively, by module root,
// and the src= files of its ops calls.
func TestFiles(t *testing.T) {
	extra := t.TempDir()
	os.MkdirAll(filepath.Join(extra, "lib"), 0o755)
	os.WriteFile(filepath.Join(extra, "lib", "more.star"), []byte("def more():\n    return 2\n"), 0o644)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "files"), 0o755)
	os.WriteFile(filepath.Join(dir, "files", "a.conf"), []byte("a"), 0o644)
	os.WriteFile(filepath.Join(extra, "b.tmpl"), []byte("b"), 0o644)
	os.WriteFile(filepath.Join(dir, "main.star"), []byte(`load("lib/more.star", "more")

def main():
    ops.file("/a", src = "files/a.conf")
    ops.template("/b", src = "b.tmpl")
    ops.file("/c", src = "files/a.conf")
    return more()
`), 0o644)
	res, err := Script(filepath.Join(dir, "main.star"), options(t, extra))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Problems) > 0 {
		t.Fatalf("problems: %v", res.Problems)
	}
	if want := []File{{0, "main.star"}, {1, "lib/more.star"}}; !slices.Equal(res.Modules, want) {
		t.Errorf("modules %v, want %v", res.Modules, want)
	}
	if want := []File{{0, "files/a.conf"}, {1, "b.tmpl"}}; !slices.Equal(res.Files, want) {
		t.Errorf("files %v, want %v", res.Files, want)
	}
	if res.Script != "main.star" || len(res.Roots) != 2 || res.Roots[1] != extra {
		t.Errorf("script %q roots %q", res.Script, res.Roots)
	}
	if _, err := Script(filepath.Join(dir, "nothere.star"), options(t)); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("a missing script: err = %v", err)
	}
}

package runtime

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"go.starlark.net/starlark"

	"github.com/mitostar/mitostar/core"
)

// The src= literals of ops.file and ops.template calls are found in a
// module's source, by position or keyword; anything else is not.
func TestLiteralSrcs(t *testing.T) {
	src := `
other = None

def deploy(d, name):
    ops.template(d + "/a", "t/a.tmpl")
    ops.template(d + "/b", src = "t/b.tmpl", vars = {})
    ops.file(d + "/c", None, "f/c.txt")
    ops.file(d + "/d", src = "f/d.txt", mode = 0o600)
    ops.file(d + "/e", content = "not a src")
    ops.template(d + "/f", "t/" + name)      # computed: fetched on demand
    ops.line(d + "/g", "t/not-a-src")
    other.template(d, "t/not-ops.tmpl")
    ops.template(d + "/a2", "t/a.tmpl")      # once
`
	r := core.NewMaster(core.Options{})
	defer r.Close()
	rt := New(r, Options{})
	m, err := rt.compile("deploy.star", sha256Hex([]byte(src)), []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"t/a.tmpl", "t/b.tmpl", "f/c.txt", "f/d.txt"}; !slices.Equal(m.srcs, want) {
		t.Errorf("literal srcs %q, want %q", m.srcs, want)
	}
}

// A module's literal src files go with it to a target, once; so does the
// src of a direct call of ops.file or ops.template.
func TestSrcShippedWithModule(t *testing.T) {
	root := t.TempDir()
	write := func(name, content string) {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("deploy.star", "def f(d):\n    ops.template(d, \"t/a.tmpl\")\n    ops.file(d, src = \"t/missing\")\n")
	write("t/a.tmpl", "{{.x}}\n")
	r := core.NewMaster(core.Options{})
	defer r.Close()
	rt := New(r, Options{Roots: []string{root}})
	m, err := rt.moduleSource("deploy.star")
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := rt.modulesFor(7, m)
	if err != nil {
		t.Fatal(err)
	}
	if len(blobs) != 2 || blobs[0].Kind != kindModule || blobs[1].Kind != kindSrc || blobs[1].Path != "t/a.tmpl" ||
		string(blobs[1].Source) != "{{.x}}\n" || blobs[1].SHA256 != sha256Hex(blobs[1].Source) {
		t.Fatalf("blobs for a new target: %+v", blobs)
	}
	if again, _ := rt.modulesFor(7, m); len(again) != 0 {
		t.Errorf("a second call sends %d blobs again", len(again))
	}
	if other, _ := rt.modulesFor(8, m); len(other) != 2 {
		t.Errorf("another target gets %d blobs, want 2", len(other))
	}
	args := starlark.Tuple{starlark.String("/x"), starlark.String("t/a.tmpl")}
	if got := builtinSrc("ops.template", args, nil); got != "t/a.tmpl" {
		t.Errorf("builtinSrc of a positional src: %q", got)
	}
	kw := []starlark.Tuple{{starlark.String("src"), starlark.String("t/b")}}
	if got := builtinSrc("ops.file", args[:1], kw); got != "t/b" {
		t.Errorf("builtinSrc of src=: %q", got)
	}
	if got := builtinSrc("ops.line", args, nil); got != "" {
		t.Errorf("builtinSrc of ops.line: %q", got)
	}
}

// src blobs keep their kind, and the handshake its check mode and diff
// handle, through the encoding; a src whose sha256 does not match is
// refused.
func TestSrcBlobsAndHelloExt(t *testing.T) {
	blobs := []moduleBlob{{Path: "a.star", SHA256: "ab", Source: []byte("x = 1\n")}, {Path: "t/a.tmpl", SHA256: "cd", Source: []byte("{{.x}}"), Kind: kindSrc}}
	back, err := decodeModuleBlobs(encodeModuleBlobs(blobs))
	if err != nil || len(back) != 2 || back[1].Kind != kindSrc || string(back[1].Source) != "{{.x}}" || back[0].Kind != kindModule {
		t.Fatalf("decoded %+v, %v", back, err)
	}
	data, err := core.Marshal(&helloExt{Argv: []string{"a"}, Modules: blobs, CheckMode: true, DiffHandle: 1001})
	if err != nil {
		t.Fatal(err)
	}
	var h helloExt
	if err := core.Unmarshal(data, &h); err != nil || !h.CheckMode || h.DiffHandle != 1001 || len(h.Modules) != 2 || h.Modules[1].Kind != kindSrc {
		t.Fatalf("handshake read back as %+v, %v", h, err)
	}
	if _, err := rt0(t).addAny(moduleBlob{Path: "x", SHA256: "00", Source: []byte("y"), Kind: kindSrc}); err == nil {
		t.Errorf("a src whose sha256 does not match was accepted")
	}
}

func rt0(t *testing.T) *Runtime {
	r := core.NewMaster(core.Options{})
	t.Cleanup(r.Close)
	return New(r, Options{})
}

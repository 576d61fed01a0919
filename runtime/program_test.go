package runtime

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"go.starlark.net/starlark"

	"github.com/mitostar/mitostar/core"
)

// callF runs module m's top level and returns f(1).
func callF(t *testing.T, rt *Runtime, m *module) starlark.Value {
	t.Helper()
	g, err := m.prog.Init(&starlark.Thread{}, rt.predeclaredNames())
	if err != nil {
		t.Fatal(err)
	}
	v, err := starlark.Call(&starlark.Thread{}, g["f"], starlark.Tuple{starlark.MakeInt(1)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// A module travels with the program its sender compiled, and the
// receiver runs that program; a program that does not decode leaves the
// receiver to compile the source.
func TestCompiledProgramTravels(t *testing.T) {
	sender, receiver := rt0(t), rt0(t)
	src := []byte("def f(x):\n    return x + 1\n\ndef g():\n    ops.template(\"/etc/x\", \"t/x.tmpl\")\n")
	m, err := sender.compile("m.star", sha256Hex(src), src)
	if err != nil {
		t.Fatal(err)
	}
	b := m.blob()
	if len(b.Program) == 0 || !slices.Equal(b.Srcs, []string{"t/x.tmpl"}) || !bytes.Equal(b.Source, src) {
		t.Fatalf("blob: %d program bytes, srcs %q, source %q", len(b.Program), b.Srcs, b.Source)
	}
	back, err := decodeModuleBlobs(encodeModuleBlobs([]moduleBlob{b}))
	if err != nil || len(back) != 1 || !bytes.Equal(back[0].Program, b.Program) || !slices.Equal(back[0].Srcs, b.Srcs) {
		t.Fatalf("blob read back as %+v, %v", back, err)
	}
	got, err := receiver.addBlob(back[0])
	if err != nil {
		t.Fatal(err)
	}
	if v := callF(t, receiver, got); v.String() != "2" || !slices.Equal(got.srcs, []string{"t/x.tmpl"}) {
		t.Fatalf("received module: f(1) = %s, srcs %q", v, got.srcs)
	}

	// The program is what runs: here it was compiled from another source
	// than the one the blob carries (which a parent may send: it has the
	// authority to run what it likes in its children).
	other, err := sender.compile("n.star", "", []byte("def f(x):\n    return x + 2\n"))
	if err != nil {
		t.Fatal(err)
	}
	b = moduleBlob{Path: "n.star", SHA256: sha256Hex(src), Source: src, Program: other.blob().Program}
	if got, err = receiver.addBlob(b); err != nil {
		t.Fatal(err)
	}
	if v := callF(t, receiver, got); v.String() != "3" {
		t.Fatalf("with another program: f(1) = %s, want the program's 3", v)
	}

	// A program that does not decode: the source is compiled.
	b = moduleBlob{Path: "o.star", SHA256: sha256Hex(src), Source: src, Program: []byte("not a program")}
	if got, err = receiver.addBlob(b); err != nil {
		t.Fatal(err)
	}
	if v := callF(t, receiver, got); v.String() != "2" || !slices.Equal(got.srcs, []string{"t/x.tmpl"}) {
		t.Fatalf("from the source: f(1) = %s, srcs %q", v, got.srcs)
	}
	// The source's sha256 is still checked.
	b = moduleBlob{Path: "p.star", SHA256: strings.Repeat("0", 64), Source: src, Program: other.blob().Program}
	if _, err := receiver.addBlob(b); err == nil || !strings.Contains(err.Error(), "sha256 mismatch") {
		t.Fatalf("a blob whose source does not match its sha256: %v", err)
	}
}

// LOAD_MODULE chunks carry a blob; one that is not the module the chunks
// announce is refused.
func TestLoadModuleChunks(t *testing.T) {
	rt := rt0(t)
	src := []byte("def f(x):\n    return x + 1\n" + strings.Repeat("# padding\n", 1000))
	m, err := rt0(t).compile("big.star", sha256Hex(src), src)
	if err != nil {
		t.Fatal(err)
	}
	load := func(b moduleBlob, announce string) {
		enc, err := core.Marshal(&b)
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off < len(enc); off += moduleChunkSize {
			end := min(off+moduleChunkSize, len(enc))
			data, err := core.Marshal(&moduleChunk{Path: announce, SHA256: b.SHA256, Offset: off, Total: len(enc), Data: enc[off:end]})
			if err != nil {
				t.Fatal(err)
			}
			rt.onLoadModule(&core.Message{Data: data})
		}
	}
	b := m.blob()
	b.Path = "other.star"
	load(b, "big.star")
	rt.mu.Lock()
	_, big := rt.modules["big.star"]
	_, other := rt.modules["other.star"]
	rt.mu.Unlock()
	if big || other {
		t.Fatalf("a blob of other.star announced as big.star was added (big %v, other %v)", big, other)
	}
	load(m.blob(), "big.star")
	rt.mu.Lock()
	got := rt.modules["big.star"]
	rt.mu.Unlock()
	if got == nil {
		t.Fatal("big.star was not added from its chunks")
	}
	if v := callF(t, rt, got); v.String() != "2" {
		t.Fatalf("f(1) = %s", v)
	}
}

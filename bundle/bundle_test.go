package bundle

import (
	"archive/zip"
	"bytes"

	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mitostar/mitostar/check"
	"github.com/mitostar/mitostar/internal/trailer"
)

// spec returns a Spec of a fake binary and a script with a module in a
// second root, a src file and an inventory file and directory.
func spec(t *testing.T) Spec {
	t.Helper()
	dir := t.TempDir()
	write := func(p, data string) string {
		full := filepath.Join(dir, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return full
	}
	bin := write("bin/mitostar", "\x7fELF not really a binary")
	write("a/app.star", "app")
	write("a/files/x.conf", "x")
	write("b/lib/m.star", "m")
	inv := write("hosts.ini", "h1\n")
	write("inv.d/one.ini", "h2\n")
	write("inv.d/sub/ignored.ini", "h3\n")
	return Spec{
		Binary: bin,
		Target: "linux/amd64",
		Checked: &check.Result{
			Roots:   []string{filepath.Join(dir, "a"), filepath.Join(dir, "b")},
			Script:  "app.star",
			Modules: []check.File{{Root: 0, Path: "app.star"}, {Root: 1, Path: "lib/m.star"}},
			Files:   []check.File{{Root: 0, Path: "files/x.conf"}},
		},
		Inventory: []string{inv, filepath.Join(dir, "inv.d"), "h4,h5,"},
	}
}

func TestRoundTrip(t *testing.T) {
	s := spec(t)
	out := filepath.Join(t.TempDir(), "app")
	if err := Write(out, s); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(out)
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("output %v, %v", st, err)
	}
	data, _ := os.ReadFile(out)
	if !bytes.HasPrefix(data, []byte("\x7fELF not really a binary")) {
		t.Errorf("the bundle does not start with the binary")
	}
	b, err := Open(out)
	if err != nil || b == nil {
		t.Fatalf("Open: %v, %v", b, err)
	}
	defer b.Close()
	want := Manifest{Script: "app.star", Roots: 2, Target: "linux/amd64",
		Inventory: []string{"inventory/0/hosts.ini", "inventory/1/inv.d", "h4,h5,"}}
	if b.Manifest.Script != want.Script || b.Manifest.Roots != want.Roots || b.Manifest.Target != want.Target ||
		!slices.Equal(b.Manifest.Inventory, want.Inventory) {
		t.Errorf("manifest %+v, want %+v", b.Manifest, want)
	}
	dir := t.TempDir()
	x, err := b.Extract(dir)
	if err != nil {
		t.Fatal(err)
	}
	for p, content := range map[string]string{
		x.Script: "app", filepath.Join(x.Roots[0], "lib", "m.star"): "m",
		filepath.Join(dir, "root", "0", "files", "x.conf"): "x",
		x.Inventory[0]: "h1\n", filepath.Join(x.Inventory[1], "one.ini"): "h2\n",
	} {
		if got, err := os.ReadFile(p); err != nil || string(got) != content {
			t.Errorf("%s: %q, %v; want %q", p, got, err, content)
		}
	}
	if x.Inventory[2] != "h4,h5," {
		t.Errorf("host list %q", x.Inventory[2])
	}
	if _, err := os.Stat(filepath.Join(x.Inventory[1], "sub")); err == nil {
		t.Errorf("a subdirectory of an inventory directory was bundled")
	}

	// A bundle made from a bundle holds one archive: the first's payload
	// is left out.
	s.Binary = out
	s.Inventory = nil
	again := filepath.Join(t.TempDir(), "again")
	if err := Write(again, s); err != nil {
		t.Fatal(err)
	}
	d1, _ := os.ReadFile(out)
	d2, _ := os.ReadFile(again)
	if len(d2) >= len(d1) || !bytes.HasPrefix(d2, []byte("\x7fELF not really a binary")) || bytes.Count(d2, []byte(trailer.Magic)) != 1 {
		t.Errorf("a bundle of a bundle: %d bytes from %d, %d trailers", len(d2), len(d1), bytes.Count(d2, []byte(trailer.Magic)))
	}
}

func TestNotABundle(t *testing.T) {
	p := filepath.Join(t.TempDir(), "plain")
	os.WriteFile(p, []byte("just a program"), 0o755)
	if b, err := Open(p); b != nil || err != nil {
		t.Errorf("a plain file: %v, %v", b, err)
	}
	// A trailer that points outside the file.
	t1 := trailer.Encode(1 << 40)
	os.WriteFile(p, append([]byte("x"), t1[:]...), 0o755)
	if _, err := Open(p); err == nil || !strings.Contains(err.Error(), "bad archive offset") {
		t.Errorf("a bad offset: %v", err)
	}
}

// An archive whose names leave the extraction directory is refused.
func TestExtractRefusesEscapes(t *testing.T) {
	for _, name := range []string{"../evil", "/abs/evil", "root/0/../../evil", `root\evil`} {
		var buf bytes.Buffer
		buf.WriteString("bin")
		zw := zip.NewWriter(&buf)
		zw.SetOffset(3)
		w, _ := zw.Create(name)
		w.Write([]byte("x"))
		w, _ = zw.Create(manifestName)
		w.Write([]byte(`{"script":"app.star","roots":1}`))
		zw.Close()
		t3 := trailer.Encode(3)
		buf.Write(t3[:])
		p := filepath.Join(t.TempDir(), "b")
		os.WriteFile(p, buf.Bytes(), 0o755)
		b, err := Open(p)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		dir := t.TempDir()
		if _, err := b.Extract(filepath.Join(dir, "x")); err == nil || !strings.Contains(err.Error(), "bad file name") {
			t.Errorf("%s: extracted (err %v)", name, err)
		}
		b.Close()
		if _, err := os.Stat(filepath.Join(dir, "evil")); err == nil {
			t.Errorf("%s: wrote outside", name)
		}
	}
}

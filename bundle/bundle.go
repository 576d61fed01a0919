// Package bundle writes and opens mitostar bundles: one executable that
// holds the mitostar binary, a script, the modules it loads, the src=
// files of its operations and optionally an inventory. Running the
// bundle runs the script.
//
// A bundle is the binary, unchanged, followed by a zip archive and a
// trailer:
//
//	| binary | zip archive | offset of the archive (8 bytes, little endian) | magic (16 bytes) |
//
// The archive holds manifest.json, the files of each module root under
// root/N/ (the script's directory is root 0) and each inventory source
// under inventory/N/. The bundle is also every child of its tree, as
// mitostar always is: a child starts in its role before anything looks
// for a trailer.
package bundle

import (
	"archive/zip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	goruntime "runtime"
	"strings"

	"github.com/mitostar/mitostar/check"
	"github.com/mitostar/mitostar/internal/trailer"
	"github.com/mitostar/mitostar/runtime"
)

// manifestName is the archive's description of itself.
const manifestName = "manifest.json"

// maxManifest bounds the manifest read from a bundle.
const maxManifest = 1 << 20

// A Manifest describes what a bundle holds.
type Manifest struct {
	// Script is the script's path in module root 0.
	Script string `json:"script"`
	// Roots is the number of module roots (root/0 … root/Roots-1).
	Roots int `json:"roots"`
	// Inventory lists the inventory sources in order: an archive
	// directory "inventory/N/NAME" for a file or directory, or a host
	// list ("web1,web2,") as it was given.
	Inventory []string `json:"inventory,omitempty"`
	// Target is the OS/ARCH the bundle runs on.
	Target string `json:"target"`
}

// Spec is what to put in a bundle.
type Spec struct {
	// Binary is the mitostar executable to start from; a bundle's
	// payload, if it has one, is left out.
	Binary string
	// Target is its OS/ARCH, for the manifest.
	Target string
	// Checked is what mitostar check found: the script, its module
	// roots, modules and files.
	Checked *check.Result
	// Inventory are inventory sources, as -i takes them.
	Inventory []string
}

// Write writes the bundle of spec to out (mode 0755), through a
// temporary file beside it: out is never left half written.
func Write(out string, spec Spec) (err error) {
	base, err := os.Open(spec.Binary)
	if err != nil {
		return fmt.Errorf("bundle: the mitostar binary: %w", err)
	}
	defer base.Close()
	size, err := binarySize(base)
	if err != nil {
		return fmt.Errorf("bundle: %s: %w", spec.Binary, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp*")
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := io.Copy(tmp, io.NewSectionReader(base, 0, size)); err != nil {
		return fmt.Errorf("bundle: copying %s: %w", spec.Binary, err)
	}
	zw := zip.NewWriter(tmp)
	m := Manifest{Script: spec.Checked.Script, Roots: len(spec.Checked.Roots), Target: spec.Target}
	for _, list := range [][]check.File{spec.Checked.Modules, spec.Checked.Files} {
		for _, f := range list {
			src := filepath.Join(spec.Checked.Roots[f.Root], filepath.FromSlash(f.Path))
			if err := addFile(zw, path.Join("root", fmt.Sprint(f.Root), f.Path), src); err != nil {
				return err
			}
		}
	}
	for i, inv := range spec.Inventory {
		entry, err := addInventory(zw, i, inv)
		if err != nil {
			return err
		}
		m.Inventory = append(m.Inventory, entry)
	}
	mj, err := json.MarshalIndent(&m, "", "  ")
	if err != nil {
		return err
	}
	w, err := zw.Create(manifestName)
	if err != nil {
		return err
	}
	if _, err := w.Write(mj); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("bundle: writing the archive: %w", err)
	}
	t := trailer.Encode(size)
	if _, err := tmp.Write(t[:]); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	if err := tmp.Chmod(0o755); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	return nil
}

// addFile stores the regular file src as name.
func addFile(zw *zip.Writer, name, src string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate})
	if err != nil {
		return err
	}
	_, err = w.Write(data)
	return err
}

// addInventory stores inventory source i and returns its manifest entry.
func addInventory(zw *zip.Writer, i int, src string) (string, error) {
	st, err := os.Stat(src)
	if err != nil {
		if strings.Contains(src, ",") {
			return src, nil // a host list
		}
		return "", fmt.Errorf("bundle: inventory: %w", err)
	}
	dir := path.Join("inventory", fmt.Sprint(i), filepath.Base(src))
	if !st.IsDir() {
		return dir, addFile(zw, dir, src)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return "", fmt.Errorf("bundle: inventory: %w", err)
	}
	if _, err := zw.Create(dir + "/"); err != nil {
		return "", err
	}
	for _, e := range entries {
		// The inventory reads the files of a directory, not its
		// subdirectories.
		if e.Type().IsRegular() {
			if err := addFile(zw, path.Join(dir, e.Name()), filepath.Join(src, e.Name())); err != nil {
				return "", err
			}
		}
	}
	return dir, nil
}

// binarySize is the size of the executable in f without a bundle's
// payload.
func binarySize(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if !st.Mode().IsRegular() {
		return 0, errors.New("not a regular file")
	}
	return trailer.Executable(f, st.Size())
}

// A Bundle is an opened bundle.
type Bundle struct {
	Manifest Manifest
	f        *os.File
	zip      *zip.Reader
}

// Open opens the bundle at exe; it returns nil, nil when exe is not a
// bundle.
func Open(exe string) (*Bundle, error) {
	f, err := os.Open(exe)
	if err != nil {
		return nil, err
	}
	b, err := open(f)
	if b == nil {
		f.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", exe, err)
	}
	return b, nil
}

// OpenSelf opens the running executable as a bundle; nil, nil when it
// is plain mitostar.
func OpenSelf() (*Bundle, error) {
	exe := "/proc/self/exe"
	if goruntime.GOOS != "linux" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	return Open(exe)
}

func open(f *os.File) (*Bundle, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	off, ok, err := trailer.Offset(f, st.Size())
	if err != nil || !ok {
		return nil, err
	}
	n := st.Size() - int64(trailer.Size) - off
	zr, err := zip.NewReader(io.NewSectionReader(f, off, n), n)
	if err != nil {
		return nil, fmt.Errorf("the archive: %w", err)
	}
	b := &Bundle{f: f, zip: zr}
	mf, err := zr.Open(manifestName)
	if err != nil {
		return nil, fmt.Errorf("the archive has no %s", manifestName)
	}
	defer mf.Close()
	data, err := io.ReadAll(io.LimitReader(mf, maxManifest))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", manifestName, err)
	}
	if err := json.Unmarshal(data, &b.Manifest); err != nil {
		return nil, fmt.Errorf("%s: %w", manifestName, err)
	}
	if _, err := runtime.CleanModulePath(b.Manifest.Script); err != nil || b.Manifest.Roots < 1 {
		return nil, fmt.Errorf("%s: bad script %q or roots %d", manifestName, b.Manifest.Script, b.Manifest.Roots)
	}
	return b, nil
}

// Close closes the bundle's file.
func (b *Bundle) Close() error { return b.f.Close() }

// Files lists the archive's files but the manifest, in archive order.
func (b *Bundle) Files() []string {
	var out []string
	for _, f := range b.zip.File {
		if f.Name != manifestName {
			out = append(out, f.Name)
		}
	}
	return out
}

// Extract writes the archive's files under dir (directories 0700,
// files 0600) and returns where the bundle's script, module roots and
// inventory sources are.
func (b *Bundle) Extract(dir string) (*Extracted, error) {
	for _, f := range b.zip.File {
		if f.Name == manifestName {
			continue
		}
		if err := extractFile(dir, f); err != nil {
			return nil, fmt.Errorf("bundle: %w", err)
		}
	}
	x := &Extracted{Script: filepath.Join(dir, "root", "0", filepath.FromSlash(b.Manifest.Script))}
	for i := 1; i < b.Manifest.Roots; i++ {
		root := filepath.Join(dir, "root", fmt.Sprint(i))
		if err := os.MkdirAll(root, 0o700); err != nil {
			return nil, fmt.Errorf("bundle: %w", err)
		}
		x.Roots = append(x.Roots, root)
	}
	for _, inv := range b.Manifest.Inventory {
		if strings.HasPrefix(inv, "inventory/") {
			p, err := safePath(dir, inv)
			if err != nil {
				return nil, fmt.Errorf("bundle: inventory: %w", err)
			}
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				return nil, fmt.Errorf("bundle: %w", err)
			}
			inv = p
		}
		x.Inventory = append(x.Inventory, inv)
	}
	return x, nil
}

// Extracted says where an extracted bundle's parts are.
type Extracted struct {
	Script    string   // the script, in module root 0
	Roots     []string // the module roots after the script's directory
	Inventory []string // the inventory sources
}

// safePath joins the archive name to dir, refusing names that leave it.
func safePath(dir, name string) (string, error) {
	if !fs.ValidPath(name) || strings.Contains(name, `\`) {
		return "", fmt.Errorf("bad file name %q in the archive", name)
	}
	return filepath.Join(dir, filepath.FromSlash(name)), nil
}

// maxFile bounds one extracted file, as a module is bounded.
const maxFile = 1 << 30

func extractFile(dir string, f *zip.File) error {
	p, err := safePath(dir, strings.TrimSuffix(f.Name, "/"))
	if err != nil {
		return err
	}
	if f.FileInfo().IsDir() {
		return os.MkdirAll(p, 0o700)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	r, err := f.Open()
	if err != nil {
		return fmt.Errorf("%s: %w", f.Name, err)
	}
	defer r.Close()
	out, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(out, io.LimitReader(r, maxFile+1))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s: %w", f.Name, err)
	}
	if n > maxFile {
		return fmt.Errorf("%s: over %d bytes", f.Name, maxFile)
	}
	return nil
}

package lookpath

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestFind(t *testing.T) {
	base := t.TempDir()
	mk := func(rel string, mode os.FileMode) string {
		p := filepath.Join(base, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	abs := mk("abs/prog", 0o755)
	mk("noexec/prog", 0o644)
	mk("prog", 0o755) // in the current directory
	mk("rel/prog", 0o755)
	if err := os.MkdirAll(filepath.Join(base, "dir/prog"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(base)
	a, n, d := filepath.Join(base, "abs"), filepath.Join(base, "noexec"), filepath.Join(base, "dir")
	for _, tc := range []struct {
		path, want string
		err        error
	}{
		{a, abs, nil},
		{n + ":" + d + ":" + a, abs, nil}, // not executable, a directory: skipped
		{n, "", exec.ErrNotFound},
		{"", "", exec.ErrNotFound},     // an empty PATH has no entries
		{a + "::", abs, nil},           // the first match wins
		{":" + a, "prog", exec.ErrDot}, // an empty entry first: refused, not skipped
		{"." + string(os.PathListSeparator) + a, "prog", exec.ErrDot},
		{"rel:" + a, "rel/prog", exec.ErrDot},
		{"/nonexistent", "", exec.ErrNotFound},
	} {
		got, err := Find("prog", tc.path)
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("Find(prog, %q) = %q, %v; want %q, %v", tc.path, got, err, tc.want, tc.err)
		}
	}
	if got, err := Find("./x/y", ""); got != "./x/y" || err != nil {
		t.Errorf("a name with a slash: %q, %v", got, err)
	}
}

package ops

import (
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/mitostar/mitostar/internal/testbed"
)

// owner returns the uid and gid of path.
func owner(t *testing.T, path string) (int, int) {
	t.Helper()
	st := statT(t, path).Sys().(*syscall.Stat_t)
	return int(st.Uid), int(st.Gid)
}

// nobody returns the uid and gid of nobody and nogroup.
func nobody(t *testing.T) (int, int) {
	t.Helper()
	u, err := user.Lookup("nobody")
	if err != nil {
		testbed.Unavailable(t, "no user nobody: %v", err)
	}
	g, err := user.LookupGroup("nogroup")
	if err != nil {
		testbed.Unavailable(t, "no group nogroup: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(g.Gid)
	return uid, gid
}

// TestFileCheckThenReal runs the same ops.file calls in check mode, for
// real, and again: check mode changes nothing and reports what the real
// run then does, with the same diff; the second run changes nothing.
func TestFileCheckThenReal(t *testing.T) {
	testbed.RequireRoot(t)
	uid, gid := nobody(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "motd"), "old\n", 0o644)
	writeFile(t, filepath.Join(dir, "mode.txt"), "m\n", 0o644)
	writeFile(t, filepath.Join(dir, "gone.txt"), "bye\n", 0o644)
	symlinkT(t, "motd", filepath.Join(dir, "relink"))
	src := `
d = ` + q(dir) + `
rs = [
    ops.file(d + "/sub", state = "directory", mode = 0o750, owner = "nobody", group = "nogroup"),
    ops.file(d + "/motd", content = "new\n", mode = "0640", owner = "nobody"),
    ops.file(d + "/fresh", content = b"fresh\n", group = "nogroup"),
    ops.file(d + "/data", src = "files/data.txt", mode = 0o600),
    ops.file(d + "/mode.txt", mode = 0o4755),
    ops.file(d + "/gone.txt", state = "absent"),
    ops.file(d + "/current", state = "link", target = "motd"),
    ops.file(d + "/relink", state = "link", target = "fresh", owner = "nobody"),
    ops.file(d + "/stamp", state = "touch", mode = 0o600),
]
`
	before := snapshot(t, dir)
	check := &fakeEnv{check: true, srcs: map[string]string{"files/data.txt": "from the module root\n"}}
	checked := check.mustExec(t, src)["rs"].(*starlark.List)
	if after := snapshot(t, dir); after != before {
		t.Fatalf("check mode changed the directory:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	real := &fakeEnv{srcs: check.srcs}
	done := real.mustExec(t, src)["rs"].(*starlark.List)
	wantMsgs := []string{
		"create directory",
		"update content; set mode 0o640 (was 0o644); set owner nobody (was root)",
		"create file",
		"create file",
		"set mode 0o4755 (was 0o644)",
		"remove file",
		"create symlink to motd",
		"point symlink to fresh (was motd); set owner nobody (was root)",
		"create empty file",
	}
	for i, want := range wantMsgs {
		c, r := resultOf(t, checked.Index(i)), resultOf(t, done.Index(i))
		if !r.changed || r.msg != want {
			t.Errorf("op %d: changed=%v msg=%q, want a change %q", i, r.changed, r.msg, want)
		}
		if !c.changed || c.msg != "would "+want || c.diff != r.diff {
			t.Errorf("op %d: check mode said changed=%v msg=%q diff=%q; the real run %q with diff %q", i, c.changed, c.msg, c.diff, r.msg, r.diff)
		}
	}
	if want := "--- before: " + dir + "/motd\n+++ after: " + dir + "/motd\n@@ -1 +1 @@\n-old\n+new\n"; resultOf(t, done.Index(1)).diff != want {
		t.Errorf("motd diff = %q, want %q", resultOf(t, done.Index(1)).diff, want)
	}
	if want := "--- before: " + dir + "/gone.txt\n+++ after: " + dir + "/gone.txt\n@@ -1 +0,0 @@\n-bye\n"; resultOf(t, done.Index(5)).diff != want {
		t.Errorf("gone.txt diff = %q, want %q", resultOf(t, done.Index(5)).diff, want)
	}
	if len(check.shown) != len(wantMsgs) || len(real.shown) != len(wantMsgs) {
		t.Errorf("changes shown: %d in check mode, %d for real; want %d", len(check.shown), len(real.shown), len(wantMsgs))
	}
	again := (&fakeEnv{srcs: check.srcs}).mustExec(t, src)["rs"].(*starlark.List)
	for i := range wantMsgs {
		if r := resultOf(t, again.Index(i)); r.changed || r.diff != "" || !strings.HasPrefix(r.msg, "ok: ") {
			t.Errorf("op %d changed again: %+v", i, r)
		}
	}

	for path, want := range map[string]struct {
		mode     os.FileMode
		uid, gid int
		content  string
	}{
		"sub":      {os.ModeDir | 0o750, uid, gid, ""},
		"motd":     {0o640, uid, 0, "new\n"},
		"fresh":    {0o644, 0, gid, "fresh\n"},
		"data":     {0o600, 0, 0, "from the module root\n"},
		"mode.txt": {os.ModeSetuid | 0o755, 0, 0, "m\n"},
		"stamp":    {0o600, 0, 0, ""},
	} {
		p := filepath.Join(dir, path)
		fi := statT(t, p)
		u, g := owner(t, p)
		if fi.Mode() != want.mode || u != want.uid || g != want.gid {
			t.Errorf("%s: mode %v owner %d:%d, want %v %d:%d", path, fi.Mode(), u, g, want.mode, want.uid, want.gid)
		}
		if !fi.IsDir() && readFile(t, p) != want.content {
			t.Errorf("%s holds %q, want %q", path, readFile(t, p), want.content)
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, "gone.txt")); !os.IsNotExist(err) {
		t.Errorf("gone.txt is still there: %v", err)
	}
	if got := readlinkT(t, filepath.Join(dir, "relink")); got != "fresh" {
		t.Errorf("relink -> %q", got)
	}
	if u, _ := owner(t, filepath.Join(dir, "relink")); u != uid {
		t.Errorf("relink is owned by %d, want %d (the link itself, not its target)", u, uid)
	}
	if u, _ := owner(t, filepath.Join(dir, "fresh")); u != 0 {
		t.Errorf("chown of the link reached its target")
	}
}

// snapshot describes every entry under dir: type, mode, owner, content
// or link target.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		b.WriteString(p + " " + fi.Mode().String() + " " + strconv.Itoa(int(st.Uid)) + ":" + strconv.Itoa(int(st.Gid)))
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			b.WriteString(" -> " + readlinkT(t, p))
		case fi.Mode().IsRegular():
			b.WriteString(" " + strconv.Quote(readFile(t, p)))
		}
		b.WriteString("\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestFileEdgeCases(t *testing.T) {
	dir := t.TempDir()
	env := &fakeEnv{srcs: map[string]string{"x": "x"}}
	writeFile(t, filepath.Join(dir, "f"), "f\n", 0o644)
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "d", "inner"), "i\n", 0o644)
	symlinkT(t, "f", filepath.Join(dir, "l"))
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(filepath.Join(dir, "f"), old, old); err != nil {
		t.Fatal(err)
	}
	g := env.mustExec(t, `
d = `+q(dir)+`
touched = ops.file(d + "/f", state = "touch")
exists = ops.file(d + "/f")
rmdir = ops.file(d + "/d", state = "absent")
rmlink = ops.file(d + "/l", state = "absent")
missing = ops.file(d + "/nothing", state = "absent")
binary = ops.file(d + "/bin", content = b"\x00\x01")
binary2 = ops.file(d + "/bin", content = b"\x00\x02")
over_link = ops.file(d + "/l2", state = "link", target = "f")
replaced = ops.file(d + "/l2", content = "now a file\n")
`)
	wantResult(t, g, "touched", false, "ok: touch as asked")
	wantResult(t, g, "exists", false, "ok: file as asked")
	wantResult(t, g, "rmdir", true, "remove directory and its content")
	wantResult(t, g, "rmlink", true, "remove symlink")
	wantResult(t, g, "missing", false, "ok: absent as asked")
	wantResult(t, g, "binary", true, "create file")
	if r := wantResult(t, g, "binary2", true, "update content"); r.diff != "Binary files before: "+dir+"/bin and after: "+dir+"/bin differ\n" {
		t.Errorf("binary diff = %q", r.diff)
	}
	wantResult(t, g, "replaced", true, "replace symlink with a file")
	if fi := statT(t, filepath.Join(dir, "f")); !fi.ModTime().Equal(old) {
		t.Errorf("touch of an existing file changed its mtime to %v", fi.ModTime())
	}
	if fi := statT(t, filepath.Join(dir, "l2")); !fi.Mode().IsRegular() {
		t.Errorf("l2 is %v, want a regular file", fi.Mode())
	}
	if got := readFile(t, filepath.Join(dir, "f")); got != "f\n" {
		t.Errorf("writing over the symlink l2 changed its target f: %q", got)
	}

	env.wantErrors(t, "d = "+q(dir)+"\n", map[string]string{
		`ops.file(d + "/nothing")`:                                    `does not exist \(give content= or src= to create it`,
		`ops.file(d + "/f", state = "directory")`:                     `exists and is not a directory`,
		`ops.file(d + "/f", state = "link", target = "x")`:            `exists and is not a symlink`,
		`ops.file(d + "/x", state = "link")`:                          `state="link" needs target=`,
		`ops.file(d + "/x", state = "link", target = "f", mode = 1)`:  `a symlink has no mode of its own`,
		`ops.file(d + "/x", content = "a", src = "x")`:                `give content= or src=, not both`,
		`ops.file(d + "/x", content = "a", state = "touch")`:          `content= and src= need state="file"`,
		`ops.file(d + "/x", state = "gone")`:                          `unknown state "gone"`,
		`ops.file(d + "/x", content = "a", mode = "u+x")`:             `not an octal number`,
		`ops.file(d + "/x", content = "a", mode = 0o17777)`:           `mode must be between 0 and 0o7777`,
		`ops.file(d + "/x", content = "a", owner = "no-such-user-x")`: `unknown user "no-such-user-x"`,
		`ops.file(d + "/x", src = "missing.txt")`:                     `src "missing.txt" not found`,
		`ops.file("", content = "a")`:                                 `empty path`,
		`ops.file(d + "/x", state = "absent", mode = 0o600)`:          `takes no mode, owner or group`,
		`ops.file(d + "/no/such/dir/x", content = "a")`:               `OSError|no such file or directory`,
	})
}

func TestTemplate(t *testing.T) {
	dir := t.TempDir()
	tmpl := "name = {{.name}}\nport = {{.port}}\n{{range .peers}}peer {{.}}\n{{end}}{{if .debug}}debug{{end}}region = {{.region}}\nbig = {{.big}}\nnested = {{.nested.a}} {{index .nested.list 1}}\n"
	env := &fakeEnv{srcs: map[string]string{"app.tmpl": tmpl, "bad.tmpl": "{{.nope}}\n", "syntax.tmpl": "{{if}}"}}
	host := starlarkstruct.FromStringDict(starlarkstruct.Default, starlark.StringDict{
		"name": starlark.String("web1"),
		"vars": func() *starlark.Dict {
			d := starlark.NewDict(2)
			d.SetKey(starlark.String("region"), starlark.String("eu"))
			d.SetKey(starlark.String("name"), starlark.String("from-host"))
			return d
		}(),
	})
	env.host = host
	g := env.mustExec(t, `
r = ops.template(`+q(filepath.Join(dir, "app.conf"))+`, "app.tmpl", vars = {
    "name": "web", "port": 8080, "peers": ["a", "b"], "debug": False,
    "big": 1 << 80, "nested": struct(a = 1, list = (1, "two", None)),
})
`)
	wantResult(t, g, "r", true, "create file")
	want := "name = web\nport = 8080\npeer a\npeer b\nregion = eu\nbig = 1208925819614629174706176\nnested = 1 two\n"
	if got := readFile(t, filepath.Join(dir, "app.conf")); got != want {
		t.Errorf("rendered %q, want %q", got, want)
	}
	// Without a host (a context not started from the inventory), the
	// host's vars are missing: a template that needs one fails.
	env.host = starlark.None
	_, err := env.exec(t, `ops.template(`+q(filepath.Join(dir, "x"))+`, "app.tmpl", vars = {"name": "n", "port": 1, "peers": [], "debug": True, "big": 1, "nested": {"a": 1, "list": [1, 2]}})`)
	if err == nil || !strings.Contains(err.Error(), `map has no entry for key "region"`) {
		t.Errorf("a missing key: %v", err)
	}
	env.wantErrors(t, "p = "+q(filepath.Join(dir, "y"))+"\n", map[string]string{
		`ops.template(p, "bad.tmpl")`:                `ops.template: template: bad.tmpl:1:2: executing "bad.tmpl" at <.nope>: map has no entry for key "nope"`,
		`ops.template(p, "syntax.tmpl")`:             `ops.template: template: syntax.tmpl:1: missing value for if`,
		`ops.template(p, "app.tmpl", vars = {1: 2})`: `vars: keys must be strings`,
		`ops.template(p, "nope.tmpl")`:               `src "nope.tmpl" not found`,
		`ops.template(p, "")`:                        `empty src`,
	})
}

func TestParseMode(t *testing.T) {
	for v, want := range map[starlark.Value]int{
		starlark.None: -1, starlark.MakeInt(0o644): 0o644, starlark.String("0644"): 0o644,
		starlark.String("755"): 0o755, starlark.String("0o2750"): 0o2750,
	} {
		if got, err := parseMode("f", v); err != nil || got != want {
			t.Errorf("parseMode(%s) = %#o, %v; want %#o", v, got, err, want)
		}
	}
	for _, v := range []starlark.Value{starlark.String("rw-"), starlark.String(""), starlark.MakeInt(-1), starlark.MakeInt(0o10000), starlark.True} {
		if _, err := parseMode("f", v); err == nil {
			t.Errorf("parseMode(%s) accepted", v)
		}
	}
}

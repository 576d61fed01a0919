package ops

import (
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestLineEdit(t *testing.T) {
	base := []string{"# settings", "port = 80", "[main]", "name = x", "port = 81", "[extra]", "z = 9"}
	re := regexp.MustCompile
	cases := []struct {
		name  string
		edit  lineEdit
		want  []string
		what  string
		after string
	}{
		{"replace the last match", lineEdit{line: "port = 8080", re: re(`^port\s*=`), present: true},
			[]string{"# settings", "port = 80", "[main]", "name = x", "port = 8080", "[extra]", "z = 9"}, "replace line 5", ""},
		{"match already the line", lineEdit{line: "port = 81", re: re(`^port`), present: true}, base, "", ""},
		{"no match but the line is there", lineEdit{line: "name = x", re: re(`^nothing`), present: true}, base, "", ""},
		{"append at the end", lineEdit{line: "new = 1", present: true},
			append(slices.Clone(base), "new = 1"), "insert line 8", ""},
		{"after the last match", lineEdit{line: "debug = no", present: true, where: placement{afterRe: re(`^\[main\]`)}},
			[]string{"# settings", "port = 80", "[main]", "debug = no", "name = x", "port = 81", "[extra]", "z = 9"}, "insert line 4", ""},
		{"before the last match", lineEdit{line: "y = 8", present: true, where: placement{beforeRe: re(`^z`)}},
			[]string{"# settings", "port = 80", "[main]", "name = x", "port = 81", "[extra]", "y = 8", "z = 9"}, "insert line 7", ""},
		{"at the start", lineEdit{line: "#!", present: true, where: placement{before: "BOF"}},
			append([]string{"#!"}, base...), "insert line 1", ""},
		{"insert_after with no match appends", lineEdit{line: "q", present: true, where: placement{afterRe: re(`^none`)}},
			append(slices.Clone(base), "q"), "insert line 8", ""},
		{"absent by regexp", lineEdit{re: re(`^port`), present: false},
			[]string{"# settings", "[main]", "name = x", "[extra]", "z = 9"}, "remove 2 lines", ""},
		{"absent by line", lineEdit{line: "name = x", present: false},
			[]string{"# settings", "port = 80", "[main]", "port = 81", "[extra]", "z = 9"}, "remove 1 line", ""},
		{"absent, nothing there", lineEdit{line: "nope", present: false}, base, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, what := c.edit.apply(slices.Clone(base))
			if !slices.Equal(got, c.want) || what != c.what {
				t.Errorf("got %q (%q), want %q (%q)", got, what, c.want, c.what)
			}
			// A second application changes nothing.
			if again, what := c.edit.apply(got); what != "" || !slices.Equal(again, got) {
				t.Errorf("second application changed %q -> %q (%q)", got, again, what)
			}
		})
	}
}

func TestLineEditCRLF(t *testing.T) {
	got, what := lineEdit{line: "b", present: true}.apply([]string{"a\r", "b\r"})
	if what != "" || !slices.Equal(got, []string{"a\r", "b\r"}) {
		t.Errorf("a CRLF line equal to the line asked for was not recognised: %q %q", got, what)
	}
}

func TestBlockEdit(t *testing.T) {
	begin, end := "# BEGIN X", "# END X"
	base := []string{"[main]", "name = x", "[extra]", "z = 9"}
	with := []string{"[main]", "name = x", begin, "a = 1", "b = 2", end, "[extra]", "z = 9"}
	cases := []struct {
		name    string
		lines   []string
		body    []string
		present bool
		where   placement
		want    []string
		what    string
	}{
		{"insert before", base, []string{"a = 1", "b = 2"}, true, placement{beforeRe: regexp.MustCompile(`^\[extra\]`)}, with, "insert block at line 3"},
		{"append", base, []string{"k"}, true, placement{}, append(slices.Clone(base), begin, "k", end), "insert block at line 5"},
		{"already there", with, []string{"a = 1", "b = 2"}, true, placement{}, with, ""},
		{"replace in place", with, []string{"c = 3"}, true, placement{},
			[]string{"[main]", "name = x", begin, "c = 3", end, "[extra]", "z = 9"}, "replace block at line 3"},
		{"remove", with, nil, false, placement{}, base, "remove block"},
		{"remove, nothing there", base, nil, false, placement{}, base, ""},
		{"a lone begin marker is not a block", []string{begin, "x"}, []string{"y"}, true, placement{},
			[]string{begin, "x", begin, "y", end}, "insert block at line 3"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := blockEdit{begin: begin, end: end, body: c.body, present: c.present, where: c.where}
			got, what := e.apply(slices.Clone(c.lines))
			if !slices.Equal(got, c.want) || what != c.what {
				t.Errorf("got %q (%q), want %q (%q)", got, what, c.want, c.what)
			}
		})
	}
}

// TestLineAndBlockFiles runs ops.line and ops.block on files: around
// existing content, creating a file, keeping the mode, following a
// symlink, refusing a missing file.
func TestLineAndBlockFiles(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "app.conf")
	writeFile(t, conf, lines("[main]", "port = 80", "[extra]", "z = 9"), 0o640)
	env := &fakeEnv{}
	g := env.mustExec(t, `
conf = `+q(conf)+`
r1 = ops.line(conf, "port = 8080", regexp = "^port")
r2 = ops.line(conf, "port = 8080", regexp = "^port")
r3 = ops.block(conf, "a = 1\nb = 2", insert_after = "^port")
r4 = ops.block(conf, "a = 1\nb = 2\n", insert_after = "^port")
r5 = ops.line(`+q(filepath.Join(dir, "new.conf"))+`, "x = 1", create = True)
r6 = ops.block(conf, "", marker = "# {mark} MITOSTAR MANAGED BLOCK")
r7 = ops.line(`+q(filepath.Join(dir, "missing"))+`, "x", state = "absent")
`)
	r1 := wantResult(t, g, "r1", true, "replace line 2")
	if want := "--- before: " + conf + "\n+++ after: " + conf + "\n@@ -1,4 +1,4 @@\n [main]\n-port = 80\n+port = 8080\n [extra]\n z = 9\n"; r1.diff != want {
		t.Errorf("diff of r1 = %q, want %q", r1.diff, want)
	}
	wantResult(t, g, "r2", false, "ok: line present")
	wantResult(t, g, "r3", true, "insert block at line 3")
	wantResult(t, g, "r4", false, "ok: block present")
	wantResult(t, g, "r5", true, "create file; insert line 1")
	wantResult(t, g, "r6", true, "remove block")
	wantResult(t, g, "r7", false, "ok: line absent")
	if got, want := readFile(t, conf), lines("[main]", "port = 8080", "[extra]", "z = 9"); got != want {
		t.Errorf("%s = %q, want %q", conf, got, want)
	}
	if got := readFile(t, filepath.Join(dir, "new.conf")); got != "x = 1\n" {
		t.Errorf("new.conf = %q", got)
	}
	if fi := statT(t, conf); fi.Mode().Perm() != 0o640 {
		t.Errorf("the edit changed the mode to %v", fi.Mode())
	}
	if len(env.shown) != 4 {
		t.Errorf("%d changes shown, want 4: %q", len(env.shown), env.shown)
	}

	// A symlink is followed: the file it names is edited, the link stays.
	link := filepath.Join(dir, "link.conf")
	symlinkT(t, "app.conf", link)
	env.mustExec(t, `ops.line(`+q(link)+`, "via = link")`)
	if got := readFile(t, conf); !strings.HasSuffix(got, "via = link\n") {
		t.Errorf("editing through the symlink: %q", got)
	}
	if target := readlinkT(t, link); target != "app.conf" {
		t.Errorf("the symlink now points to %q", target)
	}

	env.wantErrors(t, "", map[string]string{
		`ops.line(` + q(filepath.Join(dir, "nope")) + `, "x")`:                    `does not exist \(create=True creates it\)`,
		`ops.line(` + q(dir) + `, "x")`:                                           `is not a regular file`,
		`ops.line(` + q(conf) + `, "a\nb")`:                                       `single line`,
		`ops.line(` + q(conf) + `)`:                                               `line= is required`,
		`ops.line(` + q(conf) + `, "x", regexp = "(")`:                            `regexp: error parsing`,
		`ops.line(` + q(conf) + `, "x", insert_after = "a", insert_before = "b")`: `not both`,
		`ops.line(` + q(conf) + `, "x", state = "gone")`:                          `unknown state "gone"`,
		`ops.block(` + q(conf) + `, "x", marker = "# no mark")`:                   `marker must be one line holding \{mark\}`,
	})
}

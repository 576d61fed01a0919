package ops

// ops.line and ops.block: one line, or a block between marker lines,
// kept present in (or removed from) a file whose other content stays
// as it is. Regular expressions are Go's (RE2) and search each line
// without anchors, like Ansible's lineinfile and blockinfile.

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"go.starlark.net/starlark"

	"github.com/mitostar/mitostar/builtins"
)

// editLimit bounds the size of a file that ops.line and ops.block read
// whole.
const editLimit = 64 << 20

// splitLines splits content into its lines, without their "\n".
func splitLines(content []byte) []string {
	if len(content) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(content), "\n"), "\n")
}

// joinLines is the inverse of splitLines; the result ends with "\n".
func joinLines(lines []string) []byte {
	if len(lines) == 0 {
		return nil
	}
	return []byte(strings.Join(lines, "\n") + "\n")
}

// sameLine compares a line of the file with one asked for, ignoring the
// "\r" of a CRLF file.
func sameLine(fileLine, want string) bool { return strings.TrimSuffix(fileLine, "\r") == want }

// placement says where a new line or block goes: after the last line
// matching after (or at the end, after == "EOF"), before the last line
// matching before (or at the start, before == "BOF"), else at the end.
type placement struct {
	after, before     string
	afterRe, beforeRe *regexp.Regexp
}

func newPlacement(fn string, after, before string) (placement, error) {
	p := placement{after: after, before: before}
	if after != "" && before != "" {
		return p, fmt.Errorf("%s: give insert_after= or insert_before=, not both", fn)
	}
	var err error
	if after != "" && after != "EOF" {
		if p.afterRe, err = regexp.Compile(after); err != nil {
			return p, fmt.Errorf("%s: insert_after: %w", fn, err)
		}
	}
	if before != "" && before != "BOF" {
		if p.beforeRe, err = regexp.Compile(before); err != nil {
			return p, fmt.Errorf("%s: insert_before: %w", fn, err)
		}
	}
	return p, nil
}

// index returns where to insert into lines.
func (p placement) index(lines []string) int {
	switch {
	case p.before == "BOF":
		return 0
	case p.beforeRe != nil:
		if i := lastMatch(lines, p.beforeRe); i >= 0 {
			return i
		}
	case p.afterRe != nil:
		if i := lastMatch(lines, p.afterRe); i >= 0 {
			return i + 1
		}
	}
	return len(lines)
}

func lastMatch(lines []string, re *regexp.Regexp) int {
	for i := len(lines) - 1; i >= 0; i-- {
		if re.MatchString(lines[i]) {
			return i
		}
	}
	return -1
}

func insertAt(lines []string, i int, add ...string) []string {
	out := make([]string, 0, len(lines)+len(add))
	out = append(out, lines[:i]...)
	out = append(out, add...)
	return append(out, lines[i:]...)
}

// lineEdit is what ops.line asks.
type lineEdit struct {
	line    string
	re      *regexp.Regexp // nil: the line itself is looked for
	present bool
	where   placement
}

// apply returns the edited lines and what changed ("" for nothing).
// Present: the last line matching re is replaced by line; with no match
// (or no re) a line equal to line already satisfies it; otherwise line
// is inserted where placement says. Absent: every line matching re (or
// equal to line) is removed.
func (e lineEdit) apply(lines []string) ([]string, string) {
	if !e.present {
		var out []string
		for _, l := range lines {
			if (e.re != nil && e.re.MatchString(l)) || (e.re == nil && sameLine(l, e.line)) {
				continue
			}
			out = append(out, l)
		}
		switch n := len(lines) - len(out); n {
		case 0:
			return lines, ""
		case 1:
			return out, "remove 1 line"
		default:
			return out, fmt.Sprintf("remove %d lines", n)
		}
	}
	if e.re != nil {
		if i := lastMatch(lines, e.re); i >= 0 {
			if sameLine(lines[i], e.line) {
				return lines, ""
			}
			out := append([]string(nil), lines...)
			out[i] = e.line
			return out, fmt.Sprintf("replace line %d", i+1)
		}
	}
	for _, l := range lines {
		if sameLine(l, e.line) {
			return lines, ""
		}
	}
	i := e.where.index(lines)
	return insertAt(lines, i, e.line), fmt.Sprintf("insert line %d", i+1)
}

// blockEdit is what ops.block asks.
type blockEdit struct {
	begin, end string
	body       []string
	present    bool
	where      placement
}

// apply replaces the lines from the begin marker to the end marker
// (their last occurrences) with the block, or inserts the block with
// its markers where placement says; absent removes them.
func (e blockEdit) apply(lines []string) ([]string, string) {
	n0, n1 := -1, -1
	for i, l := range lines {
		if sameLine(l, e.begin) {
			n0 = i
		}
		if sameLine(l, e.end) {
			n1 = i
		}
	}
	found := n0 >= 0 && n1 >= 0
	if found && n1 < n0 {
		n0, n1 = n1, n0
	}
	block := append(append([]string{e.begin}, e.body...), e.end)
	if !e.present {
		if !found {
			return lines, ""
		}
		return append(append([]string(nil), lines[:n0]...), lines[n1+1:]...), "remove block"
	}
	if !found {
		i := e.where.index(lines)
		return insertAt(lines, i, block...), fmt.Sprintf("insert block at line %d", i+1)
	}
	current := lines[n0 : n1+1]
	if len(current) == len(block) {
		same := true
		for i := range block {
			if !sameLine(current[i], block[i]) {
				same = false
				break
			}
		}
		if same {
			return lines, ""
		}
	}
	rest := append(append([]string(nil), lines[:n0]...), lines[n1+1:]...)
	return insertAt(rest, n0, block...), fmt.Sprintf("replace block at line %d", n0+1)
}

// editFile applies edit to the lines of path (following a symlink to
// the file it names) and writes the result atomically, keeping the
// file's mode and owner. A missing file is an error unless create (it
// is then made with mode 0o644) or absent (nothing to remove).
func (o *op) editFile(path string, create, absent bool, edit func([]string) ([]string, string)) error {
	real := path
	if r, err := filepath.EvalSymlinks(path); err == nil {
		real = r
	}
	fi, err := o.lstat(real, true)
	if err != nil {
		return err
	}
	var old []byte
	mode := 0o644
	switch {
	case fi == nil && absent:
		return nil
	case fi == nil && !create:
		return o.errorf("does not exist (create=True creates it)")
	case fi != nil && !fi.Mode().IsRegular():
		return o.errorf("is not a regular file")
	case fi != nil && fi.Size() > editLimit:
		return o.errorf("is larger than %d MiB", editLimit>>20)
	case fi != nil:
		if old, err = os.ReadFile(real); err != nil {
			return o.osError(path, err)
		}
		mode, _, _ = statOf(fi)
	}
	out, what := edit(splitLines(old))
	if what == "" {
		return nil
	}
	content := joinLines(out)
	if fi == nil {
		o.changes = append(o.changes, "create file")
	}
	o.diff = unifiedDiff(path, old, content)
	return o.change(what, func() error {
		if err := builtins.WriteFileAtomic(real, content, uint32(mode), -1, -1); err != nil {
			return o.osError(path, err)
		}
		return nil
	})
}

// presence reads state="present"|"absent".
func presence(fn, state string) (bool, error) {
	switch state {
	case "present":
		return true, nil
	case "absent":
		return false, nil
	}
	return false, fmt.Errorf("%s: unknown state %q (want present or absent)", fn, state)
}

// ops.line(path, line, regexp=None, state="present", insert_after=None,
// insert_before=None, create=False)
func opLine(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var path string
	var line, re, after, before starlark.Value = starlark.None, starlark.None, starlark.None, starlark.None
	state, create := "present", false
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "path", &path, "line?", &line, "regexp?", &re,
		"state?", &state, "insert_after?", &after, "insert_before?", &before, "create?", &create); err != nil {
		return nil, err
	}
	e := lineEdit{}
	var err error
	if e.present, err = presence(b.Name(), state); err != nil {
		return nil, err
	}
	if path == "" {
		return nil, fmt.Errorf("%s: empty path", b.Name())
	}
	var reText, afterText, beforeText string
	if e.line, err = optString(b.Name(), "line", line); err != nil {
		return nil, err
	}
	if reText, err = optString(b.Name(), "regexp", re); err != nil {
		return nil, err
	}
	if afterText, err = optString(b.Name(), "insert_after", after); err != nil {
		return nil, err
	}
	if beforeText, err = optString(b.Name(), "insert_before", before); err != nil {
		return nil, err
	}
	switch {
	case line == starlark.None && (e.present || reText == ""):
		return nil, fmt.Errorf("%s: line= is required (only state=\"absent\" with regexp= goes without)", b.Name())
	case strings.Contains(e.line, "\n"):
		return nil, fmt.Errorf("%s: line must be a single line (use ops.block for several)", b.Name())
	}
	if reText != "" {
		if e.re, err = regexp.Compile(reText); err != nil {
			return nil, fmt.Errorf("%s: regexp: %w", b.Name(), err)
		}
	}
	if e.where, err = newPlacement(b.Name(), afterText, beforeText); err != nil {
		return nil, err
	}
	o := newOp(thread, b.Name(), path)
	if err := o.editFile(path, create, !e.present, e.apply); err != nil {
		return nil, err
	}
	return o.result("ok: line " + state), nil
}

// defaultMarker is ops.block's marker; {mark} becomes BEGIN and END.
const defaultMarker = "# {mark} MITOSTAR MANAGED BLOCK"

// ops.block(path, block, marker=None, state="present",
// insert_after=None, insert_before=None, create=False)
func opBlock(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var path, block string
	var marker, after, before starlark.Value = starlark.None, starlark.None, starlark.None
	state, create := "present", false
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "path", &path, "block?", &block, "marker?", &marker,
		"state?", &state, "insert_after?", &after, "insert_before?", &before, "create?", &create); err != nil {
		return nil, err
	}
	e := blockEdit{}
	var err error
	if e.present, err = presence(b.Name(), state); err != nil {
		return nil, err
	}
	if path == "" {
		return nil, fmt.Errorf("%s: empty path", b.Name())
	}
	m, err := optString(b.Name(), "marker", marker)
	if err != nil {
		return nil, err
	}
	if m == "" {
		m = defaultMarker
	}
	if !strings.Contains(m, "{mark}") || strings.Contains(m, "\n") {
		return nil, fmt.Errorf("%s: marker must be one line holding {mark}, got %q", b.Name(), m)
	}
	e.begin, e.end = strings.ReplaceAll(m, "{mark}", "BEGIN"), strings.ReplaceAll(m, "{mark}", "END")
	// As Ansible's blockinfile: an empty block removes the block.
	if strings.TrimRight(block, "\n") == "" {
		e.present = false
	} else {
		e.body = splitLines([]byte(strings.TrimRight(block, "\n") + "\n"))
	}
	afterText, err := optString(b.Name(), "insert_after", after)
	if err != nil {
		return nil, err
	}
	beforeText, err := optString(b.Name(), "insert_before", before)
	if err != nil {
		return nil, err
	}
	if e.where, err = newPlacement(b.Name(), afterText, beforeText); err != nil {
		return nil, err
	}
	o := newOp(thread, b.Name(), path)
	if err := o.editFile(path, create, !e.present, e.apply); err != nil {
		return nil, err
	}
	return o.result("ok: block " + state), nil
}

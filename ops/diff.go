package ops

import (
	"bytes"
	"fmt"
	"unicode/utf8"

	udiff "github.com/aymanbagabas/go-udiff"
)

// diffLimit is the size past which content is not diffed: a diff of a
// large file is slow to compute and useless to read.
const diffLimit = 256 << 10

// unifiedDiff returns the unified diff (3 lines of context) that turns
// before into after, the files labelled "before: PATH" and "after:
// PATH"; "" when they are equal. Content that is binary or large gets
// a one-line summary instead.
func unifiedDiff(path string, before, after []byte) string {
	if bytes.Equal(before, after) {
		return ""
	}
	from, to := "before: "+path, "after: "+path
	switch {
	case isBinary(before) || isBinary(after):
		return fmt.Sprintf("Binary files %s and %s differ\n", from, to)
	case len(before) > diffLimit || len(after) > diffLimit:
		return fmt.Sprintf("Files %s (%d bytes) and %s (%d bytes) differ (too large to diff)\n", from, len(before), to, len(after))
	}
	edits := udiff.Lines(string(before), string(after))
	text, err := udiff.ToUnified(from, to, string(before), edits, udiff.DefaultContextLines)
	if err != nil {
		return fmt.Sprintf("Files %s and %s differ (%v)\n", from, to, err)
	}
	return text
}

// isBinary reports content that a line diff cannot show: a NUL byte or
// invalid UTF-8.
func isBinary(b []byte) bool { return bytes.IndexByte(b, 0) >= 0 || !utf8.Valid(b) }

package fanout

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The terminal sequences the live display writes: ECMA-48 controls, and
// the synchronized-output mode (DEC private mode 2026) that terminals
// which know it use to draw a block at once (the others ignore it).
const (
	hideCursor = "\x1b[?25l"
	showCursor = "\x1b[?25h"
	eraseBelow = "\x1b[J" // ED: erase from the cursor to the end of the screen
	syncBegin  = "\x1b[?2026h"
	syncEnd    = "\x1b[?2026l"
	sgrReset   = "\x1b[m"
)

// cursorPreviousLine is CPL: the cursor moves to the start of the line
// n lines up.
func cursorPreviousLine(n int) string { return "\x1b[" + strconv.Itoa(n) + "F" }

// truncate cuts s to at most width terminal columns, ending it with "…"
// when it is cut. Escape sequences count for no column and are all kept,
// so that a colour begun before the cut still ends after it.
func truncate(s string, width int) string {
	if displayWidth(s) <= width {
		return s
	}
	if width < 1 {
		return ""
	}
	var b strings.Builder
	cols, cut := 0, false
	for i := 0; i < len(s); {
		if n := escapeLen(s[i:]); n > 0 {
			b.WriteString(s[i : i+n])
			i += n
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if w := runeWidth(r); !cut && cols+w <= width-1 {
			b.WriteString(s[i : i+size])
			cols += w
		} else if !cut {
			b.WriteString("…")
			cut = true
		}
		i += size
	}
	return b.String()
}

// displayWidth is the number of terminal columns s takes.
func displayWidth(s string) int {
	cols := 0
	for i := 0; i < len(s); {
		if n := escapeLen(s[i:]); n > 0 {
			i += n
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		cols += runeWidth(r)
		i += size
	}
	return cols
}

// escapeLen is the length of the CSI sequence (ESC [ parameters
// intermediates final) s starts with, 1 for another ESC, 0 for none.
func escapeLen(s string) int {
	if len(s) == 0 || s[0] != 0x1b {
		return 0
	}
	if len(s) < 2 || s[1] != '[' {
		return 1
	}
	for i := 2; i < len(s); i++ {
		if c := s[i]; c >= 0x40 && c <= 0x7e {
			return i + 1
		} else if c < 0x20 || c > 0x3f {
			return i // not a CSI byte: the sequence ends here
		}
	}
	return len(s)
}

// fullwidth is the Fullwidth Forms, CJK punctuation and the emoji
// blocks: with the Han, Hangul and kana scripts, what a terminal draws
// two columns wide.
var fullwidth = &unicode.RangeTable{R16: []unicode.Range16{
	{Lo: 0x3000, Hi: 0x303e, Stride: 1},
	{Lo: 0xff01, Hi: 0xff60, Stride: 1},
	{Lo: 0xffe0, Hi: 0xffe6, Stride: 1},
}, R32: []unicode.Range32{
	{Lo: 0x1f300, Hi: 0x1f64f, Stride: 1},
	{Lo: 0x1f900, Hi: 0x1f9ff, Stride: 1},
}}

// runeWidth is the number of columns r takes: none for controls and
// combining marks, two for wide characters, else one.
func runeWidth(r rune) int {
	switch {
	case r < 0x20 || r == 0x7f || unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf):
		return 0
	case r >= 0x1100 && unicode.In(r, unicode.Han, unicode.Hangul, unicode.Hiragana, unicode.Katakana, fullwidth):
		return 2
	}
	return 1
}

package inventory

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// shlexSplit splits an INI host line as Python's shlex.split(line,
// comments=True) does: words separated by blanks, '...' taken literally,
// "..." with backslash escapes of \ " $ ` and newline, a backslash
// outside quotes escaping any character, and '#' starting a comment
// where it is not inside a quoted part.
func shlexSplit(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '#':
			if inWord {
				out = append(out, cur.String())
			}
			return out, nil
		case c == '\'':
			inWord = true
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("no closing quotation")
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
		case c == '"':
			inWord = true
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\\\"$`\n", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, errors.New("no closing quotation")
			}
		case c == '\\':
			inWord = true
			if i+1 >= len(s) {
				return nil, errors.New("no escaped character")
			}
			i++
			cur.WriteByte(s[i])
		default:
			inWord = true
			cur.WriteByte(c)
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out, nil
}

// pyValue reads an INI value as Ansible does: a Python literal (what
// ast.literal_eval accepts: numbers, strings, True/False/None, lists,
// tuples, dicts, sets) becomes that value; anything else stays the
// string as written.
func pyValue(s string) any {
	p := &pyParser{s: strings.TrimLeft(s, " \t")}
	v, err := p.expr()
	if err == nil {
		p.skip()
		if p.i < len(p.s) {
			err = errors.New("trailing text")
		}
	}
	if err != nil {
		return s
	}
	return v
}

// pyParser is a recursive-descent reader of Python literals.
type pyParser struct {
	s     string
	i     int
	depth int
}

var errNotLiteral = errors.New("not a Python literal")

// skip passes blanks and a comment.
func (p *pyParser) skip() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r', '\f':
			p.i++
		case '#':
			for p.i < len(p.s) && p.s[p.i] != '\n' {
				p.i++
			}
		default:
			return
		}
	}
}

func (p *pyParser) peek() byte {
	p.skip()
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

func (p *pyParser) expr() (any, error) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > 100 {
		return nil, errNotLiteral
	}
	switch c := p.peek(); {
	case c == '[':
		return p.sequence('[', ']')
	case c == '(':
		return p.sequence('(', ')')
	case c == '{':
		return p.mapping()
	case c == '-' || c == '+':
		p.i++
		v, err := p.expr()
		if err != nil {
			return nil, err
		}
		switch n := v.(type) {
		case int64:
			if c == '-' {
				return -n, nil
			}
			return n, nil
		case float64:
			if c == '-' {
				return -n, nil
			}
			return n, nil
		}
		return nil, errNotLiteral
	case c >= '0' && c <= '9' || c == '.':
		return p.number()
	case c == '\'' || c == '"':
		return p.strings()
	case isIdentStart(c):
		start := p.i
		for p.i < len(p.s) && isIdentPart(p.s[p.i]) {
			p.i++
		}
		word := p.s[start:p.i]
		switch word {
		case "True":
			return true, nil
		case "False":
			return false, nil
		case "None":
			return nil, nil
		}
		// A string prefix: b'..', r"..", u'..', rb'..'.
		if p.i < len(p.s) && (p.s[p.i] == '\'' || p.s[p.i] == '"') && isStringPrefix(word) {
			p.i = start
			return p.strings()
		}
	}
	return nil, errNotLiteral
}

func isIdentStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

func isIdentPart(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }

func isStringPrefix(w string) bool {
	switch strings.ToLower(w) {
	case "r", "u", "b", "br", "rb":
		return true
	}
	return false
}

// sequence reads a list or tuple (both become a list).
func (p *pyParser) sequence(open, close byte) (any, error) {
	p.i++ // open
	out := []any{}
	for {
		if p.peek() == close {
			p.i++
			return out, nil
		}
		v, err := p.expr()
		if err != nil {
			return nil, err
		}
		out = append(out, v)
		switch p.peek() {
		case ',':
			p.i++
		case close:
			p.i++
			if open == '(' && len(out) == 1 {
				// (x) is x, (x,) a tuple: the comma was not there.
				return out[0], nil
			}
			return out, nil
		default:
			return nil, errNotLiteral
		}
	}
}

// mapping reads a dict, or a set (which becomes a list).
func (p *pyParser) mapping() (any, error) {
	p.i++ // {
	if p.peek() == '}' {
		p.i++
		return map[string]any{}, nil
	}
	first, err := p.expr()
	if err != nil {
		return nil, err
	}
	if p.peek() != ':' {
		set := []any{first}
		for {
			switch p.peek() {
			case ',':
				p.i++
				if p.peek() == '}' {
					p.i++
					return set, nil
				}
				v, err := p.expr()
				if err != nil {
					return nil, err
				}
				set = append(set, v)
			case '}':
				p.i++
				return set, nil
			default:
				return nil, errNotLiteral
			}
		}
	}
	out := map[string]any{}
	key := first
	for {
		if p.peek() != ':' {
			return nil, errNotLiteral
		}
		p.i++
		v, err := p.expr()
		if err != nil {
			return nil, err
		}
		out[keyString(key)] = v
		switch p.peek() {
		case ',':
			p.i++
			if p.peek() == '}' {
				p.i++
				return out, nil
			}
			if key, err = p.expr(); err != nil {
				return nil, err
			}
		case '}':
			p.i++
			return out, nil
		default:
			return nil, errNotLiteral
		}
	}
}

// keyString is how a non-string dict key reads as a variable name.
func keyString(k any) string {
	switch v := k.(type) {
	case string:
		return v
	case nil:
		return "null"
	case bool:
		if v {
			return "true"
		}
		return "false"
	}
	return fmt.Sprint(k)
}

// number reads an int (decimal, 0x, 0o, 0b, with _ between digits) or a
// float; a decimal with leading zeros (007) is not a Python literal.
func (p *pyParser) number() (any, error) {
	start := p.i
	for p.i < len(p.s) && (isIdentPart(p.s[p.i]) || p.s[p.i] == '.' ||
		(p.s[p.i] == '+' || p.s[p.i] == '-') && (p.s[p.i-1] == 'e' || p.s[p.i-1] == 'E') && !strings.ContainsAny(p.s[start:p.i], "xXbB")) {
		p.i++
	}
	tok := p.s[start:p.i]
	if strings.Contains(tok, "__") || strings.HasSuffix(tok, "_") || strings.Contains(tok, "_.") || strings.Contains(tok, "._") {
		return nil, errNotLiteral
	}
	clean := strings.ReplaceAll(tok, "_", "")
	if len(clean) > 1 && clean[0] == '0' {
		switch clean[1] {
		case 'x', 'X', 'o', 'O', 'b', 'B':
			base := map[byte]int{'x': 16, 'X': 16, 'o': 8, 'O': 8, 'b': 2, 'B': 2}[clean[1]]
			digits := clean[2:]
			n, err := strconv.ParseInt(digits, base, 64)
			if err != nil || digits == "" {
				return nil, errNotLiteral
			}
			return n, nil
		}
	}
	if strings.ContainsAny(clean, ".eE") {
		if strings.ContainsAny(clean, "xXjJ") {
			return nil, errNotLiteral
		}
		f, err := strconv.ParseFloat(clean, 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return nil, errNotLiteral
		}
		if math.IsNaN(f) {
			return nil, errNotLiteral
		}
		return f, nil
	}
	for _, c := range clean {
		if c < '0' || c > '9' {
			return nil, errNotLiteral
		}
	}
	if len(clean) > 1 && clean[0] == '0' && strings.Trim(clean, "0") != "" {
		return nil, errNotLiteral // 007: leading zeros are a syntax error
	}
	n, err := strconv.ParseInt(clean, 10, 64)
	if err != nil {
		return nil, errNotLiteral
	}
	return n, nil
}

// strings reads one string literal or several adjacent ones (joined).
func (p *pyParser) strings() (any, error) {
	var b strings.Builder
	for n := 0; ; n++ {
		p.skip()
		start := p.i
		for p.i < len(p.s) && isIdentPart(p.s[p.i]) {
			p.i++
		}
		prefix := strings.ToLower(p.s[start:p.i])
		if prefix != "" && !isStringPrefix(prefix) || p.i >= len(p.s) || (p.s[p.i] != '\'' && p.s[p.i] != '"') {
			p.i = start
			if n == 0 {
				return nil, errNotLiteral
			}
			return b.String(), nil
		}
		s, err := p.stringLit(strings.Contains(prefix, "r"))
		if err != nil {
			return nil, err
		}
		b.WriteString(s)
	}
}

// stringLit reads one quoted string at p.i ('x', "x", ”'x”', """x""").
func (p *pyParser) stringLit(raw bool) (string, error) {
	q := p.s[p.i]
	quote := string(q)
	if strings.HasPrefix(p.s[p.i:], strings.Repeat(quote, 3)) {
		quote = strings.Repeat(quote, 3)
	}
	p.i += len(quote)
	var b strings.Builder
	for {
		if p.i >= len(p.s) {
			return "", errNotLiteral
		}
		if strings.HasPrefix(p.s[p.i:], quote) {
			p.i += len(quote)
			return b.String(), nil
		}
		c := p.s[p.i]
		if c == '\n' && len(quote) == 1 {
			return "", errNotLiteral
		}
		if c != '\\' {
			b.WriteByte(c)
			p.i++
			continue
		}
		if p.i+1 >= len(p.s) {
			return "", errNotLiteral
		}
		e := p.s[p.i+1]
		if raw {
			b.WriteByte('\\')
			b.WriteByte(e)
			p.i += 2
			continue
		}
		p.i += 2
		switch e {
		case '\n':
		case '\\', '\'', '"':
			b.WriteByte(e)
		case 'a':
			b.WriteByte('\a')
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'v':
			b.WriteByte('\v')
		case 'x', 'u', 'U':
			n := map[byte]int{'x': 2, 'u': 4, 'U': 8}[e]
			if p.i+n > len(p.s) {
				return "", errNotLiteral
			}
			r, err := strconv.ParseUint(p.s[p.i:p.i+n], 16, 32)
			if err != nil || !utf8.ValidRune(rune(r)) {
				return "", errNotLiteral
			}
			b.WriteRune(rune(r))
			p.i += n
		case '0', '1', '2', '3', '4', '5', '6', '7':
			j := p.i - 1
			for j < len(p.s) && j < p.i+2 && p.s[j] >= '0' && p.s[j] <= '7' {
				j++
			}
			r, _ := strconv.ParseUint(p.s[p.i-1:j], 8, 32)
			b.WriteRune(rune(r))
			p.i = j
		default:
			b.WriteByte('\\')
			b.WriteByte(e)
		}
	}
}

// ShellSplit splits a command line as Ansible splits its *_args
// variables (ansible_ssh_common_args, ansible_become_flags): shell words,
// with quotes and backslashes, '#' starting a comment.
func ShellSplit(s string) ([]string, error) { return shlexSplit(s) }

package inventory

import (
	"fmt"
	"strconv"
	"strings"
)

// expandHostPattern splits an inventory host entry into host names and
// an optional port: "db[01:03].example.com:2222" is db01, db02 and db03
// on port 2222. A port follows the last ':' of a name that has no other
// ':' outside brackets, or a bracketed address ("[::1]:2222").
func expandHostPattern(entry string) ([]string, *int, error) {
	entry = strings.TrimSpace(entry)
	if entry == "" {
		return nil, nil, fmt.Errorf("empty host name")
	}
	pattern, port, err := splitPort(entry)
	if err != nil {
		return nil, nil, err
	}
	if pattern == "---" {
		return nil, nil, fmt.Errorf("invalid host pattern %q: '---' is normally a sign this is a YAML file", entry)
	}
	names, err := expandRanges(pattern)
	if err != nil {
		return nil, nil, fmt.Errorf("host pattern %q: %w", entry, err)
	}
	return names, port, nil
}

// splitPort separates a trailing ":PORT".
func splitPort(entry string) (string, *int, error) {
	portOf := func(s string) (*int, error) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > 65535 {
			return nil, fmt.Errorf("invalid port %q in host entry %q", s, entry)
		}
		return &n, nil
	}
	// [address]:port, where the brackets hold an IPv6 address or a name.
	if strings.HasPrefix(entry, "[") {
		if i := strings.LastIndex(entry, "]:"); i > 0 && isDigits(entry[i+2:]) && !strings.Contains(entry[1:i], "]") {
			p, err := portOf(entry[i+2:])
			return entry[1:i], p, err
		}
	}
	colons, depth, last := 0, 0, -1
	for i, c := range entry {
		switch c {
		case '[':
			depth++
		case ']':
			depth--
		case ':':
			if depth == 0 {
				colons++
				last = i
			}
		}
	}
	if colons == 1 {
		rest := entry[last+1:]
		if rest == "" {
			return "", nil, fmt.Errorf("invalid host pattern %q: ending in ':' is not allowed, this character is reserved to provide a port", entry)
		}
		if isDigits(rest) {
			p, err := portOf(rest)
			return entry[:last], p, err
		}
	}
	return entry, nil, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// asciiLetters is Python's string.ascii_letters: alphabetic ranges
// ([a:f], [X:Z], even [x:B]) step through it.
const asciiLetters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

// maxRangeHosts bounds what one host entry may expand to.
const maxRangeHosts = 1 << 20

// expandRanges expands every [begin:end] or [begin:end:step] range in a
// host name, numeric (zero-padded when begin is) or alphabetic.
func expandRanges(pattern string) ([]string, error) {
	open := strings.IndexByte(pattern, '[')
	if open < 0 {
		return []string{pattern}, nil
	}
	closing := strings.IndexByte(pattern[open:], ']')
	if closing < 0 || !strings.Contains(pattern[open:open+closing], ":") {
		// Not a range (Ansible requires [x:y]): the name as written.
		return []string{pattern}, nil
	}
	head, spec, tail := pattern[:open], pattern[open+1:open+closing], pattern[open+closing+1:]
	bounds := strings.Split(spec, ":")
	if len(bounds) != 2 && len(bounds) != 3 {
		return nil, fmt.Errorf("host range must be begin:end or begin:end:step, got [%s]", spec)
	}
	beg, end := bounds[0], bounds[1]
	step := 1
	if len(bounds) == 3 {
		n, err := strconv.Atoi(bounds[2])
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("host range step must be a positive integer, got %q", bounds[2])
		}
		step = n
	}
	if beg == "" {
		beg = "0"
	}
	if end == "" {
		return nil, fmt.Errorf("host range must specify end value")
	}
	var seq []string
	ib, ie := strings.Index(asciiLetters, beg), strings.Index(asciiLetters, end)
	if len(beg) == 1 && len(end) == 1 && ib >= 0 && ie >= 0 {
		if ib > ie {
			return nil, fmt.Errorf("host range must have begin <= end, got [%s]", spec)
		}
		for i := ib; i <= ie; i += step {
			seq = append(seq, asciiLetters[i:i+1])
		}
	} else {
		b, err1 := strconv.Atoi(beg)
		e, err2 := strconv.Atoi(end)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("host range [%s] is neither numeric nor alphabetic", spec)
		}
		width := 0
		if len(beg) > 1 && beg[0] == '0' {
			if len(beg) != len(end) {
				return nil, fmt.Errorf("host range must specify equal-length begin and end formats, got [%s]", spec)
			}
			width = len(beg)
		}
		if b > e {
			return nil, fmt.Errorf("host range must have begin <= end, got [%s]", spec)
		}
		if (e-b)/step >= maxRangeHosts {
			return nil, fmt.Errorf("host range [%s] expands to more than %d hosts", spec, maxRangeHosts)
		}
		for i := b; i <= e; i += step {
			seq = append(seq, fmt.Sprintf("%0*d", width, i))
		}
	}
	rest, err := expandRanges(tail)
	if err != nil {
		return nil, err
	}
	if len(seq)*len(rest) > maxRangeHosts {
		return nil, fmt.Errorf("host pattern expands to more than %d hosts", maxRangeHosts)
	}
	out := make([]string, 0, len(seq)*len(rest))
	for _, s := range seq {
		for _, r := range rest {
			out = append(out, head+s+r)
		}
	}
	return out, nil
}

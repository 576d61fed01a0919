package inventory

import (
	"fmt"
	"os"
	"path"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// Match returns the hosts a pattern selects, in order and each once,
// narrowed by the inventory's limit (SetLimit). A pattern is one or more
// terms separated by ',' or ':':
//
//	all, *            every host
//	web               the hosts of group web (and of its child groups), or the host web
//	web:db            union; web:&prod intersection; web:!web3 exclusion
//	web[0], web[-1]   one host of what web selects; web[0:2] the first three (inclusive)
//	web*, db?.ex.com  shell globs over group and host names
//	~web\d+           a regular expression (matched at the start of the name)
//
// As in Ansible, the terms without & or ! are applied first, then the
// intersections, then the exclusions; a pattern of only those starts
// from all. A term that matches nothing selects nothing.
func (inv *Inventory) Match(pattern string) ([]*Host, error) {
	hosts, err := inv.evaluate(SplitPattern(pattern))
	if err != nil {
		return nil, err
	}
	if len(inv.limit) == 0 {
		return hosts, nil
	}
	limited, err := inv.evaluate(inv.limit)
	if err != nil {
		return nil, fmt.Errorf("--limit: %w", err)
	}
	in := map[*Host]bool{}
	for _, h := range limited {
		in[h] = true
	}
	out := hosts[:0:0]
	for _, h := range hosts {
		if in[h] {
			out = append(out, h)
		}
	}
	return out, nil
}

// SetLimit narrows every later Match to the hosts limit selects (a
// pattern, or @FILE naming a file with one pattern per line, as
// ansible --limit takes). An empty limit removes it.
func (inv *Inventory) SetLimit(limit string) error {
	if limit == "" {
		inv.limit = nil
		return nil
	}
	var terms []string
	for _, part := range SplitPattern(limit) {
		if file, ok := strings.CutPrefix(part, "@"); ok {
			data, err := os.ReadFile(file)
			if err != nil {
				return fmt.Errorf("--limit: %w", err)
			}
			for _, line := range strings.Split(string(data), "\n") {
				if line = strings.TrimSpace(line); line != "" && line[0] != '#' {
					terms = append(terms, SplitPattern(line)...)
				}
			}
			continue
		}
		terms = append(terms, part)
	}
	if _, err := inv.evaluate(terms); err != nil {
		return fmt.Errorf("--limit: %w", err)
	}
	inv.limit = terms
	return nil
}

// SplitPattern splits a pattern into its terms: at commas when it has
// any, otherwise at colons outside brackets (so web[0:2] is one term).
func SplitPattern(pattern string) []string {
	var parts []string
	if strings.Contains(pattern, ",") {
		parts = strings.Split(pattern, ",")
	} else if _, _, err := splitPort(pattern); err == nil && isAddress(pattern) {
		parts = []string{pattern}
	} else {
		depth := 0
		var cur strings.Builder
		for _, c := range pattern {
			switch {
			case c == '[':
				depth++
			case c == ']':
				depth--
			case c == ':' && depth <= 0:
				parts = append(parts, cur.String())
				cur.Reset()
				continue
			}
			cur.WriteRune(c)
		}
		parts = append(parts, cur.String())
	}
	var out []string
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// isAddress reports whether a pattern is an IPv6 address (whose colons
// do not separate terms).
func isAddress(p string) bool {
	if strings.Count(p, ":") < 2 {
		return false
	}
	for _, c := range p {
		if !(c == ':' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// evaluate applies terms in Ansible's order.
func (inv *Inventory) evaluate(terms []string) ([]*Host, error) {
	var regular, and, not []string
	for _, t := range terms {
		switch t[0] {
		case '&':
			and = append(and, t)
		case '!':
			not = append(not, t)
		default:
			regular = append(regular, t)
		}
	}
	if len(regular) == 0 {
		regular = []string{"all"}
	}
	var hosts []*Host
	seen := map[*Host]bool{}
	for _, t := range regular {
		if h := inv.hostByName[t]; h != nil {
			if !seen[h] {
				seen[h] = true
				hosts = append(hosts, h)
			}
			continue
		}
		that, err := inv.matchTerm(t)
		if err != nil {
			return nil, err
		}
		for _, h := range that {
			if !seen[h] {
				seen[h] = true
				hosts = append(hosts, h)
			}
		}
	}
	for _, t := range append(and, not...) {
		that, err := inv.matchTerm(t[1:])
		if err != nil {
			return nil, err
		}
		in := map[*Host]bool{}
		for _, h := range that {
			in[h] = true
		}
		keep := t[0] == '&'
		out := hosts[:0:0]
		for _, h := range hosts {
			if in[h] == keep {
				out = append(out, h)
			}
		}
		hosts = out
	}
	return hosts, nil
}

// subscriptRE is a term ending in [N] or [N:M] (or [N:]).
var subscriptRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^(.+)\[(?:(-?[0-9]+)|([0-9]+)([:-])([0-9]*))\]$`) })

// matchTerm selects the hosts of one term (without its & or !).
func (inv *Inventory) matchTerm(term string) ([]*Host, error) {
	if term == "" {
		return nil, fmt.Errorf("empty pattern term")
	}
	expr := term
	var start, end int
	sub, single := false, false
	if term[0] != '~' {
		if m := subscriptRE().FindStringSubmatch(term); m != nil {
			expr, sub = m[1], true
			if m[2] != "" {
				start, _ = strconv.Atoi(m[2])
				single = true
			} else {
				start, _ = strconv.Atoi(m[3])
				end = -1
				if m[5] != "" {
					end, _ = strconv.Atoi(m[5])
				}
			}
		}
	}
	hosts, err := inv.enumerate(expr)
	if err != nil {
		return nil, err
	}
	if !sub || len(hosts) == 0 {
		return hosts, nil
	}
	if single {
		if start < 0 {
			start += len(hosts)
		}
		if start < 0 || start >= len(hosts) {
			return nil, fmt.Errorf("no hosts matched the subscripted pattern %q (%d hosts)", term, len(hosts))
		}
		return hosts[start : start+1], nil
	}
	if end == -1 || end >= len(hosts) {
		end = len(hosts) - 1
	}
	if start > end {
		return nil, nil
	}
	return hosts[start : end+1], nil
}

// enumerate finds the groups a term names (all their hosts) and, when
// it names no group or is a glob or regular expression, the hosts it
// names.
func (inv *Inventory) enumerate(expr string) ([]*Host, error) {
	match, err := matcher(expr)
	if err != nil {
		return nil, err
	}
	var out []*Host
	seen := map[*Host]bool{}
	add := func(h *Host) {
		if !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	matchedGroup := false
	for _, g := range inv.groups {
		if match(g.Name) {
			matchedGroup = true
			for _, h := range g.Hosts() {
				add(h)
			}
		}
	}
	if !matchedGroup || expr[0] == '~' || strings.ContainsAny(expr, ".?*[") {
		for _, h := range inv.hosts {
			if match(h.Name) {
				add(h)
			}
		}
	}
	if len(out) == 0 && inv.implicit != nil && (expr == "localhost" || expr == "127.0.0.1" || expr == "::1") {
		add(inv.implicit)
	}
	return out, nil
}

// matcher compiles a glob or a ~regular expression.
func matcher(expr string) (func(string) bool, error) {
	if re, ok := strings.CutPrefix(expr, "~"); ok {
		r, err := regexp.Compile(`^(?:` + re + `)`)
		if err != nil {
			return nil, fmt.Errorf("invalid host pattern %q: %v", expr, err)
		}
		return r.MatchString, nil
	}
	if !strings.ContainsAny(expr, "*?[") {
		return func(s string) bool { return s == expr }, nil
	}
	if _, err := path.Match(globToPath(expr), ""); err != nil {
		return nil, fmt.Errorf("invalid host pattern %q: %v", expr, err)
	}
	glob := globToPath(expr)
	return func(s string) bool {
		ok, _ := path.Match(glob, strings.ReplaceAll(s, "/", "\x00"))
		return ok
	}, nil
}

// globToPath turns an fnmatch glob into path.Match syntax: [!x] is
// [^x], and '/' (which path.Match never lets * cross) is not special.
func globToPath(g string) string {
	g = strings.ReplaceAll(g, "/", "\x00")
	return strings.ReplaceAll(g, "[!", "[^")
}

package inventory

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
)

// parseINI reads Ansible's INI inventory format:
//
//	mail.example.com                  # before any section: ungrouped
//	[web]
//	web[01:20].example.com http_port=80
//	bastion.example.com:2222 ansible_user=ops
//	[web:vars]
//	ntp_server = ntp.example.com
//	[prod:children]
//	web
//
// Values are read as Python literals where they are one (80 is an int,
// True a bool, [1, 2] a list) and as strings otherwise, as Ansible does.
func (inv *Inventory) parseINI(name string, data []byte) error {
	pendingGroups := map[string]*pendingGroup{}
	var pendingOrder []string
	group, state := "ungrouped", "hosts"
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	lineno := 0
	fail := func(format string, args ...any) error {
		return fmt.Errorf("inventory %s:%d: %s", name, lineno, fmt.Sprintf(format, args...))
	}
	for sc.Scan() {
		lineno++
		line := strings.TrimSpace(sc.Text())
		if lineno == 1 {
			line = strings.TrimPrefix(line, "\ufeff")
		}
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if sec, kind, ok := parseSection(line); ok {
			group, state = sec, kind
			if state == "" {
				state = "hosts"
			}
			if state != "hosts" && state != "children" && state != "vars" {
				return fail("section [%s:%s] has unknown type: %s", sec, kind, kind)
			}
			if inv.groupByName[group] == nil {
				if state == "vars" && pendingGroups[group] == nil {
					pendingGroups[group] = &pendingGroup{line: lineno, state: state}
					pendingOrder = append(pendingOrder, group)
				}
				inv.addGroup(group)
			}
			if p := pendingGroups[group]; p != nil && state != "vars" {
				if p.state == "children" {
					if err := inv.addPendingChildren(group, pendingGroups); err != nil {
						return fail("%v", err)
					}
				} else {
					delete(pendingGroups, group)
				}
			}
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			return fail("invalid section entry %q: make sure there are no spaces in the section entry and no other invalid characters", line)
		}
		g := inv.groupByName[group]
		switch state {
		case "hosts":
			tokens, err := shlexSplit(line)
			if err != nil {
				return fail("host definition %q: %v", line, err)
			}
			if len(tokens) == 0 {
				continue
			}
			names, port, err := expandHostPattern(tokens[0])
			if err != nil {
				return fail("%v", err)
			}
			vars := map[string]any{}
			var order []string
			for _, t := range tokens[1:] {
				k, v, ok := strings.Cut(t, "=")
				if !ok {
					return fail("expected key=value host variable assignment, got: %s", t)
				}
				if _, seen := vars[k]; !seen {
					order = append(order, k)
				}
				vars[k] = pyValue(v)
			}
			for _, n := range names {
				h := inv.addHost(n, g)
				if port != nil {
					h.vars["ansible_port"] = int64(*port)
				}
				for _, k := range order {
					h.vars[k] = vars[k]
				}
			}
		case "vars":
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				return fail("expected key=value, got: %s", line)
			}
			g.vars[strings.TrimSpace(k)] = pyValue(strings.TrimSpace(v))
		case "children":
			child, ok := parseGroupName(line)
			if !ok {
				return fail("expected group name, got: %s", line)
			}
			if c := inv.groupByName[child]; c != nil {
				if err := g.addChild(c); err != nil {
					return fail("%v", err)
				}
			} else if p := pendingGroups[child]; p != nil {
				p.parents = append(p.parents, group)
			} else {
				pendingGroups[child] = &pendingGroup{line: lineno, state: "children", parents: []string{group}}
				pendingOrder = append(pendingOrder, child)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("inventory %s: %w", name, err)
	}
	for _, g := range pendingOrder {
		p := pendingGroups[g]
		if p == nil {
			continue
		}
		if p.state == "vars" {
			return fmt.Errorf("inventory %s:%d: section [%s:vars] not valid for undefined group: %s", name, p.line, g, g)
		}
		return fmt.Errorf("inventory %s:%d: section [%s:children] includes undefined group: %s", name, p.line, p.parents[len(p.parents)-1], g)
	}
	return nil
}

// A pendingGroup is a group named in a [g:vars] or [g:children] section
// before any section declared it.
type pendingGroup struct {
	line    int
	state   string // "vars" or "children"
	parents []string
}

// addPendingChildren links a group declared late to the parents that
// listed it in their [parent:children] sections before.
func (inv *Inventory) addPendingChildren(group string, pending map[string]*pendingGroup) error {
	for _, parent := range pending[group].parents {
		if err := inv.groupByName[parent].addChild(inv.groupByName[group]); err != nil {
			return err
		}
		if p := pending[parent]; p != nil && p.state == "children" {
			if err := inv.addPendingChildren(parent, pending); err != nil {
				return err
			}
		}
	}
	delete(pending, group)
	return nil
}

// parseSection recognises "[name]" and "[name:kind]", optionally
// followed by a comment.
func parseSection(line string) (name, kind string, ok bool) {
	if !strings.HasPrefix(line, "[") {
		return "", "", false
	}
	end := strings.IndexByte(line, ']')
	if end < 0 {
		return "", "", false
	}
	if rest := strings.TrimSpace(line[end+1:]); rest != "" && rest[0] != '#' {
		return "", "", false
	}
	inner := line[1:end]
	name, kind, hasKind := strings.Cut(inner, ":")
	if name == "" || strings.ContainsAny(name, " \t]") || strings.Contains(kind, ":") {
		return "", "", false
	}
	if hasKind {
		if kind == "" {
			return "", "", false
		}
		for _, c := range kind {
			if !(c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
				return "", "", false
			}
		}
	}
	return name, kind, true
}

// parseGroupName reads a line of a [group:children] section.
func parseGroupName(line string) (string, bool) {
	end := strings.IndexAny(line, ":] \t")
	if end < 0 {
		return line, true
	}
	if end == 0 {
		return "", false
	}
	rest := strings.TrimLeft(line[end:], " \t")
	if rest != "" && rest[0] != '#' {
		return "", false
	}
	return line[:end], true
}

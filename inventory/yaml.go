package inventory

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// parseYAML reads Ansible's YAML inventory format: top-level keys are
// groups, each a mapping with optional hosts (host → vars), vars and
// children (group → the same structure):
//
//	all:
//	  hosts:
//	    mail.example.com:
//	  children:
//	    web:
//	      hosts:
//	        web[01:20].example.com:
//	          http_port: 80
//	      vars:
//	        ntp_server: ntp.example.com
//
// Scalars are read as Ansible's YAML 1.1 loader reads them (yes/no/on/off
// are booleans, 0755 is octal), so values match what Ansible sees.
func (inv *Inventory) parseYAML(name string, data []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("inventory %s: %w", name, err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil // an empty file: no hosts
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil
	}
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("inventory %s:%d: YAML inventory has invalid structure, it should be a dictionary, got %s", name, root.Line, kindName(root))
	}
	p := &yamlReader{inv: inv, file: name}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if _, err := p.group(root.Content[i], root.Content[i+1]); err != nil {
			return err
		}
	}
	return nil
}

// parseYAMLVars reads a file of variables (group_vars, host_vars): a
// YAML mapping of names to values, read as parseYAML reads values, or an
// empty document.
func parseYAMLVars(name string, data []byte) (map[string]any, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("inventory %s: %w", name, err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, nil
	}
	root := resolveAlias(doc.Content[0])
	if isNull(root) {
		return nil, nil
	}
	p := &yamlReader{file: name}
	if root.Kind != yaml.MappingNode {
		return nil, p.errorf(root, "variables must be a mapping of names to values, got %s", kindName(root))
	}
	return p.mapping(root)
}

type yamlReader struct {
	inv  *Inventory
	file string
}

func (p *yamlReader) errorf(n *yaml.Node, format string, args ...any) error {
	return fmt.Errorf("inventory %s:%d: %s", p.file, n.Line, fmt.Sprintf(format, args...))
}

// group reads one group definition (a mapping or null) and returns it.
func (p *yamlReader) group(key, def *yaml.Node) (*Group, error) {
	name, err := p.key(key)
	if err != nil {
		return nil, err
	}
	def = resolveAlias(def)
	if def.Kind != yaml.MappingNode && !isNull(def) {
		return nil, p.errorf(def, "group %q must be a mapping of hosts, vars and children, got %s", name, kindName(def))
	}
	g := p.inv.addGroup(name)
	if isNull(def) {
		return g, nil
	}
	for i := 0; i+1 < len(def.Content); i += 2 {
		section, err := p.key(def.Content[i])
		if err != nil {
			return nil, err
		}
		body := resolveAlias(def.Content[i+1])
		if body.Kind == yaml.ScalarNode && !isNull(body) {
			// "hosts: web1" is short for "hosts: {web1: null}".
			body = &yaml.Node{Kind: yaml.MappingNode, Line: body.Line, Content: []*yaml.Node{body, {Kind: yaml.ScalarNode, Tag: "!!null"}}}
		}
		if isNull(body) {
			continue
		}
		if body.Kind != yaml.MappingNode {
			return nil, p.errorf(body, "invalid %q entry for group %q: requires a mapping, got %s", section, name, kindName(body))
		}
		switch section {
		case "vars":
			vars, err := p.mapping(body)
			if err != nil {
				return nil, err
			}
			for k, v := range vars {
				g.vars[k] = v
			}
		case "children":
			for j := 0; j+1 < len(body.Content); j += 2 {
				c, err := p.group(body.Content[j], body.Content[j+1])
				if err != nil {
					return nil, err
				}
				if err := g.addChild(c); err != nil {
					return nil, p.errorf(body.Content[j], "%v", err)
				}
			}
		case "hosts":
			for j := 0; j+1 < len(body.Content); j += 2 {
				if err := p.hosts(g, body.Content[j], resolveAlias(body.Content[j+1])); err != nil {
					return nil, err
				}
			}
		default:
			return nil, p.errorf(def.Content[i], "unexpected key %q in group %q: only vars, children and hosts are valid", section, name)
		}
	}
	return g, nil
}

// hosts reads one "pattern: vars" entry of a group's hosts.
func (p *yamlReader) hosts(g *Group, key, vars *yaml.Node) error {
	entry, err := p.key(key)
	if err != nil {
		return err
	}
	names, port, err := expandHostPattern(entry)
	if err != nil {
		return p.errorf(key, "%v", err)
	}
	var hv map[string]any
	if !isNull(vars) {
		if vars.Kind != yaml.MappingNode {
			return p.errorf(vars, "host %q: variables must be a mapping, got %s", entry, kindName(vars))
		}
		if hv, err = p.mapping(vars); err != nil {
			return err
		}
	}
	for _, n := range names {
		h := p.inv.addHost(n, g)
		if port != nil {
			h.vars["ansible_port"] = int64(*port)
		}
		for k, v := range hv {
			h.vars[k] = v
		}
	}
	return nil
}

// key reads a mapping key as a string.
func (p *yamlReader) key(n *yaml.Node) (string, error) {
	n = resolveAlias(n)
	if n.Kind != yaml.ScalarNode || isNull(n) {
		return "", p.errorf(n, "expected a name, got %s", kindName(n))
	}
	return n.Value, nil
}

func (p *yamlReader) mapping(n *yaml.Node) (map[string]any, error) {
	v, err := p.value(n, 0)
	if err != nil {
		return nil, err
	}
	return v.(map[string]any), nil
}

// value converts a node to plain Go data.
func (p *yamlReader) value(n *yaml.Node, depth int) (any, error) {
	if depth > 100 {
		return nil, p.errorf(n, "value nested too deeply")
	}
	n = resolveAlias(n)
	switch n.Kind {
	case yaml.MappingNode:
		out := map[string]any{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := resolveAlias(n.Content[i])
			if k.Tag == "!!merge" {
				// <<: *base merges the aliased mapping(s) in, keys
				// written here winning.
				base, err := p.value(n.Content[i+1], depth+1)
				if err != nil {
					return nil, err
				}
				merge := func(m any) {
					if mm, ok := m.(map[string]any); ok {
						for bk, bv := range mm {
							if _, set := out[bk]; !set {
								out[bk] = bv
							}
						}
					}
				}
				if list, ok := base.([]any); ok {
					for _, m := range list {
						merge(m)
					}
				} else {
					merge(base)
				}
				continue
			}
			kv, err := p.value(k, depth+1)
			if err != nil {
				return nil, err
			}
			v, err := p.value(n.Content[i+1], depth+1)
			if err != nil {
				return nil, err
			}
			out[keyString(kv)] = v
		}
		return out, nil
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := p.value(c, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case yaml.ScalarNode:
		return p.scalar(n)
	}
	return nil, p.errorf(n, "unsupported YAML node")
}

// scalar resolves a scalar as YAML 1.1 (PyYAML, which Ansible uses)
// does; quoted scalars and local tags (!unsafe) stay strings.
func (p *yamlReader) scalar(n *yaml.Node) (any, error) {
	const quoted = yaml.DoubleQuotedStyle | yaml.SingleQuotedStyle | yaml.LiteralStyle | yaml.FoldedStyle
	switch {
	case n.Tag == "!vault":
		return nil, p.errorf(n, "vault-encrypted values are not supported")
	case n.Style&yaml.TaggedStyle != 0:
		if !strings.HasPrefix(n.Tag, "!!") || n.Tag == "!!str" {
			return n.Value, nil
		}
		var v any
		if err := n.Decode(&v); err != nil {
			return nil, p.errorf(n, "%v", err)
		}
		return v, nil
	case n.Style&quoted != 0:
		return n.Value, nil
	}
	return resolveYAML11(n.Value), nil
}

// resolveYAML11 types a plain scalar by YAML 1.1's implicit rules.
func resolveYAML11(s string) any {
	switch s {
	case "", "~", "null", "Null", "NULL":
		return nil
	case "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON":
		return true
	case "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF":
		return false
	case ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF":
		return math.Inf(1)
	case "-.inf", "-.Inf", "-.INF":
		return math.Inf(-1)
	case ".nan", ".NaN", ".NAN":
		return s // NaN has no JSON form; Ansible users never mean it
	}
	if v, ok := yaml11Int(s); ok {
		return v
	}
	if v, ok := yaml11Float(s); ok {
		return v
	}
	return s
}

func yaml11Int(s string) (int64, bool) {
	t := s
	neg := false
	if t != "" && (t[0] == '-' || t[0] == '+') {
		neg = t[0] == '-'
		t = t[1:]
	}
	if t == "" || t[0] == '_' {
		return 0, false
	}
	base, digits := 10, t
	switch {
	case strings.HasPrefix(t, "0b"):
		base, digits = 2, t[2:]
	case strings.HasPrefix(t, "0x"):
		base, digits = 16, t[2:]
	case len(t) > 1 && t[0] == '0':
		base, digits = 8, t[1:]
	case strings.Contains(t, ":"):
		return sexagesimal(t, neg)
	}
	digits = strings.ReplaceAll(digits, "_", "")
	if digits == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(digits, base, 64)
	if err != nil {
		return 0, false
	}
	if neg {
		n = -n
	}
	return n, true
}

// sexagesimal reads 1:30:00 (base 60), which YAML 1.1 calls an int.
func sexagesimal(t string, neg bool) (int64, bool) {
	parts := strings.Split(t, ":")
	if parts[0] == "" || parts[0][0] == '0' {
		return 0, false
	}
	var n int64
	for i, part := range parts {
		d, err := strconv.ParseInt(strings.ReplaceAll(part, "_", ""), 10, 64)
		if err != nil || (i > 0 && (d >= 60 || len(part) > 2)) {
			return 0, false
		}
		n = n*60 + d
	}
	if neg {
		n = -n
	}
	return n, true
}

func yaml11Float(s string) (float64, bool) {
	// [-+]?([0-9][0-9_]*)?\.[0-9_]*([eE][-+][0-9]+)?
	t := strings.TrimLeft(s, "+-")
	if len(s)-len(t) > 1 || !strings.Contains(t, ".") {
		return 0, false
	}
	mant, exp, hasExp := strings.Cut(t, "e")
	if !hasExp {
		mant, exp, hasExp = strings.Cut(t, "E")
	}
	if strings.Count(mant, ".") != 1 || strings.HasPrefix(mant, "_") {
		return 0, false
	}
	for _, c := range mant {
		if c != '.' && c != '_' && (c < '0' || c > '9') {
			return 0, false
		}
	}
	if hasExp && (len(exp) < 2 || (exp[0] != '+' && exp[0] != '-') || !isDigits(exp[1:])) {
		return 0, false
	}
	f, err := strconv.ParseFloat(strings.ReplaceAll(s, "_", ""), 64)
	if err != nil {
		return 0, false
	}
	return f, true
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null" && n.Style == 0
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "null"
		}
		return fmt.Sprintf("the scalar %q", n.Value)
	}
	return "an alias"
}

// looksLikeYAMLMapping reports whether data is a YAML document whose
// top level is a mapping (which no INI inventory is).
func looksLikeYAMLMapping(data []byte) bool {
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte("[")) {
		return false
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil || len(doc.Content) == 0 {
		return false
	}
	return doc.Content[0].Kind == yaml.MappingNode
}

package inventory

import (
	"fmt"
	"sort"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// parseStarlark reads a Starlark inventory: a .star file whose top level
// defines
//
//	hosts = {"web1": {"ansible_host": "10.0.0.1"}, "db1": None}
//	groups = {"web": ["web1"], "prod": ["web", "db1"]}
//	group_vars = {"prod": {"ntp_server": "ntp.example.com"}}  # optional
//
// A member of a group that is itself a key of groups is a child group;
// any other member is a host (declared in hosts or not). Host names may
// use ranges (web[01:20]). The file runs with no predeclared names, no
// load and a step limit: it is data written as a program.
func (inv *Inventory) parseStarlark(name string, src []byte) error {
	thread := &starlark.Thread{Name: "inventory " + name, Load: func(_ *starlark.Thread, module string) (starlark.StringDict, error) {
		return nil, fmt.Errorf("load(%q): a Starlark inventory cannot load modules", module)
	}}
	thread.SetMaxExecutionSteps(50_000_000)
	opts := &syntax.FileOptions{Set: true, While: true, TopLevelControl: true, GlobalReassign: true, Recursion: true}
	globals, err := starlark.ExecFileOptions(opts, thread, name, src, nil)
	if err != nil {
		if ee, ok := err.(*starlark.EvalError); ok {
			return fmt.Errorf("inventory %s: %s", name, ee.Backtrace())
		}
		return fmt.Errorf("inventory %s: %w", name, err)
	}
	hostsV, groupsV := globals["hosts"], globals["groups"]
	if hostsV == nil && groupsV == nil {
		return fmt.Errorf("inventory %s: a Starlark inventory must define hosts (dict host → vars) or groups (dict group → list of hosts or groups)", name)
	}
	if hostsV != nil {
		d, ok := hostsV.(*starlark.Dict)
		if !ok {
			return fmt.Errorf("inventory %s: hosts must be a dict of host → vars, got %s", name, hostsV.Type())
		}
		for _, kv := range d.Items() {
			entry, ok := starlark.AsString(kv[0])
			if !ok {
				return fmt.Errorf("inventory %s: hosts: a host name must be a string, got %s", name, kv[0].Type())
			}
			names, port, err := expandHostPattern(entry)
			if err != nil {
				return fmt.Errorf("inventory %s: hosts: %w", name, err)
			}
			vars, err := starVars(kv[1], "hosts["+entry+"]")
			if err != nil {
				return fmt.Errorf("inventory %s: %w", name, err)
			}
			for _, n := range names {
				h := inv.addHost(n, nil)
				if port != nil {
					h.vars["ansible_port"] = int64(*port)
				}
				for k, v := range vars {
					h.vars[k] = v
				}
			}
		}
	}
	if groupsV != nil {
		d, ok := groupsV.(*starlark.Dict)
		if !ok {
			return fmt.Errorf("inventory %s: groups must be a dict of group → list of hosts or groups, got %s", name, groupsV.Type())
		}
		isGroup := map[string]bool{}
		for _, k := range d.Keys() {
			g, ok := starlark.AsString(k)
			if !ok {
				return fmt.Errorf("inventory %s: groups: a group name must be a string, got %s", name, k.Type())
			}
			isGroup[g] = true
			inv.addGroup(g)
		}
		for _, kv := range d.Items() {
			g := inv.groupByName[string(kv[0].(starlark.String))]
			members, ok := kv[1].(starlark.Iterable)
			if !ok || kv[1].Type() == "string" || kv[1].Type() == "dict" {
				return fmt.Errorf("inventory %s: groups[%q] must be a list of host or group names, got %s", name, g.Name, kv[1].Type())
			}
			it := members.Iterate()
			var m starlark.Value
			for it.Next(&m) {
				member, ok := starlark.AsString(m)
				if !ok {
					it.Done()
					return fmt.Errorf("inventory %s: groups[%q]: a member must be a string, got %s", name, g.Name, m.Type())
				}
				if isGroup[member] {
					if err := g.addChild(inv.groupByName[member]); err != nil {
						it.Done()
						return fmt.Errorf("inventory %s: %w", name, err)
					}
					continue
				}
				names, port, err := expandHostPattern(member)
				if err != nil {
					it.Done()
					return fmt.Errorf("inventory %s: groups[%q]: %w", name, g.Name, err)
				}
				for _, n := range names {
					h := inv.addHost(n, g)
					if port != nil {
						h.vars["ansible_port"] = int64(*port)
					}
				}
			}
			it.Done()
		}
	}
	if gv := globals["group_vars"]; gv != nil {
		d, ok := gv.(*starlark.Dict)
		if !ok {
			return fmt.Errorf("inventory %s: group_vars must be a dict of group → vars, got %s", name, gv.Type())
		}
		for _, kv := range d.Items() {
			gname, ok := starlark.AsString(kv[0])
			if !ok {
				return fmt.Errorf("inventory %s: group_vars: a group name must be a string, got %s", name, kv[0].Type())
			}
			vars, err := starVars(kv[1], "group_vars["+gname+"]")
			if err != nil {
				return fmt.Errorf("inventory %s: %w", name, err)
			}
			g := inv.addGroup(gname)
			for k, v := range vars {
				g.vars[k] = v
			}
		}
	}
	return nil
}

// starVars converts a dict of variables (or None) to Go values.
func starVars(v starlark.Value, what string) (map[string]any, error) {
	if v == starlark.None {
		return nil, nil
	}
	d, ok := v.(*starlark.Dict)
	if !ok {
		return nil, fmt.Errorf("%s must be a dict of variables or None, got %s", what, v.Type())
	}
	g, err := starToGo(d, what, 0)
	if err != nil {
		return nil, err
	}
	return g.(map[string]any), nil
}

// starToGo converts a Starlark value to the plain data variables hold.
func starToGo(v starlark.Value, what string, depth int) (any, error) {
	if depth > 100 {
		return nil, fmt.Errorf("%s: value nested too deeply", what)
	}
	switch x := v.(type) {
	case starlark.NoneType:
		return nil, nil
	case starlark.Bool:
		return bool(x), nil
	case starlark.Int:
		n, ok := x.Int64()
		if !ok {
			return nil, fmt.Errorf("%s: integer %s is too large", what, x)
		}
		return n, nil
	case starlark.Float:
		return float64(x), nil
	case starlark.String:
		return string(x), nil
	case *starlark.List, starlark.Tuple:
		var out []any
		it := x.(starlark.Iterable).Iterate()
		defer it.Done()
		var e starlark.Value
		for it.Next(&e) {
			g, err := starToGo(e, what, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, g)
		}
		if out == nil {
			out = []any{}
		}
		return out, nil
	case *starlark.Dict:
		out := map[string]any{}
		for _, kv := range x.Items() {
			k, ok := starlark.AsString(kv[0])
			if !ok {
				return nil, fmt.Errorf("%s: variable names must be strings, got %s", what, kv[0].Type())
			}
			g, err := starToGo(kv[1], what+"."+k, depth+1)
			if err != nil {
				return nil, err
			}
			out[k] = g
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s: a variable cannot hold a %s", what, v.Type())
}

// sortedKeys returns m's keys in order.
func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

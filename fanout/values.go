package fanout

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"go.starlark.net/starlark"

	"github.com/mitostar/mitostar/builtins"
	"github.com/mitostar/mitostar/inventory"
)

// secretVars are variables that hold passwords: connect uses them, but
// no script sees them (host.vars, inventory.hosts), so they never reach
// a log line or a traceback through a script.
var secretVars = []string{
	"ansible_password", "ansible_ssh_pass", "ansible_ssh_password",
	"ansible_become_password", "ansible_become_pass", "ansible_sudo_pass",
	"ansible_su_pass", "mitostar_password", "mitostar_become_password",
}

// A record is what a script knows of an inventory host; it travels to
// the host's context as plain data.
type record struct {
	Name   string         `cbor:"1,keyasint"`
	Vars   map[string]any `cbor:"2,keyasint"`
	Groups []string       `cbor:"3,keyasint"`
}

func recordOf(h *inventory.Host) *record {
	vars := h.Vars()
	for k := range vars {
		if slices.Contains(secretVars, k) {
			delete(vars, k)
		}
	}
	return &record{Name: h.Name, Vars: vars, Groups: h.Groups()}
}

// Host is the Starlark value of an inventory host (type "host"): name,
// vars (a dict, merged as Ansible merges them) and groups (a list).
type Host struct {
	name   string
	vars   *starlark.Dict
	groups *starlark.List
}

var _ starlark.HasAttrs = (*Host)(nil)

// hostValue converts a record to a Starlark value.
func hostValue(r *record) (*Host, error) {
	vars := starlark.NewDict(len(r.Vars))
	keys := make([]string, 0, len(r.Vars))
	for k := range r.Vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v, err := builtins.FromGo(r.Vars[k])
		if err != nil {
			return nil, fmt.Errorf("host %s: variable %s: %w", r.Name, k, err)
		}
		vars.SetKey(starlark.String(k), v)
	}
	groups := make([]starlark.Value, len(r.Groups))
	for i, g := range r.Groups {
		groups[i] = starlark.String(g)
	}
	return &Host{name: r.Name, vars: vars, groups: starlark.NewList(groups)}, nil
}

func (h *Host) String() string        { return fmt.Sprintf("host(%q)", h.name) }
func (h *Host) Type() string          { return "host" }
func (h *Host) Freeze()               { h.vars.Freeze(); h.groups.Freeze() }
func (h *Host) Truth() starlark.Bool  { return true }
func (h *Host) Hash() (uint32, error) { return starlark.String(h.name).Hash() }

// Attr returns name, vars or groups.
func (h *Host) Attr(name string) (starlark.Value, error) {
	switch name {
	case "name":
		return starlark.String(h.name), nil
	case "vars":
		return h.vars, nil
	case "groups":
		return h.groups, nil
	}
	return nil, nil
}

// AttrNames lists the attributes of a host.
func (h *Host) AttrNames() []string { return []string{"groups", "name", "vars"} }

// Hosts is what connect returns (type "hosts"): the contexts of the hosts
// that connected, in inventory order, with len(), iteration, indexing by
// position or by name, and unreachable (dict name → Error).
type Hosts struct {
	names       []string
	contexts    []*builtins.Context
	unreachable *starlark.Dict
}

var (
	_ starlark.Mapping  = (*Hosts)(nil)
	_ starlark.Iterable = (*Hosts)(nil)
	_ starlark.HasAttrs = (*Hosts)(nil)
	_ starlark.Sequence = (*Hosts)(nil)
)

func (h *Hosts) String() string {
	return fmt.Sprintf("hosts([%s], unreachable=%d)", strings.Join(h.names, ", "), h.unreachable.Len())
}
func (h *Hosts) Type() string          { return "hosts" }
func (h *Hosts) Freeze()               { h.unreachable.Freeze() }
func (h *Hosts) Truth() starlark.Bool  { return len(h.contexts) > 0 }
func (h *Hosts) Hash() (uint32, error) { return 0, fmt.Errorf("unhashable type: hosts") }
func (h *Hosts) Len() int              { return len(h.contexts) }

// Iterate yields the contexts.
func (h *Hosts) Iterate() starlark.Iterator { return &hostsIter{h: h} }

// Get implements hosts[i] and hosts["name"].
func (h *Hosts) Get(k starlark.Value) (starlark.Value, bool, error) {
	switch k := k.(type) {
	case starlark.String:
		for i, n := range h.names {
			if n == string(k) {
				return h.contexts[i], true, nil
			}
		}
		if _, found, _ := h.unreachable.Get(k); found {
			return nil, false, fmt.Errorf("hosts[%q]: the host is unreachable (see hosts.unreachable)", string(k))
		}
		return nil, false, fmt.Errorf("hosts[%q]: no such host among these", string(k))
	case starlark.Int:
		i, ok := k.Int64()
		n := int64(len(h.contexts))
		if ok && i < 0 {
			i += n
		}
		if !ok || i < 0 || i >= n {
			return nil, false, fmt.Errorf("hosts index %s out of range [0:%d]", k, n)
		}
		return h.contexts[i], true, nil
	}
	return nil, false, fmt.Errorf("hosts: want an int or a host name, got %s", k.Type())
}

// Attr returns unreachable and names.
func (h *Hosts) Attr(name string) (starlark.Value, error) {
	switch name {
	case "unreachable":
		return h.unreachable, nil
	case "names":
		out := make([]starlark.Value, len(h.names))
		for i, n := range h.names {
			out[i] = starlark.String(n)
		}
		return starlark.NewList(out), nil
	}
	return nil, nil
}

// AttrNames lists the attributes of hosts.
func (h *Hosts) AttrNames() []string { return []string{"names", "unreachable"} }

type hostsIter struct {
	h *Hosts
	i int
}

func (it *hostsIter) Next(p *starlark.Value) bool {
	if it.i >= len(it.h.contexts) {
		return false
	}
	*p = it.h.contexts[it.i]
	it.i++
	return true
}

func (it *hostsIter) Done() {}

// Result is one host's outcome of each (type "result"): host, ok, value,
// error, changed, elapsed.
type Result struct {
	host    string
	ok      bool
	value   starlark.Value
	err     *builtins.Error
	changed bool
	elapsed float64
}

var _ starlark.HasAttrs = (*Result)(nil)

func (r *Result) String() string {
	if r.ok {
		return fmt.Sprintf("result(host=%q, ok=True, changed=%t, value=%s)", r.host, r.changed, r.value)
	}
	return fmt.Sprintf("result(host=%q, ok=False, error=%s)", r.host, r.err)
}
func (r *Result) Type() string          { return "result" }
func (r *Result) Freeze()               { r.value.Freeze() }
func (r *Result) Truth() starlark.Bool  { return starlark.Bool(r.ok) }
func (r *Result) Hash() (uint32, error) { return 0, fmt.Errorf("unhashable type: result") }

// Attr returns the result's fields.
func (r *Result) Attr(name string) (starlark.Value, error) {
	switch name {
	case "host":
		return starlark.String(r.host), nil
	case "ok":
		return starlark.Bool(r.ok), nil
	case "value":
		return r.value, nil
	case "error":
		if r.err == nil {
			return starlark.None, nil
		}
		return r.err, nil
	case "changed":
		return starlark.Bool(r.changed), nil
	case "elapsed":
		return starlark.Float(r.elapsed), nil
	}
	return nil, nil
}

// AttrNames lists the fields of a result.
func (r *Result) AttrNames() []string {
	return []string{"changed", "elapsed", "error", "host", "ok", "value"}
}

// Package inventory reads the hosts a mitostar run targets: Ansible's INI
// and YAML inventory formats, comma-separated host lists, and Starlark
// inventories (a .star file whose top level defines hosts and groups).
// It keeps Ansible's model — groups with child groups, host and group
// variables, the implicit groups all and ungrouped — merges a host's
// variables as Ansible does (all < parent groups < child groups < host),
// and selects hosts with Ansible's pattern syntax (web:&prod:!web3,
// web[0:2], globs, ~regex) narrowed by a --limit.
//
// An Inventory is built once (Load, Parse) and then only read, so it is
// safe for concurrent use.
package inventory

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// An Inventory holds hosts and groups in the order they were declared.
type Inventory struct {
	hosts       []*Host
	hostByName  map[string]*Host
	groups      []*Group
	groupByName map[string]*Group
	limit       []string // --limit patterns, already split
	implicit    *Host    // localhost when a pattern names it and no source did
}

// A Host is one inventory host.
type Host struct {
	Name     string
	vars     map[string]any // its own variables
	fileVars map[string]any // from host_vars (varsdirs.go)
	groups   []*Group       // groups it was put in directly
	implicit bool
	inv      *Inventory
}

// A Group is a named set of hosts and child groups with variables.
type Group struct {
	Name     string
	vars     map[string]any
	fileVars map[string]any // from group_vars (varsdirs.go)
	hosts    []*Host
	children []*Group
	parents  []*Group
	depth    int // 0 for all; a child is deeper than every parent
}

// New returns an empty inventory: the groups all and ungrouped, no hosts.
func New() *Inventory {
	inv := &Inventory{hostByName: map[string]*Host{}, groupByName: map[string]*Group{}}
	all := inv.addGroup("all")
	ungrouped := inv.addGroup("ungrouped")
	if err := all.addChild(ungrouped); err != nil {
		panic(err) // cannot happen: two fresh groups
	}
	return inv
}

// Load reads each source in order into one inventory. A source is a file
// (its format chosen by Parse), a directory (every file in it, by name,
// skipping hidden files, backups and the extensions Ansible skips), or a
// comma-separated host list such as "web1,web2," (Ansible's host_list
// form). Then come the group_vars and host_vars beside each source
// (varsdirs.go).
func Load(sources ...string) (*Inventory, error) {
	inv := New()
	for _, src := range sources {
		if err := inv.loadSource(src); err != nil {
			return nil, err
		}
	}
	inv.reconcile()
	var bases []string
	for _, src := range sources {
		if base := varsBase(src); base != "" && !slices.Contains(bases, base) {
			bases = append(bases, base)
			if err := inv.loadVarsDirs(base); err != nil {
				return nil, err
			}
		}
	}
	return inv, nil
}

// ignoredInDirs are the extensions of files that a directory given as an
// inventory source does not read, as Ansible's INVENTORY_IGNORE_EXTS
// (.ini among them: Ansible reads an INI file only when named).
var ignoredInDirs = []string{".pyc", ".pyo", ".swp", ".bak", ".rpm", ".md", ".txt", ".rst", ".orig", ".ini", ".cfg", ".retry"}

func (inv *Inventory) loadSource(src string) error {
	st, err := os.Stat(src)
	if err != nil {
		if strings.Contains(src, ",") {
			return inv.parseHostList(src)
		}
		return fmt.Errorf("inventory: %w", err)
	}
	if !st.IsDir() {
		data, err := os.ReadFile(src)
		if err != nil {
			return fmt.Errorf("inventory: %w", err)
		}
		return inv.parse(src, data)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || strings.HasSuffix(name, "~") ||
			slices.Contains(ignoredInDirs, filepath.Ext(name)) {
			continue
		}
		if err := inv.loadSource(filepath.Join(src, name)); err != nil {
			return err
		}
	}
	return nil
}

// Parse reads one inventory from data; name (a file name) chooses the
// format: .star is a Starlark inventory, .yml, .yaml and .json are YAML,
// and any other name is YAML when the document is a mapping and INI
// otherwise (as Ansible tries its YAML plugin before its INI plugin).
func Parse(name string, data []byte) (*Inventory, error) {
	inv := New()
	if err := inv.parse(name, data); err != nil {
		return nil, err
	}
	inv.reconcile()
	return inv, nil
}

func (inv *Inventory) parse(name string, data []byte) error {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".star":
		return inv.parseStarlark(name, data)
	case ".yml", ".yaml", ".json":
		return inv.parseYAML(name, data)
	}
	if looksLikeYAMLMapping(data) {
		return inv.parseYAML(name, data)
	}
	return inv.parseINI(name, data)
}

// parseHostList reads "host1,host2:2222,host3" into the group ungrouped.
func (inv *Inventory) parseHostList(list string) error {
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		names, port, err := expandHostPattern(item)
		if err != nil {
			return fmt.Errorf("inventory: host list %q: %w", list, err)
		}
		for _, n := range names {
			h := inv.addHost(n, inv.groupByName["ungrouped"])
			if port != nil {
				h.vars["ansible_port"] = int64(*port)
			}
		}
	}
	return nil
}

func (inv *Inventory) addGroup(name string) *Group {
	if g, ok := inv.groupByName[name]; ok {
		return g
	}
	g := &Group{Name: name, vars: map[string]any{}}
	inv.groups = append(inv.groups, g)
	inv.groupByName[name] = g
	return g
}

// addHost adds name (once) and puts it in g (when not nil).
func (inv *Inventory) addHost(name string, g *Group) *Host {
	h, ok := inv.hostByName[name]
	if !ok {
		h = &Host{Name: name, vars: map[string]any{}, inv: inv}
		inv.hosts = append(inv.hosts, h)
		inv.hostByName[name] = h
	}
	if g != nil && !slices.Contains(g.hosts, h) {
		g.hosts = append(g.hosts, h)
		h.groups = append(h.groups, g)
	}
	return h
}

// addChild makes c a child of g, refusing a loop.
func (g *Group) addChild(c *Group) error {
	if g == c {
		return fmt.Errorf("group %q cannot be its own child", g.Name)
	}
	if slices.Contains(g.children, c) {
		return nil
	}
	if g.hasAncestor(c) {
		return fmt.Errorf("adding group %q as a child of %q makes a loop", c.Name, g.Name)
	}
	g.children = append(g.children, c)
	c.parents = append(c.parents, g)
	c.deepen(g.depth + 1)
	return nil
}

func (g *Group) hasAncestor(a *Group) bool {
	for _, p := range g.parents {
		if p == a || p.hasAncestor(a) {
			return true
		}
	}
	return false
}

func (g *Group) deepen(d int) {
	if d <= g.depth {
		return
	}
	g.depth = d
	for _, c := range g.children {
		c.deepen(d + 1)
	}
}

// reconcile applies Ansible's rules once every source is read: a group
// without a parent is a child of all, and a host in no group but all is
// in ungrouped (and only those).
func (inv *Inventory) reconcile() {
	all, ungrouped := inv.groupByName["all"], inv.groupByName["ungrouped"]
	for _, g := range inv.groups {
		if g != all && len(g.parents) == 0 {
			all.addChild(g)
		}
	}
	if inv.hostByName["localhost"] == nil {
		// Patterns may name localhost when no source declares it: it
		// connects locally, as in Ansible, and is in no group.
		inv.implicit = &Host{Name: "localhost", vars: map[string]any{"ansible_connection": "local"}, implicit: true, inv: inv}
	} else {
		inv.implicit = nil
	}
	for _, h := range inv.hosts {
		other := false
		for _, g := range h.groups {
			if g != all && g != ungrouped {
				other = true
			}
		}
		if other {
			h.removeFrom(ungrouped)
		} else {
			inv.addHost(h.Name, ungrouped)
		}
	}
}

func (h *Host) removeFrom(g *Group) {
	if i := slices.Index(g.hosts, h); i >= 0 {
		g.hosts = slices.Delete(g.hosts, i, i+1)
	}
	if i := slices.Index(h.groups, g); i >= 0 {
		h.groups = slices.Delete(h.groups, i, i+1)
	}
}

// Hosts returns every host in inventory order (the order of all).
func (inv *Inventory) Hosts() []*Host { return inv.groupByName["all"].Hosts() }

// Host returns the host called name, or nil.
func (inv *Inventory) Host(name string) *Host { return inv.hostByName[name] }

// Groups returns every group in declaration order, all and ungrouped first.
func (inv *Inventory) Groups() []*Group { return slices.Clone(inv.groups) }

// Group returns the group called name, or nil.
func (inv *Inventory) Group(name string) *Group { return inv.groupByName[name] }

// Hosts returns the group's hosts and those of its descendants, each
// once: its own first, then its children's level by level, as Ansible
// lists them.
func (g *Group) Hosts() []*Host {
	var out []*Host
	seen := map[*Host]bool{}
	for _, d := range g.descendants() {
		for _, h := range d.hosts {
			if !seen[h] {
				seen[h] = true
				out = append(out, h)
			}
		}
	}
	return out
}

// descendants returns g and the groups below it, breadth first.
func (g *Group) descendants() []*Group {
	out := []*Group{g}
	seen := map[*Group]bool{g: true}
	for i := 0; i < len(out); i++ {
		for _, c := range out[i].children {
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
			}
		}
	}
	return out
}

// Children returns the names of the group's direct child groups.
func (g *Group) Children() []string {
	out := make([]string, len(g.children))
	for i, c := range g.children {
		out[i] = c.Name
	}
	return out
}

// DirectHosts returns the names of the hosts put in the group itself.
func (g *Group) DirectHosts() []string {
	out := make([]string, len(g.hosts))
	for i, h := range g.hosts {
		out[i] = h.Name
	}
	return out
}

// Vars returns a copy of the group's own variables: the inventory's,
// then its group_vars.
func (g *Group) Vars() map[string]any { return merged(g.vars, g.fileVars) }

// OwnVars returns a copy of the variables set on the host itself: the
// inventory's, then its host_vars.
func (h *Host) OwnVars() map[string]any { return merged(h.vars, h.fileVars) }

// merged returns a new map of a's entries and then b's.
func merged(a, b map[string]any) map[string]any {
	out := make(map[string]any, len(a)+len(b))
	maps.Copy(out, a)
	maps.Copy(out, b)
	return out
}

// ancestors returns every group the host belongs to, directly or through
// child groups, all included.
func (h *Host) ancestors() []*Group {
	var out []*Group
	seen := map[*Group]bool{}
	var walk func(g *Group)
	walk = func(g *Group) {
		if seen[g] {
			return
		}
		seen[g] = true
		out = append(out, g)
		for _, p := range g.parents {
			walk(p)
		}
	}
	for _, g := range h.groups {
		walk(g)
	}
	if all := h.inv.groupByName["all"]; !seen[all] {
		out = append(out, all)
	}
	return out
}

// Groups returns the names of the groups the host belongs to, directly
// or through child groups, sorted, without all (Ansible's group_names).
func (h *Host) Groups() []string {
	var out []string
	for _, g := range h.ancestors() {
		if g.Name != "all" {
			out = append(out, g.Name)
		}
	}
	sort.Strings(out)
	return out
}

// Vars returns the host's variables merged as Ansible merges them: the
// groups it belongs to from the shallowest (all) to the deepest, groups
// of equal depth by ansible_group_priority and then by name, and the
// host's own variables last. Variables from group_vars and host_vars
// files come after those the inventory sets at the same level: all's
// inventory variables, then its group_vars, then the other groups'
// inventory variables, then their group_vars, then the host's inventory
// variables and last its host_vars. Values are not copied deeply.
func (h *Host) Vars() map[string]any {
	groups := h.ancestors()
	sort.SliceStable(groups, func(i, j int) bool {
		a, b := groups[i], groups[j]
		if a.depth != b.depth {
			return a.depth < b.depth
		}
		if pa, pb := a.priority(), b.priority(); pa != pb {
			return pa < pb
		}
		return a.Name < b.Name
	})
	out := map[string]any{}
	all, rest := groups[0], groups[1:] // all is the shallowest
	maps.Copy(out, all.vars)
	delete(out, "ansible_group_priority")
	maps.Copy(out, all.fileVars)
	for _, g := range rest {
		maps.Copy(out, g.vars)
	}
	// ansible_group_priority orders groups; it is not a host variable.
	delete(out, "ansible_group_priority")
	for _, g := range rest {
		maps.Copy(out, g.fileVars)
	}
	maps.Copy(out, h.vars)
	maps.Copy(out, h.fileVars)
	return out
}

// priority is ansible_group_priority (default 1).
func (g *Group) priority() int64 {
	switch v := g.vars["ansible_group_priority"].(type) {
	case int64:
		return v
	case string:
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n
		}
	}
	return 1
}

package inventory

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// Ansible's host_group_vars: beside each inventory source (in the file's
// directory, or in the directory given as a source) group_vars/NAME holds
// the variables of group NAME and host_vars/NAME those of host NAME. NAME
// is a YAML or JSON file, named NAME, NAME.yml, NAME.yaml or NAME.json,
// or a directory whose files (with those extensions or none, in name
// order, recursively) are read one after another. These variables take
// precedence over those the inventory file sets for the same group or
// host (Host.Vars).

// varsExtensions are the names tried after NAME itself, in Ansible's order.
var varsExtensions = []string{".yml", ".yaml", ".json"}

// varsBase returns the directory whose group_vars and host_vars apply to
// the source src, or "" for a host list.
func varsBase(src string) string {
	st, err := os.Stat(src)
	switch {
	case err != nil:
		return "" // a host list such as "web1,web2,"
	case st.IsDir():
		return src
	default:
		return filepath.Dir(src)
	}
}

// loadVarsDirs reads base/group_vars and base/host_vars for every group
// and host of the inventory.
func (inv *Inventory) loadVarsDirs(base string) error {
	for _, g := range inv.groups {
		if err := mergeVarsEntry(&g.fileVars, filepath.Join(base, "group_vars"), g.Name); err != nil {
			return err
		}
	}
	for _, h := range inv.hosts {
		if err := mergeVarsEntry(&h.fileVars, filepath.Join(base, "host_vars"), h.Name); err != nil {
			return err
		}
	}
	return nil
}

// mergeVarsEntry copies the variables dir/name gives into *dst, making
// the map when there are some.
func mergeVarsEntry(dst *map[string]any, dir, name string) error {
	vars, err := readVarsEntry(dir, name)
	if err != nil || len(vars) == 0 {
		return err
	}
	if *dst == nil {
		*dst = map[string]any{}
	}
	maps.Copy(*dst, vars)
	return nil
}

// readVarsEntry reads the variables dir/NAME gives, merged in file order;
// none when nothing of that name exists.
func readVarsEntry(dir, name string) (map[string]any, error) {
	var files []string
	for _, ext := range append([]string{""}, varsExtensions...) {
		p := filepath.Join(dir, name+ext)
		st, err := os.Stat(p)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("inventory: %w", err)
		}
		if !st.IsDir() {
			files = append(files, p)
			break
		}
		more, err := varsDirFiles(p)
		if err != nil {
			return nil, err
		}
		files = append(files, more...)
	}
	var out map[string]any
	for _, f := range files {
		vars, err := readVarsFile(f)
		if err != nil {
			return nil, err
		}
		if out == nil {
			out = map[string]any{}
		}
		maps.Copy(out, vars)
	}
	return out, nil
}

// varsDirFiles lists the variable files under dir, recursively, in name
// order, skipping hidden and backup files and other extensions.
func varsDirFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	var out []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || strings.HasSuffix(name, "~") {
			continue
		}
		p := filepath.Join(dir, name)
		if e.IsDir() {
			more, err := varsDirFiles(p)
			if err != nil {
				return nil, err
			}
			out = append(out, more...)
			continue
		}
		if ext := filepath.Ext(name); ext == "" || slices.Contains(varsExtensions, ext) {
			out = append(out, p)
		}
	}
	return out, nil
}

// readVarsFile reads one file of variables: a YAML (or JSON) mapping, or
// nothing.
func readVarsFile(path string) (map[string]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	return parseYAMLVars(path, data)
}

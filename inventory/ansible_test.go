package inventory

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mitostar/mitostar/internal/testbed"
)

// ansibleEnv runs Ansible's tools with their temporary files under dir
// and no configuration from the machine.
func ansibleEnv(dir string) []string {
	cfg := filepath.Join(dir, "ansible.cfg")
	os.WriteFile(cfg, nil, 0o644)
	return append(os.Environ(), "ANSIBLE_LOCAL_TEMP="+dir, "ANSIBLE_REMOTE_TEMP="+dir, "ANSIBLE_CONFIG="+cfg,
		"ANSIBLE_INVENTORY_UNPARSED_WARNING=False", "ANSIBLE_LOCALHOST_WARNING=False", "ANSIBLE_NOCOLOR=1", "HOME="+dir)
}

func runAnsible(t *testing.T, dir string, argv ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = ansibleEnv(dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, stderr.String())
	}
	return string(out)
}

// normalize makes JSON-shaped data comparable: numbers as float64 and
// Ansible's {"__ansible_unsafe": s} as s.
func normalize(t *testing.T, v any) any {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	var walk func(any) any
	walk = func(v any) any {
		switch x := v.(type) {
		case map[string]any:
			if s, ok := x["__ansible_unsafe"]; ok && len(x) == 1 {
				return s
			}
			for k, e := range x {
				x[k] = walk(e)
			}
		case []any:
			for i, e := range x {
				x[i] = walk(e)
			}
		}
		return v
	}
	return walk(out)
}

// TestAgainstAnsibleInventory reads every INI and YAML file of testdata
// with this package and with ansible-inventory --list, and compares the
// groups (their hosts and children, in order) and each host's merged
// variables.
func TestAgainstAnsibleInventory(t *testing.T) {
	testbed.Require(t, "ansible-inventory")
	files, _ := filepath.Glob("testdata/*")
	// A directory source (its group_vars and host_vars inside it) and the
	// same inventory named as a file (its directory's group_vars apply).
	files = append(files, "testdata/varsdirs/hosts")
	dir := t.TempDir()
	compared := 0
	for _, f := range files {
		if strings.HasSuffix(f, ".star") {
			continue
		}
		t.Run(filepath.Base(f), func(t *testing.T) {
			out := runAnsible(t, dir, "ansible-inventory", "-i", f, "--list")
			var listed map[string]struct {
				Hosts    []string                  `json:"hosts"`
				Children []string                  `json:"children"`
				HostVars map[string]map[string]any `json:"hostvars"`
			}
			if err := json.Unmarshal([]byte(out), &listed); err != nil {
				t.Fatalf("ansible-inventory output: %v\n%s", err, out)
			}
			inv, err := Load(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, g := range inv.Groups() {
				want := listed[g.Name]
				// --list shows the hosts of all under ungrouped only.
				if got := g.DirectHosts(); g.Name != "all" && !slices.Equal(got, want.Hosts) && len(got)+len(want.Hosts) > 0 {
					t.Errorf("group %s: hosts %q, ansible-inventory says %q", g.Name, got, want.Hosts)
				}
				if got := g.Children(); !slices.Equal(got, want.Children) && len(got)+len(want.Children) > 0 {
					t.Errorf("group %s: children %q, ansible-inventory says %q", g.Name, got, want.Children)
				}
			}
			for name := range listed {
				if name != "_meta" && inv.Group(name) == nil {
					t.Errorf("ansible-inventory has group %s, this package has not", name)
				}
			}
			// hostvars lists the hosts that have variables.
			hostvars := listed["_meta"].HostVars
			withVars := 0
			for _, h := range inv.Hosts() {
				want, ok := hostvars[h.Name]
				if !ok {
					want = map[string]any{}
				} else {
					withVars++
				}
				if got := normalize(t, h.Vars()); !reflect.DeepEqual(got, normalize(t, want)) {
					t.Errorf("host %s vars\n got %v\nansible-inventory %v", h.Name, got, want)
				}
			}
			if withVars != len(hostvars) {
				t.Errorf("ansible-inventory lists the variables of %d hosts, %d of them known here", len(hostvars), withVars)
			}
		})
		compared++
	}
	if compared < 6 {
		t.Fatalf("compared only %d files", compared)
	}
}

// TestPatternsAgainstAnsible compares Match, every pattern form and
// --limit, with what `ansible PATTERN --list-hosts` selects, in order.
func TestPatternsAgainstAnsible(t *testing.T) {
	testbed.Require(t, "ansible")
	dir := t.TempDir()
	cases := []struct{ file, pattern, limit string }{
		{"prodtest.yml", "all", ""},
		{"prodtest.yml", "webservers:dbservers", ""},
		{"prodtest.yml", "webservers,dbservers", ""},
		{"prodtest.yml", "webservers:&prod", ""},
		{"prodtest.yml", "dbservers:!east", ""},
		{"prodtest.yml", "!east", ""},
		{"prodtest.yml", "dbservers[-1]", ""},
		{"prodtest.yml", "dbservers[0:1]", ""},
		{"prodtest.yml", "dbservers[1:]", ""},
		{"prodtest.yml", "*.example.com:!t*", ""},
		{"prodtest.yml", `~(foo|bar)\.`, ""},
		{"prodtest.yml", "we*", ""},
		{"prodtest.yml", "prod:test:&dbservers", ""},
		{"prodtest.yml", "all", "east:!two.example.com"},
		{"children.ini", "usa", ""},
		{"children.ini", "southeast:!raleigh", "host1,host3"},
		{"ranges.ini", "webservers[2:4]:databases[a:c]", ""},
		{"ranges.ini", "~www0[1-3]", "webservers"},
	}
	for _, c := range cases {
		argv := []string{"ansible", "-i", filepath.Join("testdata", c.file), c.pattern, "--list-hosts"}
		if c.limit != "" {
			argv = append(argv, "--limit", c.limit)
		}
		var want []string
		for _, line := range strings.Split(runAnsible(t, dir, argv...), "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "hosts (") {
				want = append(want, line)
			}
		}
		inv := load(t, c.file)
		if err := inv.SetLimit(c.limit); err != nil {
			t.Fatal(err)
		}
		hosts, err := inv.Match(c.pattern)
		if err != nil {
			t.Errorf("%s %q: %v", c.file, c.pattern, err)
			continue
		}
		if got := names(hosts); !slices.Equal(got, want) {
			t.Errorf("%s %q --limit %q: %q, ansible says %q", c.file, c.pattern, c.limit, got, want)
		}
	}
}

package inventory

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func load(t *testing.T, files ...string) *Inventory {
	t.Helper()
	var paths []string
	for _, f := range files {
		paths = append(paths, filepath.Join("testdata", f))
	}
	inv, err := Load(paths...)
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func names(hosts []*Host) []string {
	out := make([]string, len(hosts))
	for i, h := range hosts {
		out[i] = h.Name
	}
	return out
}

func match(t *testing.T, inv *Inventory, pattern string) []string {
	t.Helper()
	hosts, err := inv.Match(pattern)
	if err != nil {
		t.Fatalf("Match(%q): %v", pattern, err)
	}
	return names(hosts)
}

func TestBasicINIAndYAMLAgree(t *testing.T) {
	for _, f := range []string{"basic.ini", "basic.yml"} {
		t.Run(f, func(t *testing.T) {
			inv := load(t, f)
			want := []string{"mail.example.com", "foo.example.com", "bar.example.com", "one.example.com", "two.example.com", "three.example.com"}
			if got := names(inv.Hosts()); !slices.Equal(got, want) {
				t.Errorf("hosts %q, want %q", got, want)
			}
			if got := inv.Group("ungrouped").DirectHosts(); !slices.Equal(got, []string{"mail.example.com"}) {
				t.Errorf("ungrouped %q", got)
			}
			if got := inv.Group("all").Children(); !slices.Equal(got, []string{"ungrouped", "webservers", "dbservers"}) {
				t.Errorf("all's children %q", got)
			}
			if got := inv.Host("foo.example.com").Groups(); !slices.Equal(got, []string{"webservers"}) {
				t.Errorf("foo's groups %q", got)
			}
		})
	}
}

func TestRangesPortsAndAliases(t *testing.T) {
	inv := load(t, "ranges.ini")
	web := inv.Group("webservers").DirectHosts()
	if len(web) != 50 || web[0] != "www01.example.com" || web[49] != "www50.example.com" {
		t.Errorf("webservers: %d hosts, %q ... %q", len(web), web[0], web[len(web)-1])
	}
	if got := inv.Group("databases").DirectHosts(); !slices.Equal(got, []string{"db-a.example.com", "db-b.example.com", "db-c.example.com", "db-d.example.com", "db-e.example.com", "db-f.example.com"}) {
		t.Errorf("databases %q", got)
	}
	stepped := inv.Group("stepped").DirectHosts()
	if len(stepped) != 25 || stepped[1] != "www03.example.com" {
		t.Errorf("stepped %q", stepped)
	}
	if v := inv.Host("jumper").Vars(); v["ansible_port"] != int64(5555) || v["ansible_host"] != "192.0.2.50" {
		t.Errorf("jumper vars %v", v)
	}
	if v := inv.Host("badwolf.example.com").Vars(); v["ansible_port"] != int64(5309) {
		t.Errorf("badwolf vars %v", v)
	}
	if v := inv.Host("localhost").Vars(); v["ansible_connection"] != "local" {
		t.Errorf("localhost vars %v", v)
	}
}

func TestChildrenAndGroupVars(t *testing.T) {
	inv := load(t, "children.ini")
	if got := match(t, inv, "southeast"); !slices.Equal(got, []string{"host1", "host2", "host3"}) {
		t.Errorf("southeast %q", got)
	}
	if got := match(t, inv, "usa"); !slices.Equal(got, []string{"host1", "host2", "host3"}) {
		t.Errorf("usa %q", got)
	}
	v := inv.Host("host1").Vars()
	if v["ntp_server"] != "ntp.atlanta.example.com" || v["escape_pods"] != int64(2) || v["halon_system_timeout"] != int64(30) {
		t.Errorf("host1 vars %v", v)
	}
	if _, ok := inv.Host("host3").Vars()["ntp_server"]; ok {
		t.Errorf("host3 has atlanta's ntp_server")
	}
	if got := inv.Host("host2").Groups(); !slices.Equal(got, []string{"atlanta", "raleigh", "southeast", "usa"}) {
		t.Errorf("host2 groups %q", got)
	}
	if inv.Group("ungrouped").DirectHosts() != nil && len(inv.Group("ungrouped").DirectHosts()) != 0 {
		t.Errorf("ungrouped %q", inv.Group("ungrouped").DirectHosts())
	}
}

func TestVariablePrecedence(t *testing.T) {
	inv := load(t, "precedence.yml")
	cases := []struct {
		host string
		want map[string]any
	}{
		{"h1", map[string]any{"level": "host", "from_all": int64(1), "from_parent": int64(2), "from_child": int64(3), "ansible_user": "deploy"}},
		// child is deeper than zeta and beta; beta's priority beats zeta's name.
		{"h2", map[string]any{"level": "child", "from_all": int64(1), "from_parent": int64(2), "from_child": int64(3), "ansible_user": "deploy", "sibling": "beta"}},
		// alpha < zeta by name at equal depth and priority.
		{"h3", map[string]any{"level": "all", "from_all": int64(1), "ansible_user": "deploy", "sibling": "zeta"}},
	}
	for _, c := range cases {
		if got := inv.Host(c.host).Vars(); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s vars\n got %v\nwant %v", c.host, got, c.want)
		}
	}
}

func TestINIValues(t *testing.T) {
	inv := load(t, "values.ini")
	want := map[string]any{
		"an_int": int64(80), "a_float": 1.5, "a_bool": true, "a_word": "yes",
		"a_list": []any{int64(1), "two"}, "a_dict": map[string]any{"k": int64(3)},
		"spaced": "hello world", "octal_word": "007", "hex": int64(31), "none": nil, "neg": int64(-4),
		"s": "single quoted", "c": "plain text # not a comment", "n": int64(42), "l": []any{"a", "b"},
	}
	if got := inv.Host("h1").Vars(); !reflect.DeepEqual(got, want) {
		t.Errorf("h1 vars\n got %#v\nwant %#v", got, want)
	}
	h2 := inv.Host("h2").Vars()
	if h2["quoted"] != "q" || h2["under"] != int64(1000) || h2["expo"] != 1000.0 || h2["path"] != "/etc/hosts" {
		t.Errorf("h2 vars %#v", h2)
	}
}

func TestYAMLValues(t *testing.T) {
	inv := load(t, "values.yml")
	want := map[string]any{
		"on_word": true, "yes_word": true, "quoted_yes": "yes", "octal": int64(493), "hexa": int64(16),
		"sexa": int64(90), "fl": 1500.0, "nul": nil, "nested": map[string]any{"a": []any{int64(1), int64(2), map[string]any{"b": "c"}}},
		"unsafe": "{{ x }}", "text": "two\nlines\n",
	}
	if got := inv.Host("y1").Vars(); !reflect.DeepEqual(got, want) {
		t.Errorf("y1 vars\n got %#v\nwant %#v", got, want)
	}
}

func TestStarlarkInventory(t *testing.T) {
	inv := load(t, "hosts.star")
	if got := names(inv.Hosts()); !slices.Equal(got, []string{"bastion", "web01", "web02", "web03", "db1"}) {
		t.Errorf("hosts %q", got)
	}
	if got := match(t, inv, "prod"); !slices.Equal(got, []string{"web01", "web02", "web03", "db1"}) {
		t.Errorf("prod %q", got)
	}
	v := inv.Host("web02").Vars()
	if v["http_port"] != int64(8002) || v["env"] != "prod-web" || v["ntp"] != "ntp.example.com" {
		t.Errorf("web02 vars %v", v)
	}
	if got := inv.Host("bastion").Groups(); !slices.Equal(got, []string{"ungrouped"}) {
		t.Errorf("bastion groups %q", got)
	}
}

func TestPatterns(t *testing.T) {
	inv := load(t, "prodtest.yml")
	cases := map[string][]string{
		"all":                              {"mail.example.com", "foo.example.com", "bar.example.com", "one.example.com", "two.example.com", "three.example.com"},
		"*":                                {"mail.example.com", "foo.example.com", "bar.example.com", "one.example.com", "two.example.com", "three.example.com"},
		"webservers":                       {"foo.example.com", "bar.example.com"},
		"webservers:dbservers":             {"foo.example.com", "bar.example.com", "one.example.com", "two.example.com", "three.example.com"},
		"webservers,dbservers":             {"foo.example.com", "bar.example.com", "one.example.com", "two.example.com", "three.example.com"},
		"webservers:&prod":                 {"foo.example.com"},
		"dbservers:!east":                  {"three.example.com"},
		"!east":                            {"mail.example.com", "bar.example.com", "three.example.com"},
		"dbservers[0]":                     {"one.example.com"},
		"dbservers[-1]":                    {"three.example.com"},
		"dbservers[0:1]":                   {"one.example.com", "two.example.com"},
		"dbservers[1:]":                    {"two.example.com", "three.example.com"},
		"*.example.com:!t*":                {"mail.example.com", "foo.example.com", "one.example.com"},
		"~(foo|bar)\\.":                    {"foo.example.com", "bar.example.com"},
		"we*":                              {"foo.example.com", "bar.example.com", "three.example.com"},
		"one.example.com:mail.example.com": {"one.example.com", "mail.example.com"},
		"nothing":                          nil,
		"prod:test:&dbservers":             {"one.example.com", "two.example.com", "three.example.com"},
		"localhost":                        {"localhost"},
	}
	for p, want := range cases {
		if got := match(t, inv, p); !slices.Equal(got, want) {
			t.Errorf("Match(%q) = %q, want %q", p, got, want)
		}
	}
	if _, err := inv.Match("dbservers[7]"); err == nil || !strings.Contains(err.Error(), "subscripted") {
		t.Errorf("out-of-range subscript: %v", err)
	}
	if _, err := inv.Match("~web(("); err == nil || !strings.Contains(err.Error(), "invalid host pattern") {
		t.Errorf("bad regexp: %v", err)
	}
}

func TestLimit(t *testing.T) {
	inv := load(t, "prodtest.yml")
	if err := inv.SetLimit("east:!two.example.com"); err != nil {
		t.Fatal(err)
	}
	if got := match(t, inv, "all"); !slices.Equal(got, []string{"foo.example.com", "one.example.com"}) {
		t.Errorf("all limited %q", got)
	}
	if got := match(t, inv, "dbservers"); !slices.Equal(got, []string{"one.example.com"}) {
		t.Errorf("dbservers limited %q", got)
	}
	file := filepath.Join(t.TempDir(), "retry")
	os.WriteFile(file, []byte("bar.example.com\nthree.example.com\n"), 0o644)
	if err := inv.SetLimit("@" + file); err != nil {
		t.Fatal(err)
	}
	if got := match(t, inv, "all"); !slices.Equal(got, []string{"bar.example.com", "three.example.com"}) {
		t.Errorf("all limited by file %q", got)
	}
	if err := inv.SetLimit("@/nonexistent/file"); err == nil {
		t.Error("a missing limit file is not an error")
	}
}

func TestMultipleSourcesAndHostList(t *testing.T) {
	inv, err := Load(filepath.Join("testdata", "basic.ini"), "extra1,extra2:2222,")
	if err != nil {
		t.Fatal(err)
	}
	if got := inv.Group("ungrouped").DirectHosts(); !slices.Equal(got, []string{"mail.example.com", "extra1", "extra2"}) {
		t.Errorf("ungrouped %q", got)
	}
	if v := inv.Host("extra2").Vars(); v["ansible_port"] != int64(2222) {
		t.Errorf("extra2 vars %v", v)
	}
}

func TestBadInput(t *testing.T) {
	cases := map[string]string{
		"x.ini":  "[web:children]\nnope\n",
		"y.ini":  "[web:weird]\nh1\n",
		"z.ini":  "[web]\nh1 novalue\n",
		"v.ini":  "[ghost:vars]\na=1\n",
		"q.ini":  "[web]\nh1 a='unterminated\n",
		"r.ini":  "[web]\nh[5:1]\n",
		"l.ini":  "[a:children]\nb\n[b:children]\na\n",
		"a.yml":  "- just\n- a list\n",
		"b.yml":  "web:\n  host:\n    h1:\n",
		"c.yml":  "web:\n  hosts: [h1, h2]\n",
		"d.star": "hosts = 3\n",
		"e.star": "fail('boom')\n",
		"f.star": "x = 1\n",
		"g.star": "groups = {'a': 'h1'}\n",
	}
	for name, src := range cases {
		if _, err := Parse(name, []byte(src)); err == nil {
			t.Errorf("%s: no error for %q", name, src)
		} else if !strings.Contains(err.Error(), name) {
			t.Errorf("%s: error does not name the file: %v", name, err)
		}
	}
}

func TestFormatDetection(t *testing.T) {
	inv, err := Parse("hosts", []byte("web:\n  hosts:\n    h1:\n"))
	if err != nil || inv.Group("web") == nil {
		t.Fatalf("YAML without extension: %v", err)
	}
	inv, err = Parse("hosts", []byte("h1\n[web]\nh2\n"))
	if err != nil || inv.Group("web") == nil || inv.Host("h1") == nil {
		t.Fatalf("INI without extension: %v", err)
	}
}

func TestPyValue(t *testing.T) {
	cases := map[string]any{
		"42": int64(42), "-1.5": -1.5, "0o17": int64(15), "0b101": int64(5), "True": true, "None": nil,
		"'a' 'b'": "ab", `"tab\there"`: "tab\there", "r'\\d'": `\d`, "(1,)": []any{int64(1)}, "(1)": int64(1),
		"{1, 2}": []any{int64(1), int64(2)}, "{'a': [1, {'b': None}]}": map[string]any{"a": []any{int64(1), map[string]any{"b": nil}}},
		"yes": "yes", "1 2": "1 2", "007": "007", "00": int64(0), "1_0": int64(10), "1__0": "1__0", "[1,": "[1,",
		"f'x'": "f'x'", "12abc": "12abc", "1.2.3": "1.2.3", "0x": "0x", "x=1": "x=1", "[1, 2,]": []any{int64(1), int64(2)},
	}
	for in, want := range cases {
		if got := pyValue(in); !reflect.DeepEqual(got, want) {
			t.Errorf("pyValue(%q) = %#v, want %#v", in, got, want)
		}
	}
}

func TestShlexSplit(t *testing.T) {
	got, err := shlexSplit(`h1 a="x y" b='p q' c=d\ e # comment`)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"h1", "a=x y", "b=p q", "c=d e"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if _, err := shlexSplit(`h1 a="open`); err == nil {
		t.Error("an open quote is not an error")
	}
}

// TestVarsDirs: group_vars and host_vars beside the inventory, with
// Ansible's precedence, and a bad file named in the error.
func TestVarsDirs(t *testing.T) {
	inv, err := Load("testdata/varsdirs/hosts")
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]map[string]any{
		// prod's group_vars beat web's inventory vars; the host's
		// inventory vars beat every group_vars; host_vars beat all.
		"web1": {"tier": "prod-file", "http_port": int64(9000), "packages": []any{"nginx"}, "env": "production-file", "ntp": "ntp.example.com", "mode": int64(0o644)},
		"web2": {"http_port": int64(8081)},
		"db1":  {"port": int64(5433), "env": "db1-file", "tier": "db-json", "backup": true},
	} {
		got := inv.Host(host).Vars()
		for k, v := range want {
			if !reflect.DeepEqual(got[k], v) {
				t.Errorf("%s: %s = %#v, want %#v", host, k, got[k], v)
			}
		}
		if _, ok := got["ignored"]; ok {
			t.Errorf("%s: read a file group_vars/web/ should skip (notes.txt or .hidden.yml)", host)
		}
	}
	if got := inv.Group("web").Vars()["http_port"]; got != int64(8080) {
		t.Errorf("group web's own vars: http_port = %v, want its group_vars' 8080", got)
	}

	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "hosts"), []byte("[web]\nweb1\n"), 0o644)
	os.MkdirAll(filepath.Join(dir, "group_vars"), 0o755)
	os.WriteFile(filepath.Join(dir, "group_vars", "web.yml"), []byte("- not\n- a mapping\n"), 0o644)
	_, err = Load(filepath.Join(dir, "hosts"))
	if err == nil || !strings.Contains(err.Error(), "group_vars/web.yml:1: variables must be a mapping") {
		t.Errorf("a group_vars file that is a list: err = %v", err)
	}
}

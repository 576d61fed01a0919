package ops_test

// Operations on real targets: this machine through a local context (as
// root) and a sudo context (as a test user), and a Debian container.
// Each phase of testdata/scenario.star runs three times, each in a new
// master: in check mode (with diffs shown), for real, and again; check
// mode must change nothing and report exactly what the real run then
// does, and the second real run must change nothing.

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mitostar/mitostar/builtins"
	"github.com/mitostar/mitostar/core"
	"github.com/mitostar/mitostar/internal/testbed"
	"github.com/mitostar/mitostar/runtime"
)

// Children started by these tests are this test binary in the child role.
func TestMain(m *testing.M) {
	core.RunRole()
	testbed.QuickRaceExit()
	os.Exit(m.Run())
}

// runScript runs testdata/SCRIPT in a new master with testdata as its
// module root and returns what it printed; a failure fails the test.
func runScript(t *testing.T, opts runtime.Options, script string, argv ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out, log testbed.SyncBuffer
	r := core.NewMaster(core.Options{Sink: core.NewWriterSink(&log)})
	opts.Roots, opts.Argv, opts.Stdout = append([]string{"testdata"}, opts.Roots...), argv, &out
	rt := runtime.New(r, opts)
	err := rt.RunScript(ctx, filepath.Join("testdata", script))
	r.CloseTimeout(5 * time.Second)
	if strings.Contains(log.String(), "DATA RACE") {
		t.Errorf("a context reported a data race:\n%s", log.String())
	}
	if err != nil {
		t.Fatalf("%s %q: %s\nlog:\n%s", script, argv, builtins.Backtrace(err), log.String())
	}
	return out.String()
}

// result is one operation's record from scenario.star.
type result struct {
	Name      string `json:"name"`
	Changed   bool   `json:"changed"`
	Diff      string `json:"diff"`
	Msg       string `json:"msg"`
	CheckMode bool   `json:"check_mode"`
}

// phase runs a phase of scenario.star on a target and decodes what it
// returned into out; it returns everything the master printed.
func phase(t *testing.T, opts runtime.Options, tgt []string, name string, out any, args ...string) string {
	t.Helper()
	stdout := runScript(t, opts, "scenario.star", append(append(slices.Clone(tgt), name), args...)...)
	i := strings.LastIndex(stdout, "RESULT ")
	if i < 0 {
		t.Fatalf("phase %s printed no result:\n%s", name, stdout)
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(stdout[i+len("RESULT "):])), out); err != nil {
		t.Fatalf("phase %s: %v\n%s", name, err, stdout)
	}
	return stdout
}

// checkThenReal runs a phase in check mode (with diffs shown), for real
// and again, comparing them, with snapshot taken before and after check
// mode; it returns the results of the real run.
func checkThenReal(t *testing.T, tgt []string, name string, snapshot func() any, args ...string) []result {
	t.Helper()
	before := snapshot()
	var check, real, again []result
	shown := phase(t, runtime.Options{CheckMode: true, Diff: true}, tgt, name, &check, args...)
	if after := snapshot(); !equalJSON(before, after) {
		t.Errorf("%s: check mode changed the target:\nbefore %v\nafter  %v", name, before, after)
	}
	phase(t, runtime.Options{}, tgt, name, &real, args...)
	phase(t, runtime.Options{}, tgt, name, &again, args...)
	if len(check) != len(real) || len(again) != len(real) || len(real) == 0 {
		t.Fatalf("%s: %d results in check mode, %d and %d for real", name, len(check), len(real), len(again))
	}
	changes := 0
	for i, r := range real {
		c, a := check[i], again[i]
		switch {
		case !r.Changed:
			t.Errorf("%s %q: the first real run changed nothing: %+v", name, r.Name, r)
		case !c.CheckMode || r.CheckMode:
			t.Errorf("%s %q: check_mode was %v in check mode and %v in the real run", name, r.Name, c.CheckMode, r.CheckMode)
		case c.Changed != r.Changed || c.Diff != r.Diff || c.Msg != "would "+r.Msg:
			t.Errorf("%s %q: check mode said %+v, the real run did %+v", name, r.Name, c, r)
		case a.Changed || a.Diff != "":
			t.Errorf("%s %q: the second real run changed again: %+v", name, r.Name, a)
		}
		if c.Changed {
			changes++
			// --diff shows each change under the context's name.
			if !strings.Contains(shown, ": "+c.Msg+"\n"+c.Diff) {
				t.Errorf("%s %q: the change is not shown with its diff:\n%s", name, r.Name, shown)
			}
		}
	}
	if got := len(regexp.MustCompile(`(?m)^\[target\] ops\.\w+ `).FindAllString(shown, -1)); got != changes {
		t.Errorf("%s: %d changes shown under [target], want %d:\n%s", name, got, changes, shown)
	}
	return real
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// entry is one path of a snapshot.
type entry struct {
	Mode    int     `json:"mode"`
	UID     int     `json:"uid"`
	GID     int     `json:"gid"`
	Target  *string `json:"target"`
	Content *string `json:"content"`
}

// fileScenario runs the file phases in dir on a target; uid and gid are
// what owner and group name, -1 when the scenario gives none (the files
// then belong to defUID:defGID, the context's user).
func fileScenario(t *testing.T, tgt []string, dir, owner, group string, uid, gid, defUID, defGID int) {
	var none []result
	phase(t, runtime.Options{}, tgt, "prepare_files", &none, dir)
	snapshot := func() any {
		var s map[string]entry
		phase(t, runtime.Options{}, tgt, "snapshot", &s, dir)
		return s
	}
	real := checkThenReal(t, tgt, "files", snapshot, dir, owner, group)
	wantMsgs := map[string]string{
		"directory":         "create directory",
		"src":               "create file",
		"template":          "create file",
		"line replace":      "replace line 2",
		"line insert_after": "insert line 2",
		"line absent":       "remove 2 lines",
		"line create":       "create file; insert line 1",
		"block":             "insert block at line 3",
		"link":              "create symlink to app.conf",
		"relink":            "point symlink to motd (was old.txt)",
		"touch":             "create empty file",
		"mode":              "set mode 0o600 (was 0o644)",
		"absent":            "remove file",
		"command creates":   "run echo ran >> log",
		"command unless":    "run sh -c 'echo once > " + dir + "/once'",
	}
	for _, r := range real {
		if want, ok := wantMsgs[r.Name]; ok && r.Msg != want {
			t.Errorf("%s: msg %q, want %q", r.Name, r.Msg, want)
		}
	}
	if r := real[3]; r.Diff != "--- before: "+dir+"/app.conf\n+++ after: "+dir+"/app.conf\n@@ -0,0 +1,5 @@\n"+
		"+# web, rendered by ops.template\n+name = web\n+port = 8080\n+peer = a\n+peer = b\n" {
		t.Errorf("template diff: %q", r.Diff)
	}
	if r := real[4]; r.Diff != "--- before: "+dir+"/replace.conf\n+++ after: "+dir+"/replace.conf\n@@ -1,3 +1,3 @@\n"+
		" # settings\n-port = 80\n+port = 8080\n host = example\n" {
		t.Errorf("line replace diff: %q", r.Diff)
	}

	var s map[string]entry
	phase(t, runtime.Options{}, tgt, "snapshot", &s, dir)
	own := func(id, def int) int {
		if id < 0 {
			return def
		}
		return id
	}
	type want struct {
		mode, uid, gid int
		content        string
	}
	files := map[string]want{
		"conf.d":       {0o750, own(uid, defUID), own(gid, defGID), ""},
		"motd":         {0o640, own(uid, defUID), own(gid, defGID), "welcome\n"},
		"data.txt":     {0o600, defUID, defGID, "data shipped from the module root\nline 2\n"},
		"app.conf":     {0o644, own(uid, defUID), defGID, "# web, rendered by ops.template\nname = web\nport = 8080\npeer = a\npeer = b\n"},
		"replace.conf": {0o644, defUID, defGID, "# settings\nport = 8080\nhost = example\n"},
		"insert.conf":  {0o644, defUID, defGID, "[main]\ndebug = false\nname = x\n[other]\nkey = 1\n"},
		"absent.conf":  {0o644, defUID, defGID, "keep 1\nkeep 2\n"},
		"new.conf":     {0o644, defUID, defGID, "created = yes\n"},
		"block.conf": {0o644, defUID, defGID, "[main]\nname = x\n# BEGIN MITOSTAR MANAGED BLOCK\na = 1\nb = 2\n" +
			"# END MITOSTAR MANAGED BLOCK\n[extra]\nz = 9\n"},
		"stamp":    {0o600, defUID, defGID, ""},
		"mode.txt": {0o600, defUID, defGID, "m\n"},
		"log":      {0o644, defUID, defGID, "ran\n"},
		"once":     {0o644, defUID, defGID, "once\n"},
	}
	for name, w := range files {
		e, ok := s[dir+"/"+name]
		switch {
		case !ok:
			t.Errorf("%s is missing", name)
		case e.Mode != w.mode || e.UID != w.uid || e.GID != w.gid:
			t.Errorf("%s: mode %#o owner %d:%d, want %#o %d:%d", name, e.Mode, e.UID, e.GID, w.mode, w.uid, w.gid)
		case e.Content != nil && *e.Content != w.content:
			t.Errorf("%s holds %q, want %q", name, *e.Content, w.content)
		}
	}
	for link, target := range map[string]string{"current": "app.conf", "relink": "motd"} {
		if e, ok := s[dir+"/"+link]; !ok || e.Target == nil || *e.Target != target {
			t.Errorf("%s: %+v, want a symlink to %s", link, e, target)
		}
	}
	if _, ok := s[dir+"/old.txt"]; ok {
		t.Errorf("old.txt is still there")
	}
}

// TestFilesLocal runs the file operations as root on this machine,
// giving files to nobody:nogroup.
func TestFilesLocal(t *testing.T) {
	testbed.RequireRoot(t)
	dir := filepath.Join(testbed.TempDir(t, "mt-ops."), "files")
	fileScenario(t, []string{"local", "-"}, dir, "nobody", "nogroup", 65534, 65534, 0, 0)
}

// TestFilesSudo runs them through sudo as an unprivileged user, in a
// directory of its own: the files are the user's, and giving one to
// root is refused.
func TestFilesSudo(t *testing.T) {
	testbed.Users(t)
	testbed.Require(t, "sudo")
	base := testbed.TempDir(t, "mt-ops.")
	uid, gid := idsOf(t, "mtalice")
	if err := os.Chown(base, uid, gid); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "files")
	tgt := []string{"sudo", "mtalice"}
	fileScenario(t, tgt, dir, "", "", -1, -1, uid, gid)
	var refused string
	phase(t, runtime.Options{}, tgt, "foreign_owner", &refused, dir)
	if want := "OSError: ops.file " + dir + "/motd: operation not permitted"; refused != want {
		t.Errorf("giving a file to root as mtalice: %q, want %q", refused, want)
	}
}

func idsOf(t *testing.T, user string) (int, int) {
	t.Helper()
	var ids [2]int
	for i, flag := range []string{"-u", "-g"} {
		out, err := exec.Command("id", flag, user).Output()
		if err != nil {
			t.Fatalf("id %s %s: %v", flag, user, err)
		}
		if ids[i], err = strconv.Atoi(strings.TrimSpace(string(out))); err != nil {
			t.Fatal(err)
		}
	}
	return ids[0], ids[1]
}

// TestDebian runs the file operations and the system ones (apt, SysV
// init scripts, users and groups) in a Debian container.
func TestDebian(t *testing.T) {
	c := testbed.Debian(t)
	tgt := []string{"setns", strconv.Itoa(c.PID)}
	t.Run("files", func(t *testing.T) {
		fileScenario(t, tgt, "/srv/mt", "nobody", "nogroup", 65534, 65534, 0, 0)
		// What the container changed is in its overlay, not on this host.
		data, err := os.ReadFile(filepath.Join(c.Upper, "srv/mt/motd"))
		if err != nil || string(data) != "welcome\n" {
			t.Errorf("the container's motd, seen from the host: %q, %v", data, err)
		}
	})
	t.Run("system", func(t *testing.T) {
		var none []result
		phase(t, runtime.Options{}, tgt, "prepare_system", &none)
		snapshot := func() any {
			var s map[string]string
			phase(t, runtime.Options{}, tgt, "system_snapshot", &s)
			return s
		}
		install := checkThenReal(t, tgt, "system_install", snapshot)
		wantMsgs(t, install, "install hello", "install sl", "create group", "create user", "start; enable")
		s := snapshot().(map[string]string)
		wantState(t, s, map[string]string{
			"packages": "hello installed\nsl installed\n",
			"passwd":   "mtuser2:x:4343:4242::/home/mtuser2:/bin/sh\n",
			"group":    "users:x:100:mtuser2\nmtgroup:x:4242:\n",
			"service":  "running\n",
			"links":    "K01mtdemo\nS01mtdemo\n",
			"home":     "/home/mtuser2\n",
		})
		if out := c.Exec(t, "hello"); out != "Hello, world!\n" {
			t.Errorf("hello, installed by apt in the container, says %q", out)
		}

		change := checkThenReal(t, tgt, "system_change", snapshot)
		wantMsgs(t, change, "remove sl", "set groups mtgroup,users (were users); set shell /bin/bash (was /bin/sh)",
			"set gid 4244 (was 4242)", "stop; disable")
		wantState(t, snapshot().(map[string]string), map[string]string{
			"packages": "hello installed\n",
			"passwd":   "mtuser2:x:4343:4244::/home/mtuser2:/bin/bash\n",
			"group":    "users:x:100:mtuser2\nmtgroup:x:4244:mtuser2\n",
			"service":  "stopped\n",
			"links":    "K01mtdemo\nK01mtdemo\n",
		})

		remove := checkThenReal(t, tgt, "system_remove", snapshot)
		wantMsgs(t, remove, "remove user", "remove group")
		wantState(t, snapshot().(map[string]string), map[string]string{
			"passwd": "", "group": "users:x:100:\n", "home": "",
		})
	})
}

func wantMsgs(t *testing.T, rs []result, msgs ...string) {
	t.Helper()
	for i, r := range rs {
		if i < len(msgs) && r.Msg != msgs[i] {
			t.Errorf("%s: msg %q, want %q", r.Name, r.Msg, msgs[i])
		}
	}
}

func wantState(t *testing.T, got, want map[string]string) {
	t.Helper()
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %q, want %q", k, got[k], w)
		}
	}
}

// TestFacts checks facts() on this machine (a local context, and the
// master) and in the Debian container against /etc/os-release, nproc,
// ip addr, ip route, hostname, uname, id and /proc/meminfo there.
func TestFacts(t *testing.T) {
	testbed.Require(t, "ip", "nproc")
	t.Run("local", func(t *testing.T) {
		var got []map[string]any
		phase(t, runtime.Options{}, []string{"local", "-"}, "facts", &got)
		checkFacts(t, got[0], got[1])
		if !equalJSON(got[0], got[2]) {
			t.Errorf("the master's facts differ from a local child's:\n%v\n%v", got[2], got[0])
		}
	})
	t.Run("debian", func(t *testing.T) {
		c := testbed.Debian(t)
		var got []map[string]any
		phase(t, runtime.Options{}, []string{"setns", strconv.Itoa(c.PID)}, "facts", &got)
		checkFacts(t, got[0], got[1])
		if got[0]["default_ipv4"] != testbed.DebianAddress || !slices.Contains(anyStrings(got[0]["addresses"]), testbed.DebianAddress) {
			t.Errorf("container facts: default_ipv4 %v, addresses %v; want %s", got[0]["default_ipv4"], got[0]["addresses"], testbed.DebianAddress)
		}
		if got[0]["python"] != nil || got[0]["package_manager"] != "apt" || got[0]["init"] != "sysv" {
			t.Errorf("container facts: python %v, package_manager %v, init %v; want None, apt, sysv", got[0]["python"], got[0]["package_manager"], got[0]["init"])
		}
	})
}

func anyStrings(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, x := range list {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// checkFacts compares facts with what the target's own tools said.
func checkFacts(t *testing.T, facts map[string]any, said map[string]any) {
	t.Helper()
	truth := map[string]string{}
	for k, v := range said {
		truth[k], _ = v.(string)
	}
	for _, k := range []string{"os", "distro", "distro_version", "kernel", "arch", "hostname", "fqdn", "cpus", "memory_mb",
		"addresses", "default_ipv4", "init", "package_manager", "virtualization", "python", "user", "uid"} {
		if _, ok := facts[k]; !ok {
			t.Errorf("facts() has no %q", k)
		}
	}
	rel := map[string]string{}
	for _, line := range strings.Split(truth["os_release"], "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			rel[k] = strings.Trim(v, `"`)
		}
	}
	uname := strings.Fields(truth["uname"])
	host := strings.TrimSpace(truth["hostname"])
	short, _, _ := strings.Cut(host, ".")
	memKB := 0
	for _, line := range strings.Split(truth["meminfo"], "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "MemTotal:" {
			memKB, _ = strconv.Atoi(f[1])
		}
	}
	for k, want := range map[string]any{
		"os": "linux", "distro": rel["ID"], "distro_version": rel["VERSION_ID"],
		"cpus": mustAtoi(t, truth["nproc"]), "kernel": uname[0], "arch": uname[1],
		"hostname": short, "user": strings.TrimSpace(truth["id"]), "memory_mb": memKB / 1024,
	} {
		got := facts[k]
		if f, ok := got.(float64); ok {
			got = int(f)
		}
		if got != want {
			t.Errorf("facts()[%q] = %v, want %v", k, got, want)
		}
	}
	// ip -o addr: "2: eth0    inet 192.0.2.2/24 ... scope global eth0"
	var want []string
	ifaceV4 := map[string]string{}
	for _, line := range strings.Split(truth["ip"], "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || f[1] == "lo" || (f[2] != "inet" && f[2] != "inet6") {
			continue
		}
		addr, _, _ := strings.Cut(f[3], "/")
		want = append(want, addr)
		if f[2] == "inet" && ifaceV4[f[1]] == "" {
			ifaceV4[f[1]] = addr
		}
	}
	got := anyStrings(facts["addresses"])
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("facts()[\"addresses\"] = %v, ip addr says %v", got, want)
	}
	// ip route: "default via 192.0.2.1 dev eth0"
	var wantDefault any
	if f := strings.Fields(truth["route"]); len(f) >= 5 && f[3] == "dev" {
		wantDefault = ifaceV4[f[4]]
	}
	if facts["default_ipv4"] != wantDefault {
		t.Errorf("facts()[\"default_ipv4\"] = %v, ip route says %v", facts["default_ipv4"], wantDefault)
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSrcFiles ships src= files from the module roots: a literal src
// with its module, a computed one fetched by a grandchild through its
// parent, a direct call of the builtin; paths outside the roots are
// refused, and a child never reads a src from its own disk.
func TestSrcFiles(t *testing.T) {
	root := t.TempDir()
	outside := filepath.Join(t.TempDir(), "secret.txt")
	if err := os.WriteFile(outside, []byte("secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "escape.txt")); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out := runScript(t, runtime.Options{Roots: []string{root}}, "src.star", dir)
	want := []string{
		"literal True",
		"computed True",
		"computed again False",
		"direct create file",
		"same True",
		`refused /etc/passwd -> ops.file: src path "/etc/passwd" is absolute: src paths are relative to a module root`,
		`refused ../scenario.star -> ops.file: src path "../scenario.star" escapes its module root ("..")`,
		`refused files/../../x -> ops.file: src path "files/../../x" escapes its module root ("..")`,
		`refused nope.txt -> ops.file: src "nope.txt" not found in the module roots (testdata, ` + root + `)`,
		`refused escape.txt -> ops.file: src "escape.txt" resolves outside its module root ` + root + ` (symlink to ` + outside + `)`,
		`refused ops.go -> ops.file: src "ops.go" not found in the module roots (testdata, ` + root + `)`,
	}
	if got := strings.Split(strings.TrimSpace(out), "\n"); !slices.Equal(got, want) {
		t.Errorf("src.star printed\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if data, err := os.ReadFile(filepath.Join(dir, "direct.txt")); err != nil || string(data) != "data shipped from the module root\nline 2\n" {
		t.Errorf("direct.txt: %q, %v", data, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "refused")); !os.IsNotExist(err) {
		t.Errorf("a refused src made a file: %v", err)
	}
}

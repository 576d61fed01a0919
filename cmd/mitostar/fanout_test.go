package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.starlark.net/starlark"

	"github.com/mitostar/mitostar/builtins"
	"github.com/mitostar/mitostar/internal/testbed"
	"github.com/mitostar/mitostar/runtime"
)

// fleet is one inventory of real targets shared by the fan-out tests:
// aliases of a loopback sshd (as different users, with and without
// sudo), two docker containers, a host behind a mitostar_via relay, a
// host whose port refuses, one with a wrong become password and one
// that never answers.
type fleet struct {
	dir       string
	inventory string // the INI file
	sshd      *testbed.SSHServer
}

func init() {
	// fotest.change stands for an operation that changed its host: it
	// marks the call's thread as operations do (each reads the count).
	runtime.RegisterBuiltin("fotest.change", func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		builtins.MarkChanged(thread)
		return starlark.None, nil
	})
}

// testFleet builds a fleet for t, stopped when t ends.
func testFleet(t *testing.T) *fleet {
	t.Helper()
	testbed.RequireRoot(t, "/usr/sbin/sshd", "sudo", "dockerd", "ip")
	sshd := testbed.SSHD(t, "MaxStartups 200:30:400", "MaxSessions 200")
	testbed.Sudoers(t, "mtalice ALL=(ALL:ALL) ALL", "mtbob ALL=(ALL:ALL) NOPASSWD: ALL")
	dk := testbed.Docker(t)
	dk.StartContainer(t, "mt-fo-c1")
	dk.StartContainer(t, "mt-fo-c2")
	ns := testbed.SilentNetns(t)
	dir := testbed.TempDir(t, "mt-fo.")
	nsSSH := testbed.NetnsCommand(t, ns, dir, "ssh-in-netns", "ssh")
	refused := testbed.FreePort(t)
	// The relayed host's ssh runs as mtcarol (web1): it needs a copy of
	// the key it can read (ssh checks the mode of its own keys only).
	relayKey := filepath.Join(dir, "relay-id")
	key, err := os.ReadFile(sshd.IdentityFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(relayKey, key, 0o644); err != nil {
		t.Fatal(err)
	}
	inv := fmt.Sprintf(`# The fan-out tests' fleet.
[web]
web1
web2 ansible_user=mtbob ansible_become=true
web3 ansible_user=mtalice ansible_become=true ansible_become_password=alicepw
web4 ansible_user=mtalice

[db]
db1 ansible_user=mtalice ansible_become=true ansible_become_password=wrong-password
db2 ansible_user=mtbob

[containers]
c1 ansible_host=mt-fo-c1
c2 ansible_host=mt-fo-c2

[containers:vars]
ansible_connection=docker
ansible_user=root
mitostar_docker_path=%s

[broken]
refused ansible_port=%d
silent ansible_host=%s ansible_port=22 mitostar_ssh_path=%s mitostar_connect_timeout=3

[relayed]
behind ansible_user=mtbob mitostar_via=web1 ansible_ssh_private_key_file=%s

[prod:children]
web
db

[all:vars]
ansible_host=127.0.0.1
ansible_port=%d
ansible_user=mtcarol
ansible_ssh_private_key_file=%s
ansible_ssh_common_args=-o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes
role=generic
`, dk.Path, refused, testbed.SilentAddr, nsSSH, relayKey, sshd.Port, sshd.IdentityFile, sshd.KnownHosts)
	path := filepath.Join(dir, "hosts.ini")
	if err := os.WriteFile(path, []byte(inv), 0o644); err != nil {
		t.Fatal(err)
	}
	return &fleet{dir: dir, inventory: path, sshd: sshd}
}

// writeScript writes a script into the fleet's directory.
func (f *fleet) writeScript(t *testing.T, name, src string) string {
	t.Helper()
	p := filepath.Join(f.dir, name)
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// jsonLines parses --json output.
func jsonLines(t *testing.T, data string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("--json line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

const fleetScript = `
def probe():
    return struct(name = host.name, user = os.username(), groups = host.groups, role = host.vars["role"],
                  secret = "ansible_become_password" in host.vars, parent = parent_id, id = context_id)

def main():
    hosts = connect("all")
    print("connected:", " ".join(sorted(hosts.names)))
    for name, err in sorted(hosts.unreachable.items()):
        print("unreachable:", name, err.kind, "|", err.message.replace("\n", " "))
    for r in each(hosts, probe):
        v = r.value
        print("probe:", r.host, r.ok, v.name, v.user, ",".join(v.groups), v.role, v.secret)
    print("relay:", each([hosts["behind"]], probe)[0].value.parent == hosts["web1"].id)
    print("host in master:", host)
`

// TestFanoutFleet connects the whole fleet: every reachable host
// completes with its own user, become and vars, through the relay too,
// while the refused, the silent and the wrong-password hosts are each
// reported with their cause; exit status 4.
func TestFanoutFleet(t *testing.T) {
	f := testFleet(t)
	script := f.writeScript(t, "fleet.star", fleetScript)
	jsonPath := filepath.Join(f.dir, "out.json")
	res := mitostar(t, f.dir, nil, "-i", f.inventory, "--json", jsonPath, script)
	if res.code != 4 {
		t.Fatalf("exit status %d, want 4 (unreachable, none failed)\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
	want := []string{
		"connected: behind c1 c2 db2 web1 web2 web3 web4",
		"probe: web1 True web1 mtcarol prod,web generic False",
		"probe: web2 True web2 root prod,web generic False",
		"probe: web3 True web3 root prod,web generic False",
		"probe: web4 True web4 mtalice prod,web generic False",
		"probe: db2 True db2 mtbob db,prod generic False",
		"probe: c1 True c1 root containers generic False",
		"probe: c2 True c2 root containers generic False",
		"probe: behind True behind mtbob relayed generic False",
		"relay: True",
		"host in master: None",
	}
	for _, w := range want {
		if !strings.Contains(res.stdout, w+"\n") {
			t.Errorf("stdout lacks %q:\n%s", w, res.stdout)
		}
	}
	causes := map[string]*regexp.Regexp{
		"db1":     regexp.MustCompile(`(?m)^unreachable: db1 PasswordError \| .*(incorrect|password)`),
		"refused": regexp.MustCompile(`(?m)^unreachable: refused StreamError \| .*Connection refused`),
		"silent":  regexp.MustCompile(`(?m)^unreachable: silent StreamError \| .*timed out after 3s`),
	}
	for host, re := range causes {
		if !re.MatchString(res.stdout) {
			t.Errorf("%s's cause not reported as %s:\n%s", host, re, res.stdout)
		}
	}
	// The recap: one line per host, the unreachable ones with their error.
	for h, ok := range map[string]int{"web1": 1, "web2": 1, "web3": 1, "web4": 1, "db2": 1, "c1": 1, "c2": 1, "behind": 2} {
		if !regexp.MustCompile(fmt.Sprintf(`(?m)^%s\s+%d\s+0\s+0\s+0\s+0\s+\d+\.\d\ds$`, h, ok)).MatchString(res.stderr) {
			t.Errorf("recap line of %s missing or wrong:\n%s", h, res.stderr)
		}
	}
	for _, h := range []string{"db1", "refused", "silent"} {
		if !regexp.MustCompile(`(?m)^` + h + `\s+0\s+0\s+0\s+1\s+0\s+\d+\.\d\ds$`).MatchString(res.stderr) {
			t.Errorf("recap line of %s missing or wrong:\n%s", h, res.stderr)
		}
		if !regexp.MustCompile(`(?m)^  ` + h + `: \w+Error: `).MatchString(res.stderr) {
			t.Errorf("recap failure of %s missing:\n%s", h, res.stderr)
		}
	}
	if strings.Contains(res.stdout+res.stderr, "wrong-password") || strings.Contains(res.stdout+res.stderr, "alicepw") {
		t.Errorf("a password appears in the output")
	}
	data, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "wrong-password") || strings.Contains(string(data), "alicepw") {
		t.Errorf("a password appears in the JSON output")
	}
	lines := jsonLines(t, string(data))
	recap := lines[len(lines)-1]["recap"].(map[string]any)
	if got := recap["silent"].(map[string]any); got["unreachable"] != true || !strings.Contains(fmt.Sprint(got["errors"]), "timed out") {
		t.Errorf("JSON recap of silent: %v", got)
	}
	if got := recap["web2"].(map[string]any); got["ok"] != float64(1) || got["failed"] != float64(0) {
		t.Errorf("JSON recap of web2: %v", got)
	}
	results := 0
	for _, l := range lines[:len(lines)-1] {
		if l["phase"] == "each" && l["task"] == "probe" && l["host"] == "c1" {
			results++
			if v := l["value"].(map[string]any); v["user"] != "root" || l["ok"] != true {
				t.Errorf("JSON result of c1: %v", l)
			}
		}
	}
	if results != 1 {
		t.Errorf("%d JSON results for c1's probe, want 1", results)
	}
}

// TestFanoutPatterns checks every pattern form and --limit through
// inventory.hosts, and that connect obeys --limit.
func TestFanoutPatterns(t *testing.T) {
	dir := t.TempDir()
	inv := filepath.Join(dir, "hosts.yml")
	os.WriteFile(inv, []byte(`all:
  vars:
    ansible_connection: local
  children:
    web:
      hosts:
        web[1:4]:
      vars:
        tier: front
    db:
      hosts:
        db1:
        db2:
          tier: back
    prod:
      children:
        web:
      hosts:
        db1:
`), 0o644)
	script := filepath.Join(dir, "p.star")
	os.WriteFile(script, []byte(`
def main():
    for p in argv:
        print(p, "=", ",".join([h.name for h in inventory.hosts(p)]))
    print("web2 vars:", inventory.hosts("web2")[0].vars, inventory.hosts("web2")[0].groups)
    print("groups:", inventory.groups()["prod"])
    hosts = connect("all")
    print("connected:", ",".join(hosts.names), len(hosts), hosts[0].name, hosts[-1].name)
`), 0o644)
	patterns := map[string]string{
		"all":           "web1,web2,web3,web4,db1,db2",
		"web":           "web1,web2,web3,web4",
		"web:db":        "web1,web2,web3,web4,db1,db2",
		"web,db2":       "web1,web2,web3,web4,db2",
		"prod:&db":      "db1",
		"prod:!web3":    "db1,web1,web2,web4",
		"web[0:1]":      "web1,web2",
		"web[-1]":       "web4",
		"w*":            "web1,web2,web3,web4",
		"~db\\d":        "db1,db2",
		"db?":           "db1,db2",
		"nothing":       "",
		"!web:!db1":     "db2",
		"web[1:]:&prod": "web2,web3,web4",
	}
	var args []string
	for p := range patterns {
		args = append(args, p)
	}
	slices.Sort(args)
	res := mitostar(t, dir, nil, append([]string{"-i", inv, "--limit", "all:!web4", script}, args...)...)
	if res.code != 0 {
		t.Fatalf("exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	for p, want := range patterns {
		hosts := strings.Split(want, ",")
		hosts = slices.DeleteFunc(hosts, func(h string) bool { return h == "web4" || h == "" })
		line := p + " = " + strings.Join(hosts, ",") + "\n"
		if !strings.Contains(res.stdout, line) {
			t.Errorf("pattern %q: want line %q in:\n%s", p, line, res.stdout)
		}
	}
	for _, w := range []string{
		`web2 vars: {"ansible_connection": "local", "tier": "front"} ["prod", "web"]`,
		`groups: ["db1", "web1", "web2", "web3", "web4"]`,
		"connected: web1,web2,web3,db1,db2 5 web1 db2",
	} {
		if !strings.Contains(res.stdout, w+"\n") {
			t.Errorf("stdout lacks %q:\n%s", w, res.stdout)
		}
	}
}

// TestFanoutSerial runs each in serial batches with max_fail_percentage
// on local hosts: batches run one after another, failures are per host,
// and a batch failing more than the limit stops the rest.
func TestFanoutSerial(t *testing.T) {
	dir := t.TempDir()
	inv := filepath.Join(dir, "hosts.ini")
	os.WriteFile(inv, []byte("[all:vars]\nansible_connection=local\n[n]\nh[1:7]\n"), 0o644)
	script := filepath.Join(dir, "s.star")
	os.WriteFile(script, []byte(`
def work(fail_on):
    start = time.now()
    time.sleep(0.2)
    if host.name in fail_on:
        fail("failing on purpose")
    return [start.unix_nano, time.now().unix_nano]

def maybe_change(names):
    if host.name in names:
        fotest.change()
        fotest.change()
    return host.name

def show(tag, results):
    print(tag, " ".join(["%s:%s" % (r.host, "ok" if r.ok else ("skip" if "not run" in r.error.message else "FAIL")) for r in results]))

def main():
    hosts = connect("n")
    rs = each(hosts, work, [], serial = 2)
    # Batch [h1 h2] ends before [h3 h4] starts, and so on.
    ordered = all([rs[i].value[0] >= max(rs[i - i % 2 - 1].value[1], rs[i - i % 2 - 2].value[1]) for i in range(2, len(rs))])
    show("serial2", rs)
    print("batches in order:", ordered)
    show("limit40", each(hosts, work, ["h3"], serial = 2, max_fail_percentage = 40))
    show("limit50", each(hosts, work, ["h3"], serial = 2, max_fail_percentage = 50))
    show("pct", each(hosts, work, ["h1"], serial = ["1", "50%"], max_fail_percentage = 0))
    show("plain", each(hosts, work, ["h7"]))
    print("changed", " ".join([r.host for r in each(hosts, maybe_change, ["h2", "h6"]) if r.changed]))
    print("builtin changed", all([r.changed for r in each(hosts, fotest.change)]))
    rs = each(hosts, work, [], _timeout = 0.05)
    print("timeout", " ".join(sorted(set([r.error.kind for r in rs]))), rs[0].error.message)
`), 0o644)
	res := mitostar(t, dir, nil, "-i", inv, "--progress", "never", script)
	if res.code != 3 {
		t.Fatalf("exit %d, want 3\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	for _, w := range []string{
		"serial2 h1:ok h2:ok h3:ok h4:ok h5:ok h6:ok h7:ok",
		"batches in order: True",
		"limit40 h1:ok h2:ok h3:FAIL h4:ok h5:skip h6:skip h7:skip",
		"limit50 h1:ok h2:ok h3:FAIL h4:ok h5:ok h6:ok h7:ok",
		// serial ["1", "50%"]: [h1] [h2 h3 h4] ...: h1 fails, nothing else runs.
		"pct h1:FAIL h2:skip h3:skip h4:skip h5:skip h6:skip h7:skip",
		"plain h1:ok h2:ok h3:ok h4:ok h5:ok h6:ok h7:FAIL",
		"changed h2 h6",
		"builtin changed True",
		"timeout TimeoutError call timed out after 0.05s",
	} {
		if !strings.Contains(res.stdout, w+"\n") {
			t.Errorf("stdout lacks %q:\n%s", w, res.stdout)
		}
	}
	if !regexp.MustCompile(`(?m)^h5\s+5\s+1\s+1\s+0\s+2\s`).MatchString(res.stderr) {
		t.Errorf("recap of h5 (5 ok, 1 changed, 1 failed, 2 skipped) wrong:\n%s", res.stderr)
	}
	if !regexp.MustCompile(`(?m)^h6\s+5\s+2\s+1\s+0\s+2\s`).MatchString(res.stderr) {
		t.Errorf("recap of h6 (5 ok, 2 changed, 1 failed, 2 skipped) wrong:\n%s", res.stderr)
	}
	if !strings.Contains(res.stderr, "[h3] FAILED") || !strings.Contains(res.stderr, "[h5] skipped") {
		t.Errorf("progress lines missing:\n%s", res.stderr)
	}
}

// TestFanoutExec runs mitostar exec on the fleet: output per host,
// become with -b, and exit statuses 0, 3 and 4.
func TestFanoutExec(t *testing.T) {
	f := testFleet(t)
	res := mitostar(t, f.dir, nil, "exec", "-i", f.inventory, "--progress", "never", "web:db2:c1", "--", "id", "-un")
	if res.code != 0 {
		t.Fatalf("exec: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	for _, w := range []string{"web1 | OK | rc=0 >>\nmtcarol\n", "web2 | OK | rc=0 >>\nroot\n", "web3 | OK | rc=0 >>\nroot\n",
		"db2 | OK | rc=0 >>\nmtbob\n", "c1 | OK | rc=0 >>\nroot\n"} {
		if !strings.Contains(res.stdout, w) {
			t.Errorf("exec stdout lacks %q:\n%s", w, res.stdout)
		}
	}
	res = mitostar(t, f.dir, nil, "exec", "-i", f.inventory, "-b", "--limit", "db2", "all", "--", "id", "-un")
	if res.code != 0 || !strings.Contains(res.stdout, "db2 | OK | rc=0 >>\nroot\n") {
		t.Errorf("exec -b: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	// Flags after the pattern, as with ansible's `ansible web -b -a CMD`.
	res = mitostar(t, f.dir, nil, "exec", "-i", f.inventory, "all", "-b", "--limit", "db2", "--", "id", "-un")
	if res.code != 0 || !strings.Contains(res.stdout, "db2 | OK | rc=0 >>\nroot\n") || strings.Contains(res.stdout, "web1") {
		t.Errorf("exec PATTERN -b --limit: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	res = mitostar(t, f.dir, nil, "exec", "-i", f.inventory, "web1:web2", "--", "sh", "-c", "echo out; echo err >&2; exit 7")
	if res.code != 3 || !strings.Contains(res.stdout, "web1 | FAILED | rc=7 >>\nout\nerr\n") {
		t.Errorf("exec of a failing command: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	if !regexp.MustCompile(`(?m)^  web2: Error: non-zero return code 7$`).MatchString(res.stderr) {
		t.Errorf("recap lacks web2's failure:\n%s", res.stderr)
	}
	res = mitostar(t, f.dir, nil, "exec", "-i", f.inventory, "web1:refused", "--", "true")
	if res.code != 4 || !strings.Contains(res.stdout, "refused | UNREACHABLE! >> StreamError: ") {
		t.Errorf("exec with an unreachable host: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	// -b with the password from a file, --json on stdout, debug logs:
	// the password shows nowhere.
	pwFile := filepath.Join(f.dir, "become-pw")
	os.WriteFile(pwFile, []byte(testbed.Passwords["mtalice"]+"\n"), 0o600)
	res = mitostar(t, f.dir, nil, "exec", "-v", "-i", f.inventory, "-b", "--become-password-file", pwFile, "--json", "-", "web4", "--", "id", "-un")
	if res.code != 0 {
		t.Fatalf("exec -b --become-password-file: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	lines := jsonLines(t, res.stdout)
	if len(lines) != 3 || lines[1]["host"] != "web4" || lines[1]["phase"] != "each" || lines[1]["status"] != "ok" ||
		lines[1]["value"].(map[string]any)["stdout"] != "root\n" || lines[2]["hosts"] == nil {
		t.Errorf("--json -: %q", res.stdout)
	}
	if strings.Contains(res.stdout+res.stderr, testbed.Passwords["mtalice"]) {
		t.Errorf("the become password is in the output")
	}
	res = mitostar(t, f.dir, nil, "exec", "-i", f.inventory, "web1")
	if res.code != 2 || !strings.Contains(res.stderr, "want a host pattern and a command") {
		t.Errorf("exec without a command: exit %d\n%s", res.code, res.stderr)
	}
}

// TestFanoutBadUsage checks the flags' errors.
func TestFanoutBadUsage(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "s.star")
	os.WriteFile(script, []byte("def main():\n    pass\n"), 0o644)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--forks", "0", script}, "--forks must be a positive number"},
		{[]string{"--progress", "sometimes", script}, "--progress must be auto, always or never"},
		{[]string{"-i", filepath.Join(dir, "missing.ini"), script}, "no such file"},
		{[]string{"-i", "h1,", "--limit", "~((", script}, "invalid host pattern"},
		{[]string{"-K", "--become-password-file", script, script}, "exclusive"},
	} {
		res := mitostar(t, dir, nil, c.args...)
		if res.code != 2 || !strings.Contains(res.stderr, c.want) {
			t.Errorf("mitostar %q: exit %d, stderr %q; want 2 and %q", c.args, res.code, res.stderr, c.want)
		}
	}
	// exec on a pattern that matches nothing says so.
	res0 := mitostar(t, dir, nil, "exec", "-i", "h1,", "nothing", "--", "true")
	if res0.code != 0 || !strings.Contains(res0.stderr, `no hosts matched "nothing"`) {
		t.Errorf("exec on no hosts: exit %d\n%s", res0.code, res0.stderr)
	}
	// A script that uses no hosts has no recap and exits 0.
	res := mitostar(t, dir, []string{inventoryEnv + "=h1,h2,"}, script)
	if res.code != 0 || strings.Contains(res.stderr, "RECAP") {
		t.Errorf("plain script: exit %d\n%s", res.code, res.stderr)
	}
	// MITOSTAR_INVENTORY is read when there is no -i.
	os.WriteFile(script, []byte("def main():\n    print([h.name for h in inventory.hosts()])\n"), 0o644)
	res = mitostar(t, dir, []string{inventoryEnv + "=h1,h2,"}, script)
	if res.code != 0 || res.stdout != "[\"h1\", \"h2\"]\n" {
		t.Errorf("MITOSTAR_INVENTORY: exit %d, stdout %q, stderr %s", res.code, res.stdout, res.stderr)
	}
}

// TestFanoutOps runs real operations on inventory hosts through each:
// a template fed by each host's inventory vars and a file; the recap
// counts what changed, a second run changes nothing, and --check --diff
// shows the change under each host's name and makes none.
func TestFanoutOps(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	os.Mkdir(out, 0o755)
	inv := filepath.Join(dir, "hosts.ini")
	os.WriteFile(inv, []byte("[all:vars]\nansible_connection=local\n[web]\nh1 port=8001\nh2 port=8002\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "app.tmpl"), []byte("listen {{.port}} workers {{.workers}}\n"), 0o644)
	script := filepath.Join(dir, "deploy.star")
	os.WriteFile(script, []byte(`
def deploy(dir, workers):
    conf = ops.template(dir + "/" + host.name + ".conf", "app.tmpl", vars = {"workers": workers})
    flag = ops.file(dir + "/" + host.name + ".flag", content = "on\n", mode = 0o600)
    return [conf.changed, flag.changed]

def main():
    for r in each(connect("web"), deploy, argv[0], int(argv[1])):
        print(r.host, r.ok, r.changed, r.value)
`), 0o644)
	run := func(workers string, flags ...string) result {
		t.Helper()
		args := append([]string{"-i", inv, "--progress", "never"}, flags...)
		res := mitostar(t, dir, nil, append(args, script, out, workers)...)
		if res.code != 0 {
			t.Fatalf("%v: exit %d\n%s\n%s", flags, res.code, res.stdout, res.stderr)
		}
		return res
	}
	recap := func(res result, host string, changed int) {
		t.Helper()
		if !regexp.MustCompile(fmt.Sprintf(`(?m)^%s\s+1\s+%d\s+0\s+0\s`, host, changed)).MatchString(res.stderr) {
			t.Errorf("recap of %s: want 1 ok, %d changed:\n%s", host, changed, res.stderr)
		}
	}

	// --check first: what would change, shown, and nothing made.
	res := run("4", "--check", "--diff")
	contains(t, "stdout", res.stdout, "h1 True True [True, True]\n", "h2 True True [True, True]\n",
		"[h1] ops.template "+filepath.Join(out, "h1.conf")+": would create", "+listen 8001 workers 4\n",
		"[h2] ops.template "+filepath.Join(out, "h2.conf")+": would create", "+listen 8002 workers 4\n")
	if left, _ := os.ReadDir(out); len(left) != 0 {
		t.Errorf("--check made %d files", len(left))
	}
	recap(res, "h1", 1)

	res = run("4")
	contains(t, "stdout", res.stdout, "h1 True True [True, True]\n", "h2 True True [True, True]\n")
	recap(res, "h1", 1)
	recap(res, "h2", 1)
	for h, want := range map[string]string{"h1": "listen 8001 workers 4\n", "h2": "listen 8002 workers 4\n"} {
		if got, _ := os.ReadFile(filepath.Join(out, h+".conf")); string(got) != want {
			t.Errorf("%s.conf = %q, want %q", h, got, want)
		}
		if st, err := os.Stat(filepath.Join(out, h+".flag")); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s.flag: %v %v", h, st, err)
		}
	}

	res = run("4")
	contains(t, "stdout", res.stdout, "h1 True False [False, False]\n", "h2 True False [False, False]\n")
	recap(res, "h1", 0)
	recap(res, "h2", 0)

	// A new value changes the template only.
	res = run("8", "--diff")
	contains(t, "stdout", res.stdout, "h1 True True [True, False]\n", "-listen 8001 workers 4\n", "+listen 8001 workers 8\n")
	recap(res, "h2", 1)
}

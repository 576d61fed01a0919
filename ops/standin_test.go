package ops

// Recording stand-ins for the package managers and init systems that
// this machine does not run: small sh programs that keep their state
// (installed, outdated, running, enabled, services: one name a line) in
// $STANDIN_DIR, answer as the real program does, and record each
// command line in $STANDIN_DIR/log (arguments separated by \x1f,
// commands by \x1e), which the tests compare exactly.

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const standinPrelude = `#!/bin/sh
PATH=/usr/bin:/bin
S=$STANDIN_DIR
printf '%s\037' "${0##*/}" "$@" >> "$S/log"; printf '\036' >> "$S/log"
has() { grep -qxF -- "$1" "$S/$2" 2>/dev/null; }
add() { has "$1" "$2" || echo "$1" >> "$S/$2"; }
del() { if [ -f "$S/$2" ]; then grep -vxF -- "$1" "$S/$2" > "$S/$2.tmp"; mv "$S/$2.tmp" "$S/$2"; fi; }
`

// standins are the programs, by name.
var standins = map[string]string{
	"rpm": `[ "$1 $2" = "-q --queryformat" ] || exit 9
shift 3; miss=0
for n; do if has "$n" installed; then echo "$n"; else echo "package $n is not installed"; miss=$((miss+1)); fi; done
exit $miss`,
	"dnf": rpmFrontend,
	"yum": rpmFrontend,
	"zypper": `[ "$1" = --non-interactive ] || exit 9; shift
case $1 in
--quiet) [ "$2" = list-updates ] || exit 9
  echo "S | Repository | Name | Current Version | Available Version | Arch"
  [ -f "$S/outdated" ] && while read -r n; do has "$n" installed && echo "v | repo-oss | $n | 1.0-1 | 2.0-1 | x86_64"; done < "$S/outdated"
  exit 0 ;;
install) shift; for n; do add "$n" installed; done ;;
remove) shift; for n; do del "$n" installed; done ;;
update) shift; for n; do del "$n" outdated; done ;;
refresh) touch "$S/refreshed" ;;
*) exit 9 ;;
esac`,
	"apk": `case $1 in
info) [ "$2" = -e ] || exit 9; shift 2; miss=0
  for n; do if has "$n" installed; then echo "$n"; else miss=$((miss+1)); fi; done; exit $miss ;;
version) [ "$2 $3" = "-l <" ] || exit 9; shift 3
  echo "Installed:                                Available:"
  for n; do has "$n" outdated && echo "$n-1.0-r0                        < 2.0-r0"; done; exit 0 ;;
add) shift; up=no; if [ "$1" = --upgrade ]; then up=yes; shift; fi
  for n; do add "$n" installed; [ $up = yes ] && del "$n" outdated; done; exit 0 ;;
del) shift; for n; do del "$n" installed; done ;;
update) touch "$S/refreshed" ;;
*) exit 9 ;;
esac`,
	"pacman": `case "$1" in
-Q) shift; miss=0
  for n; do if has "$n" installed; then echo "$n 1.0-1"; else echo "error: package '$n' was not found" >&2; miss=1; fi; done; exit $miss ;;
-Qu) shift; none=1
  for n; do if has "$n" outdated && has "$n" installed; then echo "$n 1.0-1 -> 2.0-1"; none=0; fi; done; exit $none ;;
-S) [ "$2 $3" = "--needed --noconfirm" ] || exit 9; shift 3; for n; do add "$n" installed; del "$n" outdated; done ;;
-R) [ "$2" = --noconfirm ] || exit 9; shift 2; for n; do del "$n" installed; done ;;
-Sy) touch "$S/refreshed" ;;
*) exit 9 ;;
esac`,
	"systemctl": `case $1 in
show) [ "$2" = --property=LoadState,ActiveState,UnitFileState ] || exit 9
  if ! has "$3" services; then printf 'LoadState=not-found\nActiveState=inactive\nUnitFileState=\n'; exit 0; fi
  echo LoadState=loaded
  if has "$3" running; then echo ActiveState=active; else echo ActiveState=inactive; fi
  if has "$3" enabled; then echo UnitFileState=enabled; else echo UnitFileState=disabled; fi ;;
start|restart|reload) add "$2" running ;;
stop) del "$2" running ;;
enable) add "$2" enabled ;;
disable) del "$2" enabled ;;
*) exit 9 ;;
esac`,
	"rc-service": `if [ "$1" = --exists ]; then has "$2" services; exit; fi
case $2 in
status) if has "$1" running; then echo " * status: started"; exit 0; fi; echo " * status: stopped"; exit 3 ;;
start|restart|reload) add "$1" running ;;
stop) del "$1" running ;;
*) exit 9 ;;
esac`,
	"rc-update": `case $1 in
show) [ "$2" = default ] || exit 9; [ -f "$S/enabled" ] && while read -r n; do printf '%20s | default\n' "$n"; done < "$S/enabled"; exit 0 ;;
add) [ "$3" = default ] || exit 9; add "$2" enabled ;;
del) [ "$3" = default ] || exit 9; del "$2" enabled ;;
*) exit 9 ;;
esac`,
}

// rpmFrontend is dnf and yum.
const rpmFrontend = `case $1 in
install) [ "$2" = -y ] || exit 9; shift 2; for n; do add "$n" installed; done ;;
remove) [ "$2" = -y ] || exit 9; shift 2; for n; do del "$n" installed; done ;;
upgrade) [ "$2" = -y ] || exit 9; shift 2; for n; do del "$n" outdated; done ;;
check-update) [ "$2" = -q ] || exit 9; shift 2; rc=0
  for n; do if has "$n" outdated; then echo "$n.x86_64   2.0-1.fc40   updates"; rc=100; fi; done; exit $rc ;;
makecache) touch "$S/refreshed" ;;
*) exit 9 ;;
esac`

// standinDir installs the stand-ins named in a fresh directory, puts it
// first on PATH (only it, with only: nothing else is found) and sets
// the initial state; it returns the directory.
func standinDir(t *testing.T, only bool, state map[string][]string, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		writeFile(t, filepath.Join(bin, n), standinPrelude+standins[n]+"\n", 0o755)
	}
	for file, entries := range state {
		writeFile(t, filepath.Join(dir, file), lines(entries...), 0o644)
	}
	path := bin
	if !only {
		path += ":" + os.Getenv("PATH")
	}
	t.Setenv("PATH", path)
	t.Setenv("STANDIN_DIR", dir)
	return dir
}

// takeLog returns the command lines recorded since the last call, each
// as its arguments joined by spaces, and empties the log.
func takeLog(t *testing.T, dir string) []string {
	t.Helper()
	path := filepath.Join(dir, "log")
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	os.Remove(path)
	var out []string
	for _, cmd := range strings.Split(string(data), "\x1e") {
		if cmd != "" {
			out = append(out, strings.Join(strings.Split(strings.TrimSuffix(cmd, "\x1f"), "\x1f"), " "))
		}
	}
	return out
}

func stateOf(t *testing.T, dir, file string) []string {
	t.Helper()
	data, _ := os.ReadFile(filepath.Join(dir, file))
	got := strings.Fields(string(data))
	slices.Sort(got)
	return got
}

// step is one call of an operation and what it must do.
type step struct {
	src     string   // a Starlark expression: the operation
	check   bool     // run in check mode
	changed bool     // result.changed
	msg     string   // result.msg
	cmds    []string // the exact command lines run, in order
}

func runSteps(t *testing.T, dir string, steps []step) {
	t.Helper()
	for i, s := range steps {
		g := (&fakeEnv{check: s.check}).mustExec(t, "r = "+s.src)
		r := resultOf(t, g["r"])
		if r.changed != s.changed || r.msg != s.msg {
			t.Errorf("step %d %s (check=%v): changed=%v msg=%q, want changed=%v msg=%q", i, s.src, s.check, r.changed, r.msg, s.changed, s.msg)
		}
		if got := takeLog(t, dir); !slices.Equal(got, s.cmds) {
			t.Errorf("step %d %s (check=%v) ran\n  %s\nwant\n  %s", i, s.src, s.check, strings.Join(got, "\n  "), strings.Join(s.cmds, "\n  "))
		}
	}
}

// TestPackageStandins drives each package manager but apt (which runs
// for real in the Debian container) through its stand-in: the exact
// command lines, one query and at most one batched change per call,
// check mode running only queries, and a second run changing nothing.
func TestPackageStandins(t *testing.T) {
	// rpmQ is the query of rpm-based managers; each wants the literal
	// newline of its --queryformat.
	rpmQ := func(names string) string { return "rpm -q --queryformat %{NAME}\n " + names }
	cases := []struct {
		manager string
		tools   []string
		steps   []step
		refresh string
	}{
		{"dnf", []string{"dnf", "rpm"}, []step{
			{`ops.package(["a", "b"], manager = "dnf")`, true, true, "would install b", []string{rpmQ("a b")}},
			{`ops.package(["a", "b"], manager = "dnf")`, false, true, "install b", []string{rpmQ("a b"), "dnf install -y b"}},
			{`ops.package(["a", "b", "a"], manager = "dnf")`, false, false, "ok: a b installed (dnf)", []string{rpmQ("a b")}},
			{`ops.package(["a", "b", "c"], manager = "dnf", state = "latest")`, true, true, "would install c; upgrade a", []string{rpmQ("a b c"), "dnf check-update -q a b"}},
			{`ops.package(["a", "b", "c"], manager = "dnf", state = "latest")`, false, true, "install c; upgrade a", []string{rpmQ("a b c"), "dnf check-update -q a b", "dnf install -y c", "dnf upgrade -y a"}},
			{`ops.package(["a", "b", "c"], manager = "dnf", state = "latest")`, false, false, "ok: a b c installed and up to date (dnf)", []string{rpmQ("a b c"), "dnf check-update -q a b c"}},
			{`ops.package(["b", "c", "z"], manager = "dnf", state = "absent")`, false, true, "remove b c", []string{rpmQ("b c z"), "dnf remove -y b c"}},
			{`ops.package("a", manager = "dnf", update_cache = True)`, false, false, "ok: a installed (dnf)", []string{"dnf makecache -q", rpmQ("a")}},
			{`ops.package("a", manager = "dnf", update_cache = True)`, true, false, "ok: a installed (dnf)", []string{rpmQ("a")}},
		}, "refreshed"},
		{"yum", []string{"yum", "rpm"}, []step{
			{`ops.package(["a", "b"], manager = "yum")`, false, true, "install b", []string{rpmQ("a b"), "yum install -y b"}},
			{`ops.package(["a", "b"], manager = "yum", state = "latest")`, false, true, "upgrade a", []string{rpmQ("a b"), "yum check-update -q a b", "yum upgrade -y a"}},
			{`ops.package(["a", "b"], manager = "yum", state = "absent")`, false, true, "remove a b", []string{rpmQ("a b"), "yum remove -y a b"}},
		}, ""},
		{"zypper", []string{"zypper", "rpm"}, []step{
			{`ops.package(["a", "b"], manager = "zypper")`, false, true, "install b", []string{rpmQ("a b"), "zypper --non-interactive install b"}},
			{`ops.package(["a", "b"], manager = "zypper")`, false, false, "ok: a b installed (zypper)", []string{rpmQ("a b")}},
			{`ops.package(["a", "c"], manager = "zypper", state = "latest")`, false, true, "install c; upgrade a",
				[]string{rpmQ("a c"), "zypper --non-interactive --quiet list-updates", "zypper --non-interactive install c", "zypper --non-interactive update a"}},
			{`ops.package("b", manager = "zypper", state = "absent", update_cache = True)`, false, true, "remove b",
				[]string{"zypper --non-interactive refresh", rpmQ("b"), "zypper --non-interactive remove b"}},
		}, "refreshed"},
		{"apk", []string{"apk"}, []step{
			{`ops.package(["a", "b"], manager = "apk")`, true, true, "would install b", []string{"apk info -e a b"}},
			{`ops.package(["a", "b"], manager = "apk")`, false, true, "install b", []string{"apk info -e a b", "apk add b"}},
			{`ops.package(["a", "b", "c"], manager = "apk", state = "latest")`, false, true, "install c, upgrade a",
				[]string{"apk info -e a b c", "apk version -l < a b", "apk add --upgrade c a"}},
			{`ops.package(["a", "b", "c"], manager = "apk", state = "latest")`, false, false, "ok: a b c installed and up to date (apk)",
				[]string{"apk info -e a b c", "apk version -l < a b c"}},
			{`ops.package(["a"], manager = "apk", state = "absent", update_cache = True)`, false, true, "remove a", []string{"apk update", "apk info -e a", "apk del a"}},
		}, "refreshed"},
		{"pacman", []string{"pacman"}, []step{
			{`ops.package(["a", "b"], manager = "pacman")`, false, true, "install b", []string{"pacman -Q a b", "pacman -S --needed --noconfirm b"}},
			{`ops.package(["a", "b"], manager = "pacman")`, false, false, "ok: a b installed (pacman)", []string{"pacman -Q a b"}},
			{`ops.package(["a", "c"], manager = "pacman", state = "latest")`, true, true, "would install c, upgrade a", []string{"pacman -Q a c", "pacman -Qu a"}},
			{`ops.package(["a", "c"], manager = "pacman", state = "latest")`, false, true, "install c, upgrade a",
				[]string{"pacman -Q a c", "pacman -Qu a", "pacman -S --needed --noconfirm c a"}},
			{`ops.package(["a", "c"], manager = "pacman", state = "latest")`, false, false, "ok: a c installed and up to date (pacman)", []string{"pacman -Q a c", "pacman -Qu a c"}},
			{`ops.package(["a", "c"], manager = "pacman", state = "absent", update_cache = True)`, false, true, "remove a c",
				[]string{"pacman -Sy --noconfirm", "pacman -Q a c", "pacman -R --noconfirm a c"}},
		}, "refreshed"},
	}
	for _, c := range cases {
		t.Run(c.manager, func(t *testing.T) {
			dir := standinDir(t, false, map[string][]string{"installed": {"a"}, "outdated": {"a"}}, c.tools...)
			runSteps(t, dir, c.steps)
			if c.refresh != "" {
				if _, err := os.Stat(filepath.Join(dir, c.refresh)); err != nil {
					t.Errorf("update_cache did not refresh: %v", err)
				}
			}
		})
	}
}

func TestPackageFailures(t *testing.T) {
	dir := standinDir(t, false, nil, "dnf", "rpm")
	writeFile(t, filepath.Join(dir, "bin", "dnf"), standinPrelude+`echo "Error: Unable to find a match: $3" >&2; exit 1`+"\n", 0o755)
	(&fakeEnv{}).wantErrors(t, "", map[string]string{
		`ops.package("nope", manager = "dnf")`:  `ops.package nope: exec.run: \["dnf", "install", "-y", "nope"\] exited with rc 1: Error: Unable to find a match: nope`,
		`ops.package("-rf", manager = "dnf")`:   `package name "-rf" starts with '-'`,
		`ops.package("a=1.0", manager = "dnf")`: `package name "a=1.0" contains one of "=<>"`,
		`ops.package([], manager = "dnf")`:      `no package names`,
		`ops.package("a", manager = "brew")`:    `unknown package manager "brew"`,
		`ops.package("a", state = "new")`:       `unknown state "new"`,
		`ops.package(["a", 1])`:                 `names\[1\] must be a string`,
	})
}

// TestDetectPackageManager finds the manager whose programs are on PATH.
func TestDetectPackageManager(t *testing.T) {
	for _, c := range []struct {
		tools []string
		want  string
	}{
		{[]string{"apk"}, "apk"},
		{[]string{"pacman"}, "pacman"},
		{[]string{"dnf", "rpm", "yum"}, "dnf"},
		{[]string{"yum", "rpm"}, "yum"},
		{[]string{"zypper", "rpm"}, "zypper"},
		{[]string{"dnf"}, ""}, // no rpm
	} {
		standinDir(t, true, nil, c.tools...)
		if got := detectPackageManager(); got != c.want {
			t.Errorf("with %v on PATH: %q, want %q", c.tools, got, c.want)
		}
	}
	dir := standinDir(t, true, map[string][]string{"installed": {"a"}}, "apk")
	g := (&fakeEnv{}).mustExec(t, `r = ops.package("a")`)
	wantResult(t, g, "r", false, "ok: a installed (apk)")
	if got := takeLog(t, dir); !slices.Equal(got, []string{"apk info -e a"}) {
		t.Errorf("detected apk ran %q", got)
	}
}

// TestServiceStandins drives systemd and OpenRC through their stand-ins
// (SysV scripts run for real in the Debian container).
func TestServiceStandins(t *testing.T) {
	sysShow := "systemctl show --property=LoadState,ActiveState,UnitFileState web"
	cases := []struct {
		init  string
		tools []string
		steps []step
	}{
		{"systemd", []string{"systemctl"}, []step{
			{`ops.service("web", state = "started", enabled = True, init = "systemd")`, true, true, "would start; enable", []string{sysShow, sysShow, sysShow}},
			{`ops.service("web", state = "started", enabled = True, init = "systemd")`, false, true, "start; enable",
				[]string{sysShow, sysShow, "systemctl start web", sysShow, "systemctl enable web"}},
			{`ops.service("web", state = "started", enabled = True, init = "systemd")`, false, false, "ok: service web as asked (systemd)", []string{sysShow, sysShow, sysShow}},
			{`ops.service("web", state = "restarted", init = "systemd")`, false, true, "restart", []string{sysShow, sysShow, "systemctl restart web"}},
			{`ops.service("web", state = "reloaded", init = "systemd")`, false, true, "reload", []string{sysShow, sysShow, "systemctl reload web"}},
			{`ops.service("web", state = "stopped", enabled = False, init = "systemd")`, false, true, "stop; disable",
				[]string{sysShow, sysShow, "systemctl stop web", sysShow, "systemctl disable web"}},
			{`ops.service("web", state = "reloaded", init = "systemd")`, false, true, "start", []string{sysShow, sysShow, "systemctl start web"}},
		}},
		{"openrc", []string{"rc-service", "rc-update"}, []step{
			{`ops.service("web", state = "started", enabled = True, init = "openrc")`, true, true, "would start; enable",
				[]string{"rc-service --exists web", "rc-service web status", "rc-update show default"}},
			{`ops.service("web", state = "started", enabled = True, init = "openrc")`, false, true, "start; enable",
				[]string{"rc-service --exists web", "rc-service web status", "rc-service web start", "rc-update show default", "rc-update add web default"}},
			{`ops.service("web", state = "started", enabled = True, init = "openrc")`, false, false, "ok: service web as asked (openrc)",
				[]string{"rc-service --exists web", "rc-service web status", "rc-update show default"}},
			{`ops.service("web", state = "stopped", enabled = False, init = "openrc")`, false, true, "stop; disable",
				[]string{"rc-service --exists web", "rc-service web status", "rc-service web stop", "rc-update show default", "rc-update del web default"}},
			{`ops.service("web", state = "restarted", init = "openrc")`, false, true, "restart",
				[]string{"rc-service --exists web", "rc-service web status", "rc-service web restart"}},
		}},
	}
	for _, c := range cases {
		t.Run(c.init, func(t *testing.T) {
			dir := standinDir(t, false, map[string][]string{"services": {"web"}}, c.tools...)
			runSteps(t, dir, c.steps)
			(&fakeEnv{}).wantErrors(t, "", map[string]string{
				`ops.service("nope", state = "started", init = "` + c.init + `")`: `ops.service nope: no such service`,
				`ops.service("a/b", init = "` + c.init + `")`:                     `service name "a/b" contains one of "/"`,
				`ops.service("web", state = "up", init = "` + c.init + `")`:       `unknown state "up"`,
				`ops.service("web", enabled = "yes", init = "` + c.init + `")`:    `enabled must be True, False or None`,
				`ops.service("web", init = "upstart")`:                            `unknown init system "upstart"`,
			})
		})
	}
}

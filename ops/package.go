package ops

// ops.package: packages installed, removed or at their latest version,
// with whichever package manager the host has. One call asks the
// manager which of the names are installed (and, for "latest", which
// are out of date); one more installs, removes or upgrades all the
// names that need it at once.

import (
	"fmt"
	"slices"
	"strings"

	"go.starlark.net/starlark"
)

// A pkgManager is how ops.package drives one package manager: the
// command lines it runs and how it reads their output.
type pkgManager struct {
	name string
	env  []string // added to the environment of every command
	// installed: which of names are installed.
	installedArgv  func(names []string) []string
	parseInstalled func(p proc, names []string) (map[string]bool, error)
	// outdated: which of names (all installed) have a newer version.
	outdatedArgv             func(names []string) []string
	parseOutdated            func(p proc, names []string) (map[string]bool, error)
	install, remove, upgrade func(names []string) []string
	// latest installs missing names and upgrades outdated ones in one
	// command; nil for managers whose install does not upgrade.
	latest func(names []string) []string
	update []string // refreshes the package lists (update_cache)
}

// withNames returns a function that appends names to argv.
func withNames(argv ...string) func([]string) []string {
	return func(names []string) []string { return append(slices.Clone(argv), names...) }
}

// packageManagers are the managers, in the order detection tries them.
// They are made when an operation asks, not at start: package inits
// run in every context.
func packageManagers() []*pkgManager {
	rpmQuery := withNames("rpm", "-q", "--queryformat", "%{NAME}\n")
	return []*pkgManager{
		{
			name:           "apt",
			env:            []string{"DEBIAN_FRONTEND=noninteractive"},
			installedArgv:  withNames("dpkg-query", "-W", "-f=${Package}\t${db:Status-Status}\n"),
			parseInstalled: parseDpkgQuery,
			outdatedArgv:   withNames("apt-cache", "policy"),
			parseOutdated:  parseAptPolicy,
			install:        withNames("apt-get", "install", "-y", "-q"),
			remove:         withNames("apt-get", "remove", "-y", "-q"),
			latest:         withNames("apt-get", "install", "-y", "-q"),
			update:         []string{"apt-get", "update", "-q"},
		},
		rpmManager("dnf", rpmQuery),
		rpmManager("yum", rpmQuery),
		{
			name:           "zypper",
			installedArgv:  rpmQuery,
			parseInstalled: parseNameLines,
			outdatedArgv:   func([]string) []string { return []string{"zypper", "--non-interactive", "--quiet", "list-updates"} },
			parseOutdated:  parseZypperUpdates,
			install:        withNames("zypper", "--non-interactive", "install"),
			remove:         withNames("zypper", "--non-interactive", "remove"),
			upgrade:        withNames("zypper", "--non-interactive", "update"),
			update:         []string{"zypper", "--non-interactive", "refresh"},
		},
		{
			name:           "apk",
			installedArgv:  withNames("apk", "info", "-e"),
			parseInstalled: parseNameLines,
			outdatedArgv:   withNames("apk", "version", "-l", "<"),
			parseOutdated:  parseApkVersion,
			install:        withNames("apk", "add"),
			remove:         withNames("apk", "del"),
			latest:         withNames("apk", "add", "--upgrade"),
			update:         []string{"apk", "update"},
		},
		{
			name:           "pacman",
			installedArgv:  withNames("pacman", "-Q"),
			parseInstalled: parseFirstField,
			outdatedArgv:   withNames("pacman", "-Qu"),
			parseOutdated:  parseFirstField,
			install:        withNames("pacman", "-S", "--needed", "--noconfirm"),
			remove:         withNames("pacman", "-R", "--noconfirm"),
			latest:         withNames("pacman", "-S", "--needed", "--noconfirm"),
			update:         []string{"pacman", "-Sy", "--noconfirm"},
		},
	}
}

// rpmManager is dnf's or yum's manager; rpmQuery asks rpm which names
// are installed, one per line.
func rpmManager(name string, rpmQuery func([]string) []string) *pkgManager {
	return &pkgManager{
		name:           name,
		installedArgv:  rpmQuery,
		parseInstalled: parseNameLines,
		outdatedArgv:   withNames(name, "check-update", "-q"),
		parseOutdated:  parseCheckUpdate,
		install:        withNames(name, "install", "-y"),
		remove:         withNames(name, "remove", "-y"),
		upgrade:        withNames(name, "upgrade", "-y"),
		update:         []string{name, "makecache", "-q"},
	}
}

// managerCommands are the programs whose presence selects a manager.
func managerCommands(name string) []string {
	switch name {
	case "apt":
		return []string{"apt-get", "dpkg-query"}
	case "dnf", "yum", "zypper":
		return []string{name, "rpm"}
	}
	return []string{name}
}

// detectPackageManager names the first manager whose programs are all on
// PATH, "" for none.
func detectPackageManager() string {
	for _, m := range packageManagers() {
		all := true
		for _, c := range managerCommands(m.name) {
			all = all && lookPath(c)
		}
		if all {
			return m.name
		}
	}
	return ""
}

func managerNamed(name string) *pkgManager {
	for _, m := range packageManagers() {
		if m.name == name {
			return m
		}
	}
	return nil
}

// wanted returns the set of names.
func wanted(names []string) map[string]bool {
	set := make(map[string]bool, len(names))
	for _, n := range names {
		set[n] = true
	}
	return set
}

// parseDpkgQuery reads "NAME\tSTATUS" lines; installed means status
// "installed" (not "config-files" or "not-installed").
func parseDpkgQuery(p proc, names []string) (map[string]bool, error) {
	want, got := wanted(names), map[string]bool{}
	for _, line := range strings.Split(p.stdout, "\n") {
		name, status, ok := strings.Cut(line, "\t")
		if ok && want[name] && status == "installed" {
			got[name] = true
		}
	}
	return got, nil
}

// parseNameLines reads output listing one installed name per line (rpm
// with --queryformat, apk info -e); other lines ("package x is not
// installed") name nothing asked for.
func parseNameLines(p proc, names []string) (map[string]bool, error) {
	want, got := wanted(names), map[string]bool{}
	for _, line := range strings.Split(p.stdout, "\n") {
		if n := strings.TrimSpace(line); want[n] {
			got[n] = true
		}
	}
	return got, nil
}

// parseFirstField reads lines whose first field is a package name
// (pacman -Q: "name version", pacman -Qu: "name old -> new").
func parseFirstField(p proc, names []string) (map[string]bool, error) {
	want, got := wanted(names), map[string]bool{}
	for _, line := range strings.Split(p.stdout, "\n") {
		if f := strings.Fields(line); len(f) > 0 && want[f[0]] {
			got[f[0]] = true
		}
	}
	return got, nil
}

// parseAptPolicy reads apt-cache policy: a name is outdated when its
// Installed version is not its Candidate.
func parseAptPolicy(p proc, names []string) (map[string]bool, error) {
	if p.rc != 0 {
		return nil, fmt.Errorf("apt-cache policy exited with rc %d: %s", p.rc, strings.TrimSpace(p.stderr))
	}
	want, got := wanted(names), map[string]bool{}
	var name, installed string
	for _, line := range strings.Split(p.stdout, "\n") {
		t := strings.TrimSpace(line)
		switch {
		case !strings.HasPrefix(line, " ") && strings.HasSuffix(line, ":"):
			name, installed = strings.TrimSuffix(line, ":"), ""
		case strings.HasPrefix(t, "Installed:"):
			installed = strings.TrimSpace(strings.TrimPrefix(t, "Installed:"))
		case strings.HasPrefix(t, "Candidate:"):
			candidate := strings.TrimSpace(strings.TrimPrefix(t, "Candidate:"))
			if want[name] && installed != "" && installed != "(none)" && candidate != "(none)" && candidate != installed {
				got[name] = true
			}
		}
	}
	return got, nil
}

// parseCheckUpdate reads dnf/yum check-update: rc 100 and lines
// "name.arch version repo" when there are updates, rc 0 when none.
func parseCheckUpdate(p proc, names []string) (map[string]bool, error) {
	if p.rc != 0 && p.rc != 100 {
		return nil, fmt.Errorf("check-update exited with rc %d: %s", p.rc, strings.TrimSpace(p.stderr))
	}
	want, got := wanted(names), map[string]bool{}
	for _, line := range strings.Split(p.stdout, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name := f[0]
		if i := strings.LastIndexByte(name, '.'); i > 0 {
			name = name[:i]
		}
		if want[name] {
			got[name] = true
		}
	}
	return got, nil
}

// parseZypperUpdates reads the table of zypper list-updates:
// "v | repo | name | current | available | arch".
func parseZypperUpdates(p proc, names []string) (map[string]bool, error) {
	if p.rc != 0 {
		return nil, fmt.Errorf("zypper list-updates exited with rc %d: %s", p.rc, strings.TrimSpace(p.stderr))
	}
	want, got := wanted(names), map[string]bool{}
	for _, line := range strings.Split(p.stdout, "\n") {
		cols := strings.Split(line, "|")
		if len(cols) >= 5 && strings.TrimSpace(cols[0]) == "v" {
			if n := strings.TrimSpace(cols[2]); want[n] {
				got[n] = true
			}
		}
	}
	return got, nil
}

// parseApkVersion reads apk version -l '<': "name-1.0-r0  < 1.1-r0".
func parseApkVersion(p proc, names []string) (map[string]bool, error) {
	if p.rc != 0 {
		return nil, fmt.Errorf("apk version exited with rc %d: %s", p.rc, strings.TrimSpace(p.stderr))
	}
	got := map[string]bool{}
	for _, line := range strings.Split(p.stdout, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[1] != "<" {
			continue
		}
		for _, n := range names {
			if v, ok := strings.CutPrefix(f[0], n+"-"); ok && v != "" && v[0] >= '0' && v[0] <= '9' {
				got[n] = true
			}
		}
	}
	return got, nil
}

// packageStates are the states ops.package accepts.
var packageStates = []string{"present", "absent", "latest"}

// ops.package(names, state="present", update_cache=False, manager=None)
func opPackage(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var namesV, managerV starlark.Value = nil, starlark.None
	state, updateCache := "present", false
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "names", &namesV, "state?", &state,
		"update_cache?", &updateCache, "manager?", &managerV); err != nil {
		return nil, err
	}
	if !slices.Contains(packageStates, state) {
		return nil, fmt.Errorf("%s: unknown state %q (want present, absent or latest)", b.Name(), state)
	}
	list, err := stringList(b.Name(), "names", namesV)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, n := range list {
		if err := checkName(b.Name(), "package name", n, "=<>"); err != nil {
			return nil, err
		}
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%s: no package names", b.Name())
	}
	managerName, err := optString(b.Name(), "manager", managerV)
	if err != nil {
		return nil, err
	}
	if managerName == "" {
		if managerName = detectPackageManager(); managerName == "" {
			return nil, fmt.Errorf("%s: no supported package manager on this host (apt, dnf, yum, zypper, apk or pacman)", b.Name())
		}
	}
	m := managerNamed(managerName)
	if m == nil {
		return nil, fmt.Errorf("%s: unknown package manager %q (want apt, dnf, yum, zypper, apk or pacman)", b.Name(), managerName)
	}
	o := newOp(thread, b.Name(), strings.Join(names, " "))
	o.extra = starlark.StringDict{"manager": starlark.String(m.name)}
	env := append(slices.Clone(cEnv), m.env...)
	if updateCache && !o.check {
		if _, err := o.run(m.update, env, "", true); err != nil {
			return nil, err
		}
	}
	p, err := o.run(m.installedArgv(names), env, "", false)
	if err != nil {
		return nil, err
	}
	installed, err := m.parseInstalled(p, names)
	if err != nil {
		return nil, o.errorf("%v", err)
	}
	var missing, present []string
	for _, n := range names {
		if installed[n] {
			present = append(present, n)
		} else {
			missing = append(missing, n)
		}
	}
	act := func(what string, argv []string) error { return o.changeRun(what, env, argv...) }
	switch state {
	case "present":
		if len(missing) > 0 {
			err = act("install "+strings.Join(missing, " "), m.install(missing))
		}
	case "absent":
		if len(present) > 0 {
			err = act("remove "+strings.Join(present, " "), m.remove(present))
		}
	case "latest":
		var outdated []string
		if len(present) > 0 {
			p, err := o.run(m.outdatedArgv(present), env, "", false)
			if err != nil {
				return nil, err
			}
			old, err := m.parseOutdated(p, present)
			if err != nil {
				return nil, o.errorf("%v", err)
			}
			for _, n := range present {
				if old[n] {
					outdated = append(outdated, n)
				}
			}
		}
		err = latest(m, missing, outdated, act)
	}
	if err != nil {
		return nil, err
	}
	return o.result(fmt.Sprintf("ok: %s %s (%s)", strings.Join(names, " "), map[string]string{
		"present": "installed", "absent": "not installed", "latest": "installed and up to date"}[state], m.name)), nil
}

// latest installs missing names and upgrades outdated ones: in one
// command where the manager has one, else install then upgrade.
func latest(m *pkgManager, missing, outdated []string, act func(string, []string) error) error {
	var what []string
	if len(missing) > 0 {
		what = append(what, "install "+strings.Join(missing, " "))
	}
	if len(outdated) > 0 {
		what = append(what, "upgrade "+strings.Join(outdated, " "))
	}
	switch {
	case len(what) == 0:
		return nil
	case m.latest != nil:
		return act(strings.Join(what, ", "), m.latest(append(slices.Clone(missing), outdated...)))
	}
	if len(missing) > 0 {
		if err := act(what[0], m.install(missing)); err != nil {
			return err
		}
		what = what[1:]
	}
	if len(outdated) > 0 {
		return act(what[0], m.upgrade(outdated))
	}
	return nil
}

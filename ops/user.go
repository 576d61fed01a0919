package ops

// ops.user and ops.group: local accounts, read with getent and changed
// with the shadow utilities (useradd, usermod, userdel, groupadd,
// groupmod, groupdel).

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"go.starlark.net/starlark"
)

// account is a passwd or group entry.
type account struct {
	name    string
	id, gid int      // gid: a user's primary group
	home    string   // users
	shell   string   // users
	members []string // groups
}

// getent looks name up in database (passwd or group); nil when there is
// no such entry.
func (o *op) getent(database, name string) (*account, error) {
	p, err := o.run([]string{"getent", database, name}, cEnv, "", false)
	if err != nil {
		return nil, err
	}
	switch p.rc {
	case 0:
	case 2: // not found
		return nil, nil
	default:
		return nil, o.errorf("getent %s %s exited with rc %d: %s", database, name, p.rc, strings.TrimSpace(p.stderr))
	}
	line, _, _ := strings.Cut(p.stdout, "\n")
	return parseAccount(database, line)
}

// parseAccount reads a line of /etc/passwd or /etc/group.
func parseAccount(database, line string) (*account, error) {
	f := strings.Split(strings.TrimSpace(line), ":")
	want := map[string]int{"passwd": 7, "group": 4}[database]
	if len(f) < want {
		return nil, fmt.Errorf("getent %s: malformed entry %q", database, line)
	}
	a := &account{name: f[0]}
	var err error
	if a.id, err = strconv.Atoi(f[2]); err != nil {
		return nil, fmt.Errorf("getent %s: malformed id in %q", database, line)
	}
	if database == "group" {
		if f[3] != "" {
			a.members = strings.Split(f[3], ",")
		}
		return a, nil
	}
	if a.gid, err = strconv.Atoi(f[3]); err != nil {
		return nil, fmt.Errorf("getent passwd: malformed gid in %q", line)
	}
	a.home, a.shell = f[5], f[6]
	return a, nil
}

// supplementary lists the groups that name is a member of (besides its
// primary group), sorted.
func (o *op) supplementary(name string) ([]string, error) {
	p, err := o.run([]string{"getent", "group"}, cEnv, "", true)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(p.stdout, "\n") {
		if g, err := parseAccount("group", line); err == nil && slices.Contains(g.members, name) {
			out = append(out, g.name)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// groupID resolves a group given by name or number.
func (o *op) groupID(group string) (int, error) {
	g, err := o.getent("group", group)
	if err != nil {
		return 0, err
	}
	if g == nil {
		return 0, o.errorf("no group %q", group)
	}
	return g.id, nil
}

// idParam reads an id given as None (-1) or a non-negative int.
func idParam(fn, param string, v starlark.Value) (int, error) {
	if v == starlark.None {
		return -1, nil
	}
	var id int
	if err := starlark.AsInt(v, &id); err != nil || id < 0 || id > 1<<31-1 {
		return 0, fmt.Errorf("%s: %s must be a non-negative int or None, got %s", fn, param, v)
	}
	return id, nil
}

// ops.user(name, uid=None, group=None, groups=None, shell=None,
// home=None, state="present", append=False, create_home=True,
// remove=False)
func opUser(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name string
	var uidV, groupV, groupsV, shellV, homeV starlark.Value = starlark.None, starlark.None, starlark.None, starlark.None, starlark.None
	state, appendGroups, createHome, remove := "present", false, true, false
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name, "uid?", &uidV, "group?", &groupV,
		"groups?", &groupsV, "shell?", &shellV, "home?", &homeV, "state?", &state,
		"append?", &appendGroups, "create_home?", &createHome, "remove?", &remove); err != nil {
		return nil, err
	}
	const forbidden = ":,/"
	if err := checkName(b.Name(), "user name", name, forbidden); err != nil {
		return nil, err
	}
	present, err := presence(b.Name(), state)
	if err != nil {
		return nil, err
	}
	uid, err := idParam(b.Name(), "uid", uidV)
	if err != nil {
		return nil, err
	}
	var group string
	switch g := groupV.(type) {
	case starlark.NoneType:
	case starlark.String:
		group = string(g)
	case starlark.Int:
		id, err := idParam(b.Name(), "group", g)
		if err != nil {
			return nil, err
		}
		group = strconv.Itoa(id)
	default:
		return nil, fmt.Errorf("%s: group must be a name, a gid or None, got %s", b.Name(), groupV.Type())
	}
	if group != "" {
		if err := checkName(b.Name(), "group", group, forbidden); err != nil {
			return nil, err
		}
	}
	var groups []string
	if groupsV != starlark.None {
		if groups, err = stringList(b.Name(), "groups", groupsV); err != nil {
			return nil, err
		}
		for _, g := range groups {
			if err := checkName(b.Name(), "group", g, forbidden); err != nil {
				return nil, err
			}
		}
		slices.Sort(groups)
		groups = slices.Compact(groups)
	}
	shell, err := optString(b.Name(), "shell", shellV)
	if err != nil {
		return nil, err
	}
	home, err := optString(b.Name(), "home", homeV)
	if err != nil {
		return nil, err
	}
	for param, v := range map[string]string{"shell": shell, "home": home} {
		if strings.ContainsAny(v, ":\n\x00") {
			return nil, fmt.Errorf("%s: %s %q contains ':' or a control character", b.Name(), param, v)
		}
	}
	o := newOp(thread, b.Name(), name)
	cur, err := o.getent("passwd", name)
	if err != nil {
		return nil, err
	}
	switch {
	case !present && cur == nil:
	case !present:
		argv := []string{"userdel"}
		if remove {
			argv = append(argv, "-r")
		}
		err = o.changeRun("remove user", cEnv, append(argv, name)...)
	case cur == nil:
		argv := []string{"useradd"}
		if uid >= 0 {
			argv = append(argv, "-u", strconv.Itoa(uid))
		}
		if group != "" {
			argv = append(argv, "-g", group)
		}
		if len(groups) > 0 {
			argv = append(argv, "-G", strings.Join(groups, ","))
		}
		if shell != "" {
			argv = append(argv, "-s", shell)
		}
		if home != "" {
			argv = append(argv, "-d", home)
		}
		if createHome {
			argv = append(argv, "-m")
		} else {
			argv = append(argv, "-M")
		}
		err = o.changeRun("create user", cEnv, append(argv, name)...)
	default:
		err = o.modifyUser(cur, uid, group, groups, appendGroups, shell, home)
	}
	if err != nil {
		return nil, err
	}
	return o.result("ok: user " + name + " " + state + " as asked"), nil
}

// modifyUser runs one usermod for everything of cur that differs.
func (o *op) modifyUser(cur *account, uid int, group string, groups []string, appendGroups bool, shell, home string) error {
	argv := []string{"usermod"}
	var what []string
	if uid >= 0 && uid != cur.id {
		argv = append(argv, "-u", strconv.Itoa(uid))
		what = append(what, fmt.Sprintf("set uid %d (was %d)", uid, cur.id))
	}
	if group != "" {
		gid, err := o.groupID(group)
		if err != nil {
			return err
		}
		if gid != cur.gid {
			argv = append(argv, "-g", group)
			what = append(what, fmt.Sprintf("set group %s (was %s)", group, groupName(cur.gid)))
		}
	}
	if groups != nil {
		have, err := o.supplementary(cur.name)
		if err != nil {
			return err
		}
		var missing []string
		for _, g := range groups {
			if !slices.Contains(have, g) {
				missing = append(missing, g)
			}
		}
		switch {
		case appendGroups && len(missing) > 0:
			argv = append(argv, "-a", "-G", strings.Join(missing, ","))
			what = append(what, "add to groups "+strings.Join(missing, ","))
		case !appendGroups && !slices.Equal(have, groups):
			argv = append(argv, "-G", strings.Join(groups, ","))
			what = append(what, fmt.Sprintf("set groups %s (were %s)", strings.Join(groups, ","), strings.Join(have, ",")))
		}
	}
	if shell != "" && shell != cur.shell {
		argv = append(argv, "-s", shell)
		what = append(what, fmt.Sprintf("set shell %s (was %s)", shell, cur.shell))
	}
	if home != "" && home != cur.home {
		argv = append(argv, "-d", home)
		what = append(what, fmt.Sprintf("set home %s (was %s)", home, cur.home))
	}
	if len(what) == 0 {
		return nil
	}
	return o.changeAll(what, o.runner(cEnv, append(argv, cur.name)...))
}

// ops.group(name, gid=None, state="present")
func opGroup(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name string
	var gidV starlark.Value = starlark.None
	state := "present"
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name, "gid?", &gidV, "state?", &state); err != nil {
		return nil, err
	}
	if err := checkName(b.Name(), "group name", name, ":,/"); err != nil {
		return nil, err
	}
	present, err := presence(b.Name(), state)
	if err != nil {
		return nil, err
	}
	gid, err := idParam(b.Name(), "gid", gidV)
	if err != nil {
		return nil, err
	}
	o := newOp(thread, b.Name(), name)
	cur, err := o.getent("group", name)
	if err != nil {
		return nil, err
	}
	switch {
	case !present && cur != nil:
		err = o.changeRun("remove group", cEnv, "groupdel", name)
	case present && cur == nil && gid >= 0:
		err = o.changeRun("create group", cEnv, "groupadd", "-g", strconv.Itoa(gid), name)
	case present && cur == nil:
		err = o.changeRun("create group", cEnv, "groupadd", name)
	case present && gid >= 0 && cur.id != gid:
		err = o.changeRun(fmt.Sprintf("set gid %d (was %d)", gid, cur.id), cEnv, "groupmod", "-g", strconv.Itoa(gid), name)
	}
	if err != nil {
		return nil, err
	}
	return o.result("ok: group " + name + " " + state + " as asked"), nil
}

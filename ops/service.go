package ops

// ops.service: a service started, stopped, restarted or reloaded, and
// enabled or disabled at boot, through the host's init system: systemd,
// OpenRC or SysV init scripts.

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.starlark.net/starlark"
)

// An initSystem is how ops.service drives one init system.
type initSystem interface {
	// check fails when the service does not exist.
	check(o *op, name string) error
	running(o *op, name string) (bool, error)
	enabled(o *op, name string) (bool, error)
	// action runs start, stop, restart or reload.
	action(name, verb string) []string
	// enable returns the command that enables (on) or disables it.
	enable(o *op, name string, on bool) ([]string, error)
}

// initSystemNamed is the init system facts() reports as name, or nil.
func initSystemNamed(name string) initSystem {
	switch name {
	case "systemd":
		return systemd{}
	case "openrc":
		return openrc{}
	case "sysv":
		return sysv{}
	}
	return nil
}

// detectInit names the init system managing services here: systemd when
// it runs, OpenRC when it does, else SysV scripts in /etc/init.d; "" for
// none of them.
func detectInit() string {
	switch {
	case isDir("/run/systemd/system"):
		return "systemd"
	case isDir("/run/openrc") || (lookPath("openrc-run") && lookPath("rc-service")):
		return "openrc"
	case isDir("/etc/init.d"):
		return "sysv"
	}
	return ""
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

// systemd drives systemctl.
type systemd struct{}

func (systemd) show(o *op, name string) (map[string]string, error) {
	p, err := o.run([]string{"systemctl", "show", "--property=LoadState,ActiveState,UnitFileState", name}, cEnv, "", true)
	if err != nil {
		return nil, err
	}
	props := map[string]string{}
	for _, line := range strings.Split(p.stdout, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			props[k] = strings.TrimSpace(v)
		}
	}
	return props, nil
}

func (s systemd) check(o *op, name string) error {
	props, err := s.show(o, name)
	if err != nil {
		return err
	}
	if props["LoadState"] == "not-found" {
		return o.errorf("no such service (systemd unit not found)")
	}
	return nil
}

func (s systemd) running(o *op, name string) (bool, error) {
	props, err := s.show(o, name)
	switch props["ActiveState"] {
	case "active", "activating", "reloading":
		return true, err
	}
	return false, err
}

func (s systemd) enabled(o *op, name string) (bool, error) {
	props, err := s.show(o, name)
	switch props["UnitFileState"] {
	case "enabled", "enabled-runtime", "static", "alias", "indirect", "generated":
		return true, err
	}
	return false, err
}

func (systemd) action(name, verb string) []string { return []string{"systemctl", verb, name} }

func (systemd) enable(_ *op, name string, on bool) ([]string, error) {
	if on {
		return []string{"systemctl", "enable", name}, nil
	}
	return []string{"systemctl", "disable", name}, nil
}

// openrc drives rc-service and rc-update (runlevel "default").
type openrc struct{}

func (openrc) check(o *op, name string) error {
	p, err := o.run([]string{"rc-service", "--exists", name}, cEnv, "", false)
	if err == nil && p.rc != 0 {
		return o.errorf("no such service (rc-service --exists says no)")
	}
	return err
}

func (openrc) running(o *op, name string) (bool, error) {
	p, err := o.run([]string{"rc-service", name, "status"}, cEnv, "", false)
	return err == nil && p.rc == 0, err
}

func (openrc) enabled(o *op, name string) (bool, error) {
	p, err := o.run([]string{"rc-update", "show", "default"}, cEnv, "", true)
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(p.stdout, "\n") {
		if n, _, ok := strings.Cut(line, "|"); ok && strings.TrimSpace(n) == name {
			return true, nil
		}
	}
	return false, nil
}

func (openrc) action(name, verb string) []string { return []string{"rc-service", name, verb} }

func (openrc) enable(_ *op, name string, on bool) ([]string, error) {
	if on {
		return []string{"rc-update", "add", name, "default"}, nil
	}
	return []string{"rc-update", "del", name, "default"}, nil
}

// sysv runs /etc/init.d scripts; boot links are managed with update-rc.d
// (Debian) or chkconfig (Red Hat).
type sysv struct{}

// sysvDir is where the scripts are (a variable for tests).
var sysvDir = "/etc/init.d"

func (sysv) script(name string) string { return filepath.Join(sysvDir, name) }

func (s sysv) check(o *op, name string) error {
	if fi, err := os.Stat(s.script(name)); err != nil || fi.IsDir() {
		return o.errorf("no such service (no init script %s)", s.script(name))
	}
	return nil
}

func (s sysv) running(o *op, name string) (bool, error) {
	p, err := o.run([]string{s.script(name), "status"}, cEnv, "", false)
	return err == nil && p.rc == 0, err
}

// links lists the boot links of name (rc?.d/[SK]NNname).
func (sysv) links(name string, start bool) []string {
	kind := "[SK]"
	if start {
		kind = "S"
	}
	var out []string
	for _, dir := range []string{"/etc/rc[2-5].d", "/etc/rc.d/rc[2-5].d"} {
		m, _ := filepath.Glob(filepath.Join(dir, kind+"[0-9][0-9]"+name))
		out = append(out, m...)
	}
	return out
}

func (s sysv) enabled(_ *op, name string) (bool, error) { return len(s.links(name, true)) > 0, nil }

func (s sysv) action(name, verb string) []string { return []string{s.script(name), verb} }

func (s sysv) enable(o *op, name string, on bool) ([]string, error) {
	switch {
	case lookPath("update-rc.d"):
		switch {
		case !on:
			return []string{"update-rc.d", name, "disable"}, nil
		case len(s.links(name, false)) == 0:
			return []string{"update-rc.d", name, "defaults"}, nil
		}
		return []string{"update-rc.d", name, "enable"}, nil
	case lookPath("chkconfig"):
		if on {
			return []string{"chkconfig", name, "on"}, nil
		}
		return []string{"chkconfig", name, "off"}, nil
	}
	return nil, o.errorf("cannot change boot links: neither update-rc.d nor chkconfig is on PATH")
}

// serviceStates are the states ops.service accepts (None: leave it).
var serviceStates = []string{"", "started", "stopped", "restarted", "reloaded"}

// ops.service(name, state=None, enabled=None, init=None)
func opService(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name string
	var stateV, enabledV, initV starlark.Value = starlark.None, starlark.None, starlark.None
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name, "state?", &stateV,
		"enabled?", &enabledV, "init?", &initV); err != nil {
		return nil, err
	}
	if err := checkName(b.Name(), "service name", name, "/"); err != nil {
		return nil, err
	}
	state, err := optString(b.Name(), "state", stateV)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(serviceStates, state) {
		return nil, fmt.Errorf("%s: unknown state %q (want started, stopped, restarted, reloaded or None)", b.Name(), state)
	}
	enable, enableGiven, err := optBool(b.Name(), "enabled", enabledV)
	if err != nil {
		return nil, err
	}
	initName, err := optString(b.Name(), "init", initV)
	if err != nil {
		return nil, err
	}
	if initName == "" {
		if initName = detectInit(); initName == "" {
			return nil, fmt.Errorf("%s: no supported init system on this host (systemd, openrc or sysv)", b.Name())
		}
	}
	sys := initSystemNamed(initName)
	if sys == nil {
		return nil, fmt.Errorf("%s: unknown init system %q (want systemd, openrc or sysv)", b.Name(), initName)
	}
	o := newOp(thread, b.Name(), name)
	o.extra = starlark.StringDict{"init": starlark.String(initName)}
	if err := sys.check(o, name); err != nil {
		return nil, err
	}
	act := func(what string, argv []string) error { return o.changeRun(what, cEnv, argv...) }
	if state != "" {
		running, err := sys.running(o, name)
		if err != nil {
			return nil, err
		}
		switch {
		case state == "started" && !running, state == "reloaded" && !running:
			err = act("start", sys.action(name, "start"))
		case state == "stopped" && running:
			err = act("stop", sys.action(name, "stop"))
		case state == "restarted":
			err = act("restart", sys.action(name, "restart"))
		case state == "reloaded":
			err = act("reload", sys.action(name, "reload"))
		}
		if err != nil {
			return nil, err
		}
	}
	if enableGiven {
		on, err := sys.enabled(o, name)
		if err != nil {
			return nil, err
		}
		if on != enable {
			argv, err := sys.enable(o, name, enable)
			if err != nil {
				return nil, err
			}
			what := map[bool]string{true: "enable", false: "disable"}[enable]
			if err := act(what, argv); err != nil {
				return nil, err
			}
		}
	}
	return o.result("ok: service " + name + " as asked (" + initName + ")"), nil
}

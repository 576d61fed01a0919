package fanout

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mitostar/mitostar/core"
	"github.com/mitostar/mitostar/inventory"
)

// A hop is one connection: a method and its options.
type hop struct {
	method string
	opts   core.ConnectOptions
}

// A plan says how to reach a host: through which relay (another
// inventory host, or none), the login hop, and the become hop if any.
type plan struct {
	via    string
	login  hop
	become *hop
	// noMux turns connection sharing off (mitostar_multiplex=false).
	noMux bool
}

// connectionMethod is mitostar's method for an ansible_connection value
// (Ansible's plugin names, their collection names and ansible-mitogen's);
// a name mitostar knows is taken as it is.
func connectionMethod(name string) string {
	switch name {
	case "smart", "paramiko", "paramiko_ssh", "ansible.builtin.ssh", "ansible.builtin.paramiko_ssh":
		return "ssh"
	case "ansible.builtin.local":
		return "local"
	case "community.docker.docker", "community.docker.docker_api":
		return "docker"
	case "containers.podman.podman":
		return "podman"
	case "containers.podman.buildah":
		return "buildah"
	case "community.general.lxd", "community.general.lxc", "community.general.incus", "community.general.jail":
		return strings.TrimPrefix(name, "community.general.")
	case "kubernetes.core.kubectl":
		return "kubectl"
	}
	return name
}

// withUser are the methods that take username= for ansible_user.
var withUser = []string{"ssh", "docker", "podman", "buildah", "jail"}

// targetKeyword is the keyword that takes the target (ansible_host, or
// the inventory name) of the methods that have one besides ssh.
func targetKeyword(method string) (string, bool) {
	switch method {
	case "docker", "podman", "buildah", "lxc", "lxd", "incus", "jail", "setns":
		return "container", true
	case "kubectl":
		return "pod", true
	}
	return "", false
}

// becomePathKeyword is, for the ansible_become_method values mitostar
// has, the keyword naming their executable.
func becomePathKeyword(method string) (string, bool) {
	switch method {
	case "sudo", "su", "doas":
		return method + "_path", true
	}
	return "", false
}

// planFor reads a host's connection variables.
func (s *Session) planFor(h *inventory.Host) (*plan, error) {
	vars := h.Vars()
	str := func(names ...string) (string, bool) {
		for _, n := range names {
			if v, ok := vars[n]; ok && v != nil {
				return fmt.Sprint(v), true
			}
		}
		return "", false
	}
	p := &plan{}
	if via, ok := str("mitostar_via"); ok {
		p.via = via
	}
	if v, ok := vars["mitostar_multiplex"]; ok && !truthy(v) {
		p.noMux = true
	}
	conn, _ := str("ansible_connection")
	if conn == "" {
		conn = "ssh"
	}
	method := strings.TrimPrefix(conn, "mitogen_")
	method = connectionMethod(method)
	if !knownMethod(method) {
		return nil, fmt.Errorf("ansible_connection %q is not a connection method mitostar has (it has %s)", conn, strings.Join(core.Methods(), ", "))
	}
	kw := map[string]any{}
	target, ok := str("ansible_host", "ansible_ssh_host")
	if !ok {
		target = h.Name
	}
	if method == "ssh" {
		kw["hostname"] = target
		if v, ok := vars["ansible_port"]; ok && v != nil {
			port, err := toInt(v)
			if err != nil {
				return nil, fmt.Errorf("ansible_port: %w", err)
			}
			kw["port"] = port
		} else if v, ok := vars["ansible_ssh_port"]; ok && v != nil {
			port, err := toInt(v)
			if err != nil {
				return nil, fmt.Errorf("ansible_ssh_port: %w", err)
			}
			kw["port"] = port
		}
		if pw, ok := str("ansible_password", "ansible_ssh_pass", "ansible_ssh_password"); ok {
			kw["password"] = pw
		} else if s.opts.SSHPassword != nil {
			kw["password"] = *s.opts.SSHPassword
		}
		if key, ok := str("ansible_ssh_private_key_file", "ansible_private_key_file"); ok {
			kw["identity_file"] = key
		}
		var args []any
		for _, name := range []string{"ansible_ssh_common_args", "ansible_ssh_extra_args"} {
			if a, ok := str(name); ok {
				words, err := inventory.ShellSplit(a)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", name, err)
				}
				for _, w := range words {
					args = append(args, w)
				}
			}
		}
		if len(args) > 0 {
			kw["ssh_args"] = args
		}
		if exe, ok := str("ansible_ssh_executable"); ok {
			kw["ssh_path"] = exe
		}
		if v, ok := vars["ansible_host_key_checking"]; ok && !truthy(v) {
			kw["check_host_keys"] = "ignore"
		}
	} else if k, ok := targetKeyword(method); ok {
		kw[k] = target
	}
	if user, ok := str("ansible_user", "ansible_ssh_user"); ok && slices.Contains(withUser, method) {
		kw["username"] = user
	}
	p.login = hop{method: method, opts: core.ConnectOptions{Name: h.Name, Kwargs: kw}}
	if err := applyKeywords(&p.login, vars, "mitostar_", method); err != nil {
		return nil, err
	}

	become := s.opts.Become
	if v, ok := vars["ansible_become"]; ok {
		become = become || truthy(v)
	}
	if !become {
		return p, nil
	}
	bm, _ := str("ansible_become_method")
	if bm == "" {
		bm = "sudo"
	}
	pathKw, ok := becomePathKeyword(bm)
	if !ok {
		return nil, fmt.Errorf("ansible_become_method %q is not one mitostar has (sudo, su, doas)", bm)
	}
	bkw := map[string]any{}
	if u, ok := str("ansible_become_user"); ok {
		bkw["username"] = u
	}
	if pw, ok := str("ansible_become_password", "ansible_become_pass", "ansible_"+bm+"_pass"); ok {
		bkw["password"] = pw
	} else if s.opts.BecomePassword != nil {
		bkw["password"] = *s.opts.BecomePassword
	}
	if exe, ok := str("ansible_become_exe"); ok {
		bkw[pathKw] = exe
	}
	if flags, ok := str("ansible_become_flags"); ok && bm == "sudo" {
		words, err := inventory.ShellSplit(flags)
		if err != nil {
			return nil, fmt.Errorf("ansible_become_flags: %w", err)
		}
		var args []any
		for _, w := range words {
			args = append(args, w)
		}
		bkw["sudo_args"] = args
	}
	p.become = &hop{method: bm, opts: core.ConnectOptions{Name: h.Name, Kwargs: bkw}}
	p.login.opts.Name = h.Name + "/" + method
	if err := applyKeywords(p.become, vars, "mitostar_become_", bm); err != nil {
		return nil, err
	}
	p.become.opts.ConnectTimeout = p.login.opts.ConnectTimeout
	return p, nil
}

// applyKeywords copies PREFIX<keyword> variables into a hop: any keyword
// of its method, connect_timeout among them.
func applyKeywords(h *hop, vars map[string]any, prefix, method string) error {
	for k, v := range vars {
		kw, ok := strings.CutPrefix(k, prefix)
		if !ok || kw == "via" || strings.HasPrefix(kw, "become_") && prefix == "mitostar_" {
			continue
		}
		switch kw {
		case "connect_timeout":
			secs, err := toFloat(v)
			if err != nil || secs <= 0 {
				return fmt.Errorf("%s: want a positive number of seconds, got %v", k, v)
			}
			h.opts.ConnectTimeout = time.Duration(secs * float64(time.Second))
		case "ssh_transport":
			if method == "ssh" {
				h.opts.Kwargs["transport"] = v
			}
		case "multiplex":
			// Read by planFor: the fan-out's, not the method's.
		case "name", "via":
			return fmt.Errorf("%s cannot be set from the inventory", k)
		default:
			if strings.Contains(kw, "password") {
				// A password is a string even when it reads as a number;
				// a type error about it would print it.
				v = fmt.Sprint(v)
			}
			if s, ok := v.(string); ok && (kw == "port" || strings.HasSuffix(kw, "_interval") || strings.HasSuffix(kw, "_count")) {
				if n, err := strconv.ParseInt(s, 10, 64); err == nil {
					v = n
				}
			}
			h.opts.Kwargs[kw] = v
		}
	}
	return nil
}

func knownMethod(m string) bool {
	for _, k := range core.Methods() {
		if k == m {
			return true
		}
	}
	return false
}

func truthy(v any) bool {
	switch x := v.(type) {
	case bool:
		return x
	case int64:
		return x != 0
	case float64:
		return x != 0
	case string:
		switch strings.ToLower(strings.TrimSpace(x)) {
		case "yes", "y", "true", "t", "on", "1":
			return true
		}
	}
	return false
}

func toInt(v any) (int64, error) {
	switch x := v.(type) {
	case int64:
		return x, nil
	case float64:
		if x == math.Trunc(x) {
			return int64(x), nil
		}
	case string:
		if n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64); err == nil {
			return n, nil
		}
	}
	return 0, fmt.Errorf("want an integer, got %v", v)
}

func toFloat(v any) (float64, error) {
	switch x := v.(type) {
	case int64:
		return float64(x), nil
	case float64:
		return x, nil
	case string:
		return strconv.ParseFloat(strings.TrimSpace(x), 64)
	}
	return 0, fmt.Errorf("want a number, got %v", v)
}

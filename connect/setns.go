package connect

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mitostar/mitostar/core"
)

// setnsKinds are the container kinds whose leader pid setns can find.
var setnsKinds = []string{"docker", "lxc", "lxd", "machinectl"}

// setnsTransport enters the namespaces of a container's leader process
// (or of any pid) from the host, as root, with no tool needed inside
// the target but sh. Go cannot setns(2) into a mount namespace once its
// runtime has started threads, so the namespaces are entered by
// nsenter(1) before anything of mitostar runs: nsenter --target PID
// --all --root [--wd] [--setuid U --setgid G] -- sh -c STUB. The stub
// then finds or receives the binary inside the container, like on any
// target.
type setnsTransport struct {
	container, kind, username string
	pid                       int
	nsenterPath               string
	dockerPath                string
	lxcPath, lxcInfoPath      string
	machinectlPath            string
}

// newSetns is Mitogen's setns method. Keywords: container and kind
// ("docker", "lxc", "lxd" or "machinectl"), or pid; username (default
// root); docker_path, lxc_path (lxd's client), lxc_info_path,
// machinectl_path, nsenter_path.
func newSetns(r *core.Router, opts *core.ConnectOptions) (core.Transport, error) {
	k := newKwargs("setns", opts.Kwargs)
	t := &setnsTransport{
		container:      k.str("container", ""),
		kind:           k.str("kind", ""),
		pid:            k.integer("pid", 0, 1, 1<<22),
		username:       k.str("username", "root"),
		nsenterPath:    k.str("nsenter_path", "nsenter"),
		dockerPath:     k.str("docker_path", "docker"),
		lxcPath:        k.str("lxc_path", "lxc"),
		lxcInfoPath:    k.str("lxc_info_path", "lxc-info"),
		machinectlPath: k.str("machinectl_path", "machinectl"),
	}
	if err := k.finish(); err != nil {
		return nil, err
	}
	switch {
	case t.container == "" && t.pid == 0:
		return nil, errors.New("setns: give container= and kind=, or pid=")
	case t.container != "" && t.pid != 0:
		return nil, errors.New("setns: give container= or pid=, not both")
	case t.container != "" && !slices.Contains(setnsKinds, t.kind):
		return nil, fmt.Errorf("setns: unsupported container kind %q (want one of %s)", t.kind, strings.Join(setnsKinds, ", "))
	case t.username == "":
		return nil, errors.New("setns: username must not be empty")
	case t.nsenterPath == "":
		return nil, errors.New("setns: nsenter_path must not be empty")
	}
	if err := checkName("setns", "container", t.container); err != nil {
		return nil, err
	}
	if t.pid != 0 {
		t.kind = ""
	}
	return t, nil
}

func (t *setnsTransport) DefaultName() string {
	if t.container != "" {
		return "setns." + t.container
	}
	return "setns." + strconv.Itoa(t.pid)
}

// what names the target in messages.
func (t *setnsTransport) what() string {
	if t.container != "" {
		return t.kind + " container " + quote(t.container)
	}
	return "process " + strconv.Itoa(t.pid)
}

func (t *setnsTransport) Start(ctx context.Context, env *core.StartEnv) (*core.Conn, error) {
	e := &execTransport{
		method:   "setns",
		name:     t.DefaultName(),
		what:     t.what(),
		describe: "nsenter into " + t.what(),
		prepare:  t.prepare,
	}
	return e.Start(ctx, env)
}

// prepare finds the leader pid and the user, and returns nsenter's
// command line and the user's environment.
func (t *setnsTransport) prepare(ctx context.Context) ([]string, []string, error) {
	pid := t.pid
	if t.container != "" {
		var err error
		if pid, err = t.leaderPID(ctx); err != nil {
			return nil, nil, err
		}
	}
	if !processRunning(pid) {
		return nil, nil, fmt.Errorf("setns: %s is not running", t.what())
	}
	root := "/proc/" + strconv.Itoa(pid) + "/root"
	u, err := lookupUser(root, t.username)
	if err != nil {
		return nil, nil, fmt.Errorf("setns: user %q in %s: %w", t.username, t.what(), err)
	}
	argv := []string{t.nsenterPath, "--target", strconv.Itoa(pid), "--all", "--root"}
	// The home directory is opened through the target's root before
	// nsenter switches, so it names the directory inside the container.
	if st, err := os.Stat(filepath.Join(root, u.home)); err == nil && st.IsDir() && u.home != "" {
		argv = append(argv, "--wd="+filepath.Join(root, u.home))
	}
	if u.uid != 0 || u.gid != 0 {
		argv = append(argv, "--setgid", strconv.Itoa(u.gid), "--setuid", strconv.Itoa(u.uid))
	}
	argv = append(argv, "--")
	shell := u.shell
	if shell == "" {
		shell = "/bin/sh"
	}
	env := []string{"HOME=" + u.home, "SHELL=" + shell, "LOGNAME=" + u.name, "USER=" + u.name}
	return argv, env, nil
}

// leaderPID asks the container's engine for the pid of its first
// process, as Mitogen does.
func (t *setnsTransport) leaderPID(ctx context.Context) (int, error) {
	var argv []string
	var field string
	switch t.kind {
	case "docker":
		argv = []string{t.dockerPath, "inspect", "--format={{.State.Pid}}", t.container}
	case "lxc":
		argv, field = []string{t.lxcInfoPath, "-n", t.container}, "pid:"
	case "lxd":
		argv, field = []string{t.lxcPath, "info", t.container}, "pid:"
	case "machinectl":
		argv, field = []string{t.machinectlPath, "status", t.container}, "leader:"
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	text := strings.TrimSpace(string(out))
	if err != nil {
		low := strings.ToLower(text)
		for _, s := range []string{"no such object", "no such container", "not found", "doesn't exist", "does not exist", "no machine", "not known"} {
			if strings.Contains(low, s) {
				return 0, fmt.Errorf("setns: %s not found (%s)", t.what(), text)
			}
		}
		return 0, fmt.Errorf("setns: finding the pid of %s: %s: %v: %s", t.what(), argv[0], err, text)
	}
	if field == "" {
		pid, err := strconv.Atoi(text)
		if err != nil {
			return 0, fmt.Errorf("setns: could not find the pid of %s in docker's output %q", t.what(), text)
		}
		if pid == 0 {
			return 0, fmt.Errorf("setns: %s is not running", t.what())
		}
		return pid, nil
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && strings.EqualFold(f[0], field) {
			pid, err := strconv.Atoi(f[1])
			if err == nil && pid > 0 {
				return pid, nil
			}
		}
	}
	low := strings.ToLower(text)
	if strings.Contains(low, "stopped") {
		return 0, fmt.Errorf("setns: %s is not running", t.what())
	}
	return 0, fmt.Errorf("setns: could not find the pid of %s in the output of %s: %q", t.what(), filepath.Base(argv[0]), text)
}

// processRunning reports whether pid exists and is not a zombie.
func processRunning(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] != 'Z' && s[i+2] != 'X' && syscall.Kill(pid, 0) == nil
}

// containerUser is an /etc/passwd entry inside the target.
type containerUser struct {
	name     string
	uid, gid int
	home     string
	shell    string
}

// lookupUser finds name (or a numeric uid) in root/etc/passwd.
func lookupUser(root, name string) (containerUser, error) {
	data, err := os.ReadFile(filepath.Join(root, "etc", "passwd"))
	if err != nil {
		if name == "root" || name == "0" {
			return containerUser{name: "root", home: "/root", shell: "/bin/sh"}, nil
		}
		return containerUser{}, fmt.Errorf("reading /etc/passwd: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Split(line, ":")
		if len(f) < 7 {
			continue
		}
		if f[0] != name && f[2] != name {
			continue
		}
		uid, err1 := strconv.Atoi(f[2])
		gid, err2 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil {
			return containerUser{}, fmt.Errorf("malformed /etc/passwd line %q", line)
		}
		return containerUser{name: f[0], uid: uid, gid: gid, home: f[5], shell: f[6]}, nil
	}
	return containerUser{}, errors.New("no such user in /etc/passwd")
}

package connect

import (
	"context"
	"fmt"
	"reflect"

	"github.com/mitostar/mitostar/core"
)

// A Method is a connection method and its keywords as a Go value: the
// typed way to start a context from Go (router.ssh(...) and friends in a
// script). Kwargs gives the keywords that are set, which the method
// checks as it checks a script's, so both meet the same rules and the
// same defaults.
//
// A field left at its zero value is not given: the method's default
// applies (the docs of each keyword are in docs/connections.md). Fields
// whose zero value is a meaningful choice (false where the default is
// true, 0 where 0 means off) are pointers.
type Method interface {
	// Method names the connection method ("ssh", "sudo", ...).
	Method() string
	// Kwargs returns the keywords that are set.
	Kwargs() map[string]any
}

// Connect starts a context with method m and the options every method
// shares (name, via, timeout, ...); its Kwargs are m's.
func Connect(ctx context.Context, r *core.Router, m Method, opts core.ConnectOptions) (*core.Context, error) {
	opts.Kwargs = m.Kwargs()
	return r.Connect(ctx, m.Method(), &opts)
}

// Local starts this executable again, as a child (router.local).
type Local struct {
	RemoteName string `kw:"remote_name"` // argv[0] of the child, as ps shows it
}

// Fork is Local with this context's module cache passed along
// (router.fork).
type Fork struct {
	RemoteName string `kw:"remote_name"`
}

// SSH is router.ssh.
type SSH struct {
	Hostname          string   `kw:"hostname"`
	Username          string   `kw:"username"`
	Port              int      `kw:"port"`
	SSHPath           string   `kw:"ssh_path"`
	CheckHostKeys     string   `kw:"check_host_keys"` // "enforce" (default), "accept" or "ignore"
	Password          string   `kw:"password"`
	IdentityFile      string   `kw:"identity_file"`
	IdentitiesOnly    *bool    `kw:"identities_only"`
	Compression       *bool    `kw:"compression"`
	SSHArgs           []string `kw:"ssh_args"`
	KeepaliveInterval *int     `kw:"keepalive_interval"` // seconds; 0 turns keepalives off
	KeepaliveCount    *int     `kw:"keepalive_count"`
	SSHDebugLevel     int      `kw:"ssh_debug_level"`
	Transport         string   `kw:"transport"` // "openssh" or "native"
}

// Sudo is router.sudo.
type Sudo struct {
	Username    string   `kw:"username"`
	SudoPath    string   `kw:"sudo_path"`
	Password    string   `kw:"password"`
	SetHome     bool     `kw:"set_home"`
	PreserveEnv bool     `kw:"preserve_env"`
	Login       bool     `kw:"login"`
	SELinuxRole string   `kw:"selinux_role"`
	SELinuxType string   `kw:"selinux_type"`
	SudoArgs    []string `kw:"sudo_args"`
}

// Su is router.su.
type Su struct {
	Username         string   `kw:"username"`
	Password         string   `kw:"password"`
	SuPath           string   `kw:"su_path"`
	PasswordPrompt   string   `kw:"password_prompt"`
	IncorrectPrompts []string `kw:"incorrect_prompts"`
}

// Doas is router.doas.
type Doas struct {
	Username         string   `kw:"username"`
	Password         string   `kw:"password"`
	DoasPath         string   `kw:"doas_path"`
	PasswordPrompt   string   `kw:"password_prompt"`
	IncorrectPrompts []string `kw:"incorrect_prompts"`
}

// Docker is router.docker: a running container, or a new one from Image.
type Docker struct {
	Container  string   `kw:"container"`
	Image      string   `kw:"image"`
	Username   string   `kw:"username"`
	DockerPath string   `kw:"docker_path"`
	RunArgs    []string `kw:"run_args"`
}

// Podman is router.podman.
type Podman struct {
	Container  string   `kw:"container"`
	Image      string   `kw:"image"`
	Username   string   `kw:"username"`
	PodmanPath string   `kw:"podman_path"`
	RunArgs    []string `kw:"run_args"`
}

// Buildah is router.buildah.
type Buildah struct {
	Container   string   `kw:"container"`
	Image       string   `kw:"image"`
	Username    string   `kw:"username"`
	BuildahPath string   `kw:"buildah_path"`
	RunArgs     []string `kw:"run_args"`
}

// LXC is router.lxc.
type LXC struct {
	Container     string `kw:"container"`
	LXCAttachPath string `kw:"lxc_attach_path"`
}

// LXD is router.lxd.
type LXD struct {
	Container string `kw:"container"`
	LXCPath   string `kw:"lxc_path"`
}

// Incus is router.incus.
type Incus struct {
	Container string `kw:"container"`
	IncusPath string `kw:"incus_path"`
}

// Jail is router.jail.
type Jail struct {
	Container string `kw:"container"`
	JexecPath string `kw:"jexec_path"`
	Username  string `kw:"username"`
}

// Kubectl is router.kubectl.
type Kubectl struct {
	Pod         string   `kw:"pod"`
	Container   string   `kw:"container"`
	KubectlPath string   `kw:"kubectl_path"`
	KubectlArgs []string `kw:"kubectl_args"`
}

// Setns is router.setns: the namespaces of a container (Kind "docker",
// "lxc", "lxd", "machinectl") or of a process (PID).
type Setns struct {
	Container      string `kw:"container"`
	Kind           string `kw:"kind"`
	PID            int    `kw:"pid"`
	Username       string `kw:"username"`
	DockerPath     string `kw:"docker_path"`
	LXCInfoPath    string `kw:"lxc_info_path"`
	LXCPath        string `kw:"lxc_path"`
	MachinectlPath string `kw:"machinectl_path"`
	NsenterPath    string `kw:"nsenter_path"`
}

func (Local) Method() string   { return "local" }
func (Fork) Method() string    { return "fork" }
func (SSH) Method() string     { return "ssh" }
func (Sudo) Method() string    { return "sudo" }
func (Su) Method() string      { return "su" }
func (Doas) Method() string    { return "doas" }
func (Docker) Method() string  { return "docker" }
func (Podman) Method() string  { return "podman" }
func (Buildah) Method() string { return "buildah" }
func (LXC) Method() string     { return "lxc" }
func (LXD) Method() string     { return "lxd" }
func (Incus) Method() string   { return "incus" }
func (Jail) Method() string    { return "jail" }
func (Kubectl) Method() string { return "kubectl" }
func (Setns) Method() string   { return "setns" }

func (m Local) Kwargs() map[string]any   { return kwargsOf(m) }
func (m Fork) Kwargs() map[string]any    { return kwargsOf(m) }
func (m SSH) Kwargs() map[string]any     { return kwargsOf(m) }
func (m Sudo) Kwargs() map[string]any    { return kwargsOf(m) }
func (m Su) Kwargs() map[string]any      { return kwargsOf(m) }
func (m Doas) Kwargs() map[string]any    { return kwargsOf(m) }
func (m Docker) Kwargs() map[string]any  { return kwargsOf(m) }
func (m Podman) Kwargs() map[string]any  { return kwargsOf(m) }
func (m Buildah) Kwargs() map[string]any { return kwargsOf(m) }
func (m LXC) Kwargs() map[string]any     { return kwargsOf(m) }
func (m LXD) Kwargs() map[string]any     { return kwargsOf(m) }
func (m Incus) Kwargs() map[string]any   { return kwargsOf(m) }
func (m Jail) Kwargs() map[string]any    { return kwargsOf(m) }
func (m Kubectl) Kwargs() map[string]any { return kwargsOf(m) }
func (m Setns) Kwargs() map[string]any   { return kwargsOf(m) }

// kwargsOf returns the keywords of a method struct: each field tagged kw
// that is set, as the plain values a script's keywords arrive as (int64
// for ints, a list of strings).
func kwargsOf(m any) map[string]any {
	out := map[string]any{}
	v := reflect.ValueOf(m)
	for i := range v.NumField() {
		name := v.Type().Field(i).Tag.Get("kw")
		f := v.Field(i)
		if name == "" || f.IsZero() {
			continue
		}
		if f.Kind() == reflect.Pointer {
			f = f.Elem()
		}
		switch f.Kind() {
		case reflect.String:
			out[name] = f.String()
		case reflect.Bool:
			out[name] = f.Bool()
		case reflect.Int:
			out[name] = f.Int()
		case reflect.Slice:
			list := make([]any, f.Len())
			for j := range list {
				list[j] = f.Index(j).String()
			}
			out[name] = list
		default:
			panic(fmt.Sprintf("connect: keyword %s of %T has the unsupported kind %s", name, m, f.Kind()))
		}
	}
	return out
}

// Bool returns a pointer to v, for the *bool fields of a Method.
func Bool(v bool) *bool { return &v }

// Int returns a pointer to v, for the *int fields of a Method.
func Int(v int) *int { return &v }

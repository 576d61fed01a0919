package connect

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/mitostar/mitostar/core"
)

// Messages shared with Mitogen's ssh method.
const (
	sshAuthIncorrect     = "SSH authentication is incorrect"
	sshPasswordIncorrect = "SSH password is incorrect"
	sshPasswordRequired  = "SSH password was requested, but none specified"
	sshHostKeyConfig     = "SSH requested permission to accept unknown host key, but check_host_keys=ignore. This is likely due to ssh_args= conflicting with check_host_keys=. Please correct your configuration."
	sshHostKeyFailed     = "Host key checking is enabled, and SSH reported an unrecognized or mismatching host key."
)

// ssh's output that the prompter acts on is recognised by the functions
// of sshlines.go, written out rather than as regular expressions: the
// regexp package's initialisation (and the Unicode tables it keeps alive)
// would cost every process of this binary at start, every child included.

// sshTransport runs the system's OpenSSH client; with transport="native"
// (nativeSSH) its keywords drive golang.org/x/crypto/ssh instead.
type sshTransport struct {
	transport         string // "openssh" or "native"
	hostname          string
	username          string
	port              int // 0: not given (ssh's default or ~/.ssh/config)
	sshPath           string
	checkHostKeys     string // enforce, accept or ignore
	password          string
	havePassword      bool
	identityFile      string
	identitiesOnly    bool
	compression       bool
	sshArgs           []string
	keepaliveInterval int
	keepaliveCount    int
	debugLevel        int
}

func newSSH(r *core.Router, opts *core.ConnectOptions) (core.Transport, error) {
	k := newKwargs("ssh", opts.Kwargs)
	t := &sshTransport{
		hostname:          k.str("hostname", ""),
		username:          k.str("username", ""),
		port:              k.integer("port", 0, 1, 65535),
		sshPath:           k.str("ssh_path", "ssh"),
		checkHostKeys:     k.str("check_host_keys", "enforce"),
		identityFile:      k.str("identity_file", ""),
		identitiesOnly:    k.boolean("identities_only", true),
		compression:       k.boolean("compression", true),
		sshArgs:           k.strings("ssh_args"),
		keepaliveInterval: k.integer("keepalive_interval", 15, 0, 1<<20),
		keepaliveCount:    k.integer("keepalive_count", 3, 0, 1<<20),
		debugLevel:        k.integer("ssh_debug_level", 0, 0, 3),
	}
	t.password, t.havePassword = k.optStr("password")
	t.transport = k.str("transport", DefaultSSHTransport(r))
	if err := k.finish(); err != nil {
		return nil, err
	}
	switch {
	case t.hostname == "":
		return nil, fmt.Errorf("ssh: hostname is required")
	case strings.HasPrefix(t.hostname, "-"):
		return nil, fmt.Errorf("ssh: hostname %q must not start with '-'", t.hostname)
	case strings.HasPrefix(t.username, "-"):
		return nil, fmt.Errorf("ssh: username %q must not start with '-'", t.username)
	case t.sshPath == "":
		return nil, fmt.Errorf("ssh: ssh_path must not be empty")
	}
	switch t.checkHostKeys {
	case "enforce", "accept", "ignore":
	default:
		return nil, fmt.Errorf("ssh: check_host_keys must be set to accept, enforce or ignore, got %q", t.checkHostKeys)
	}
	switch t.transport {
	case "openssh":
		return t, nil
	case "native":
		return &nativeSSH{sshTransport: t}, nil
	}
	return nil, fmt.Errorf("ssh: transport must be \"openssh\" or \"native\", got %q", t.transport)
}

// SSHTransports are the values of ssh's transport keyword, the default
// first.
var SSHTransports = []string{"openssh", "native"}

// defaultTransports holds each router's default ssh transport, until it
// closes.
var defaultTransports sync.Map // *core.Router → string

// SetDefaultSSHTransport sets the transport of r's ssh connections that
// do not name one ("openssh" or "native"; --ssh-transport). The runtime
// passes it on to every child, so that via= hops use it too.
func SetDefaultSSHTransport(r *core.Router, transport string) error {
	if !slices.Contains(SSHTransports, transport) {
		return fmt.Errorf("unknown ssh transport %q (want %s)", transport, strings.Join(SSHTransports, " or "))
	}
	if _, had := defaultTransports.Swap(r, transport); !had {
		context.AfterFunc(r.Lifetime(), func() { defaultTransports.Delete(r) })
	}
	return nil
}

// DefaultSSHTransport is the transport of r's ssh connections that do
// not name one.
func DefaultSSHTransport(r *core.Router) string {
	if r != nil {
		if v, ok := defaultTransports.Load(r); ok {
			return v.(string)
		}
	}
	return SSHTransports[0]
}

func (t *sshTransport) DefaultName() string {
	port := t.port
	if port == 0 {
		port = 22
	}
	return "ssh." + t.hostname + ":" + strconv.Itoa(port)
}

// argv is the ssh command line: mitostar's own options first (ssh keeps
// the first value it sees of each), then ssh_args, then the host and the
// stub's command line. UserKnownHostsFile is never set here, so ssh_args and
// ~/.ssh/config may choose it.
func (t *sshTransport) argv(command string) []string {
	a := append([]string{t.sshPath}, t.options()...)
	return append(a, "--", t.hostname, command)
}

// options are ssh's options of argv: mitostar's, then ssh_args.
func (t *sshTransport) options() []string {
	var a []string
	if t.debugLevel > 0 {
		a = append(a, "-"+strings.Repeat("v", t.debugLevel))
	} else {
		// A login banner may hold the word "password": keep it away
		// from the prompt matcher, as Mitogen does.
		a = append(a, "-o", "LogLevel=ERROR")
	}
	if t.username != "" {
		a = append(a, "-l", t.username)
	}
	if t.port != 0 {
		a = append(a, "-p", strconv.Itoa(t.port))
	}
	if t.identitiesOnly && (t.identityFile != "" || t.havePassword) {
		a = append(a, "-o", "IdentitiesOnly=yes")
	}
	if t.identityFile != "" {
		a = append(a, "-i", t.identityFile)
	}
	if t.compression {
		a = append(a, "-o", "Compression=yes")
	}
	// Always given: keepalive_interval=0 turns keepalives off even when
	// ~/.ssh/config sets ServerAliveInterval.
	a = append(a, "-o", "ServerAliveInterval="+strconv.Itoa(t.keepaliveInterval))
	if t.keepaliveInterval > 0 {
		a = append(a, "-o", "ServerAliveCountMax="+strconv.Itoa(t.keepaliveCount))
	}
	if t.havePassword {
		// The password is typed into ssh's prompt: a BatchMode from
		// ~/.ssh/config must not suppress it.
		a = append(a, "-o", "BatchMode=no")
	} else {
		a = append(a, "-o", "BatchMode=yes")
	}
	switch t.checkHostKeys {
	case "enforce":
		a = append(a, "-o", "StrictHostKeyChecking=yes")
	case "accept":
		a = append(a, "-o", "StrictHostKeyChecking=accept-new")
	case "ignore":
		a = append(a, "-o", "StrictHostKeyChecking=no", "-o", "CheckHostIP=no")
	}
	// The stream is binary: never a remote terminal.
	a = append(a, "-T")
	return append(a, t.sshArgs...)
}

func (t *sshTransport) describe() string {
	s := "ssh to " + t.hostname
	if t.username != "" {
		s = "ssh to " + t.username + "@" + t.hostname
	}
	if t.port != 0 {
		s += " port " + strconv.Itoa(t.port)
	}
	return s
}

func (t *sshTransport) Start(ctx context.Context, env *core.StartEnv) (*core.Conn, error) {
	stub, err := NewStub()
	if err != nil {
		return nil, err
	}
	argv := t.argv(stub.Command())
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = os.Environ()
	mode := noTTY
	if t.havePassword {
		mode = hybridTTY // ssh reads passwords from its terminal
	}
	return start(ctx, env, cmd, stub, startSpec{
		describe: t.describe(),
		mode:     mode,
		prompt:   &sshPrompter{t: t, haveTTY: mode != noTTY},
	})
}

// sshPrompter answers ssh's password prompt and recognises its failures.
type sshPrompter struct {
	t            *sshTransport
	haveTTY      bool
	passwordSent bool
}

func (p *sshPrompter) see(line string, partial bool) (string, error) {
	if isSSHDebugLine(line) {
		return "", nil
	}
	if !partial {
		switch {
		case isHostKeyFailure(line):
			return "", &core.HostKeyError{Msg: sshHostKeyFailed}
		case isPermissionDenied(line):
			switch {
			case p.t.havePassword && p.passwordSent:
				return "", &core.PasswordError{Msg: sshPasswordIncorrect}
			case !p.t.havePassword && containsFold(line, "password"):
				return "", &core.PasswordError{Msg: sshPasswordRequired}
			default:
				return "", &core.PasswordError{Msg: sshAuthIncorrect}
			}
		}
		return "", nil
	}
	switch {
	case isHostKeyRequest(line):
		if p.t.checkHostKeys == "accept" && p.haveTTY {
			return "yes\n", nil
		}
		return "", &core.HostKeyError{Msg: sshHostKeyConfig}
	case isPasswordPrompt(line):
		if !p.t.havePassword || !p.haveTTY {
			return "", &core.PasswordError{Msg: sshPasswordRequired}
		}
		if p.passwordSent {
			return "", &core.PasswordError{Msg: sshPasswordIncorrect}
		}
		p.passwordSent = true
		return p.t.password + "\n", nil
	}
	return "", nil
}

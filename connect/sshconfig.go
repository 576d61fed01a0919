package connect

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// sshConfig is what the native transport takes from OpenSSH's
// configuration for one host: ~/.ssh/config, /etc/ssh/ssh_config and the
// command line's options, resolved as `ssh -G` resolves them.
type sshConfig struct {
	host     string // the name the connection was asked for (ssh's %n)
	hostname string // where it goes (HostName)
	port     int
	user     string

	identityFiles    []string
	certificateFiles []string
	identitiesOnly   bool
	identityAgent    string // the agent's socket; "" for none

	proxyJump    string // "" for none
	proxyCommand string // "" for none

	serverAliveInterval time.Duration // 0: no keepalives
	serverAliveCountMax int
	connectTimeout      time.Duration // 0: none but the connection's own

	strictHostKeyChecking string // "yes", "accept-new", "no" or "ask"
	userKnownHosts        []string
	globalKnownHosts      []string
	hashKnownHosts        bool
	hostKeyAlias          string

	batchMode      bool
	pubkeyAuth     bool
	passwordAuth   bool
	kbdInteractive bool

	setEnv  [][2]string // SetEnv NAME=VALUE, in order
	sendEnv []string    // SendEnv patterns
}

// sshDefaultIdentities are the identity files OpenSSH tries when none
// is configured, in its order.
var sshDefaultIdentities = []string{"~/.ssh/id_rsa", "~/.ssh/id_ecdsa", "~/.ssh/id_ecdsa_sk", "~/.ssh/id_ed25519", "~/.ssh/id_ed25519_sk", "~/.ssh/id_xmss", "~/.ssh/id_dsa"}

// resolveSSHConfig resolves the configuration for host with ssh's
// command-line options args (mitostar's own, then ssh_args): with
// `SSHPATH -G ARGS -- HOST` when the ssh program exists, else from
// OpenSSH's defaults and the -l, -p, -i, -J, -F and -o options in args
// (~/.ssh/config is then not read).
func resolveSSHConfig(ctx context.Context, sshPath string, args []string, host string) (*sshConfig, error) {
	if path, err := exec.LookPath(sshPath); err == nil {
		return sshG(ctx, path, args, host)
	}
	return sshConfigFromArgs(args, host)
}

// sshGTimeout bounds one `ssh -G`, which only reads files (unless the
// configuration runs commands with Match exec).
const sshGTimeout = 10 * time.Second

func sshG(ctx context.Context, path string, args []string, host string) (*sshConfig, error) {
	ctx, cancel := context.WithTimeout(ctx, sshGTimeout)
	defer cancel()
	argv := append(append([]string{"-G"}, args...), "--", host)
	cmd := exec.CommandContext(ctx, path, argv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	cmd.Stdin = nil
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("timed out resolving the ssh configuration with `%s -G ... %s`", path, host)
		}
		return nil, fmt.Errorf("resolving the ssh configuration with `%s -G ... %s`: %v: %s", path, host, err, strings.TrimSpace(stderr.String()))
	}
	c := &sshConfig{host: host}
	c.setDefaults()
	seen := map[string]bool{}
	for _, line := range strings.Split(stdout.String(), "\n") {
		key, value, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			continue
		}
		key = strings.ToLower(key)
		// -G prints the defaults of the multi-valued keys it has none for.
		if !seen[key] {
			seen[key] = true
			switch key {
			case "identityfile", "certificatefile", "setenv", "sendenv":
				c.clear(key)
			}
		}
		if err := c.set(key, value); err != nil {
			return nil, fmt.Errorf("`%s -G ... %s`: %w", path, host, err)
		}
	}
	if c.hostname == "" {
		c.hostname = host
	}
	return c, nil
}

// setDefaults sets OpenSSH's defaults.
func (c *sshConfig) setDefaults() {
	c.port = 22
	if u, err := user.Current(); err == nil {
		c.user = u.Username
	}
	c.identityFiles = append([]string(nil), sshDefaultIdentities...)
	c.identityAgent = os.Getenv("SSH_AUTH_SOCK")
	c.serverAliveCountMax = 3
	c.strictHostKeyChecking = "ask"
	c.userKnownHosts = []string{"~/.ssh/known_hosts", "~/.ssh/known_hosts2"}
	c.globalKnownHosts = []string{"/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"}
	c.pubkeyAuth, c.passwordAuth, c.kbdInteractive = true, true, true
}

func (c *sshConfig) clear(key string) {
	switch key {
	case "identityfile":
		c.identityFiles = nil
	case "certificatefile":
		c.certificateFiles = nil
	case "setenv":
		c.setEnv = nil
	case "sendenv":
		c.sendEnv = nil
	}
}

// set applies one option, named in lower case as `ssh -G` prints it.
// Options the native transport does not use are ignored.
func (c *sshConfig) set(key, value string) error {
	yes := func() bool {
		switch strings.ToLower(value) {
		case "yes", "true":
			return true
		}
		return false
	}
	switch key {
	case "hostname":
		c.hostname = value
	case "port":
		p, err := strconv.Atoi(value)
		if err != nil || p < 1 || p > 65535 {
			return fmt.Errorf("bad port %q", value)
		}
		c.port = p
	case "user":
		c.user = value
	case "identityfile":
		c.identityFiles = append(c.identityFiles, value)
	case "certificatefile":
		c.certificateFiles = append(c.certificateFiles, value)
	case "identitiesonly":
		c.identitiesOnly = yes()
	case "identityagent":
		switch {
		case strings.EqualFold(value, "none"):
			c.identityAgent = ""
		case value == "SSH_AUTH_SOCK":
			c.identityAgent = os.Getenv("SSH_AUTH_SOCK")
		case strings.HasPrefix(value, "$"):
			c.identityAgent = os.Getenv(value[1:])
		default:
			c.identityAgent = value
		}
	case "proxyjump":
		if strings.EqualFold(value, "none") {
			value = ""
		}
		c.proxyJump = value
	case "proxycommand":
		if strings.EqualFold(value, "none") {
			value = ""
		}
		c.proxyCommand = value
	case "serveraliveinterval":
		n, err := strconv.Atoi(value)
		if err != nil || n < 0 {
			return fmt.Errorf("bad ServerAliveInterval %q", value)
		}
		c.serverAliveInterval = time.Duration(n) * time.Second
	case "serveralivecountmax":
		n, err := strconv.Atoi(value)
		if err != nil || n < 0 {
			return fmt.Errorf("bad ServerAliveCountMax %q", value)
		}
		c.serverAliveCountMax = n
	case "connecttimeout":
		if value == "none" {
			c.connectTimeout = 0
			break
		}
		n, err := strconv.Atoi(value)
		if err != nil || n < 0 {
			return fmt.Errorf("bad ConnectTimeout %q", value)
		}
		c.connectTimeout = time.Duration(n) * time.Second
	case "stricthostkeychecking":
		switch strings.ToLower(value) {
		case "yes", "true":
			c.strictHostKeyChecking = "yes"
		case "no", "false", "off":
			c.strictHostKeyChecking = "no"
		case "accept-new":
			c.strictHostKeyChecking = "accept-new"
		default:
			c.strictHostKeyChecking = "ask"
		}
	case "userknownhostsfile":
		c.userKnownHosts = splitPaths(value)
	case "globalknownhostsfile":
		c.globalKnownHosts = splitPaths(value)
	case "hashknownhosts":
		c.hashKnownHosts = yes()
	case "hostkeyalias":
		if strings.EqualFold(value, "none") {
			value = ""
		}
		c.hostKeyAlias = value
	case "batchmode":
		c.batchMode = yes()
	case "pubkeyauthentication":
		c.pubkeyAuth = yes() || value == "unbound" || value == "host-bound"
	case "passwordauthentication":
		c.passwordAuth = yes()
	case "kbdinteractiveauthentication", "challengeresponseauthentication":
		c.kbdInteractive = yes()
	case "setenv":
		name, v, ok := strings.Cut(value, "=")
		if !ok {
			return fmt.Errorf("bad SetEnv %q", value)
		}
		c.setEnv = append(c.setEnv, [2]string{name, strings.Trim(v, `"`)})
	case "sendenv":
		c.sendEnv = append(c.sendEnv, strings.Fields(value)...)
	}
	return nil
}

// splitPaths splits a list of paths as ssh -G prints it: separated by
// spaces, a path with spaces in double quotes.
func splitPaths(s string) []string {
	var out []string
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		if s[0] == '"' {
			if end := strings.IndexByte(s[1:], '"'); end >= 0 {
				out = append(out, s[1:1+end])
				s = s[end+2:]
				continue
			}
		}
		p, rest, _ := strings.Cut(s, " ")
		out = append(out, p)
		s = rest
	}
	return out
}

// sshConfigFromArgs resolves without an ssh program: OpenSSH's defaults
// and the options of args. As ssh does, the first value given for an
// option wins, and identity files given replace the default ones.
func sshConfigFromArgs(args []string, host string) (*sshConfig, error) {
	c := &sshConfig{host: host}
	c.setDefaults()
	set := map[string]bool{}
	apply := func(key, value string) error {
		key = strings.ToLower(key)
		switch key {
		case "identityfile", "certificatefile", "setenv", "sendenv":
			if !set[key] {
				c.clear(key)
			}
		default:
			if set[key] {
				return nil
			}
		}
		set[key] = true
		return c.set(key, value)
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if len(a) < 2 || a[0] != '-' {
			return nil, fmt.Errorf("ssh_args: unexpected argument %q", a)
		}
		flag := a[1]
		if strings.ContainsRune("TtNnqsCxXAaKkGgVv46fMYy", rune(flag)) {
			continue // flags without a value that the native transport ignores
		}
		value := a[2:]
		if value == "" {
			if i+1 >= len(args) {
				return nil, fmt.Errorf("ssh_args: option %s needs a value", a)
			}
			i++
			value = args[i]
		}
		var err error
		switch flag {
		case 'l':
			err = apply("user", value)
		case 'p':
			err = apply("port", value)
		case 'i':
			err = apply("identityfile", value)
		case 'J':
			err = apply("proxyjump", value)
		case 'o':
			k, v, ok := strings.Cut(value, "=")
			if !ok {
				k, v, ok = strings.Cut(value, " ")
			}
			if !ok {
				return nil, fmt.Errorf("ssh_args: option -o %q has no value", value)
			}
			err = apply(strings.TrimSpace(k), strings.TrimSpace(v))
		case 'F':
			return nil, fmt.Errorf("ssh_args: -F %s needs the ssh program to read the file (not found)", value)
		}
		if err != nil {
			return nil, fmt.Errorf("ssh_args: %w", err)
		}
	}
	if c.hostname == "" {
		c.hostname = host
	}
	return c, nil
}

// expandPath expands a leading ~ and the tokens of a configured path.
func (c *sshConfig) expandPath(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		home, _ := os.UserHomeDir()
		p = filepath.Join(home, p[1:])
	}
	return c.expandTokens(p)
}

// expandTokens expands OpenSSH's %d (local home), %u (local user), %h
// (remote host), %r (remote user), %p (port), %n (the name asked for)
// and %% in a configured path or ProxyCommand.
func (c *sshConfig) expandTokens(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case 'd':
			home, _ := os.UserHomeDir()
			b.WriteString(home)
		case 'u':
			if u, err := user.Current(); err == nil {
				b.WriteString(u.Username)
			}
		case 'h':
			b.WriteString(c.hostname)
		case 'r':
			b.WriteString(c.user)
		case 'p':
			b.WriteString(strconv.Itoa(c.port))
		case 'n':
			b.WriteString(c.host)
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// addr is the host and port the TCP connection goes to.
func (c *sshConfig) addr() string {
	return netJoin(c.hostname, c.port)
}

// knownHostsName is the name the host's keys are recorded under.
func (c *sshConfig) knownHostsName() string {
	if c.hostKeyAlias != "" {
		return netJoin(c.hostKeyAlias, c.port)
	}
	return c.addr()
}

func netJoin(host string, port int) string {
	if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		return "[" + host + "]:" + strconv.Itoa(port)
	}
	return host + ":" + strconv.Itoa(port)
}

// A jumpHop is one host of a ProxyJump list: [user@]host[:port], or
// ssh://[user@]host[:port].
type jumpHop struct {
	user, host string
	port       int // 0: not given
}

// parseProxyJump splits a ProxyJump value into its hops, first hop first.
func parseProxyJump(s string) ([]jumpHop, error) {
	var hops []jumpHop
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		spec := strings.TrimPrefix(part, "ssh://")
		var h jumpHop
		if at := strings.LastIndexByte(spec, '@'); at >= 0 {
			h.user, spec = spec[:at], spec[at+1:]
		}
		host, port := spec, ""
		if strings.HasPrefix(spec, "[") {
			end := strings.IndexByte(spec, ']')
			if end < 0 {
				return nil, fmt.Errorf("ProxyJump: bad host %q", part)
			}
			host, port = spec[1:end], strings.TrimPrefix(spec[end+1:], ":")
		} else if i := strings.LastIndexByte(spec, ':'); i >= 0 && strings.Count(spec, ":") == 1 {
			host, port = spec[:i], spec[i+1:]
		}
		if port != "" {
			p, err := strconv.Atoi(port)
			if err != nil || p < 1 || p > 65535 {
				return nil, fmt.Errorf("ProxyJump: bad port in %q", part)
			}
			h.port = p
		}
		if host == "" || strings.HasPrefix(host, "-") {
			return nil, fmt.Errorf("ProxyJump: bad host %q", part)
		}
		h.host = host
		hops = append(hops, h)
	}
	return hops, nil
}

// hopArgs are the ssh options that resolve a jump hop's configuration:
// as OpenSSH does for -J, only the configuration file of args (-F)
// travels to the hop, with the hop's own user and port.
func hopArgs(args []string, h jumpHop) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if args[i] == "-F" && i+1 < len(args) {
			out = append(out, "-F", args[i+1])
			i++
		} else if strings.HasPrefix(args[i], "-F") && len(args[i]) > 2 {
			out = append(out, args[i])
		}
	}
	if h.user != "" {
		out = append(out, "-l", h.user)
	}
	if h.port != 0 {
		out = append(out, "-p", strconv.Itoa(h.port))
	}
	return append(out, "-T")
}

package connect

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/mitostar/mitostar/core"
)

// sudoTransport becomes another user with sudo. Each connection has its
// own prompt (sudo -p), so the password is typed only into sudo's own
// question; stdin and stdout are pipes and the controlling terminal is a
// pty, so requiretty is satisfied and the stream stays binary-clean.
type sudoTransport struct {
	username     string
	sudoPath     string
	password     string
	havePassword bool
	setHome      bool
	preserveEnv  bool
	login        bool
	selinuxRole  string
	selinuxType  string
}

func newSudo(r *core.Router, opts *core.ConnectOptions) (core.Transport, error) {
	k := newKwargs("sudo", opts.Kwargs)
	t := &sudoTransport{
		username:    k.str("username", ""),
		sudoPath:    k.str("sudo_path", "sudo"),
		setHome:     k.boolean("set_home", false),
		preserveEnv: k.boolean("preserve_env", false),
		login:       k.boolean("login", false),
		selinuxRole: k.str("selinux_role", ""),
		selinuxType: k.str("selinux_type", ""),
	}
	t.password, t.havePassword = k.optStr("password")
	args := k.strings("sudo_args")
	if err := k.finish(); err != nil {
		return nil, err
	}
	if err := t.parseArgs(args); err != nil {
		return nil, err
	}
	if t.username == "" {
		t.username = "root"
	}
	if strings.HasPrefix(t.username, "-") {
		return nil, fmt.Errorf("sudo: username %q must not start with '-'", t.username)
	}
	if t.sudoPath == "" {
		return nil, fmt.Errorf("sudo: sudo_path must not be empty")
	}
	return t, nil
}

// parseArgs folds sudo_args into the keywords, as Mitogen does: only the
// options it understands are accepted; an explicit keyword wins.
func (t *sudoTransport) parseArgs(args []string) error {
	for i := 0; i < len(args); i++ {
		a := args[i]
		value := func() (string, error) {
			if v, ok := strings.CutPrefix(a, "--"); ok {
				if _, val, ok := strings.Cut(v, "="); ok {
					return val, nil
				}
			} else if len(a) > 2 {
				return a[2:], nil
			}
			if i+1 >= len(args) {
				return "", fmt.Errorf("sudo: sudo_args option %s needs a value", a)
			}
			i++
			return args[i], nil
		}
		name, _, _ := strings.Cut(a, "=")
		if !strings.HasPrefix(a, "--") && len(a) > 2 {
			name = a[:2]
		}
		var err error
		var v string
		switch name {
		case "-E", "--preserve-env":
			t.preserveEnv = true
		case "-H", "--set-home":
			t.setHome = true
		case "-i", "--login":
			t.login = true
		case "-S", "--stdin", "-n", "--non-interactive":
			// Ansible passes these; mitostar always gives sudo a terminal.
		case "-u", "--user":
			if v, err = value(); err == nil && t.username == "" {
				t.username = v
			}
		case "-r", "--role":
			if v, err = value(); err == nil && t.selinuxRole == "" {
				t.selinuxRole = v
			}
		case "-t", "--type":
			if v, err = value(); err == nil && t.selinuxType == "" {
				t.selinuxType = v
			}
		default:
			return fmt.Errorf("sudo: unsupported option %q in sudo_args (supported: -E -H -i -S -n -u USER -r ROLE -t TYPE)", a)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// options are sudo's options but the prompt.
func (t *sudoTransport) options() []string {
	o := []string{"-u", t.username}
	if t.preserveEnv {
		o = append(o, "-E")
	}
	if t.setHome {
		o = append(o, "-H")
	}
	if t.login {
		o = append(o, "-i")
	}
	if t.selinuxRole != "" {
		o = append(o, "-r", t.selinuxRole)
	}
	if t.selinuxType != "" {
		o = append(o, "-t", t.selinuxType)
	}
	return o
}

func (t *sudoTransport) DefaultName() string { return "sudo." + t.username }

func (t *sudoTransport) Start(ctx context.Context, env *core.StartEnv) (*core.Conn, error) {
	stub, err := NewStub()
	if err != nil {
		return nil, err
	}
	prompt := "mitostar-sudo-" + stub.nonce + ":"
	argv := append([]string{t.sudoPath, "-p", prompt}, t.options()...)
	argv = append(argv, "--")
	if t.login {
		argv = append(argv, stub.dollarFreeArgv()...)
	} else {
		argv = append(argv, stub.Argv()...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = os.Environ()
	return start(ctx, env, cmd, stub, startSpec{
		describe: "sudo to " + t.username,
		mode:     hybridTTY,
		prompt: &passwordPrompter{
			method: "sudo", password: t.password, havePass: t.havePassword,
			isPrompt: func(text string) bool {
				// sudo prints the -p prompt as is; sudo-rs as "[sudo: PROMPT] Password: ".
				text = strings.TrimSpace(text)
				return strings.HasSuffix(text, prompt) || strings.Contains(text, "[sudo: "+prompt+"]")
			},
		},
	})
}

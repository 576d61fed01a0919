package connect

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/mitostar/mitostar/core"
)

func init() { core.RegisterMethod("su", newSu) }

// suIncorrect are Mitogen's texts of a refused su password.
var suIncorrect = []string{
	"su: sorry",                  // BSD
	"su: authentication failure", // Linux
	"su: incorrect password",     // CentOS 6
	"authentication is denied",   // AIX
}

// suTransport becomes another user with su. su reads the password from
// its stdin when that is a terminal (Linux PAM) or from /dev/tty (BSD),
// so stdin, stdout and stderr are all one raw pty, as in Mitogen.
type suTransport struct {
	username       string
	suPath         string
	password       string
	havePassword   bool
	passwordPrompt string
	incorrect      []string
}

func newSu(r *core.Router, opts *core.ConnectOptions) (core.Transport, error) {
	k := newKwargs("su", opts.Kwargs)
	t := &suTransport{
		username:       k.str("username", "root"),
		suPath:         k.str("su_path", "su"),
		passwordPrompt: k.str("password_prompt", "password:"),
		incorrect:      k.strings("incorrect_prompts"),
	}
	if _, given := opts.Kwargs["incorrect_prompts"]; !given || opts.Kwargs["incorrect_prompts"] == nil {
		t.incorrect = suIncorrect
	}
	t.password, t.havePassword = k.optStr("password")
	if err := k.finish(); err != nil {
		return nil, err
	}
	switch {
	case t.username == "" || strings.HasPrefix(t.username, "-"):
		return nil, fmt.Errorf("su: bad username %q", t.username)
	case t.suPath == "":
		return nil, fmt.Errorf("su: su_path must not be empty")
	case t.passwordPrompt == "":
		return nil, fmt.Errorf("su: password_prompt must not be empty")
	}
	return t, nil
}

func (t *suTransport) DefaultName() string { return "su." + t.username }

func (t *suTransport) Start(ctx context.Context, env *core.StartEnv) (*core.Conn, error) {
	stub, err := NewStub()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(t.suPath, t.username, "-c", stub.Command())
	cmd.Env = os.Environ()
	return start(ctx, env, cmd, stub, startSpec{
		describe: "su to " + t.username,
		mode:     fullTTY,
		prompt: &passwordPrompter{
			method: "su", password: t.password, havePass: t.havePassword,
			isPrompt:        func(text string) bool { return containsFold(text, t.passwordPrompt) },
			incorrect:       lowerAll(t.incorrect),
			incorrectAlways: true,
		},
	})
}

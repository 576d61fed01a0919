package connect

import (
	"context"
	"os"
	"os/exec"

	"github.com/mitostar/mitostar/core"
)

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
	*userSwitch
}

func newSu(r *core.Router, opts *core.ConnectOptions) (core.Transport, error) {
	u, err := parseUserSwitch("su", opts, "password:", suIncorrect)
	if err != nil {
		return nil, err
	}
	return &suTransport{u}, nil
}

func (t *suTransport) Start(ctx context.Context, env *core.StartEnv) (*core.Conn, error) {
	stub, err := NewStub()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(t.path, t.username, "-c", stub.Command())
	cmd.Env = os.Environ()
	return start(ctx, env, cmd, stub, t.spec(fullTTY, true))
}

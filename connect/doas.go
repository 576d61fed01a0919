package connect

import (
	"context"
	"os"
	"os/exec"

	"github.com/mitostar/mitostar/core"
)

// doasIncorrect are Mitogen's texts of a refused doas password.
var doasIncorrect = []string{
	"doas: authentication failed", // slicer69/doas, OpenDoas
	"doas: Authorization failed",  // openbsd/src
}

// doasTransport becomes another user with doas, which reads passwords
// only from a terminal: stdin and stdout are pipes, stderr and the
// controlling terminal a pty.
type doasTransport struct {
	*userSwitch
}

func newDoas(r *core.Router, opts *core.ConnectOptions) (core.Transport, error) {
	u, err := parseUserSwitch("doas", opts, "Password:", doasIncorrect)
	if err != nil {
		return nil, err
	}
	return &doasTransport{u}, nil
}

func (t *doasTransport) Start(ctx context.Context, env *core.StartEnv) (*core.Conn, error) {
	stub, err := NewStub()
	if err != nil {
		return nil, err
	}
	argv := append([]string{t.path, "-u", t.username, "--"}, stub.Argv()...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = os.Environ()
	return start(ctx, env, cmd, stub, t.spec(hybridTTY, false))
}

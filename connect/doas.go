package connect

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/mitostar/mitostar/core"
)

func init() { core.RegisterMethod("doas", newDoas) }

// doasIncorrect are Mitogen's texts of a refused doas password.
var doasIncorrect = []string{
	"doas: authentication failed", // slicer69/doas, OpenDoas
	"doas: Authorization failed",  // openbsd/src
}

// doasTransport becomes another user with doas, which reads passwords
// only from a terminal: stdin and stdout are pipes, stderr and the
// controlling terminal a pty.
type doasTransport struct {
	username       string
	doasPath       string
	password       string
	havePassword   bool
	passwordPrompt string
	incorrect      []string
}

func newDoas(r *core.Router, opts *core.ConnectOptions) (core.Transport, error) {
	k := newKwargs("doas", opts.Kwargs)
	t := &doasTransport{
		username:       k.str("username", "root"),
		doasPath:       k.str("doas_path", "doas"),
		passwordPrompt: k.str("password_prompt", "Password:"),
		incorrect:      k.strings("incorrect_prompts"),
	}
	if v, given := opts.Kwargs["incorrect_prompts"]; !given || v == nil {
		t.incorrect = doasIncorrect
	}
	t.password, t.havePassword = k.optStr("password")
	if err := k.finish(); err != nil {
		return nil, err
	}
	switch {
	case t.username == "" || strings.HasPrefix(t.username, "-"):
		return nil, fmt.Errorf("doas: bad username %q", t.username)
	case t.doasPath == "":
		return nil, fmt.Errorf("doas: doas_path must not be empty")
	case t.passwordPrompt == "":
		return nil, fmt.Errorf("doas: password_prompt must not be empty")
	}
	return t, nil
}

func (t *doasTransport) DefaultName() string { return "doas." + t.username }

func (t *doasTransport) Start(ctx context.Context, env *core.StartEnv) (*core.Conn, error) {
	stub, err := NewStub()
	if err != nil {
		return nil, err
	}
	argv := append([]string{t.doasPath, "-u", t.username, "--"}, stub.Argv()...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = os.Environ()
	return start(ctx, env, cmd, stub, startSpec{
		describe: "doas to " + t.username,
		mode:     hybridTTY,
		prompt: &passwordPrompter{
			method: "doas", password: t.password, havePass: t.havePassword,
			isPrompt:  func(text string) bool { return containsFold(text, t.passwordPrompt) },
			incorrect: lowerAll(t.incorrect),
		},
	})
}

package connect

import (
	"fmt"
	"strings"

	"github.com/mitostar/mitostar/core"
)

// userSwitch holds the keywords su and doas share, as Mitogen's su.py and
// doas.py do: username, the tool's path (su_path, doas_path), password,
// password_prompt and incorrect_prompts.
type userSwitch struct {
	method         string // "su" or "doas"
	username       string
	path           string
	password       string
	havePassword   bool
	passwordPrompt string
	incorrect      []string
}

// parseUserSwitch reads the shared keywords for method; defaultPrompt and
// defaultIncorrect apply when password_prompt or incorrect_prompts are
// not given (or None). Unknown keywords and empty values are errors.
func parseUserSwitch(method string, opts *core.ConnectOptions, defaultPrompt string, defaultIncorrect []string) (*userSwitch, error) {
	k := newKwargs(method, opts.Kwargs)
	u := &userSwitch{
		method:         method,
		username:       k.str("username", "root"),
		path:           k.str(method+"_path", method),
		passwordPrompt: k.str("password_prompt", defaultPrompt),
		incorrect:      k.strings("incorrect_prompts"),
	}
	if v, given := opts.Kwargs["incorrect_prompts"]; !given || v == nil {
		u.incorrect = defaultIncorrect
	}
	u.password, u.havePassword = k.optStr("password")
	if err := k.finish(); err != nil {
		return nil, err
	}
	switch {
	case u.username == "" || strings.HasPrefix(u.username, "-"):
		return nil, fmt.Errorf("%s: bad username %q", method, u.username)
	case u.path == "":
		return nil, fmt.Errorf("%s: %s_path must not be empty", method, method)
	case u.passwordPrompt == "":
		return nil, fmt.Errorf("%s: password_prompt must not be empty", method)
	}
	return u, nil
}

// DefaultName is "su.USER" or "doas.USER".
func (u *userSwitch) DefaultName() string { return u.method + "." + u.username }

// spec is the start specification of the method in the given tty mode;
// incorrectAlways is su's rule that an incorrect-password text counts
// even before a password was typed.
func (u *userSwitch) spec(mode ttyMode, incorrectAlways bool) startSpec {
	return startSpec{
		describe: u.method + " to " + u.username,
		mode:     mode,
		prompt: &passwordPrompter{
			method: u.method, password: u.password, havePass: u.havePassword,
			isPrompt:        func(text string) bool { return containsFold(text, u.passwordPrompt) },
			incorrect:       lowerAll(u.incorrect),
			incorrectAlways: incorrectAlways,
		},
	}
}

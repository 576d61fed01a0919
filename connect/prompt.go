package connect

import (
	"strings"

	"github.com/mitostar/mitostar/core"
)

// passwordPrompter answers one password prompt of sudo, su or doas, the
// way Mitogen does: a second prompt, or a line that says the password
// was wrong, is a PasswordError; a prompt without a password is one too.
type passwordPrompter struct {
	method    string // "sudo", "su", "doas": the start of messages
	password  string
	havePass  bool
	isPrompt  func(text string) bool // matches an unfinished line
	incorrect []string               // lower-case texts that mean a wrong password
	// incorrectAlways: an incorrect text fails the connection even before
	// a password was sent (su); otherwise only after (doas).
	incorrectAlways bool
	sent            bool
}

func (p *passwordPrompter) incorrectErr() error {
	return &core.PasswordError{Msg: p.method + " password is incorrect"}
}

func (p *passwordPrompter) see(line string, partial bool) (string, error) {
	low := strings.ToLower(line)
	for _, s := range p.incorrect {
		if s != "" && strings.Contains(low, s) && (p.sent || p.incorrectAlways) {
			return "", p.incorrectErr()
		}
	}
	if !partial || !p.isPrompt(line) {
		return "", nil
	}
	if !p.havePass {
		return "", &core.PasswordError{Msg: p.method + " password is required"}
	}
	if p.sent {
		return "", p.incorrectErr()
	}
	p.sent = true
	return p.password + "\n", nil
}

// containsFold reports whether s contains substr, ignoring case.
func containsFold(s, substr string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(substr))
}

// lowerAll lower-cases each string.
func lowerAll(in []string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = strings.ToLower(s)
	}
	return out
}

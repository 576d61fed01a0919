package connect

import (
	"github.com/mitostar/mitostar/core"
)

// jailFailures are jexec's words for a missing jail.
var jailFailures = []failure{
	{"jail \"", "not found"}, // jexec: jail "NAME" not found
	{"no such process", "not found"},
}

// newJail is Mitogen's jail method: jexec [-U USER] JAIL on FreeBSD.
// Keywords: container (the jail's name or jid), jexec_path, username.
func newJail(r *core.Router, opts *core.ConnectOptions) (core.Transport, error) {
	k := newKwargs("jail", opts.Kwargs)
	container := k.str("container", "")
	path := k.str("jexec_path", "/usr/sbin/jexec")
	username := k.str("username", "")
	if err := k.finish(); err != nil {
		return nil, err
	}
	if err := containerArgs("jail", "container", container, "jexec_path", path); err != nil {
		return nil, err
	}
	if err := checkName("jail", "username", username); err != nil {
		return nil, err
	}
	argv := []string{path}
	if username != "" {
		argv = append(argv, "-U", username)
	}
	return &execTransport{
		method:   "jail",
		describe: "jexec",
		name:     "jail." + container,
		what:     "jail " + quote(container),
		argv:     append(argv, container),
		failures: jailFailures,
	}, nil
}

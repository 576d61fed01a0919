package connect

import (
	"github.com/mitostar/mitostar/core"
)

// newIncus is Mitogen's incus method: incus exec --mode=non-interactive
// CONTAINER --. Keywords: container, incus_path.
func newIncus(r *core.Router, opts *core.ConnectOptions) (core.Transport, error) {
	k := newKwargs("incus", opts.Kwargs)
	container := k.str("container", "")
	path := k.str("incus_path", "incus")
	if err := k.finish(); err != nil {
		return nil, err
	}
	if err := containerArgs("incus", "container", container, "incus_path", path); err != nil {
		return nil, err
	}
	return &execTransport{
		method:   "incus",
		describe: "incus exec",
		name:     "incus." + container,
		what:     "incus container " + quote(container),
		argv:     []string{path, "exec", "--mode=non-interactive", container, "--"},
		failures: lxdFailures,
	}, nil
}

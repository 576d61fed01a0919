package connect

import (
	"github.com/mitostar/mitostar/core"
)

// lxdFailures are the lxc client's words for a missing or stopped
// instance (LXD and Incus say the same).
var lxdFailures = []failure{
	{"instance not found", "not found"},
	{"error: not found", "not found"},
	{"instance is not running", "is not running"},
	{"is not running", "is not running"},
}

// newLXD is Mitogen's lxd method: lxc exec --mode=non-interactive
// CONTAINER --. Keywords: container, lxc_path.
func newLXD(r *core.Router, opts *core.ConnectOptions) (core.Transport, error) {
	k := newKwargs("lxd", opts.Kwargs)
	container := k.str("container", "")
	path := k.str("lxc_path", "lxc")
	if err := k.finish(); err != nil {
		return nil, err
	}
	if err := containerArgs("lxd", "container", container, "lxc_path", path); err != nil {
		return nil, err
	}
	return &execTransport{
		method:   "lxd",
		describe: "lxc exec",
		name:     "lxd." + container,
		what:     "lxd container " + quote(container),
		argv:     []string{path, "exec", "--mode=non-interactive", container, "--"},
		failures: lxdFailures,
	}, nil
}

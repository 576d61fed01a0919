package connect

import (
	"fmt"

	"github.com/mitostar/mitostar/core"
)

// lxcFailures are lxc-attach's words for a missing or stopped container.
var lxcFailures = []failure{
	{"failed to get init pid", "is not running or not found"},
	{"is not running", "is not running"},
	{"no container", "not found"},
}

// newLXC is Mitogen's lxc method: lxc-attach --clear-env --name
// CONTAINER. Keywords: container, lxc_attach_path.
func newLXC(r *core.Router, opts *core.ConnectOptions) (core.Transport, error) {
	k := newKwargs("lxc", opts.Kwargs)
	container := k.str("container", "")
	path := k.str("lxc_attach_path", "lxc-attach")
	if err := k.finish(); err != nil {
		return nil, err
	}
	if err := containerArgs("lxc", "container", container, "lxc_attach_path", path); err != nil {
		return nil, err
	}
	return &execTransport{
		method:   "lxc",
		describe: "lxc-attach",
		name:     "lxc." + container,
		what:     "lxc container " + quote(container),
		argv:     []string{path, "--clear-env", "--name", container, "--"},
		failures: lxcFailures,
	}, nil
}

// containerArgs checks a required target name and a tool path.
func containerArgs(method, keyword, name, pathKeyword, path string) error {
	if name == "" {
		return fmt.Errorf("%s: %s= is required", method, keyword)
	}
	if path == "" {
		return fmt.Errorf("%s: %s must not be empty", method, pathKeyword)
	}
	return checkName(method, keyword, name)
}

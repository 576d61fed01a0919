package connect

import (
	"github.com/mitostar/mitostar/core"
)

// podmanFailures are podman's words for a missing or stopped container.
var podmanFailures = []failure{
	{"no container with name or id", "not found"},
	{"no such container", "not found"},
	{"can only create exec sessions on running containers", "is not running"},
	{"container state improper", "is not running"},
	{"is not running", "is not running"},
	{"repository name must", "image not found"},
	{"initializing source", "image not found"},
	{"image not known", "image not found"},
}

// newPodman is Mitogen's podman method: podman exec --interactive into
// a running container, or podman run --interactive --rm of an image.
// Keywords: container, image, podman_path, username, podman_args (global
// options, e.g. ["--root", DIR]) and run_args (with image=).
func newPodman(r *core.Router, opts *core.ConnectOptions) (core.Transport, error) {
	k := newKwargs("podman", opts.Kwargs)
	e := readEngineKwargs(k, "podman")
	if err := k.finish(); err != nil {
		return nil, err
	}
	if err := e.check("podman"); err != nil {
		return nil, err
	}
	t := &execTransport{method: "podman", failures: podmanFailures}
	base := append([]string{e.path}, e.args...)
	user := []string{}
	if e.username != "" {
		user = []string{"--user=" + e.username}
	}
	if e.container != "" {
		t.name = "podman." + e.container
		t.what = "podman container " + quote(e.container)
		t.describe = "podman exec"
		t.argv = concat(base, []string{"exec"}, user, []string{"--interactive", "--", e.container})
		return t, nil
	}
	name := throwawayName()
	t.name = "podman." + e.image
	t.what = "podman container " + quote(name) + " of image " + quote(e.image)
	t.describe = "podman run"
	t.argv = concat(base, []string{"run", "--interactive", "--rm", "--name", name}, user, e.runArgs, []string{"--", e.image})
	t.throwaway = concat(base, []string{"rm", "-f", "-t", "0", name})
	return t, nil
}

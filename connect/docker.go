package connect

import (
	"github.com/mitostar/mitostar/core"
)

// dockerFailures are docker's words for a missing or stopped container.
var dockerFailures = []failure{
	{"no such container", "not found"},
	{"is not running", "is not running"},
	{"is paused", "is paused"},
	{"is restarting", "is restarting"},
	{"unable to find image", "image not found"},
	{"pull access denied", "image not found"},
}

// newDocker is Mitogen's docker method: docker exec -i into a running
// container, or docker run -i --rm of an image (a throwaway container,
// gone when the context shuts down). Keywords: container, image,
// docker_path, username, docker_args (global options before the
// subcommand, e.g. ["-H", "unix:///run/other.sock"]) and run_args
// (options of docker run, with image=).
func newDocker(r *core.Router, opts *core.ConnectOptions) (core.Transport, error) {
	k := newKwargs("docker", opts.Kwargs)
	e := readEngineKwargs(k, "docker")
	if err := k.finish(); err != nil {
		return nil, err
	}
	if err := e.check("docker"); err != nil {
		return nil, err
	}
	t := &execTransport{method: "docker", failures: dockerFailures}
	base := append([]string{e.path}, e.args...)
	user := []string{}
	if e.username != "" {
		user = []string{"--user=" + e.username}
	}
	if e.container != "" {
		t.name = "docker." + e.container
		t.what = "docker container " + quote(e.container)
		t.describe = "docker exec"
		t.argv = concat(base, []string{"exec", "--interactive"}, user, []string{e.container})
		return t, nil
	}
	name := throwawayName()
	t.name = "docker." + e.image
	t.what = "docker container " + quote(name) + " of image " + quote(e.image)
	t.describe = "docker run"
	t.argv = concat(base, []string{"run", "--interactive", "--rm", "--name", name}, user, e.runArgs, []string{e.image})
	t.throwaway = concat(base, []string{"rm", "-f", name})
	return t, nil
}

func concat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func quote(s string) string { return `"` + s + `"` }

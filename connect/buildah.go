package connect

import (
	"context"
	"fmt"
	"os/exec"
	"strings"

	"github.com/mitostar/mitostar/core"
)

// buildahFailures are buildah's words for a missing working container.
var buildahFailures = []failure{
	{"container not known", "not found"},
	{"error reading build container", "not found"},
	{"reading build container", "not found"},
}

// newBuildah is Mitogen's buildah method: buildah run into a working
// container, or, with image=, into a working container made for this
// connection with buildah from and removed with buildah rm when the
// context shuts down. Keywords: container, image, buildah_path,
// username, buildah_args (global options), run_args (options of
// buildah from, with image=).
func newBuildah(r *core.Router, opts *core.ConnectOptions) (core.Transport, error) {
	k := newKwargs("buildah", opts.Kwargs)
	e := readEngineKwargs(k, "buildah")
	if err := k.finish(); err != nil {
		return nil, err
	}
	if err := e.check("buildah"); err != nil {
		return nil, err
	}
	t := &execTransport{method: "buildah", describe: "buildah run", failures: buildahFailures}
	base := append([]string{e.path}, e.args...)
	run := func(container string) []string {
		argv := concat(base, []string{"run"})
		if e.username != "" {
			argv = append(argv, "--user="+e.username)
		}
		return append(argv, "--", container)
	}
	if e.container != "" {
		t.name = "buildah." + e.container
		t.what = "buildah container " + quote(e.container)
		t.argv = run(e.container)
		return t, nil
	}
	name := throwawayName()
	t.name = "buildah." + e.image
	t.what = "buildah container " + quote(name) + " of image " + quote(e.image)
	t.argv = run(name)
	t.throwaway = concat(base, []string{"rm", name})
	t.prepare = func(ctx context.Context) ([]string, []string, error) {
		argv := concat(base, []string{"from", "--name", name}, e.runArgs, []string{e.image})
		out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
		if err != nil {
			return nil, nil, fmt.Errorf("buildah from %s: %v: %s", quote(e.image), err, strings.TrimSpace(string(out)))
		}
		return t.argv, nil, nil
	}
	return t, nil
}

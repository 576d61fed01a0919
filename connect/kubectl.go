package connect

import (
	"github.com/mitostar/mitostar/core"
)

// kubectlFailures are kubectl's words for a missing or stopped pod.
var kubectlFailures = []failure{
	{"(notfound)", "not found"},
	{"container not found", "container not found"},
	{"is not valid for pod", "container not found"},
	{"cannot exec into a container in a completed pod", "is not running"},
	{"does not have a host assigned", "is not running"},
	{"is not running", "is not running"},
}

// newKubectl is Mitogen's kubectl method: kubectl [KUBECTL_ARGS] exec
// -i POD [-c CONTAINER] --. Unlike Mitogen it never asks for a terminal
// (-t), which would mangle the binary stream. Keywords: pod,
// kubectl_path, kubectl_args (global options such as ["-n", "ns",
// "--context", "c"]), container (the container within the pod).
func newKubectl(r *core.Router, opts *core.ConnectOptions) (core.Transport, error) {
	k := newKwargs("kubectl", opts.Kwargs)
	pod := k.str("pod", "")
	path := k.str("kubectl_path", "kubectl")
	args := k.strings("kubectl_args")
	container := k.str("container", "")
	if err := k.finish(); err != nil {
		return nil, err
	}
	if err := containerArgs("kubectl", "pod", pod, "kubectl_path", path); err != nil {
		return nil, err
	}
	if err := checkName("kubectl", "container", container); err != nil {
		return nil, err
	}
	argv := concat([]string{path}, args, []string{"exec", "-i", pod})
	name, what := "kubectl."+pod, "kubectl pod "+quote(pod)
	if container != "" {
		argv = append(argv, "-c", container)
		name += "." + container
		what += " container " + quote(container)
	}
	return &execTransport{
		method:   "kubectl",
		describe: "kubectl exec",
		name:     name,
		what:     what,
		argv:     append(argv, "--"),
		failures: kubectlFailures,
	}, nil
}

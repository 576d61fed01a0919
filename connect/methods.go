package connect

import "github.com/mitostar/mitostar/core"

// methods are the connection methods the package registers.
var methods = []struct {
	name string
	new  core.MethodFactory
}{
	{"buildah", newBuildah}, {"doas", newDoas}, {"docker", newDocker},
	{"incus", newIncus}, {"jail", newJail}, {"kubectl", newKubectl},
	{"lxc", newLXC}, {"lxd", newLXD}, {"podman", newPodman},
	{"setns", newSetns}, {"ssh", newSSH}, {"su", newSu}, {"sudo", newSudo},
}

// init registers the methods, and the binary distribution every context
// serves its children. It is the package's only init: package inits run
// in every context at start, master or not, so the package keeps that
// work to one function.
func init() {
	for _, m := range methods {
		core.RegisterMethod(m.name, m.new)
	}
	core.RegisterChildHook(func(r *core.Router, ext []byte) error {
		serveDist(r)
		return nil
	})
}

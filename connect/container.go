package connect

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/mitostar/mitostar/core"
)

// execTransport is a connection through a container engine's exec
// command (docker exec -i, lxc-attach, kubectl exec -i, nsenter, ...):
// the engine's command line followed by the stub's `sh -c SCRIPT`, with
// stdin and stdout as the stream. The binary is shipped through it and
// cached inside the container like on any target.
type execTransport struct {
	method   string    // "docker"
	name     string    // the default context name: "docker.web"
	what     string    // the target for messages: `docker container "web"`
	describe string    // the command for messages: "docker exec"
	argv     []string  // the command line before `sh -c STUB`
	failures []failure // what the engine says when the target is missing
	// prepare, if set, runs at Start and returns the command line and
	// extra environment variables (setns looks the container's pid up
	// then).
	prepare func(ctx context.Context) (argv, env []string, err error)
	// throwaway, if set, removes a container started for this
	// connection (image=) once the connection is closed.
	throwaway []string
}

// A failure maps a text the engine prints on stderr (matched without
// regard to case) to a clear error about the target.
type failure struct {
	text  string
	state string // "not found" or "not running"
}

func (t *execTransport) DefaultName() string { return t.name }

func (t *execTransport) Start(ctx context.Context, env *core.StartEnv) (*core.Conn, error) {
	stub, err := NewStub()
	if err != nil {
		return nil, err
	}
	argv, extraEnv := t.argv, []string(nil)
	if t.prepare != nil {
		if argv, extraEnv, err = t.prepare(ctx); err != nil {
			return nil, &core.StreamError{Op: "connect " + env.Name, Err: err}
		}
	}
	argv = append(append([]string(nil), argv...), stub.Argv()...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), extraEnv...)
	conn, err := start(ctx, env, cmd, stub, startSpec{
		describe: t.describe,
		mode:     noTTY,
		prompt:   &engineWatcher{what: t.what, failures: t.failures},
	})
	if t.throwaway != nil {
		if err != nil {
			t.removeThrowaway(env.Router)
			return nil, err
		}
		closeConn := conn.Close
		conn.Close = func() {
			closeConn()
			t.removeThrowaway(env.Router)
		}
	}
	return conn, err
}

// removeThrowaway removes the container started for this connection,
// from a goroutine owned by r (Conn.Close must not block).
func (t *execTransport) removeThrowaway(r *core.Router) {
	r.Go(func() {
		// Give the child a moment to exit by itself: the engine's --rm
		// then does the work and the removal below finds nothing.
		time.Sleep(200 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, t.throwaway[0], t.throwaway[1:]...).CombinedOutput()
		if err != nil && !isNoSuchContainer(string(out)) {
			r.Logger().Warn("removing a throwaway container", "command", strings.Join(t.throwaway, " "), "error", err, "output", strings.TrimSpace(string(out)))
		}
	})
}

func isNoSuchContainer(out string) bool {
	out = strings.ToLower(out)
	return strings.Contains(out, "no such container") || strings.Contains(out, "no container with name") ||
		strings.Contains(out, "container not known") || strings.Contains(out, "removal of container") && strings.Contains(out, "already in progress")
}

// engineWatcher turns the engine's complaint about a missing or stopped
// target into an error that names it.
type engineWatcher struct {
	what     string
	failures []failure
}

func (w *engineWatcher) see(line string, partial bool) (string, error) {
	if partial {
		return "", nil
	}
	low := strings.ToLower(line)
	for _, f := range w.failures {
		if strings.Contains(low, f.text) {
			return "", fmt.Errorf("%s %s (%s)", w.what, f.state, strings.TrimSpace(line))
		}
	}
	return "", nil
}

// throwawayName is the name of a container started for one connection.
func throwawayName() string {
	b := make([]byte, 6)
	rand.Read(b)
	return "mitostar-" + hex.EncodeToString(b)
}

// engineKwargs reads the keywords shared by docker, podman and buildah.
type engineKwargs struct {
	container, image, path, username string
	args, runArgs                    []string
}

func readEngineKwargs(k *kwargs, tool string) engineKwargs {
	return engineKwargs{
		container: k.str("container", ""),
		image:     k.str("image", ""),
		path:      k.str(tool+"_path", tool),
		username:  k.str("username", ""),
		args:      k.strings(tool + "_args"),
		runArgs:   k.strings("run_args"),
	}
}

// check validates the keywords common to the engines.
func (e *engineKwargs) check(method string) error {
	switch {
	case e.container == "" && e.image == "":
		return fmt.Errorf("%s: give container= (a running container) or image= (to start a throwaway one)", method)
	case e.container != "" && e.image != "":
		return fmt.Errorf("%s: give container= or image=, not both", method)
	case e.image == "" && e.runArgs != nil:
		return fmt.Errorf("%s: run_args applies only with image=", method)
	case e.path == "":
		return fmt.Errorf("%s: %s_path must not be empty", method, method)
	}
	return checkName(method, "container", e.container)
}

// checkName refuses a name that the engine would parse as an option.
func checkName(method, keyword, name string) error {
	if strings.HasPrefix(name, "-") {
		return fmt.Errorf("%s: %s %q must not start with '-'", method, keyword, name)
	}
	return nil
}

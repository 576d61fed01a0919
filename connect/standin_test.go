package connect

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mitostar/mitostar/core"
	"github.com/mitostar/mitostar/internal/testbed"
)

// Methods whose engine cannot run here (incus has no Debian 12 package,
// jexec is FreeBSD's, kubectl needs a cluster, machinectl needs systemd)
// are tested through stand-ins: executables first on $PATH that record
// their argv and then run the command they were given on this machine,
// so the exact command line is asserted and the whole call path runs.

// standins writes the stand-in scripts into a directory put first on
// $PATH and returns it; each records its argv, one NUL-terminated
// argument per line, to DIR/NAME.argv.
func standins(t *testing.T, leaderPID int) string {
	t.Helper()
	dir := t.TempDir()
	record := `printf '%s\0' "$@" >"` + dir + `/$(basename "$0").argv"` + "\n"
	scripts := map[string]string{
		// incus exec --mode=non-interactive NAME -- CMD...
		"incus": `case "$3" in mt-nope) echo "Error: Instance not found" >&2; exit 1;; esac
while [ "$1" != "--" ]; do shift; done; shift; exec "$@"`,
		// kubectl [ARGS] exec -i POD [-c C] -- CMD...
		"kubectl": `for a; do case "$a" in mt-nope) echo "Error from server (NotFound): pods \"mt-nope\" not found" >&2; exit 1;; esac; done
while [ "$1" != "--" ]; do shift; done; shift; exec "$@"`,
		// jexec [-U USER] JAIL CMD...
		"jexec": `[ "$1" = -U ] && shift 2
case "$1" in mt-nope) echo "jexec: jail \"mt-nope\" not found" >&2; exit 1;; esac
shift; exec "$@"`,
		// machinectl status NAME
		"machinectl": `case "$2" in mt-nope) echo "Could not get path to machine: No machine 'mt-nope' known" >&2; exit 1;; esac
printf '%s(%s)\n           Since: now\n          Leader: ` + strconv.Itoa(leaderPID) + ` (sleep)\n' "$2" "$2"`,
	}
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+record+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	return dir
}

// recorded returns the argv a stand-in recorded.
func recorded(t *testing.T, dir, name string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, name+".argv"))
	if err != nil {
		t.Fatalf("%s was not run: %v", name, err)
	}
	return strings.Split(strings.TrimSuffix(string(data), "\x00"), "\x00")
}

// wantArgv checks a recorded argv: want, then the stub's `sh -c SCRIPT`.
func wantArgv(t *testing.T, got, want []string) {
	t.Helper()
	n := len(want)
	if len(got) != n+3 || !slices.Equal(got[:n], want) || got[n] != "sh" || got[n+1] != "-c" || !strings.Contains(got[n+2], "mitostar:") {
		t.Errorf("command line %q\nwant %q followed by sh -c STUB", got, want)
	}
}

func TestStandinMethods(t *testing.T) {
	testbed.RequireRoot(t, "nsenter", "unshare")
	leader := unshared(t, "mt-ns2")
	dir := standins(t, leader)
	r, _ := newMaster(t)
	ctx := testCtx(t, 2*time.Minute)
	jexec := filepath.Join(dir, "jexec")

	cases := []struct {
		method, name string
		kw           map[string]any
		tool         string
		argv         []string
		notFound     string
	}{
		{"incus", "incus.mt-i1", map[string]any{"container": "mt-i1"},
			"incus", []string{"exec", "--mode=non-interactive", "mt-i1", "--"}, `incus container "mt-nope" not found`},
		{"kubectl", "kubectl.mt-pod", map[string]any{"pod": "mt-pod"},
			"kubectl", []string{"exec", "-i", "mt-pod", "--"}, `kubectl pod "mt-nope" not found`},
		{"kubectl", "kubectl.mt-pod.web", map[string]any{"pod": "mt-pod", "container": "web", "kubectl_args": []any{"-n", "prod", "--context", "k1"}},
			"kubectl", []string{"-n", "prod", "--context", "k1", "exec", "-i", "mt-pod", "-c", "web", "--"}, ""},
		{"jail", "jail.mt-j1", map[string]any{"container": "mt-j1", "jexec_path": jexec},
			"jexec", []string{"mt-j1"}, `jail "mt-nope" not found`},
		{"jail", "jail.mt-j1", map[string]any{"container": "mt-j1", "jexec_path": jexec, "username": "mtcarol"},
			"jexec", []string{"-U", "mtcarol", "mt-j1"}, ""},
		{"setns", "setns.mt-m1", map[string]any{"container": "mt-m1", "kind": "machinectl"},
			"machinectl", nil, `machinectl container "mt-nope" not found`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := mustConnect(t, ctx, r, tc.method, nil, tc.kw)
			if c.Name() != tc.name {
				t.Errorf("name %q, want %q", c.Name(), tc.name)
			}
			w := info(t, ctx, c)
			got := recorded(t, dir, tc.tool)
			if tc.method == "setns" {
				if want := []string{"status", "mt-m1"}; !slices.Equal(got, want) {
					t.Errorf("machinectl %q, want %q", got, want)
				}
				if w.hostname != "mt-ns2" {
					t.Errorf("setns into the machine's leader %d: hostname %q", leader, w.hostname)
				}
			} else {
				wantArgv(t, got, tc.argv)
			}
			if tc.kw["username"] == nil && w.uid != "0" {
				t.Errorf("uid %s", w.uid)
			}
			if err := c.ShutdownWait(ctx); err != nil {
				t.Error(err)
			}
			if tc.notFound == "" {
				return
			}
			kw := map[string]any{}
			for k, v := range tc.kw {
				kw[k] = v
			}
			if _, ok := kw["pod"]; ok {
				kw["pod"] = "mt-nope"
			} else {
				kw["container"] = "mt-nope"
			}
			_, err := connect(ctx, r, tc.method, nil, kw)
			wantErr(t, err, tc.notFound)
		})
	}
}

// The default tool paths and names, without running anything.
func TestContainerCommandLines(t *testing.T) {
	r := core.NewMaster(core.Options{})
	t.Cleanup(r.Close)
	cases := []struct {
		method string
		kw     map[string]any
		name   string
		argv   []string
	}{
		{"docker", map[string]any{"container": "c1", "username": "u"}, "docker.c1",
			[]string{"docker", "exec", "--interactive", "--user=u", "c1"}},
		{"docker", map[string]any{"container": "c1", "docker_path": "/opt/docker", "docker_args": []any{"--context", "x"}}, "docker.c1",
			[]string{"/opt/docker", "--context", "x", "exec", "--interactive", "c1"}},
		{"podman", map[string]any{"container": "c1", "username": "u"}, "podman.c1",
			[]string{"podman", "exec", "--user=u", "--interactive", "--", "c1"}},
		{"buildah", map[string]any{"container": "c1", "username": "u"}, "buildah.c1",
			[]string{"buildah", "run", "--user=u", "--", "c1"}},
		{"lxc", map[string]any{"container": "c1"}, "lxc.c1",
			[]string{"lxc-attach", "--clear-env", "--name", "c1", "--"}},
		{"lxd", map[string]any{"container": "c1"}, "lxd.c1",
			[]string{"lxc", "exec", "--mode=non-interactive", "c1", "--"}},
		{"incus", map[string]any{"container": "c1", "incus_path": "/usr/local/bin/incus"}, "incus.c1",
			[]string{"/usr/local/bin/incus", "exec", "--mode=non-interactive", "c1", "--"}},
		{"jail", map[string]any{"container": "j1"}, "jail.j1",
			[]string{"/usr/sbin/jexec", "j1"}},
		{"kubectl", map[string]any{"pod": "p1"}, "kubectl.p1",
			[]string{"kubectl", "exec", "-i", "p1", "--"}},
	}
	for _, tc := range cases {
		tr, err := newTransport(r, tc.method, tc.kw)
		if err != nil {
			t.Errorf("%s %v: %v", tc.method, tc.kw, err)
			continue
		}
		e := tr.(*execTransport)
		if e.DefaultName() != tc.name || !slices.Equal(e.argv, tc.argv) {
			t.Errorf("%s %v: name %q argv %q, want %q %q", tc.method, tc.kw, e.DefaultName(), e.argv, tc.name, tc.argv)
		}
	}
	// image= runs a named throwaway container, removed after the context.
	tr, err := newTransport(r, "docker", map[string]any{"image": "busybox", "run_args": []any{"--network", "none"}})
	if err != nil {
		t.Fatal(err)
	}
	e := tr.(*execTransport)
	name := e.throwaway[len(e.throwaway)-1]
	if want := []string{"docker", "run", "--interactive", "--rm", "--name", name, "--network", "none", "busybox"}; !slices.Equal(e.argv, want) || !strings.HasPrefix(name, "mitostar-") {
		t.Errorf("docker image argv %q, want %q", e.argv, want)
	}
	if want := []string{"docker", "rm", "-f", name}; !slices.Equal(e.throwaway, want) {
		t.Errorf("docker removal %q", e.throwaway)
	}

	bad := []struct {
		method string
		kw     map[string]any
		msg    string
	}{
		{"docker", map[string]any{}, "docker: give container= (a running container) or image= (to start a throwaway one)"},
		{"docker", map[string]any{"container": "a", "image": "b"}, "docker: give container= or image=, not both"},
		{"docker", map[string]any{"container": "a", "run_args": []any{"-v"}}, "docker: run_args applies only with image="},
		{"docker", map[string]any{"container": "--privileged"}, `docker: container "--privileged" must not start with '-'`},
		{"podman", map[string]any{"container": 3}, "podman: container must be a string, got int 3"},
		{"lxc", map[string]any{}, "lxc: container= is required"},
		{"lxd", map[string]any{"container": "c", "lxc_path": ""}, "lxd: lxc_path must not be empty"},
		{"kubectl", map[string]any{"pod": "p", "kubectl_args": "-n x"}, `kubectl: kubectl_args must be a list of strings, got string "-n x"`},
		{"jail", map[string]any{"container": "j", "user": "x"}, `jail: unexpected keyword "user"`},
		{"setns", map[string]any{"container": "c", "kind": "nspawn"}, `setns: unsupported container kind "nspawn" (want one of docker, lxc, lxd, machinectl)`},
		{"setns", map[string]any{}, "setns: give container= and kind=, or pid="},
	}
	for _, b := range bad {
		if _, err := newTransport(r, b.method, b.kw); err == nil || err.Error() != b.msg {
			t.Errorf("%s %v: error %v, want %q", b.method, b.kw, err, b.msg)
		}
	}
}

// newTransport builds a method's transport from its keywords.
func newTransport(r *core.Router, method string, kw map[string]any) (core.Transport, error) {
	factories := map[string]core.MethodFactory{
		"docker": newDocker, "podman": newPodman, "buildah": newBuildah, "lxc": newLXC, "lxd": newLXD,
		"incus": newIncus, "jail": newJail, "kubectl": newKubectl, "setns": newSetns,
	}
	return factories[method](r, &core.ConnectOptions{Kwargs: kw})
}
